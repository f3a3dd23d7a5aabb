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

from components.airflow.values.chart import WORKER_LIVENESS

from ..harness import StepError
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
# How long the run may take once Redis is back: the nap's rest and the task after it, with room
# (150 s), and the time the worker's liveness probe takes to restart a worker that reconnected but
# consumes no more (what the first run on the node found, docs/e2e-prod-parts.md: kombu 5.6 after a
# Redis restart). The chart's probe took about five minutes; the component's takes about 75 s.
WORKER_STALL_SECONDS = (
    WORKER_LIVENESS["periodSeconds"] * WORKER_LIVENESS["failureThreshold"] + WORKER_LIVENESS["timeoutSeconds"]
)
RUN_TIMEOUT = 150 + WORKER_STALL_SECONDS
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
        try:
            dag_run, tasks = wait_run_end(r, SLEEP_DAG, run_id, RUN_TIMEOUT)
        except TimeoutError as exc:
            worker_state(r)
            tasks = r.api.task_instances(SLEEP_DAG, run_id)
            r.echo(f"    from the deletion: {task_times(tasks, deleted)}")
            raise StepError(
                f"{exc} (Redis was back after {(datetime.now(UTC) - deleted).total_seconds():.0f}s)"
            ) from None
        r.echo(f"    from the deletion: {task_times(tasks, deleted)}")
        r.echo(f"    from the deletion: the run ended {seconds_after(deleted, parse_time(dag_run.get('end_date')))}")
        r.echo(f"    (within {RUN_TIMEOUT}s of Redis Ready: the rest of the run, and a stalled worker's restart)")
        worker_state(r)
        r.echo(f"    part {NAME}: {time.monotonic() - started:.1f}s")


def worker_state(r: NodeRun) -> None:
    """The worker's broker lines and its containers' restarts and failed probes."""
    for worker in pods(r, {"component": "worker"}):
        name = worker["metadata"]["name"]
        for line in broker_lines(
            str(r.kube.request("GET", f"/api/v1/namespaces/{r.namespace}/pods/{name}/log?container=worker") or "")
        ):
            r.echo(f"    | {name}: {line[:220]}")
        restarts = {
            cs["name"]: cs.get("restartCount") for cs in (worker.get("status") or {}).get("containerStatuses") or []
        }
        events = r.kube.list("v1", "Event", r.namespace)
        failed = [
            e for e in events if (e.get("involvedObject") or {}).get("name") == name and e.get("reason") == "Unhealthy"
        ]
        r.echo(f"    {name}: restarts {restarts}; failed probes: {sum(int(e.get('count') or 1) for e in failed)}")


PART = Part(NAME, run)
