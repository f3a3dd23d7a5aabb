"""A task that outgrows its pod's memory limit: what an out-of-memory task looks like.

The task runs in the KubernetesExecutor's own pod, with a memory limit of its own
(`executor_config`'s `pod_override`: the container `base` of Airflow's pod template). It keeps
allocating until the kernel stops the container (OOMKilled, exit code 137); the task fails,
retries once after 5 seconds as its settings say, and fails again. The e2e run's node scenario
triggers it in its `failures` part (docs/e2e.md); nothing schedules it.
"""

from __future__ import annotations

from datetime import timedelta

from k8s_conventions import example_dag_args
from kubernetes.client import models as k8s

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task  # type: ignore[no-redef]

MEMORY_LIMIT = "512Mi"
CHUNK = 32 * 2**20  # bytes allocated (and written) at a time
CEILING = 8 * 2**30  # never reached: the limit stops the task long before

POD_OVERRIDE = k8s.V1Pod(
    spec=k8s.V1PodSpec(
        containers=[
            k8s.V1Container(
                name="base",
                resources=k8s.V1ResourceRequirements(
                    requests={"memory": MEMORY_LIMIT}, limits={"memory": MEMORY_LIMIT}
                ),
            )
        ]
    )
)

with DAG(
    dag_id="example_memory_limit",
    description=f"A task that outgrows its pod's {MEMORY_LIMIT} memory limit: OOMKilled, retried once",
    doc_md=__doc__,
    schedule=None,
    **example_dag_args("executor", "failure"),
):

    @task(
        task_id="outgrow",
        retries=1,
        retry_delay=timedelta(seconds=5),
        executor_config={"pod_override": POD_OVERRIDE},
    )
    def outgrow() -> int:
        print(f"allocating {CHUNK // 2**20} MiB at a time, beyond the pod's memory limit of {MEMORY_LIMIT}")
        held = []
        while len(held) * CHUNK < CEILING:
            held.append(b"x" * CHUNK)  # written, so the pages count against the limit
        return len(held)

    outgrow()
