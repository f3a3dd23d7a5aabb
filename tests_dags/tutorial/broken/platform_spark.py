"""A SparkKubernetesOperator job that imports on Airflow 3 but is submitted where the stack grants nothing."""

import pendulum
from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
from airflow.sdk import DAG

with DAG(
    dag_id="tutorial_platform_spark",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    SparkKubernetesOperator(task_id="spark_pi", namespace="default", application_file="spark-pi.yaml")
