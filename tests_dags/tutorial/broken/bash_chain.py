"""Airflow 1.10 tutorial style: a BashOperator chain, scheduled daily."""

from datetime import timedelta

from airflow import DAG
from airflow.operators.bash_operator import BashOperator
from airflow.operators.dummy_operator import DummyOperator
from airflow.utils.dates import days_ago

default_args = {
    "owner": "airflow",
    "depends_on_past": False,
    "start_date": days_ago(2),
    "retries": 1,
    "retry_delay": timedelta(minutes=5),
}

dag = DAG(
    "tutorial_bash_chain",
    default_args=default_args,
    description="A simple tutorial DAG",
    schedule_interval=timedelta(days=1),
)

start = DummyOperator(task_id="start", dag=dag)
print_date = BashOperator(task_id="print_date", bash_command="date", dag=dag)
sleep = BashOperator(task_id="sleep", bash_command="sleep 5", retries=3, dag=dag)
templated = BashOperator(
    task_id="templated",
    bash_command="echo {{ ds }} {{ macros.ds_add(ds, 7) }}",
    dag=dag,
)

start >> print_date >> [sleep, templated]
