"""A consumer stack that imports AirflowRelease and hands it chart values of its own."""

import json

import pulumi

from components import AirflowRelease

config = pulumi.Config()
AirflowRelease(
    "airflow",
    {
        "settings": {"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}},
        "extra_values": json.loads(config.get("extraValues") or "{}"),
    },
)
