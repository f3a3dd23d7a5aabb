"""Typed config of Celery worker autoscaling with KEDA (the `keda` stack key), parsed once at the edge.

Three modes: `off` (workers run `airflow.workers.replicas`, fixed); `install` (this stack
installs KEDA from its chart, in a namespace of its own: KedaOperator); `existing` (a KEDA the
cluster already runs). With KEDA on, the Airflow chart's `workers.celery.keda` makes a
`ScaledObject` that sizes the Celery workers from the metadata database (queued and running
task instances, divided by `airflow.workers.concurrency`), down to zero when nothing is queued.
Errors are `ConfigError`s naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..airflow.config.airflow import AirflowConfig
from ..core.charts import ChartSource, parse_chart_source
from ..core.names import SYSTEM_NAMESPACES
from ..core.reader import ConfigError, Node, dns_label
from ..core.resources import Resources, parse_resources

KedaMode = Literal["off", "install", "existing"]
MODES: tuple[KedaMode, ...] = ("off", "install", "existing")

DEFAULT_CHART_VERSION = "2.20.2"
DEFAULT_CHART_REPOSITORY = "https://kedacore.github.io/charts"
KEDA_CHART = ChartSource("keda", DEFAULT_CHART_VERSION, DEFAULT_CHART_REPOSITORY)
DEFAULT_NAMESPACE = "keda"
DEFAULT_RELEASE_NAME = "keda"
# The chart names its pods by fixed names (keda-operator, ...); the release name only labels them.
MAX_RELEASE_NAME = 40


@dataclass(frozen=True)
class WorkerScaling:
    """How KEDA sizes the Celery workers (the chart's `workers.celery.keda`)."""

    min_replicas: int = 0
    max_replicas: int = 10
    polling_interval: int = 5
    cooldown_period: int = 300


@dataclass(frozen=True)
class KedaInstall:
    """KEDA installed by this stack (KedaOperator)."""

    namespace: str = DEFAULT_NAMESPACE
    create_namespace: bool = True
    release_name: str = DEFAULT_RELEASE_NAME
    chart: ChartSource = field(default_factory=lambda: KEDA_CHART)
    webhooks: bool = True
    operator_resources: Resources = field(
        default_factory=lambda: Resources(requests={"cpu": "100m", "memory": "128Mi"}, limits={"memory": "512Mi"})
    )
    metrics_server_resources: Resources = field(
        default_factory=lambda: Resources(requests={"cpu": "100m", "memory": "128Mi"}, limits={"memory": "512Mi"})
    )
    webhooks_resources: Resources = field(
        default_factory=lambda: Resources(requests={"cpu": "50m", "memory": "64Mi"}, limits={"memory": "256Mi"})
    )
    extra_values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KedaConfig:
    """Everything worker autoscaling needs, validated. Off unless the stack sets `keda.mode`."""

    mode: KedaMode = "off"
    workers: WorkerScaling = field(default_factory=WorkerScaling)
    install: KedaInstall | None = None
    namespace: str = DEFAULT_NAMESPACE
    """Where the KEDA operator runs (installed or existing): the Airflow NetworkPolicies admit it."""

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


def _not_system(key: str, value: str) -> str:
    if value in SYSTEM_NAMESPACES or value.startswith("kube-"):
        raise ConfigError(
            key,
            value,
            f"KEDA needs a namespace of its own, not a system or shared one ({', '.join(SYSTEM_NAMESPACES)}, kube-*).",
            f"use '{DEFAULT_NAMESPACE}'.",
        )
    return value


def _install(node: Node, airflow: AirflowConfig) -> KedaInstall:
    sub = node.mapping("install")
    namespace = _not_system(sub.key("namespace"), dns_label(sub.key("namespace"), sub.string("namespace", "keda")))
    if namespace == airflow.namespace:
        raise ConfigError(
            sub.key("namespace"),
            namespace,
            "KEDA runs with cluster-wide rights (it reads Secrets to resolve scaler credentials); it gets a "
            "namespace of its own, not Airflow's.",
            f"set {sub.key('namespace')} to e.g. '{DEFAULT_NAMESPACE}'.",
        )
    res = sub.mapping("resources")
    defaults = KedaInstall()

    def sized(part: str, default: Resources) -> Resources:
        return parse_resources(res, part) if res.has(part) else default

    operator = sized("operator", defaults.operator_resources)
    metrics = sized("metricsServer", defaults.metrics_server_resources)
    hooks = sized("webhooks", defaults.webhooks_resources)
    res.finish()
    extra = sub.plain_object("extraValues")
    if "crds" in extra:
        raise ConfigError(
            f"{sub.key('extraValues')}.crds",
            extra["crds"],
            "owned by KedaOperator: the CRDs come with the chart, so the ScaledObject always has its definition.",
            f"remove '{sub.key('extraValues')}.crds'.",
        )
    if "webhooks" in extra:
        raise ConfigError(
            f"{sub.key('extraValues')}.webhooks",
            extra["webhooks"],
            "the admission webhooks are switched by the typed key.",
            f"use {sub.key('webhooks')} (true or false).",
        )
    install = KedaInstall(
        namespace=namespace,
        create_namespace=sub.boolean("createNamespace", True),
        release_name=dns_label(
            sub.key("releaseName"), sub.string("releaseName", DEFAULT_RELEASE_NAME), max_len=MAX_RELEASE_NAME
        ),
        chart=parse_chart_source(sub, KEDA_CHART),
        webhooks=sub.boolean("webhooks", True),
        operator_resources=operator,
        metrics_server_resources=metrics,
        webhooks_resources=hooks,
        extra_values=extra,
    )
    sub.finish()
    return install


def parse_keda(raw: Any, airflow: AirflowConfig) -> KedaConfig:
    """Parse and validate the `keda` config object against the Airflow settings it scales."""
    node = Node(raw, "keda")
    mode = node.string("mode", "off", choices=MODES)
    node.only_mode_settings(mode, ("install", "existing"))
    w = node.mapping("workers")
    workers = WorkerScaling(
        min_replicas=w.integer("minReplicas", 0, low=0, high=200),
        max_replicas=w.integer("maxReplicas", 10, low=1, high=200),
        polling_interval=w.integer("pollingInterval", 5, low=1, high=3600),
        cooldown_period=w.integer("cooldownPeriod", 300, low=0, high=86400),
    )
    if workers.min_replicas > workers.max_replicas:
        raise ConfigError(
            w.key("minReplicas"),
            workers.min_replicas,
            f"must not exceed {w.key('maxReplicas')} ({workers.max_replicas}).",
        )
    w.finish()
    if mode != "off" and not airflow.uses_celery:
        raise ConfigError(
            node.key("mode"),
            mode,
            f"KEDA scales Celery workers; the executor is {airflow.executor}, which runs no Celery workers.",
            "set airflow.executor to CeleryExecutor (or a list with it), or keda.mode to 'off'.",
        )
    install = None
    namespace = DEFAULT_NAMESPACE
    if mode == "install":
        install = _install(node, airflow)
        namespace = install.namespace
    elif mode == "existing":
        ex = node.mapping("existing")
        namespace = _not_system(ex.key("namespace"), dns_label(ex.key("namespace"), ex.string("namespace", "keda")))
        ex.finish()
    node.finish()
    return KedaConfig(mode=mode, workers=workers, install=install, namespace=namespace)
