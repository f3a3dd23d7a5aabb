"""Airflow 1.10 / 2.x tutorial style: a PythonOperator that asks for the context."""

from datetime import datetime

from airflow import DAG
from airflow.operators.python_operator import PythonOperator


def print_context(ds, **kwargs):
    print(kwargs["execution_date"], ds)
    return "Whatever you return gets printed in the logs"


with DAG(
    dag_id="tutorial_python_context",
    start_date=datetime(2021, 1, 1),
    schedule_interval="@daily",
    catchup=False,
) as dag:
    PythonOperator(task_id="print_the_context", provide_context=True, python_callable=print_context)
