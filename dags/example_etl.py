"""An ETL step in its own pod: the extract part runs in a slim Python image.

Trigger it from the UI (or `airflow dags trigger example_etl`): the task starts a pod in
Airflow's namespace, its output appears in the task log, and a failed attempt is retried
once after 5 seconds. Change the image with the Airflow Variable `k8s_image_python` and
the namespace with `k8s_task_namespace` (see k8s_conventions.py).
"""

from __future__ import annotations

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from k8s_conventions import PYTHON_IMAGE, example_dag_args, image, pod_defaults

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG

with DAG(
    dag_id="example_etl",
    description="The extract step of an ETL as a KubernetesPodOperator task",
    doc_md=__doc__,
    schedule=None,
    **example_dag_args("kubernetes"),
):
    KubernetesPodOperator(
        task_id="extract",
        name="etl-extract",
        image=image("python", PYTHON_IMAGE),
        cmds=["sh", "-c"],
        arguments=['echo "This can be the extract part of an ETL"'],
        **pod_defaults(),
    )
