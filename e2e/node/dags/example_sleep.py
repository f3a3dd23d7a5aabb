"""A task that takes a while, then one after it: something to break a component under.

Not in dags/: node-prod's failure parts (e2e/node/prod_scheduler.py, prod_redis.py) trigger it
with `{"seconds": N}` and delete a scheduler or restart Redis while `nap` runs; `after` is
scheduled and sent through the broker once `nap` has ended, so the run only succeeds if the
scheduler left and the broker came back still work.
"""

from __future__ import annotations

import time

from k8s_conventions import example_dag_args

try:  # Airflow 3
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task  # type: ignore[no-redef]
    from airflow.models.param import Param  # type: ignore[no-redef]

with DAG(
    dag_id="example_sleep",
    description="A task that sleeps for the run's `seconds`, then one after it",
    doc_md=__doc__,
    schedule=None,
    params={"seconds": Param(20, type="integer", minimum=0, maximum=600)},
    **example_dag_args("executor"),
):

    @task(task_id="nap")
    def nap(params: dict[str, object] | None = None) -> int:
        seconds = int(str((params or {}).get("seconds", 20)))
        print(f"sleeping {seconds}s")
        time.sleep(seconds)
        print(f"slept {seconds}s")
        return seconds

    @task(task_id="after")
    def after(slept: int) -> None:
        print(f"after a nap of {slept}s")

    after(nap())
