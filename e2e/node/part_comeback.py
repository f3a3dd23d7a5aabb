"""Part `comeback` of the node scenario (issue 24, scenario 5, second half): destroy the way
docs/reliability.md says (`pulumi destroy --exclude-protected`: the Namespace, the Secrets, the
volumes and the backup claim stay), then `pulumi up` again on the same node: the run history,
the Variable and the Connection, the task logs are all still there, the Fernet key Secret holds
the same keys, and the admin password from before still logs in.
"""

from __future__ import annotations

import time

from ..harness import StepError
from ..scenarios import destroy_and_verify, kept_secrets, up_after_destroy
from . import part_keys
from .airflow_steps import admin_login, airflow_api, read_logs, wait_ready
from .parts import NodeRun, Part

NAME = "comeback"


def run_comeback(run: NodeRun) -> None:
    h, d = run.h, run.d
    release = part_keys.release(run)
    with h.steps.step(f"[node:{NAME}] before: the Variable and the Connection stored (REST API)"):
        part_keys.store(run)
    login = admin_login(run.kube, release, run.namespace)
    before = kept_secrets(d)
    title = "pulumi destroy --exclude-protected (the docs' way): kept Namespace, Secrets, volumes stay"
    with h.steps.step(f"[node:{NAME}] {title}"):
        started = time.monotonic()
        destroy_and_verify(d, exclude_protected=True)
        claims = sorted(c["metadata"]["name"] for c in run.kube.list("v1", "PersistentVolumeClaim", run.namespace))
        run.echo(f"    claims left in {run.namespace}: {', '.join(claims)} ({time.monotonic() - started:.1f}s)")
    with h.steps.step(f"[node:{NAME}] pulumi up again on the same node: kept objects taken over, same Secrets"):
        started = time.monotonic()
        up_after_destroy(d, before)
        wait_ready(d, run.namespace)
        run.echo(f"    up and every pod Ready in {time.monotonic() - started:.1f}s")
    with h.steps.step(f"[node:{NAME}] the admin password from before logs in; runs, logs, Variable, Connection there"):
        if admin_login(run.kube, release, run.namespace) != login:
            raise StepError("the admin login Secret changed across destroy and up")
        run.api = airflow_api(d, run.node, run.namespace)  # a new Service address: a new forwarder
        for dag_id, (run_id, tasks) in run.runs.items():
            state = run.api.run_state(dag_id, run_id)
            if state not in ("success", "failed"):
                raise StepError(f"the run {run_id} of {dag_id} is {state} after destroy and up")
            read_logs(d, run.api, dag_id, run_id, tasks, run.folder)
        run.echo(f"    {len(run.runs)} runs of the first run and their task logs still there")
        part_keys.check_stored(run)
        part_keys.run_reader(run)


PART = Part(NAME, run_comeback)
