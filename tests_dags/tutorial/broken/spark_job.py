"""Airflow 2.x tutorial style: a SparkApplication submitted and watched by a sensor."""

from datetime import datetime

from airflow import DAG
from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
from airflow.providers.cncf.kubernetes.sensors.spark_kubernetes import SparkKubernetesSensor

with DAG(
    "tutorial_spark_pi",
    start_date=datetime(2022, 1, 1),
    schedule_interval=None,
    catchup=False,
) as dag:
    submit = SparkKubernetesOperator(
        task_id="spark_pi_submit",
        namespace="default",
        application_file="spark-pi.yaml",
        do_xcom_push=True,
    )
    watch = SparkKubernetesSensor(
        task_id="spark_pi_monitor",
        namespace="default",
        application_name="{{ task_instance.xcom_pull(task_ids='spark_pi_submit')['metadata']['name'] }}",
    )
    submit >> watch
