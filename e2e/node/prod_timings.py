"""Part `timings` of node-prod (issue 25's numbers; on trial, run by `./run.sh bench-node-prod`):
how long a run takes on the prod shape, from its trigger.

- On the Celery worker that is up: `example_one_task` triggered RUNS times, one after another.
- From zero workers: the workers' Deployment (or StatefulSet) scaled to 0 (their pods gone), a
  run triggered and the workers scaled back to 1 at once, which is what KEDA does once it sees the queued task
  (less its polling interval, `keda.pollingInterval`); timed to the new worker's Ready and to
  the run's success. The replicas are put back as they were.

Each number is printed on a line `timing <name>: ...` (`timing_line`), which the benchmark reads.
"""

from __future__ import annotations

import os
import statistics
import time

from ..harness import StepError
from ..kube import wait_for
from . import part_keys
from .host import is_ready
from .part_failures import pods
from .parts import NodeRun, Part
from .prod_backup import scale
from .prod_common import new_run_seconds, title, wait_run_end

NAME = "timings"
DAG = "example_one_task"
RUNS = int(os.environ.get("AIRFLOW_K8S_TIMING_RUNS", "5"))
WORKER = {"component": "worker"}
COLD_TIMEOUT = 600


def timing_line(name: str, seconds: list[float]) -> str:
    """`timing <name>: n=<runs> median=<s>s min=<s>s max=<s>s (each: ...)`."""
    each = " ".join(f"{s:.1f}" for s in seconds)
    return (
        f"timing {name}: n={len(seconds)} median={statistics.median(seconds):.1f}s "
        f"min={min(seconds):.1f}s max={max(seconds):.1f}s (each: {each})"
    )


def warm(r: NodeRun) -> None:
    with r.h.steps.step(title(NAME, f"{DAG} {RUNS} times on the Celery worker that is up: trigger to success")):
        seconds = [new_run_seconds(r, DAG) for _ in range(RUNS)]
        r.echo(f"    {timing_line('warm-worker', seconds)}")


def workers(r: NodeRun) -> tuple[tuple[str, str], int]:
    """The Celery workers' (kind, name) and replicas: a Deployment, or a StatefulSet when the chart
    gives them a persistent volume (`workers.persistence`)."""
    name = f"{part_keys.release(r)}-worker"
    for kind in ("Deployment", "StatefulSet"):
        found = r.kube.read("apps/v1", kind, name, r.namespace)
        if found is not None:
            return (kind, name), int(found["spec"].get("replicas") or 1)
    raise StepError(f"no Deployment or StatefulSet {name} in {r.namespace}")


def cold(r: NodeRun) -> None:
    text = f"{DAG} from zero workers, scaled to 1 at the trigger as KEDA would: to the worker Ready, to success"
    with r.h.steps.step(title(NAME, text)):
        worker, before = workers(r)
        scale(r, {worker: 0})
        wait_for("no worker pod", lambda: f"{len(pods(r, WORKER))} left" if pods(r, WORKER) else None, timeout=180)
        try:
            r.api.unpause(DAG)
            triggered = time.monotonic()
            run_id = r.api.trigger(DAG)
            scale(r, {worker: 1})

            def ready() -> str | None:
                return None if any(is_ready(p) for p in pods(r, WORKER)) else "no worker Ready yet"

            wait_for("a worker Ready", ready, timeout=COLD_TIMEOUT, interval=0.5)
            to_ready = time.monotonic() - triggered
            wait_run_end(r, DAG, run_id, timeout=COLD_TIMEOUT)
            to_success = time.monotonic() - triggered
        finally:
            scale(r, {worker: before})
        r.echo(f"    timing cold-worker: worker Ready {to_ready:.1f}s, run success {to_success:.1f}s after the trigger")


def run(r: NodeRun) -> None:
    warm(r)
    cold(r)


PART = Part(NAME, run)
