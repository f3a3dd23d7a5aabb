"""DAG integrity tests: run with the DAG virtualenv (Airflow and the cncf.kubernetes provider)."""
