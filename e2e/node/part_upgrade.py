"""Part `upgrade` of the node scenario (issue 24, scenario 4): Airflow 3.2.0 -> 3.2.1 by image
(`airflow.version`), as docs/upgrades.md says. The migration Job of the new image runs
`airflow db migrate` against the existing database (its log shown); the first run's runs and
logs, the Variable and the Connection are still there; a new run succeeds on 3.2.1; and a second
image change right after (`airflow.image.pullPolicy`, which makes a new migration Job) does not
block on the finished one (apache/airflow#27561: a Job cannot change).
"""

from __future__ import annotations

import time
from typing import Any

from ..harness import StepError
from ..scenarios import wait_images
from . import part_keys
from .airflow_steps import read_logs, wait_answering, wait_ready
from .parts import NodeRun, Part

NAME = "upgrade"
FROM, TO = "3.2.0", "3.2.1"
IMAGE = f"apache/airflow:{TO}"
MIGRATION_LABEL = "component=run-airflow-migrations"


def from_version(cfg: dict[str, Any]) -> dict[str, Any]:
    """The node's stack starts on 3.2.0 (whatever the default is), so the upgrade is one."""
    airflow = {**cfg["airflow-k8s:airflow"], "version": FROM}
    return {**cfg, "airflow-k8s:airflow": airflow}


def migration_jobs(run: NodeRun) -> dict[str, dict[str, Any]]:
    jobs = run.kube.list("batch/v1", "Job", run.namespace)
    return {
        j["metadata"]["name"]: j
        for j in jobs
        if (j["metadata"].get("labels") or {}).get("component") == "run-airflow-migrations"
    }


def new_migration(run: NodeRun, before: set[str]) -> str:
    """The one migration Job the change made: complete; the old ones gone."""
    jobs = migration_jobs(run)
    new = sorted(set(jobs) - before)
    if len(new) != 1:
        raise StepError(f"expected one new migration Job, found {new} (before: {sorted(before)})")
    part_keys.job_complete(run, new[0])
    left = sorted(set(jobs) & before)
    run.echo(f"    migration Job {new[0]}: complete; the previous ones {'left: ' + str(left) if left else 'deleted'}")
    return new[0]


def settled(run: NodeRun) -> None:
    wait_ready(run.d, run.namespace)
    wait_answering(run.api, 120)


def run_upgrade(run: NodeRun) -> None:
    h, d = run.h, run.d
    with h.steps.step(f"[node:{NAME}] before: the Variable and the Connection stored (REST API)"):
        part_keys.store(run)
    with h.steps.step(f"[node:{NAME}] {FROM} -> {TO} (airflow.version), pulumi up: the migration Job migrates the DB"):
        before = set(migration_jobs(run))
        started = time.monotonic()
        d.airflow["version"] = TO
        d.write()
        d.up()
        wait_images(d, IMAGE)
        settled(run)
        run.echo(f"    every Airflow workload on {IMAGE} after {time.monotonic() - started:.1f}s")
        job = new_migration(run, before)
        log = part_keys.job_log(run, job)
        if "airflow db migrate" not in str(migration_jobs(run)[job]["spec"]) or not log.strip():
            raise StepError(f"the migration Job {job} did not run `airflow db migrate` (log: {log[-500:]!r})")
        for line in log.splitlines()[-8:]:
            run.echo(f"    | {job}: {line[:200]}")
    with h.steps.step(f"[node:{NAME}] on {TO}: the runs and task logs from before, the Variable and the Connection"):
        for dag_id, (run_id, _tasks) in run.runs.items():
            state = run.api.run_state(dag_id, run_id)
            if state not in ("success", "failed"):
                raise StepError(f"the run {run_id} of {dag_id} is {state} after the upgrade")
        run.echo(f"    {len(run.runs)} runs of the first run still there, each as it ended")
        for dag_id, (run_id, tasks) in run.runs.items():
            read_logs(d, run.api, dag_id, run_id, tasks, run.folder)
        part_keys.check_stored(run)
    with h.steps.step(f"[node:{NAME}] a new run on {TO} succeeds (it reads the Variable and the Connection)"):
        part_keys.run_reader(run)
    with h.steps.step(
        f"[node:{NAME}] a second image change right after (pullPolicy Never): a new migration Job, no wait on the old"
    ):
        before = set(migration_jobs(run))
        started = time.monotonic()
        d.airflow.setdefault("image", {})["pullPolicy"] = "Never"
        d.write()
        d.up()
        settled(run)
        new_migration(run, before)
        run.echo(f"    `pulumi up` and every pod Ready in {time.monotonic() - started:.1f}s")


PART = Part(NAME, run_upgrade, images=(IMAGE,), stack=from_version)
