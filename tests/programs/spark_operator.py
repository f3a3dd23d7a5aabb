"""AirflowRelease and SparkOperator as a user composes them, from `spark` config given as a mapping."""

import json

import pulumi

from components import AirflowRelease, SparkOperator

config = pulumi.Config()
airflow_settings = json.loads(config.get("airflow") or "{}")
spark_settings = json.loads(config.get("spark") or "{}")

airflow = AirflowRelease("team", {"settings": airflow_settings})
spark = SparkOperator(
    "team-spark",
    {
        "settings": spark_settings,
        "airflow_namespace": airflow.namespace,
        "airflow_service_accounts": airflow.task_service_accounts,
    },
)
pulumi.export("submitters", spark.submitters)
