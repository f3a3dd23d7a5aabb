"""AirflowRelease with connections and variables as code."""

import pulumi

from components import AirflowRelease

AirflowRelease(
    "airflow",
    {
        "settings": {"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}},
        "connections": {
            "kubernetes_default": '{"conn_type": "kubernetes", "extra": {"in_cluster": true}}',
            "warehouse": pulumi.Output.secret("postgresql://etl:hunter2@warehouse:5432/dw"),
        },
        "variables": {"environment": "dev"},
    },
)
