"""SparkOperator: the Kubeflow Spark Operator, with least-privilege RBAC for Spark and Airflow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from ..core.chart_release import helm_release, own_namespace
from ..core.invariants import check_other_release
from ..core.outputs import register_annotated_outputs
from ..core.rbac import bound_role
from ..core.reader import ConfigError
from .config import SparkConfig, parse_spark
from .values import AIRFLOW_SUBMITTER_RULES, DRIVER_RULES, SUBMITTER_ROLE, chart_values, subjects

PACKAGE = "airflow-k8s"


class SparkOperatorArgs(TypedDict):
    """Inputs of SparkOperator."""

    settings: SparkConfig | Mapping[str, Any]
    """The operator's settings: a `SparkConfig`, or a mapping of the same shape as the
    `spark` stack config key (documented in docs/configuration.md), which is validated here."""

    airflow_namespace: pulumi.Input[str]
    """The namespace of the Airflow release that submits Spark jobs (`AirflowRelease.namespace`)."""

    airflow_service_accounts: pulumi.Input[Sequence[str]]
    """The ServiceAccounts whose pods run Airflow tasks (`AirflowRelease.task_service_accounts`):
    exactly these are allowed to submit SparkApplications in the job namespaces."""

    service_account_metadata: NotRequired[Mapping[str, Mapping[str, Mapping[str, str]]] | None]
    """Extra `annotations` and `labels` of the Spark ServiceAccounts, by role (`driver`,
    `executor`): e.g. a cloud identity (identity_values.spark_accounts)."""


class SparkOperator(pulumi.ComponentResource):
    """The Kubeflow Spark Operator chart in its own namespace, watching only the job namespaces.

    Children (named `<name>-<role>`): the operator's namespace (unless it exists), each job
    namespace (when asked to create it; retained on destroy), in each job namespace the
    driver and executor ServiceAccounts, the driver's Role and RoleBinding and Airflow's
    submitter Role and RoleBinding, and one `helm.v3.Release`.
    """

    namespace: pulumi.Output[str]
    """The operator's namespace."""
    release_name: pulumi.Output[str]
    """The Helm release name."""
    job_namespaces: pulumi.Output[list[str]]
    """The namespaces SparkApplications run in (the first is the default)."""
    driver_service_account: pulumi.Output[str]
    """The ServiceAccount Spark drivers run as in every job namespace (`spec.driver.serviceAccount`)."""
    executor_service_account: pulumi.Output[str]
    """The ServiceAccount Spark executors run as (`spec.executor.serviceAccount`); it has no API rights."""
    submitters: pulumi.Output[list[str]]
    """The `namespace/name` of every ServiceAccount allowed to submit SparkApplications."""

    def __init__(self, name: str, args: SparkOperatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        cfg = self._settings(args)
        # The guarantees every Release keeps (components/core/invariants.py), before anything is declared.
        check_other_release(chart_values(cfg), extra_key="spark.extraValues", extra=cfg.extra_values, typed="spark")
        super().__init__(f"{PACKAGE}:index:SparkOperator", name, {}, opts)
        self.config = cfg
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=True, protect=True)
        labels = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "spark-operator"}

        airflow_namespace = pulumi.Output.from_input(args["airflow_namespace"]).apply(self._not_a_job_namespace)
        bound = pulumi.Output.all(airflow_namespace, args["airflow_service_accounts"]).apply(
            lambda pair: subjects(str(pair[0]), list(pair[1]))
        )

        # The operator's pods are restricted-compliant (non-root, no capabilities, seccomp).
        namespace, namespaces = own_namespace(
            f"{name}-namespace",
            cfg.namespace,
            {**labels, "pod-security.kubernetes.io/enforce": "restricted"},
            create=cfg.create_namespace,
            opts=child,
        )

        for job in cfg.job_namespaces:
            prefix = f"{name}-{job.name}"
            job_ns: pulumi.Input[str] = job.name
            depends: list[pulumi.Resource] = []
            if job.create:
                created = k8s.core.v1.Namespace(
                    f"{prefix}-namespace",
                    metadata={
                        "name": job.name,
                        "labels": {
                            **labels,
                            # Spark's pods meet "baseline"; "restricted" is reported, not enforced, so a
                            # job that does not set a restricted securityContext still runs.
                            "pod-security.kubernetes.io/enforce": "baseline",
                            "pod-security.kubernetes.io/warn": "restricted",
                            "pod-security.kubernetes.io/audit": "restricted",
                        },
                    },
                    opts=keep,
                )
                namespaces.append(created)
                depends.append(created)
                job_ns = created.metadata.name
            in_ns = pulumi.ResourceOptions(parent=self, depends_on=depends)
            self._spark_accounts(prefix, cfg, job_ns, labels, in_ns, args.get("service_account_metadata") or {})
            bound_role(
                f"{prefix}-submitter",
                {"name": SUBMITTER_ROLE, "namespace": job_ns, "labels": labels},
                AIRFLOW_SUBMITTER_RULES,
                bound,
                in_ns,
            )
        # The chart puts its controller's and webhook's Roles into every job namespace, so they
        # must exist first. CRDs come from the chart's crds/ folder on first install.
        self.release = helm_release(
            cfg.chart,
            f"{name}-release",
            release_name=cfg.release_name,
            namespace=namespace,
            values=chart_values(cfg),
            opts=pulumi.ResourceOptions(parent=self, depends_on=namespaces),
            timeout=600,
        )

        self.namespace = namespace
        self.release_name = self.release.name.apply(lambda n: n or cfg.release_name)
        self.job_namespaces = pulumi.Output.from_input(list(cfg.job_namespace_names))
        self.driver_service_account = pulumi.Output.from_input(cfg.service_accounts.driver)
        self.executor_service_account = pulumi.Output.from_input(cfg.service_accounts.executor)
        self.submitters = bound.apply(lambda items: [f"{s['namespace']}/{s['name']}" for s in items])
        register_annotated_outputs(self)

    def _spark_accounts(
        self,
        prefix: str,
        cfg: SparkConfig,
        namespace: pulumi.Input[str],
        labels: dict[str, str],
        opts: pulumi.ResourceOptions,
        extra: Mapping[str, Mapping[str, Mapping[str, str]]],
    ) -> None:
        """The driver's account with its Role, and the executors' account, which needs no API access."""
        accounts = cfg.service_accounts

        def meta(role: str, account: str) -> dict[str, Any]:
            more = extra.get(role) or {}
            out: dict[str, Any] = {
                "name": account,
                "namespace": namespace,
                "labels": {**labels, **more.get("labels", {})},
            }
            if more.get("annotations"):
                out["annotations"] = dict(more["annotations"])
            return out

        driver = k8s.core.v1.ServiceAccount(
            f"{prefix}-driver-account",
            metadata=meta("driver", accounts.driver),
            automount_service_account_token=True,
            opts=opts,
        )
        k8s.core.v1.ServiceAccount(
            f"{prefix}-executor-account",
            metadata=meta("executor", accounts.executor),
            automount_service_account_token=False,
            opts=opts,
        )
        bound_role(
            f"{prefix}-driver",
            {"name": accounts.driver, "namespace": namespace, "labels": labels},
            DRIVER_RULES,
            [{"kind": "ServiceAccount", "name": driver.metadata.name, "namespace": namespace}],
            opts,
        )

    def _not_a_job_namespace(self, airflow_namespace: str) -> str:
        if airflow_namespace in self.config.job_namespace_names or airflow_namespace == self.config.namespace:
            raise ValueError(
                f"Airflow's namespace {airflow_namespace!r} is also a Spark job namespace or the operator's "
                "namespace; Spark pods could then run as Airflow's ServiceAccounts. Use dedicated namespaces."
            )
        return airflow_namespace

    @staticmethod
    def _settings(args: SparkOperatorArgs) -> SparkConfig:
        settings = args["settings"]
        # Airflow's namespace as plain text is checked now; as an Output, when it resolves.
        known = args["airflow_namespace"] if isinstance(args["airflow_namespace"], str) else None
        cfg = settings if isinstance(settings, SparkConfig) else parse_spark(settings, airflow_namespace=known)
        if not cfg.enabled:
            raise ConfigError(
                "spark.enabled", False, "SparkOperator was given a disabled config; do not declare it then."
            )
        return cfg
