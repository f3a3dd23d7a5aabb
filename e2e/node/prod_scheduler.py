"""Part `scheduler-loss` of node-prod (issue 25, scenario 6): one of the two schedulers deleted
while a task runs on a Celery worker. The other scheduler goes on: the task's successor is
scheduled and sent, and the run ends, before the Deployment's replacement pod is Ready. Shown
by times: the run's end (the REST API) against the new pod's Ready condition, both from the
machine's clock, counted from the deletion.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ..harness import StepError
from .part_failures import delete_pods, pods, replaced
from .parts import NodeRun, Part
from .prod_common import (
    AFTER,
    NAP,
    SLEEP_DAG,
    parse_time,
    ready_since,
    seconds_after,
    task_times,
    title,
    trigger_sleep,
    wait_run_end,
    wait_task_state,
)

NAME = "scheduler-loss"
# The nap left after the deletion: shorter than a new scheduler takes to start (its init
# container and its startup probe each import Airflow), so an end before that pod is Ready shows
# the run did not wait for it.
NAP_SECONDS = 12


def ended_before_return(end: datetime | None, back: datetime | None) -> bool:
    """The run ended before the replacement scheduler was Ready (it did not wait for it)."""
    return end is not None and back is not None and end < back


def run(r: NodeRun) -> None:
    with r.h.steps.step(title(NAME, "a scheduler of two deleted mid-run: the run ends without waiting for a new one")):
        started = time.monotonic()
        schedulers = pods(r, {"component": "scheduler"})
        if len(schedulers) != 2:
            raise StepError(f"expected two schedulers, found {[p['metadata']['name'] for p in schedulers]}")
        run_id = trigger_sleep(r, NAP_SECONDS)
        wait_task_state(r, SLEEP_DAG, run_id, NAP, "running")
        victim = schedulers[0]
        deleted = datetime.now(UTC)
        old = delete_pods(r, [victim], "scheduler")
        survivor = schedulers[1]["metadata"]["name"]
        r.echo(f"    {SLEEP_DAG}.{NAP} running; {survivor} left alone")
        dag_run, tasks = wait_run_end(r, SLEEP_DAG, run_id)
        end = parse_time(dag_run.get("end_date"))
        # The survivor is no new pod either: counted as one, it stood for the replacement (Ready long
        # before the deletion), and the check failed on the node although the run had not waited.
        name = replaced(r, {"component": "scheduler"}, old | {schedulers[1]["metadata"]["uid"]}, "scheduler")
        new = next(p for p in pods(r, {"component": "scheduler"}) if p["metadata"]["name"] == name)
        back = ready_since(new)
        r.echo(f"    from the deletion: {task_times(tasks, deleted)}")
        r.echo(
            f"    from the deletion: the run ended {seconds_after(deleted, end)}, "
            f"the new scheduler {name} Ready {seconds_after(deleted, back)}"
        )
        if not ended_before_return(end, back):
            raise StepError(
                f"the run ended {seconds_after(deleted, end)} after the deletion, not before the new scheduler "
                f"was Ready ({seconds_after(deleted, back)}): not shown that it did not wait for it"
            )
        after = next(t for t in tasks if t["task_id"] == AFTER)
        r.echo(f"    {AFTER} was scheduled and ran with one scheduler ({after.get('hostname')})")
        r.echo(f"    part {NAME}: {time.monotonic() - started:.1f}s")


PART = Part(NAME, run)
