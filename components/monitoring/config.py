"""Typed config of monitoring (the `monitoring` stack key), parsed once at the edge.

Four modes: `off`; `install` (kube-prometheus-stack in its own namespace, with Grafana);
`existing` (a Prometheus Operator the cluster already runs); `annotations` (any
Prometheus that discovers targets by the `prometheus.io/*` annotations). Every value is
checked here, before any resource is declared; errors are `ConfigError`s naming the key,
the bad value and what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from ..airflow.config.airflow import AirflowConfig
from ..core import names
from ..core.charts import ChartSource, parse_chart_source
from ..core.reader import ConfigError, ConfigTypeError, Node, dns_label, matches, quantity_value
from ..core.resources import Resources, parse_resources

MonitoringMode = Literal["off", "install", "existing", "annotations"]
MODES: tuple[MonitoringMode, ...] = ("off", "install", "existing", "annotations")

DEFAULT_STACK_VERSION = "88.5.3"
DEFAULT_STACK_REPOSITORY = "https://prometheus-community.github.io/helm-charts"
STACK_CHART = ChartSource("kube-prometheus-stack", DEFAULT_STACK_VERSION, DEFAULT_STACK_REPOSITORY)

# kube-prometheus-stack's switches for scraping parts of the control plane and kube-system.
CONTROL_PLANE = ("coreDns", "kubeProxy", "kubeScheduler", "kubeControllerManager", "kubeEtcd")

# The chart truncates its own names to 26 characters; the release name is its fullname.
MAX_STACK_RELEASE = 26

# Prometheus' own formats (the Prometheus CRD's patterns).
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")
BYTE_SIZE = re.compile(r"^(0|([0-9]*[.])?[0-9]+((K|M|G|T|E|P)i?)?B)$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(frozen=True)
class PrometheusSettings:
    retention: str = "15d"
    retention_size: str | None = None  # None: 85% of the volume when persistent, else unlimited
    storage_size: str = "20Gi"
    scrape_interval: str = "30s"
    resources: Resources = field(
        default_factory=lambda: Resources(requests={"cpu": "200m", "memory": "1Gi"}, limits={"memory": "2Gi"})
    )


@dataclass(frozen=True)
class GrafanaSettings:
    admin_user: str = "admin"
    storage_size: str = "2Gi"
    resources: Resources = field(
        default_factory=lambda: Resources(requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "512Mi"})
    )


@dataclass(frozen=True)
class AlertmanagerSettings:
    enabled: bool = True
    retention: str = "120h"
    storage_size: str = "1Gi"
    resources: Resources = field(
        default_factory=lambda: Resources(requests={"cpu": "50m", "memory": "64Mi"}, limits={"memory": "256Mi"})
    )


@dataclass(frozen=True)
class InstallSettings:
    """kube-prometheus-stack installed by this stack."""

    namespace: str = "monitoring"
    create_namespace: bool = True
    release_name: str = "monitoring"
    chart: ChartSource = field(default_factory=lambda: STACK_CHART)
    persistence: bool = False
    storage_class: str | None = None
    control_plane: tuple[str, ...] = ()
    node_exporter: bool = True
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    grafana: GrafanaSettings = field(default_factory=GrafanaSettings)
    alertmanager: AlertmanagerSettings = field(default_factory=AlertmanagerSettings)
    extra_values: dict[str, Any] = field(default_factory=dict)

    @property
    def retention_size(self) -> str | None:
        """The configured size cap, or 85% of the Prometheus volume when it is persistent."""
        if self.prometheus.retention_size is not None:
            return self.prometheus.retention_size
        if not self.persistence:
            return None
        megabytes = quantity_value(self.prometheus.storage_size) * Decimal("0.85") / (Decimal(2) ** 20)
        return f"{int(megabytes)}MB"


@dataclass(frozen=True)
class ExistingSettings:
    """A Prometheus Operator that already runs in the cluster."""

    labels: dict[str, str] = field(default_factory=lambda: {"release": "kube-prometheus-stack"})
    dashboard_namespace: str | None = None  # None: the Airflow namespace


@dataclass(frozen=True)
class AnnotationSettings:
    """Annotation-based scraping: the chart's Services always carry the annotations."""

    pods: bool = False


@dataclass(frozen=True)
class AlertSettings:
    enabled: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    task_failure_ratio: float = 0.2


@dataclass(frozen=True)
class MonitoringConfig:
    mode: MonitoringMode = "off"
    alerts: AlertSettings = field(default_factory=AlertSettings)
    dashboard: bool = True
    install: InstallSettings | None = None
    existing: ExistingSettings | None = None
    annotations: AnnotationSettings | None = None

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @property
    def uses_operator(self) -> bool:
        """ServiceMonitors and PrometheusRules (install, existing), or plain files (annotations)."""
        return self.mode in ("install", "existing")


def _labels(node: Node, name: str, default: dict[str, str], *, prometheus: bool) -> dict[str, str]:
    """A map of labels: Prometheus label names (alerts) or Kubernetes label keys (selectors)."""
    raw = node.raw(name, None, accepts={"type": "object", "additionalProperties": {"type": "string"}})
    if raw is None:
        return dict(default)
    if not isinstance(raw, dict):
        raise ConfigTypeError(node.key(name), raw, "expected an object of label names to string values.")
    out: dict[str, str] = {}
    for key, value in raw.items():
        where = f"{node.key(name)}.{key}"
        if prometheus and not matches(LABEL_NAME, key):
            raise ConfigError(where, key, "not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*).")
        if not prometheus:
            names.label_key(where, key)
        if not isinstance(value, str):
            raise ConfigError(where, value, "expected a string value (quote numbers and booleans).")
        if not prometheus:
            names.label_value(where, value)
        if prometheus and key in ("alertname", "severity", "namespace"):
            raise ConfigError(where, key, "this label is set by the rules themselves; choose another name.")
        out[str(key)] = value
    return out


def _ratio(node: Node, name: str, default: float) -> float:
    value = node.raw(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError(node.key(name), value, "expected a fraction above 0 and below 1, such as 0.2.")
    return float(value)


def _string(node: Node, name: str, default: Any, pattern: re.Pattern[str], describe: str) -> Any:
    return node.string(name, default, pattern=pattern, describe=describe)


def _storage_class(node: Node) -> str | None:
    value = node.string("storageClass", None)
    return None if value is None else dns_label(node.key("storageClass"), value, max_len=253)


def _resources_or(node: Node, default: Resources) -> Resources:
    given = parse_resources(node, "resources")
    return given if (given.requests or given.limits) else default


def _prometheus(node: Node) -> PrometheusSettings:
    sub = node.mapping("prometheus")
    settings = PrometheusSettings(
        retention=_string(
            sub, "retention", "15d", DURATION, "expected a Prometheus duration such as 12h, 1d or 15d (at least 1h)."
        ),
        retention_size=_string(
            sub, "retentionSize", None, BYTE_SIZE, "expected a Prometheus byte size such as 500MB, 40GB or 1TB."
        ),
        storage_size=sub.quantity("storageSize", "20Gi", what="a storage size"),
        scrape_interval=_string(sub, "scrapeInterval", "30s", DURATION, "expected a duration such as 15s or 1m."),
        resources=_resources_or(sub, PrometheusSettings().resources),
    )
    sub.finish()
    if settings.retention in ("0", "") or re.fullmatch(r"([0-9]+)(m|s|ms)", settings.retention):
        raise ConfigError(sub.key("retention"), settings.retention, "keep at least 1h of data, such as 12h or 1d.")
    if settings.scrape_interval in ("0", ""):
        raise ConfigError(sub.key("scrapeInterval"), settings.scrape_interval, "expected a positive duration.")
    return settings


def _grafana(node: Node) -> GrafanaSettings:
    sub = node.mapping("grafana")
    settings = GrafanaSettings(
        admin_user=sub.string(
            "adminUser",
            "admin",
            pattern=re.compile(r"^[A-Za-z0-9_.@-]{1,64}$"),
            describe="expected 1-64 of A-Z a-z 0-9 _ . @ -.",
        ),
        storage_size=sub.quantity("storageSize", "2Gi", what="a storage size"),
        resources=_resources_or(sub, GrafanaSettings().resources),
    )
    sub.finish()
    return settings


def _alertmanager(node: Node, production: bool) -> AlertmanagerSettings:
    sub = node.mapping("alertmanager")
    settings = AlertmanagerSettings(
        enabled=sub.boolean("enabled", production),
        retention=_string(sub, "retention", "120h", DURATION, "expected a duration such as 120h."),
        storage_size=sub.quantity("storageSize", "1Gi", what="a storage size"),
        resources=_resources_or(sub, AlertmanagerSettings().resources),
    )
    sub.finish()
    return settings


def _install(node: Node, production: bool) -> InstallSettings:
    sub = node.mapping("install")
    namespace = dns_label(sub.key("namespace"), sub.string("namespace", "monitoring"))
    release = dns_label(sub.key("releaseName"), sub.string("releaseName", "monitoring"), max_len=MAX_STACK_RELEASE)
    chart = parse_chart_source(sub, STACK_CHART)

    default_plane = [] if production else ["coreDns"]
    plane = sub.string_list("controlPlane", default_plane)
    for i, part in enumerate(plane):
        if part not in CONTROL_PLANE:
            raise ConfigError(f"{sub.key('controlPlane')}[{i}]", part, f"allowed: {', '.join(CONTROL_PLANE)}.")
    if len(set(plane)) != len(plane):
        raise ConfigError(sub.key("controlPlane"), plane, "each component may be listed only once.")

    settings = InstallSettings(
        namespace=namespace,
        create_namespace=sub.boolean("createNamespace", True),
        release_name=release,
        chart=chart,
        persistence=sub.boolean("persistence", production),
        storage_class=_storage_class(sub),
        control_plane=tuple(plane),
        node_exporter=sub.boolean("nodeExporter", True),
        prometheus=_prometheus(sub),
        grafana=_grafana(sub),
        alertmanager=_alertmanager(sub, production),
        extra_values=sub.plain_object("extraValues"),
    )
    sub.finish()
    _check_extra_values(sub.key("extraValues"), settings.extra_values)
    if settings.storage_class is not None and not settings.persistence:
        raise ConfigError(sub.key("storageClass"), settings.storage_class, "only used with persistence: true.")
    if settings.persistence:
        size = quantity_value(settings.prometheus.storage_size)
        cap = settings.retention_size
        if cap is not None and _bytes(cap) >= size:
            raise ConfigError(
                sub.key("prometheus.retentionSize"),
                cap,
                f"must be below the volume size ({settings.prometheus.storage_size}), or Prometheus fills its disk "
                "before it deletes old data.",
            )
    return settings


def _check_extra_values(key: str, extra: dict[str, Any]) -> None:
    """Values the typed keys own: names the outputs and selectors rely on, Grafana's credentials."""
    for owned in ("fullnameOverride", "nameOverride"):
        if owned in extra:
            raise ConfigError(
                f"{key}.{owned}",
                extra[owned],
                "the chart's names follow monitoring.install.releaseName (Services, selectors and outputs rely on it).",
            )
    grafana = extra.get("grafana")
    if isinstance(grafana, dict):
        for owned in ("adminUser", "adminPassword", "admin"):
            if owned in grafana:
                raise ConfigError(
                    f"{key}.grafana.{owned}",
                    "[not shown]",
                    "Grafana's admin credentials come from the Secret Pulumi generates; a password in Helm values "
                    "would be stored in clear in the release.",
                    "set monitoring.install.grafana.adminUser; read the password from the grafanaAdminPassword output.",
                )


_BYTE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50, "E": 2**60}


def _bytes(size: str) -> Decimal:
    """A Prometheus byte size in bytes (Prometheus reads KB, MB, ... as powers of 1024)."""
    match = re.fullmatch(r"(([0-9]*[.])?[0-9]+)((K|M|G|T|E|P)i?)?B", size)
    if not match:
        return Decimal(0)
    return Decimal(match.group(1)) * _BYTE_UNITS[(match.group(4) or "")]


def _existing(node: Node) -> ExistingSettings:
    sub = node.mapping("existing")
    labels = _labels(sub, "labels", ExistingSettings().labels, prometheus=False)
    if not labels:
        raise ConfigError(
            sub.key("labels"),
            labels,
            "give the labels your Prometheus selects ServiceMonitors and PrometheusRules on "
            "(kube-prometheus-stack: release: <its release name>).",
        )
    dashboard_ns = sub.string("dashboardNamespace", None)
    if dashboard_ns is not None:
        dns_label(sub.key("dashboardNamespace"), dashboard_ns)
    sub.finish()
    return ExistingSettings(labels=labels, dashboard_namespace=dashboard_ns)


def _annotations(node: Node) -> AnnotationSettings:
    sub = node.mapping("annotations")
    settings = AnnotationSettings(pods=sub.boolean("pods", False))
    sub.finish()
    return settings


def parse_monitoring(
    raw: Any, *, production: bool = True, airflow: AirflowConfig | None = None, key: str = "monitoring"
) -> MonitoringConfig:
    """Parse and validate the `monitoring` config object. Raises ConfigError.

    `production` (cluster.environment) sets defaults: persistence and Alertmanager on, no
    control-plane scraping; on a laptop they are off and CoreDNS is scraped. With `airflow`,
    the combination is checked too (StatsD must be on, the namespaces must differ).
    """
    node = Node(raw, key)
    mode = node.string("mode", "off", choices=MODES)
    sections = {"install": "install", "existing": "existing", "annotations": "annotations"}
    node.only_mode_settings(mode, sections)
    alerts_node = node.mapping("alerts")
    alerts = AlertSettings(
        enabled=alerts_node.boolean("enabled", True),
        labels=_labels(alerts_node, "labels", {}, prometheus=True),
        task_failure_ratio=_ratio(alerts_node, "taskFailureRatio", 0.2),
    )
    alerts_node.finish()
    dash_node = node.mapping("dashboard")
    dashboard = dash_node.boolean("enabled", True)
    dash_node.finish()

    cfg = MonitoringConfig(mode=mode, alerts=alerts, dashboard=dashboard)
    if mode == "install":
        cfg = MonitoringConfig(mode=mode, alerts=alerts, dashboard=dashboard, install=_install(node, production))
    elif mode == "existing":
        cfg = MonitoringConfig(mode=mode, alerts=alerts, dashboard=dashboard, existing=_existing(node))
    elif mode == "annotations":
        cfg = MonitoringConfig(mode=mode, alerts=alerts, dashboard=dashboard, annotations=_annotations(node))
    node.finish()
    if airflow is not None:
        check_with_airflow(cfg, airflow, key=key)
    return cfg


def check_with_airflow(cfg: MonitoringConfig, airflow: AirflowConfig, *, key: str = "monitoring") -> None:
    """What monitoring needs from the Airflow release it watches."""
    if cfg.enabled and not airflow.statsd.enabled:
        raise ConfigError(
            f"{key}.mode",
            cfg.mode,
            "Airflow's metrics reach Prometheus through the chart's StatsD exporter, and airflow.statsd.enabled is "
            "false.",
            f"set airflow.statsd.enabled to true, or {key}.mode to 'off'.",
        )
    if cfg.install is not None and cfg.install.namespace == airflow.namespace:
        raise ConfigError(
            f"{key}.install.namespace",
            cfg.install.namespace,
            f"kube-prometheus-stack gets a namespace of its own; airflow.namespace is also {airflow.namespace!r}.",
        )
