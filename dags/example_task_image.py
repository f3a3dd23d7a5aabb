"""Run the platform's task image (images/task/): a greeting, the time, the host and home.

Build the image and make it available to the cluster first (images/task/README.md). The
image name comes from the Airflow Variable `k8s_image_task`, so a registry copy
(`registry.example.com/team/airflow-k8s-task:1.0.0`) needs no DAG change. The pod runs as
the image's non-root user 1001 with the image's own entrypoint.
"""

from __future__ import annotations

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from k8s_conventions import TASK_IMAGE, TASK_UID, example_dag_args, image, pod_defaults

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG

with DAG(
    dag_id="example_task_image",
    description="The platform's task image, run by KubernetesPodOperator",
    doc_md=__doc__,
    schedule=None,
    **example_dag_args("kubernetes"),
):
    KubernetesPodOperator(
        task_id="hello",
        name="task-image-hello",
        image=image("task", TASK_IMAGE),
        env_vars={"GREETING": "Hello from {{ dag.dag_id }} / {{ ti.task_id }}"},
        **pod_defaults(uid=TASK_UID),
    )
