"""spark_job.py for Airflow 3 on this platform: the stack's job namespace and Spark accounts.

SparkKubernetesOperator follows the application to its end (get_logs), so the tutorial's
SparkKubernetesSensor and XCom hand-over are not needed.
"""

import pendulum
from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
from airflow.sdk import DAG

with DAG(
    dag_id="tutorial_spark_pi",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    spark_pi = SparkKubernetesOperator(
        task_id="spark_pi",
        namespace="spark-jobs",
        application_file="spark-pi.yaml",
        get_logs=True,
        delete_on_termination=True,
    )
