"""What SparkOperator hands the chart and declares itself: plain functions of typed config.

Nothing here touches Pulumi, so every decision is testable by rendering the real chart:
the chart values, the RBAC rules of the Spark driver and of Airflow's task pods in each
job namespace, and the Airflow connection and variables that let DAGs submit
SparkApplications with no clicks in the UI.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..core.merge import deep_merge
from .config import OperatorPods, SparkConfig

SPARK_GROUP = "sparkoperator.k8s.io"

# What Airflow's task pods do through SparkKubernetesOperator (a KubernetesPodOperator):
# create the SparkApplication, read its status, find the driver pod by labels, follow its
# log, mark it checked (patch), read events on failure, delete the application when done.
AIRFLOW_SUBMITTER_RULES: list[dict[str, list[str]]] = [
    {
        "apiGroups": [SPARK_GROUP],
        "resources": ["sparkapplications"],
        "verbs": ["create", "get", "list", "watch", "patch", "delete"],
    },
    {"apiGroups": [SPARK_GROUP], "resources": ["sparkapplications/status"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
]

# What a Spark driver does to the API server (Spark's Kubernetes scheduler backend): read
# its own pod; create, watch, list, label (patch) and delete its executor pods, deleting the
# rest by label when it stops; create the executors' ConfigMap and on-demand claims, and
# delete them (and its own Service, which spark-submit created) by label at the end.
# Narrower than the chart's `spark.rbac` Role: no `update` anywhere, no Service creation.
DRIVER_RULES: list[dict[str, list[str]]] = [
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete", "deletecollection"],
    },
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create", "delete", "deletecollection"]},
    {
        "apiGroups": [""],
        "resources": ["persistentvolumeclaims"],
        "verbs": ["get", "list", "create", "delete", "deletecollection"],
    },
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "delete", "deletecollection"]},
]

SUBMITTER_ROLE = "airflow-spark-submitter"
KUBERNETES_CONNECTION_ID = "kubernetes_default"

# Airflow variables the example DAG (dags/spark_pi.py) reads, with these names.
VARIABLE_JOB_NAMESPACE = "spark_job_namespace"
VARIABLE_DRIVER_SERVICE_ACCOUNT = "spark_driver_service_account"
VARIABLE_EXECUTOR_SERVICE_ACCOUNT = "spark_executor_service_account"


def _pods_values(pods: OperatorPods) -> dict[str, Any]:
    values: dict[str, Any] = {
        "replicas": pods.replicas,
        # A budget only makes sense with a spare pod (the chart refuses it below 2 replicas).
        "podDisruptionBudget": {"enable": pods.replicas > 1, "minAvailable": 1},
    }
    resources = pods.resources.as_values()
    if resources:
        values["resources"] = resources
    return values


def chart_values(cfg: SparkConfig) -> dict[str, Any]:
    """The complete values for the spark-operator chart.

    The operator watches exactly the job namespaces (so its controller and webhook get
    Roles there, and only `get` on CRDs cluster-wide); the webhook and metrics are on;
    the Spark ServiceAccounts and their RBAC are declared by SparkOperator itself (see
    `DRIVER_RULES`), so the chart's broader `spark.rbac` Role is off; nothing that would
    grant `*` (the batch scheduler's podgroups rule) or cluster-wide namespace access
    (`jobNamespaceSelector`) is enabled.
    """
    values: dict[str, Any] = {
        "spark": {
            "jobNamespaces": list(cfg.job_namespace_names),
            "jobNamespaceSelector": "",
            "serviceAccount": {"create": False},
            "rbac": {"create": False},
        },
        "controller": {
            **_pods_values(cfg.controller),
            "leaderElection": {"enable": True},
            "batchScheduler": {"enable": False},
            "uiIngress": {"enable": False},
            "serviceAccount": {"create": True},
            "rbac": {"create": True},
        },
        "webhook": {
            **_pods_values(cfg.webhook),
            "enable": True,
            "leaderElection": {"enable": True},
            "failurePolicy": "Fail",
            "serviceAccount": {"create": True},
            "rbac": {"create": True},
        },
        "prometheus": {"metrics": {"enable": True}, "podMonitor": {"create": False}},
        "certManager": {"enable": False},
        "hook": {"upgradeCrd": False},
    }
    return deep_merge(values, cfg.extra_values)


def subjects(namespace: str, service_accounts: Sequence[str]) -> list[dict[str, str]]:
    """RoleBinding subjects for Airflow's task ServiceAccounts; an empty list is an error."""
    if not service_accounts:
        raise ValueError(
            f"no Airflow task ServiceAccounts were given for namespace {namespace!r}: nothing could submit "
            "SparkApplications (pass AirflowRelease.task_service_accounts)"
        )
    if len(set(service_accounts)) != len(service_accounts):
        raise ValueError(f"Airflow task ServiceAccounts are listed twice: {list(service_accounts)}")
    return [{"kind": "ServiceAccount", "name": account, "namespace": namespace} for account in service_accounts]


def kubernetes_connection() -> str:
    """Airflow's `kubernetes_default` connection: the API server of the cluster the task runs in,
    with the pod's own ServiceAccount token (JSON connection format, Airflow 2.3+)."""
    return json.dumps({"conn_type": "kubernetes", "extra": {"in_cluster": True}}, sort_keys=True)


def airflow_connections(cfg: SparkConfig) -> dict[str, str]:
    """Connections AirflowRelease should carry when Spark is on (connection id -> JSON)."""
    return {KUBERNETES_CONNECTION_ID: kubernetes_connection()} if cfg.enabled else {}


def airflow_variables(cfg: SparkConfig) -> dict[str, str]:
    """Variables that tell DAGs where to submit SparkApplications and as whom they run."""
    if not cfg.enabled:
        return {}
    return {
        VARIABLE_JOB_NAMESPACE: cfg.default_job_namespace,
        VARIABLE_DRIVER_SERVICE_ACCOUNT: cfg.service_accounts.driver,
        VARIABLE_EXECUTOR_SERVICE_ACCOUNT: cfg.service_accounts.executor,
    }
