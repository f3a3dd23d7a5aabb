"""Part `redis-restart` of node-prod (issue 25, scenario 6): Redis, Celery's broker, deleted while
a task runs on a Celery worker (its StatefulSet starts it again on the same volume). The task
goes on, the task after it is sent through the broker once Redis is back (re-sent by Airflow if
the broker refused it meanwhile: its try number says), and the run succeeds; the worker's log
shows it lost the broker and connected again.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from .part_failures import delete_pods, pods, replaced
from .parts import NodeRun, Part
from .prod_common import (
    NAP,
    SLEEP_DAG,
    parse_time,
    seconds_after,
    task_times,
    title,
    trigger_sleep,
    wait_run_end,
    wait_task_state,
)

NAME = "redis-restart"
NAP_SECONDS = 10
# What Celery's worker logs when its broker goes away and when it is back.
BROKER_LINES = re.compile(r"broker|Connection refused|Cannot connect|Connected to redis|consumer: ", re.I)


def broker_lines(log: str, limit: int = 8) -> list[str]:
    """The worker log's lines about its broker connection, the last `limit`."""
    return [line for line in log.splitlines() if BROKER_LINES.search(line)][-limit:]


def run(r: NodeRun) -> None:
    with r.h.steps.step(title(NAME, "Redis restarted while a task runs: Airflow re-queues, the run succeeds")):
        started = time.monotonic()
        run_id = trigger_sleep(r, NAP_SECONDS)
        wait_task_state(r, SLEEP_DAG, run_id, NAP, "running")
        deleted = datetime.now(UTC)
        old = delete_pods(r, pods(r, {"component": "redis"}), "Redis")
        name = replaced(r, {"component": "redis"}, old, "Redis")
        r.echo(f"    Redis {name} Ready again {(datetime.now(UTC) - deleted).total_seconds():.1f}s after the deletion")
        dag_run, tasks = wait_run_end(r, SLEEP_DAG, run_id)
        r.echo(f"    from the deletion: {task_times(tasks, deleted)}")
        r.echo(f"    from the deletion: the run ended {seconds_after(deleted, parse_time(dag_run.get('end_date')))}")
        for worker in pods(r, {"component": "worker"}):
            path = f"/api/v1/namespaces/{r.namespace}/pods/{worker['metadata']['name']}/log?container=worker"
            for line in broker_lines(str(r.kube.request("GET", path) or "")):
                r.echo(f"    | {worker['metadata']['name']}: {line[:220]}")
        r.echo(f"    part {NAME}: {time.monotonic() - started:.1f}s")


PART = Part(NAME, run)
