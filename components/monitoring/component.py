"""Monitoring: Airflow's metrics in Prometheus, its alerts and its Grafana dashboard."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NotRequired, TypedDict, cast

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from ..airflow.component import AirflowRelease
from ..airflow.config.airflow import AirflowConfig, parse_airflow
from ..core.chart_release import helm_release, own_namespace
from ..core.invariants import check_other_release
from ..core.outputs import register_annotated_outputs
from .config import MonitoringConfig, check_with_airflow, parse_monitoring
from .values import (
    GRAFANA_ADMIN_PASSWORD_KEY,
    GRAFANA_ADMIN_USER_KEY,
    MONITORING_API,
    StackNames,
    Target,
    dashboard_config_map,
    dashboard_title,
    monitored_components,
    prometheus_rule,
    rules_config_map,
    selected_labels,
    service_monitor,
    stack_values,
)

PACKAGE = "airflow-k8s"


def _monitor_of(component: str, labels: Mapping[str, str]) -> Callable[[Target], dict[str, Any]]:
    return lambda target: service_monitor(target, labels, component)


class MonitoringArgs(TypedDict):
    """Inputs of Monitoring."""

    settings: MonitoringConfig | Mapping[str, Any]
    """A `MonitoringConfig`, or a mapping of the same shape as the `monitoring` stack config
    key (documented in docs/configuration.md), which is validated here."""

    airflow: NotRequired[AirflowRelease | None]
    """The AirflowRelease to watch: its namespace, release name and settings are used.
    Monitoring is then declared after it and its objects wait for its namespace."""

    airflow_settings: NotRequired[AirflowConfig | Mapping[str, Any] | None]
    """Instead of `airflow`: the watched release's settings (an `AirflowConfig` or a mapping
    shaped like the `airflow` stack key), for a release declared elsewhere."""

    namespace: NotRequired[pulumi.Input[str] | None]
    """With `airflow_settings`: the Airflow namespace (default: the settings' namespace)."""

    release_name: NotRequired[pulumi.Input[str] | None]
    """With `airflow_settings`: the Airflow Helm release name (default: the settings')."""


class Monitoring(pulumi.ComponentResource):
    """Prometheus scraping, alert rules and a Grafana dashboard for one Airflow release.

    Modes (`settings.mode`): `install` declares kube-prometheus-stack (namespace, Grafana
    admin Secret from a generated password, retained Grafana claim, one helm.v3.Release);
    `existing` targets a Prometheus Operator already in the cluster; `annotations` relies on
    the chart's `prometheus.io/*` annotations and ships the rules as a rule-file ConfigMap.
    The operator modes declare ServiceMonitors (StatsD, and PgBouncer when it is on) and a
    PrometheusRule; every mode but `off` declares the dashboard ConfigMap.
    """

    namespace: pulumi.Output[str | None]
    """The namespace of kube-prometheus-stack when this stack installs it."""
    grafana_service: pulumi.Output[str | None]
    """Grafana's Service (port 80) when this stack installs it."""
    prometheus_service: pulumi.Output[str | None]
    """Prometheus' Service (port 9090) when this stack installs it."""
    alertmanager_service: pulumi.Output[str | None]
    """Alertmanager's Service (port 9093) when installed with Alertmanager."""
    dashboard_name: pulumi.Output[str | None]
    """The Grafana dashboard's title (None when the dashboard is off)."""
    grafana_admin_user: pulumi.Output[str | None]
    """Grafana's admin user when this stack installs Grafana."""
    grafana_admin_password: pulumi.Output[str | None]
    """Grafana's generated admin password (secret) when this stack installs Grafana."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Settings are checked before anything, the component itself included, is declared.
        airflow_cfg, namespace, release = self._airflow(args)
        settings = args["settings"]
        cfg = settings if isinstance(settings, MonitoringConfig) else parse_monitoring(settings, airflow=airflow_cfg)
        check_with_airflow(cfg, airflow_cfg)
        if cfg.install is not None:
            # The guarantees every Release keeps (components/core/invariants.py), before anything is declared.
            check_other_release(
                stack_values(cfg.install),
                extra_key="monitoring.install.extraValues",
                extra=cfg.install.extra_values,
                typed="monitoring.install",
            )
        super().__init__(f"{PACKAGE}:index:Monitoring", name, {}, opts)
        self.config = cfg
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=True, protect=True)

        after: list[pulumi.Resource] = []
        stack_namespace: str | None = None
        grafana: str | None = None
        prometheus: str | None = None
        alertmanager: str | None = None
        admin_user: str | None = None
        admin_password: pulumi.Output[str] | None = None
        dashboard_ns: pulumi.Input[str] = namespace

        # Grafana's admin password is declared in every mode: Grafana keeps the password it was first
        # started with in its retained volume, so switching monitoring off and on again must not re-roll it.
        password = random.RandomPassword(
            f"{name}-grafana-admin-password", length=24, special=False, min_numeric=2, opts=child
        )
        install = cfg.install
        if install is not None:
            names = StackNames(install.release_name)
            labels = {"app.kubernetes.io/part-of": "monitoring", "app.kubernetes.io/managed-by": "pulumi"}
            stack_ns, _ = own_namespace(
                f"{name}-namespace", install.namespace, labels, create=install.create_namespace, opts=keep
            )
            secret_password: pulumi.Output[str] = pulumi.Output.secret(password.result)
            admin_secret = k8s.core.v1.Secret(
                f"{name}-grafana-admin-secret",
                metadata={"name": names.grafana_admin_secret, "namespace": stack_ns, "labels": labels},
                type="Opaque",
                string_data={
                    GRAFANA_ADMIN_USER_KEY: install.grafana.admin_user,
                    GRAFANA_ADMIN_PASSWORD_KEY: secret_password,
                },
                opts=child,
            )
            needs: list[pulumi.Resource] = [admin_secret]
            if install.persistence:
                claim_spec: dict[str, Any] = {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": install.grafana.storage_size}},
                }
                if install.storage_class:
                    claim_spec["storageClassName"] = install.storage_class
                needs.append(
                    k8s.core.v1.PersistentVolumeClaim(
                        f"{name}-grafana-claim",
                        metadata={"name": names.grafana_claim, "namespace": stack_ns, "labels": labels},
                        spec=cast(Any, claim_spec),
                        opts=keep,
                    )
                )
            self.release = helm_release(
                install.chart,
                f"{name}-release",
                release_name=install.release_name,
                namespace=stack_ns,
                values=stack_values(install),
                opts=pulumi.ResourceOptions(parent=self, depends_on=needs),
                timeout=900,
            )
            after.append(self.release)  # the CRDs come with the chart
            stack_namespace = install.namespace
            grafana = names.grafana_service
            prometheus = names.prometheus_service
            if install.alertmanager.enabled:
                alertmanager = names.alertmanager_service
            admin_user = install.grafana.admin_user
            admin_password = secret_password
            dashboard_ns = stack_ns
        elif cfg.existing is not None and cfg.existing.dashboard_namespace:
            dashboard_ns = cfg.existing.dashboard_namespace

        target = pulumi.Output.all(namespace, release).apply(
            lambda nr: Target(airflow_cfg, str(nr[0]), str(nr[1]), operator=cfg.uses_operator)
        )
        after_opts = pulumi.ResourceOptions(parent=self, depends_on=after)
        if cfg.uses_operator:
            labels_selected = selected_labels(cfg)
            for component in monitored_components(airflow_cfg):
                monitor = target.apply(_monitor_of(component, labels_selected))
                self._custom(f"{name}-{component}-monitor", "ServiceMonitor", monitor, after_opts)
            if cfg.alerts.enabled:
                rule = target.apply(lambda t: prometheus_rule(t, cfg))
                self._custom(f"{name}-alerts", "PrometheusRule", rule, after_opts)
        elif cfg.alerts.enabled and cfg.enabled:
            rules = target.apply(lambda t: rules_config_map(t, cfg))
            k8s.core.v1.ConfigMap(
                f"{name}-alert-rules",
                metadata=rules.apply(lambda o: o["metadata"]),
                data=rules.apply(lambda o: o["data"]),
                opts=child,
            )

        dashboard_name: pulumi.Output[str | None] = pulumi.Output.from_input(None)
        if cfg.dashboard and cfg.enabled:
            board = pulumi.Output.all(target, dashboard_ns).apply(
                lambda tn: dashboard_config_map(cast(Target, tn[0]), str(tn[1]))
            )
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard",
                metadata=board.apply(lambda o: o["metadata"]),
                data=board.apply(lambda o: o["data"]),
                opts=after_opts,
            )
            dashboard_name = target.apply(dashboard_title)

        self.namespace = pulumi.Output.from_input(stack_namespace)
        self.grafana_service = pulumi.Output.from_input(grafana)
        self.prometheus_service = pulumi.Output.from_input(prometheus)
        self.alertmanager_service = pulumi.Output.from_input(alertmanager)
        self.dashboard_name = dashboard_name
        self.grafana_admin_user = pulumi.Output.from_input(admin_user)
        self.grafana_admin_password = (
            admin_password if admin_password is not None else pulumi.Output.from_input(cast(str | None, None))
        )
        register_annotated_outputs(self)

    @staticmethod
    def _custom(name: str, kind: str, manifest: pulumi.Output[dict[str, Any]], opts: pulumi.ResourceOptions) -> None:
        k8s.apiextensions.CustomResource(
            name,
            api_version=MONITORING_API,
            kind=kind,
            metadata=manifest.apply(lambda o: o["metadata"]),
            spec=manifest.apply(lambda o: o["spec"]),
            opts=opts,
        )

    @staticmethod
    def _airflow(args: MonitoringArgs) -> tuple[AirflowConfig, pulumi.Input[str], pulumi.Input[str]]:
        airflow = args.get("airflow")
        if airflow is not None:
            return airflow.config, airflow.namespace, airflow.release_name
        settings = args.get("airflow_settings")
        if settings is None:
            raise ValueError("Monitoring needs the Airflow release to watch: pass `airflow` or `airflow_settings`")
        cfg = settings if isinstance(settings, AirflowConfig) else parse_airflow(settings)
        return cfg, args.get("namespace") or cfg.namespace, args.get("release_name") or cfg.release_name
