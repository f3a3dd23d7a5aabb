"""One Python task, run by the executor itself: the smallest DAG there is.

On the KubernetesExecutor the task gets a pod of its own from Airflow's image (start the pod,
import Airflow, run, exit); on the LocalExecutor it runs in the scheduler. `./run.sh bench-node`
times it both ways: what a task costs beyond its own work.
"""

from __future__ import annotations

from k8s_conventions import example_dag_args

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task  # type: ignore[no-redef]

with DAG(
    dag_id="example_one_task",
    description="One Python task, in the executor's own pod",
    doc_md=__doc__,
    schedule=None,
    **example_dag_args("executor"),
):

    @task(task_id="hello")
    def hello() -> str:
        print("hello from example_one_task")
        return "hello"

    hello()
