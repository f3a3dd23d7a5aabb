"""python_context.py for Airflow 3: no provide_context (the context always arrives), logical_date."""

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def print_context(ds=None, **kwargs):
    print(kwargs["logical_date"], ds)
    return "Whatever you return gets printed in the logs"


with DAG(
    dag_id="tutorial_python_context",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    schedule="@daily",
    catchup=False,
):
    print_the_context = PythonOperator(task_id="print_the_context", python_callable=print_context)
