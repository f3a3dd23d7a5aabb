"""A consumer stack that hands AirflowRelease its credentials as secret Outputs."""

import pulumi

from components import AirflowRelease

config = pulumi.Config()
AirflowRelease(
    "airflow",
    {
        "settings": {
            "executor": "CeleryExecutor",
            "database": {"mode": "external"},
            "dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/private.git", "auth": "token"}},
        },
        "database_url": config.require_secret("databaseUrl"),
        "git_token": config.require_secret("gitToken"),
    },
)
