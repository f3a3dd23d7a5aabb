"""A KubernetesPodOperator ETL that imports on Airflow 3 but breaks the platform's rules, one per task."""

import pendulum
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from airflow.sdk import DAG

with DAG(
    dag_id="tutorial_platform_pod_etl",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    # Tutorials start pods in `default`, which the stack grants nobody.
    extract = KubernetesPodOperator(
        task_id="extract",
        name="extract",
        namespace="default",
        image="python:3.13.7-slim-bookworm",
        cmds=["python", "-c", "print('extract')"],
    )
    # An account the stack does not create.
    transform = KubernetesPodOperator(
        task_id="transform",
        name="transform",
        namespace="etl-tasks",
        service_account_name="etl-runner",
        image="python:3.13.7-slim-bookworm",
        cmds=["python", "-c", "print('transform')"],
    )
    # Unpinned images.
    load = KubernetesPodOperator(task_id="load", name="load", namespace="airflow", image="python:latest")
    report = KubernetesPodOperator(task_id="report", name="report", namespace="airflow", image="busybox")
    # A Secret the team does not have, and a Secret in Airflow's own namespace.
    publish = KubernetesPodOperator(
        task_id="publish",
        name="publish",
        namespace="etl-tasks",
        service_account_name="etl-tasks",
        image="python:3.13.7-slim-bookworm",
        secrets=[Secret("env", "DB_PASSWORD", "warehouse-credentials", "password")],
    )
    notify = KubernetesPodOperator(
        task_id="notify",
        name="notify",
        namespace="airflow",
        image="python:3.13.7-slim-bookworm",
        secrets=[Secret("volume", "/etc/smtp", "smtp-credentials")],
    )
    extract >> transform >> [load, report, publish, notify]
