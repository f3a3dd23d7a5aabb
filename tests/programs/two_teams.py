"""Two teams' Airflow in one stack: one shared namespace, one namespace of its own."""

from typing import Any

import pulumi

from components import AirflowRelease

common: dict[str, Any] = {
    "executor": "CeleryExecutor",
    "dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}},
}
teams: dict[str, dict[str, Any]] = {
    "team-a": {**common, "namespace": "data", "releaseName": "team-a"},
    "team-b": {**common, "namespace": "data", "releaseName": "team-b", "createNamespace": False},
    "team-c": {
        **common,
        "namespace": "ml",
        "releaseName": "team-a",
        "dags": {"mode": "hostPath", "hostPath": {"path": "/data/dags"}},
    },
}
for name, settings in teams.items():
    release = AirflowRelease(name, {"settings": settings})
    pulumi.export(f"{name}-serviceAccounts", release.service_accounts)
