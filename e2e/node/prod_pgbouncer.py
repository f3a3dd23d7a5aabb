"""Part `pgbouncer-restart` of node-prod (issue 25, scenario 6): both PgBouncer pods deleted at
once (every connection Airflow holds to the database is cut; the Deployment starts two new
ones). Airflow recovers by itself: no container of the schedulers, api-servers, worker,
triggerer or DAG processor restarts and none is replaced, the health endpoint calls every
component healthy again, and a new run succeeds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ..harness import StepError
from ..kube import wait_for
from .host import is_ready
from .part_failures import delete_pods, pods
from .parts import NodeRun, Part
from .prod_common import airflow_restarts, new_run_seconds, previous_logs, restarted, title, wait_healthy

NAME = "pgbouncer-restart"
RUN_DAG = "example_one_task"
GONE_TIMEOUT = 120


def run(r: NodeRun) -> None:
    with r.h.steps.step(title(NAME, "both PgBouncer pods restarted: Airflow recovers with no restart of its own")):
        started = time.monotonic()
        before = airflow_restarts(r)
        old = delete_pods(r, pods(r, {"component": "pgbouncer"}), "PgBouncer")
        deleted = datetime.now(UTC)

        def back() -> str | None:
            every = r.kube.list("v1", "Pod", r.namespace)
            olds = [p for p in every if p["metadata"]["uid"] in old]
            new = [p for p in pods(r, {"component": "pgbouncer"}) if p["metadata"]["uid"] not in old]
            ready = [p for p in new if is_ready(p)]
            if len(ready) < len(old) or olds:
                return f"{len(ready)} new PgBouncer pods Ready, {len(olds)} old ones still terminating"
            return None

        wait_for("new PgBouncer pods Ready, the old ones gone", back, timeout=GONE_TIMEOUT, interval=1)
        back_after = (datetime.now(UTC) - deleted).total_seconds()
        r.echo(f"    {len(old)} new PgBouncer pods Ready and the old ones gone {back_after:.1f}s after the deletion")
        took = wait_healthy(r)
        r.echo(f"    every component healthy {took:.1f}s later")
        r.echo(f"    a new run of {RUN_DAG}: success {new_run_seconds(r, RUN_DAG):.1f}s after its trigger")
        changes = restarted(before, airflow_restarts(r))
        r.echo(f"    Airflow's containers: {len(before)}, restarted or replaced: {', '.join(changes) or 'none'}")
        if changes:
            previous_logs(r, changes)
            raise StepError(f"Airflow restarted when PgBouncer did: {', '.join(changes)}")
        r.echo(f"    part {NAME}: {time.monotonic() - started:.1f}s")


PART = Part(NAME, run)
