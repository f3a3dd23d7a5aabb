"""Airflow 1.10 tutorial style: a KubernetesPodOperator ETL from airflow.contrib."""

from datetime import datetime

from airflow import DAG
from airflow.contrib.kubernetes.secret import Secret
from airflow.contrib.operators.kubernetes_pod_operator import KubernetesPodOperator

password = Secret("env", "DB_PASSWORD", "warehouse-credentials", "password")

dag = DAG("tutorial_contrib_pod_etl", start_date=datetime(2020, 1, 1), schedule_interval="@daily")

extract = KubernetesPodOperator(
    namespace="default",
    image="python:latest",
    cmds=["python", "-c"],
    arguments=["print('extract')"],
    secrets=[password],
    name="extract",
    task_id="extract",
    get_logs=True,
    dag=dag,
)
