"""bash_chain.py for Airflow 3: the standard provider's operators, `schedule`, a fixed start date."""

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

default_args = {
    "owner": "airflow",
    "depends_on_past": False,
    "retries": 1,
    "retry_delay": timedelta(minutes=5),
}

with DAG(
    dag_id="tutorial_bash_chain",
    default_args=default_args,
    description="A simple tutorial DAG",
    schedule=timedelta(days=1),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    start = EmptyOperator(task_id="start")
    print_date = BashOperator(task_id="print_date", bash_command="date")
    sleep = BashOperator(task_id="sleep", bash_command="sleep 5", retries=3)
    templated = BashOperator(task_id="templated", bash_command="echo {{ ds }} {{ macros.ds_add(ds, 7) }}")

    start >> print_date >> [sleep, templated]
