"""Airflow 2.x tutorial style: a KubernetesPodOperator ETL from the provider's old module."""

from datetime import datetime

from airflow import DAG
from airflow.kubernetes.secret import Secret
from airflow.providers.cncf.kubernetes.operators.kubernetes_pod import KubernetesPodOperator

password = Secret("env", "DB_PASSWORD", "warehouse-credentials", "password")

with DAG(
    "tutorial_pod_etl",
    start_date=datetime(2022, 1, 1),
    schedule_interval="0 3 * * *",
    catchup=False,
) as dag:
    extract = KubernetesPodOperator(
        task_id="extract",
        name="extract",
        namespace="default",
        image="python:3.11",
        cmds=["python", "-c"],
        arguments=["print('extract')"],
        secrets=[password],
        is_delete_operator_pod=True,
        get_logs=True,
    )
