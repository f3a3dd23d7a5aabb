"""TaskNamespace: a team's namespace for KubernetesPodOperator tasks, isolated and least-privileged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict, cast

import pulumi
import pulumi_kubernetes as k8s

from ..core.outputs import register_annotated_outputs
from ..core.rbac import bound_role
from .config import Team, launcher_rules, namespace_annotations, namespace_labels, network_policies

PACKAGE = "airflow-k8s"
LAUNCHER_ROLE = "airflow-pod-launcher"


class TaskNamespaceArgs(TypedDict):
    """Inputs of TaskNamespace."""

    team: Team
    """The team (from the `teams` stack key, parsed)."""

    airflow_namespace: pulumi.Input[str]
    """Where Airflow runs (its task ServiceAccounts live there)."""

    airflow_namespace_name: str
    """The same, as plain text (NetworkPolicy selectors are built from it)."""

    release_name: str
    """The Airflow release name (labels the namespace for the API server's NetworkPolicy)."""

    task_service_accounts: pulumi.Input[list[str]]
    """The Airflow ServiceAccounts that launch task pods (AirflowRelease.task_service_accounts)."""

    api_port: int | None
    """The Airflow API port task pods may reach (Airflow 3's task SDK), or None."""

    secrets: NotRequired[Mapping[str, Mapping[str, pulumi.Input[str]]] | None]
    """The team's Secrets (name -> key -> value), created in its namespace only."""


class TaskNamespace(pulumi.ComponentResource):
    """Namespace, ServiceAccount, ResourceQuota, LimitRange, Role/RoleBinding, NetworkPolicies, Secrets."""

    namespace: pulumi.Output[str]
    """The team's namespace."""
    service_account: pulumi.Output[str]
    """The ServiceAccount task pods run as (no API token mounted)."""

    def __init__(self, name: str, args: TaskNamespaceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{PACKAGE}:index:TaskNamespace", name, {}, opts)
        team = args["team"]
        child = pulumi.ResourceOptions(parent=self)
        labels = {
            "app.kubernetes.io/part-of": "airflow",
            "app.kubernetes.io/managed-by": "pulumi",
            "airflow-k8s/team": team.name,
        }

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": team.namespace,
                "labels": namespace_labels(team, args["release_name"]),
                **({"annotations": namespace_annotations(team)} if team.pod_security_reason else {}),
            },
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True, protect=True),
        )
        namespace = ns.metadata.name

        def meta(object_name: str) -> dict[str, Any]:
            return {"name": object_name, "namespace": namespace, "labels": labels}

        sa = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=meta(team.service_account),
            automount_service_account_token=False,
            opts=child,
        )
        k8s.core.v1.ResourceQuota(f"{name}-quota", metadata=meta("tasks"), spec={"hard": dict(team.quota)}, opts=child)
        limit: dict[str, Any] = {
            "type": "Container",
            "default": dict(team.default_limits),
            "defaultRequest": dict(team.default_requests),
        }
        if team.max_limits:
            limit["max"] = dict(team.max_limits)
        k8s.core.v1.LimitRange(f"{name}-limits", metadata=meta("tasks"), spec={"limits": [limit]}, opts=child)

        subjects = pulumi.Output.all(args["task_service_accounts"], args["airflow_namespace"]).apply(
            lambda a: [{"kind": "ServiceAccount", "name": n, "namespace": a[1]} for n in a[0]]
        )
        bound_role(f"{name}-launcher", meta(LAUNCHER_ROLE), launcher_rules(team), subjects, child)
        for policy in network_policies(team, args["airflow_namespace_name"], args["api_port"]):
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{policy['name']}", metadata=meta(policy["name"]), spec=cast(Any, policy["spec"]), opts=child
            )
        for secret_name, data in (args.get("secrets") or {}).items():
            k8s.core.v1.Secret(
                f"{name}-secret-{secret_name}",
                metadata=meta(secret_name),
                type="Opaque",
                string_data={k: pulumi.Output.secret(v) for k, v in data.items()},
                opts=child,
            )

        self.namespace = namespace
        self.service_account = sa.metadata.name
        register_annotated_outputs(self)
