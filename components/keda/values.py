"""What worker autoscaling hands the charts: plain functions of typed config.

`airflow_values` is the fragment of Airflow chart values that turns the chart's
`workers.celery.keda` on; `chart_values` the values of the KEDA chart (KedaOperator).

How KEDA reaches the metadata database. The chart's ScaledObject names the connection by an
environment variable of the worker container (`connectionFromEnv`), which KEDA resolves from
the pod spec (reading the Secret a `secretKeyRef` names), not from the running process:

- with PgBouncer, the chart expects `AIRFLOW_CONN_AIRFLOW_DB` (`workers.celery.keda.usePgbouncer`,
  true here), the connection through PgBouncer's `<release>-metadata` pool, so KEDA's polling
  counts against PgBouncer's pool and never opens connections of its own to the database;
- without PgBouncer, the same variable names the database directly.

AirflowRelease switched the chart's built-in `AIRFLOW_CONN_AIRFLOW_DB` off (secrets as files), so
the worker container alone gets it back, from the same metadata Secret, for KEDA to read; the
worker's command unsets it before `airflow celery worker` starts, so no task process inherits it.
"""

from __future__ import annotations

import shlex
from typing import Any

from ..airflow.config.airflow import AirflowConfig
from ..airflow.config.secret_names import SecretNames
from ..core.merge import deep_merge
from .config import KedaConfig, KedaInstall

KEDA_CONNECTION_ENV = "AIRFLOW_CONN_AIRFLOW_DB"
KEDA_OPERATOR_LABEL = "keda-operator"


def worker_args(airflow: AirflowConfig) -> list[str]:
    """The chart's worker command (chart 1.21.0 `workers.args`), with the KEDA variable dropped
    first. Written out literally, not as the chart's template: the chart passes these strings
    through `tpl`, and no value of ours carries a template (components/core/invariants.py). The queue
    is the one `workers.queue` sets through extraValues, as the chart's own template would read it."""
    workers = airflow.extra_values.get("workers")
    queue = workers.get("queue") if isinstance(workers, dict) else None
    command = f"unset {KEDA_CONNECTION_ENV}\nexec \\\nairflow celery worker"
    if isinstance(queue, str) and queue and queue != "default":
        command += f" -q {shlex.quote(queue)}"
    return ["bash", "-c", command]


def keda_peer(cfg: KedaConfig) -> dict[str, Any]:
    """A NetworkPolicy peer: the KEDA operator's pods, in its namespace."""
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cfg.namespace}},
        "podSelector": {"matchLabels": {"app": KEDA_OPERATOR_LABEL}},
    }


def airflow_values(cfg: KedaConfig, airflow: AirflowConfig) -> dict[str, Any]:
    """Airflow chart values for KEDA-scaled Celery workers ({} when KEDA is off)."""
    if not cfg.enabled:
        return {}
    w = cfg.workers
    names = SecretNames(airflow.release_name)
    values: dict[str, Any] = {
        "workers": {
            "celery": {
                "keda": {
                    "enabled": True,
                    "minReplicaCount": w.min_replicas,
                    "maxReplicaCount": w.max_replicas,
                    "pollingInterval": w.polling_interval,
                    "cooldownPeriod": w.cooldown_period,
                    "usePgbouncer": True,
                },
                "env": [
                    {
                        "name": KEDA_CONNECTION_ENV,
                        "valueFrom": {"secretKeyRef": {"name": names.metadata, "key": "connection"}},
                    }
                ],
                "args": worker_args(airflow),
            }
        }
    }
    net = airflow.network_policies
    if net.enabled and airflow.database.pgbouncer.enabled:
        # The chart's PgBouncer policy admits Airflow's pods (and metrics namespaces): KEDA polls too.
        metrics = [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": n}}} for n in net.metrics_namespaces
        ]
        values["pgbouncer"] = {"extraNetworkPolicies": [*metrics, keda_peer(cfg)]}
    return values


# KEDA's images are distroless "nonroot" (uid 65532): said explicitly, a high uid clear of host users.
RESTRICTED_POD: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def chart_values(install: KedaInstall) -> dict[str, Any]:
    """The KEDA chart's values: CRDs with the chart, restricted pods, sized, webhooks as configured."""
    values: dict[str, Any] = {
        "crds": {"install": True},
        # KEDA scales Deployments and StatefulSets without extra rights; no `*` rules for any other
        # kind with a scale subresource (the chart's default grants get/update on `*/scale` and `*`).
        "rbac": {"enabledCustomScaledRefKinds": False},
        "webhooks": {"enabled": install.webhooks},
        "resources": {
            "operator": install.operator_resources.as_values(),
            "metricServer": install.metrics_server_resources.as_values(),
            "webhooks": install.webhooks_resources.as_values(),
        },
        "podSecurityContext": {
            "operator": dict(RESTRICTED_POD),
            "metricServer": dict(RESTRICTED_POD),
            "webhooks": dict(RESTRICTED_POD),
        },
    }
    return deep_merge(values, install.extra_values)
