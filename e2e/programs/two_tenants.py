"""Two tenants' Airflow in one stack, each in its own namespace (the e2e `tenants` scenario).

The e2e harness runs this as the project's `__main__.py`; the chart comes from the stack's
`airflow-k8s:airflow.chart` (the harness's local repository).
"""

from typing import Any

import pulumi

from components import AirflowRelease

chart = pulumi.Config("airflow-k8s").require_object("airflow")["chart"]
common: dict[str, Any] = {
    "chart": chart,
    "executor": "KubernetesExecutor",
    "dags": {"mode": "hostPath", "hostPath": {"path": "/data/airflow-dags"}},
}
for tenant in ("a", "b"):
    release = AirflowRelease(f"tenant-{tenant}", {"settings": {**common, "namespace": f"tenant-{tenant}"}})
    pulumi.export(f"tenant-{tenant}-namespace", release.namespace)
