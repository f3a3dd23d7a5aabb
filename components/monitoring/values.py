# Longer than 600 lines: the alert rules and the Grafana dashboard are data written out in full (each
# expression beside its threshold and runbook text), next to the values that wire them.
"""What Monitoring declares: plain functions of typed config, no Pulumi.

* `airflow_values`: the fragment of Airflow chart values monitoring needs (annotations
  for annotation-based scraping), handed to AirflowRelease's `extra_values`;
* `stack_values`: kube-prometheus-stack's values (install mode);
* `service_monitor`, `prometheus_rule`, `rules_file`: how Prometheus finds and judges
  Airflow;
* `dashboard`: the Grafana dashboard.

Every Airflow metric a rule or panel reads is one the chart's StatsD mapping produces
(see `statsd_names`; the tests replay the mapping). Airflow emits most per-DAG, per-task
and per-pool metrics twice: under a templated name (`ti.queued.<queue>.<dag>.<task>`),
which the chart's mapping turns into labels, and under a plain name with tags, which a
plain StatsD client drops, so all DAGs, tasks or pools overwrite one unlabelled series of
the same Prometheus name. Queries on those metrics therefore select the labelled series
(`dag_id!=""`, `pool!=""`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..airflow.config.airflow import AirflowConfig
from ..core.merge import deep_merge
from ..core.resources import Resources
from .config import InstallSettings, MonitoringConfig
from .statsd_names import AIRFLOW2_NAMES

# The Airflow chart's StatsD exporter and PgBouncer exporter (ports of their Services).
STATSD_SCRAPE_PORT = 9102
STATSD_PORT_NAME = "statsd-scrape"
PGBOUNCER_SCRAPE_PORT = 9127
PGBOUNCER_PORT_NAME = "pgb-metrics"
METRICS_PATH = "/metrics"

# kube-prometheus-stack's Grafana dashboard sidecar (its values: grafana.sidecar.dashboards).
DASHBOARD_LABEL = "grafana_dashboard"
DASHBOARD_LABEL_VALUE = "1"

GRAFANA_ADMIN_USER_KEY = "admin-user"
GRAFANA_ADMIN_PASSWORD_KEY = "admin-password"

MONITORING_API = "monitoring.coreos.com/v1"

# Label matchers used in queries (constants: f-string expressions cannot hold backslashes on 3.11).
HAS_DAG = 'dag_id!=""'
HAS_POOL = 'pool!=""'
HAS_DAG_FILE = 'dag_file!=""'
NOT_K8S_QUEUE = 'queue!="kubernetes"'
P50 = 'quantile="0.5"'
P99 = 'quantile="0.99"'


# ---------------------------------------------------------------------------
# Names


@dataclass(frozen=True)
class StackNames:
    """Objects kube-prometheus-stack creates (its fullname is the release name)."""

    release: str

    @property
    def prometheus_service(self) -> str:
        return f"{self.release}-prometheus"

    @property
    def alertmanager_service(self) -> str:
        return f"{self.release}-alertmanager"

    @property
    def grafana_service(self) -> str:
        return f"{self.release}-grafana"

    @property
    def grafana_admin_secret(self) -> str:
        return f"{self.release}-pulumi-grafana-admin"

    @property
    def grafana_claim(self) -> str:
        return f"{self.release}-grafana"


@dataclass(frozen=True)
class Target:
    """The Airflow release being watched, and how its series are labelled in Prometheus."""

    airflow: AirflowConfig
    namespace: str
    release: str
    operator: bool  # scraped through a ServiceMonitor (series carry `service`)

    @property
    def statsd_service(self) -> str:
        return f"{self.release}-statsd"

    @property
    def pgbouncer_service(self) -> str:
        return f"{self.release}-pgbouncer"

    @property
    def selector(self) -> str:
        """Label matchers of this release's Airflow series."""
        if self.operator:
            return f'namespace="{self.namespace}", service="{self.statsd_service}"'
        return f'namespace="{self.namespace}"'

    def metric(self, name: str) -> str:
        """An Airflow 3 metric name, as this Airflow version emits it."""
        return AIRFLOW2_NAMES.get(name, name) if self.airflow.major < 3 else name

    def sel(self, *extra: str) -> str:
        return "{" + ", ".join([self.selector, *extra]) + "}"

    @property
    def slug(self) -> str:
        return f"{self.namespace}-{self.release}"


def dashboard_uid(target: Target) -> str:
    """Grafana uids are at most 40 characters."""
    uid = f"airflow-{target.slug}"
    return uid if len(uid) <= 40 else uid[:40].rstrip("-")


def dashboard_title(target: Target) -> str:
    return f"Airflow / {target.namespace} / {target.release}"


def dashboard_config_map_name(target: Target) -> str:
    return f"{target.release}-airflow-dashboard"


def rules_name(target: Target) -> str:
    return f"{target.release}-airflow-alerts"


def selected_labels(cfg: MonitoringConfig) -> dict[str, str]:
    """Labels the Prometheus instance selects ServiceMonitors and PrometheusRules on."""
    if cfg.install is not None:
        return {"release": cfg.install.release_name}
    if cfg.existing is not None:
        return dict(cfg.existing.labels)
    return {}


# ---------------------------------------------------------------------------
# Airflow chart values


def airflow_values(cfg: MonitoringConfig, airflow: AirflowConfig) -> dict[str, Any]:
    """The Airflow chart values monitoring needs.

    The chart's StatsD and PgBouncer Services always carry `prometheus.io/scrape` and
    `prometheus.io/port`; annotation mode adds the path, and with `annotations.pods` the
    same annotations on the pods, for scrapers that discover pods rather than endpoints.
    """
    if cfg.annotations is None:
        return {}
    path = {"prometheus.io/path": METRICS_PATH}
    values: dict[str, Any] = {"statsd": {"service": {"extraAnnotations": dict(path)}}}
    if cfg.annotations.pods:
        values["statsd"]["podAnnotations"] = _scrape_annotations(STATSD_SCRAPE_PORT)
    if airflow.database.pgbouncer.enabled:
        values["pgbouncer"] = {"service": {"extraAnnotations": dict(path)}}
        if cfg.annotations.pods:
            values["pgbouncer"]["podAnnotations"] = _scrape_annotations(PGBOUNCER_SCRAPE_PORT)
    return values


def _scrape_annotations(port: int) -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": METRICS_PATH}


# ---------------------------------------------------------------------------
# kube-prometheus-stack values


def _resources(resources: Resources) -> dict[str, Any]:
    return resources.as_values()


def _claim_template(install: InstallSettings, size: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if install.storage_class:
        spec["storageClassName"] = install.storage_class
    return {"volumeClaimTemplate": {"spec": spec}}


RETAIN_CLAIMS = {"whenDeleted": "Retain", "whenScaled": "Retain"}


def stack_values(install: InstallSettings) -> dict[str, Any]:
    """kube-prometheus-stack's values. The Grafana admin credentials come from a Secret
    (named, never inlined); persistent volumes are kept when a StatefulSet goes away."""
    names = StackNames(install.release_name)
    prom_spec: dict[str, Any] = {
        "retention": install.prometheus.retention,
        "scrapeInterval": install.prometheus.scrape_interval,
        "evaluationInterval": install.prometheus.scrape_interval,
        "resources": _resources(install.prometheus.resources),
    }
    if install.retention_size:
        prom_spec["retentionSize"] = install.retention_size
    if install.persistence:
        prom_spec["storageSpec"] = _claim_template(install, install.prometheus.storage_size)
        prom_spec["persistentVolumeClaimRetentionPolicy"] = dict(RETAIN_CLAIMS)

    am = install.alertmanager
    alertmanager: dict[str, Any] = {"enabled": am.enabled}
    if am.enabled:
        am_spec: dict[str, Any] = {"retention": am.retention, "resources": _resources(am.resources)}
        if install.persistence:
            am_spec["storage"] = _claim_template(install, am.storage_size)
            am_spec["persistentVolumeClaimRetentionPolicy"] = dict(RETAIN_CLAIMS)
        alertmanager["alertmanagerSpec"] = am_spec

    grafana: dict[str, Any] = {
        "admin": {
            "existingSecret": names.grafana_admin_secret,
            "userKey": GRAFANA_ADMIN_USER_KEY,
            "passwordKey": GRAFANA_ADMIN_PASSWORD_KEY,
        },
        "resources": _resources(install.grafana.resources),
        "testFramework": {"enabled": False},
    }
    if install.persistence:
        # A claim Pulumi owns (kept on destroy); one pod at a time may mount it.
        grafana["persistence"] = {"enabled": True, "existingClaim": names.grafana_claim}
        grafana["deploymentStrategy"] = {"type": "Recreate"}
        # The chart's init container would chown the volume as root; the pod's fsGroup (472)
        # already makes it Grafana's, and no container of the stack runs as uid 0.
        grafana["initChownData"] = {"enabled": False}

    values: dict[str, Any] = {
        "fullnameOverride": install.release_name,
        "crds": {"enabled": True},
        "prometheus": {"prometheusSpec": prom_spec},
        "alertmanager": alertmanager,
        "grafana": grafana,
        "nodeExporter": {"enabled": install.node_exporter},
    }
    # Control-plane and kube-system scraping: their Services select pods the cluster runs.
    for part in ("coreDns", "kubeProxy", "kubeScheduler", "kubeControllerManager", "kubeEtcd"):
        values[part] = {"enabled": part in install.control_plane}
    return deep_merge(values, install.extra_values)


# ---------------------------------------------------------------------------
# ServiceMonitors


# Airflow chart components with a metrics endpoint -> the port name on their Service.
METRICS_PORTS = {"statsd": STATSD_PORT_NAME, "pgbouncer": PGBOUNCER_PORT_NAME}


def monitored_components(airflow: AirflowConfig) -> list[str]:
    """The chart's StatsD exporter, and PgBouncer's exporter when PgBouncer is on."""
    return ["statsd"] + (["pgbouncer"] if airflow.database.pgbouncer.enabled else [])


def service_monitor(target: Target, labels: Mapping[str, str], component: str) -> dict[str, Any]:
    """A ServiceMonitor on the chart's Service of `component` (selected by the chart's labels)."""
    return {
        "apiVersion": MONITORING_API,
        "kind": "ServiceMonitor",
        "metadata": {
            "name": f"{target.release}-{component}",
            "namespace": target.namespace,
            "labels": {**_own_labels(target), **labels},
        },
        "spec": {
            "selector": {"matchLabels": {"tier": "airflow", "component": component, "release": target.release}},
            "namespaceSelector": {"matchNames": [target.namespace]},
            "endpoints": [{"port": METRICS_PORTS[component], "path": METRICS_PATH, "scheme": "http"}],
        },
    }


def _own_labels(target: Target) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "airflow", "app.kubernetes.io/managed-by": "pulumi"}


# ---------------------------------------------------------------------------
# Alerts


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str
    runbook: str
    labels: dict[str, str] = field(default_factory=dict)

    def rule(self, target: Target, extra_labels: Mapping[str, str]) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.duration,
            "labels": {**extra_labels, **self.labels, "severity": self.severity, "namespace": target.namespace},
            "annotations": {"summary": self.summary, "description": self.description, "runbook": self.runbook},
        }


def _worker_pods(target: Target) -> str:
    """Celery worker pods: `<release>-worker-0` (StatefulSet) or `<release>-worker-<hash>-<id>`."""
    return f"{target.release}-worker-([0-9]+|[a-z0-9]+-[a-z0-9]+)"


def alerts(target: Target, task_failure_ratio: float = 0.2) -> list[Alert]:
    """The alerts for one Airflow release."""
    a = target.airflow
    s = target.sel
    ns, r = target.namespace, target.release
    where = f"Airflow {r} in namespace {ns}"
    found: list[Alert] = [
        Alert(
            "AirflowSchedulerHeartbeatMissing",
            f"(sum(rate(airflow_scheduler_heartbeat{s()}[3m])) or vector(0)) == 0",
            "2m",
            "critical",
            f"No scheduler of {where} has sent a heartbeat for 5 minutes.",
            "No DAG run starts and no task is scheduled while no scheduler heartbeats.",
            f"kubectl -n {ns} get pods -l component=scheduler,release={r}; read the scheduler logs "
            f"(kubectl -n {ns} logs deploy/{r}-scheduler -c scheduler) for database or DAG-parsing errors, and check "
            "that the metadata database and PgBouncer are reachable. If the pods run, check that metrics reach "
            f"Prometheus (the {r}-statsd Service, AirflowMetricsDown).",
        ),
        Alert(
            "AirflowDagImportErrors",
            f"max(airflow_dag_processing_import_errors{s()}) > 0",
            "10m",
            "warning",
            f"{where} has {{{{ $value }}}} DAG file(s) that fail to import.",
            "DAGs in files that fail to import are not scheduled; their last good version is gone from the UI.",
            "Open the UI's DAG import errors (Browse > DAG import errors) or run `airflow dags list-import-errors` in "
            "a scheduler or DAG-processor pod; fix the file in the DAGs repository. Missing Python packages belong in "
            "the image.",
        ),
        Alert(
            "AirflowTaskFailureRateHigh",
            "(\n"
            f"  sum(increase(airflow_ti_failures{s()}[30m]))\n"
            "  /\n"
            f"  (sum(increase(airflow_ti_failures{s()}[30m])) + (sum(increase(airflow_ti_successes{s()}[30m])) "
            "or vector(0)))\n"
            f") > {task_failure_ratio:g}\n"
            f"and sum(increase(airflow_ti_failures{s()}[30m])) >= 3",
            "10m",
            "warning",
            f"More than {task_failure_ratio:.0%} of the task instances of {where} failed in the last 30 minutes.",
            "Failed tasks over 30 minutes: {{ $value | humanizePercentage }} of finished task instances.",
            "Find the failing DAGs (the dashboard's failed DAG runs, or the UI filtered on failed task instances) and "
            "read their task logs. Many DAGs failing at once points at shared causes: a connection, an external "
            "system, exhausted resources (memory near its limit in the dashboard's resource row), or a bad image.",
        ),
        Alert(
            "AirflowExecutorSlotsExhausted",
            f"max by (executor) (airflow_executor_queued_tasks{s()}) > 0\n"
            f"and on (executor)\nmax by (executor) (airflow_executor_open_slots{s()}) <= 0",
            "15m",
            "warning",
            f"The executor of {where} has no open slot while tasks wait.",
            "Every executor slot ([core] parallelism) is taken and {{ $value }} task(s) are queued in the executor.",
            "Long-running or stuck tasks fill the slots: look at running task instances. Raise parallelism (and for "
            "Celery the worker replicas or concurrency) if the load is real; for the KubernetesExecutor also check "
            "pending task pods (kubectl get pods --field-selector=status.phase=Pending).",
        ),
        Alert(
            "AirflowPoolStarving",
            f"max by (pool) (airflow_pool_starving_tasks{s(HAS_POOL)}) > 0",
            "15m",
            "warning",
            f"Pool {{{{ $labels.pool }}}} of {where} has starving tasks.",
            "{{ $value }} task(s) cannot run because pool {{ $labels.pool }} has no open slot.",
            "Compare the pool's size with its used slots (Admin > Pools, or the dashboard's pool panels). Raise the "
            "pool's slots, or find the tasks that hold them (long-running or stuck tasks, deferred tasks that count "
            "against the pool).",
        ),
        Alert(
            "AirflowZombieTasksKilled",
            f"sum(increase({target.metric('airflow_task_instances_without_heartbeats_killed')}{s()}[15m])) > 0",
            "0m",
            "warning",
            f"{where} killed task instances that stopped heartbeating (zombie tasks).",
            "{{ $value }} task instance(s) lost their heartbeat in the last 15 minutes and were failed by the "
            "scheduler.",
            "Usual causes: task pods or workers killed (OOMKilled, evicted, node loss; see the dashboard's resource "
            "row and kubectl get events), or a task blocking its process. Raise the task's memory, or spread load.",
        ),
    ]
    if a.major >= 3 or a.dag_processor.enabled:
        found.append(
            Alert(
                "AirflowDagProcessorHeartbeatMissing",
                f"(sum(rate(airflow_dag_processor_heartbeat{s()}[3m])) or vector(0)) == 0",
                "2m",
                "critical",
                f"No DAG processor of {where} has sent a heartbeat for 5 minutes.",
                "DAG files are not parsed: new and changed DAGs do not appear and callbacks do not run.",
                f"kubectl -n {ns} get pods -l component=dag-processor,release={r}; read the dag-processor logs; check "
                "that the DAGs volume or git-sync delivers files.",
            )
        )
    if a.triggerer.enabled and a.triggerer.replicas > 0:
        found.append(
            Alert(
                "AirflowTriggererHeartbeatMissing",
                f"(sum(rate(airflow_triggerer_heartbeat{s()}[3m])) or vector(0)) == 0",
                "5m",
                "warning",
                f"No triggerer of {where} has sent a heartbeat for 8 minutes.",
                "Deferred tasks (sensors in deferrable mode, async operators) do not resume without a triggerer.",
                f"kubectl -n {ns} get pods -l component=triggerer,release={r}; read the triggerer logs for "
                "blocked triggers.",
            )
        )
    celery_workers = a.uses_celery and a.workers.replicas > 0
    if celery_workers:
        queued = f"sum(airflow_ti_queued{s(HAS_DAG)}) > 0"
        if a.executor == "CeleryKubernetesExecutor":
            queued = f"sum(airflow_ti_queued{s(HAS_DAG, NOT_K8S_QUEUE)}) > 0"
        ready = f'sum(kube_pod_status_ready{{namespace="{ns}", pod=~"{_worker_pods(target)}", condition="true"}}) > 0'
        found.append(
            Alert(
                "AirflowNoCeleryWorker",
                f"{queued}\nunless on ()\n{ready}",
                "10m",
                "critical",
                f"Tasks of {where} are queued and no Celery worker is ready.",
                "{{ $value }} task instance(s) are queued; no task runs until a Celery worker is ready.",
                f"kubectl -n {ns} get pods -l component=worker,release={r}; look for CrashLoopBackOff, OOMKilled or "
                f"Pending (unschedulable) workers and read their logs; check Redis ({r}-redis) and the broker "
                "connection. (Reads kube-state-metrics' kube_pod_status_ready.)",
            )
        )
    if target.operator:
        found.append(
            Alert(
                "AirflowMetricsDown",
                f"up{s()} == 0 or absent(up{s()})",
                "5m",
                "critical",
                f"Prometheus cannot scrape the StatsD exporter of {where}.",
                "Without it every other Airflow alert is blind.",
                f"kubectl -n {ns} get pods -l component=statsd,release={r}; kubectl -n {ns} get servicemonitor "
                f"{r}-statsd; check the Prometheus targets page for the error.",
            )
        )
        if a.database.pgbouncer.enabled:
            pgb = f'namespace="{ns}", service="{target.pgbouncer_service}"'
            found.append(
                Alert(
                    "AirflowPgBouncerMetricsDown",
                    f"up{{{pgb}}} == 0 or absent(up{{{pgb}}})",
                    "5m",
                    "warning",
                    f"Prometheus cannot scrape PgBouncer's exporter of {where}.",
                    "PgBouncer pools every connection of Airflow to its metadata database.",
                    f"kubectl -n {ns} get pods -l component=pgbouncer,release={r}; read the pgbouncer and "
                    "metrics-exporter container logs.",
                )
            )
    return found


def rule_groups(target: Target, cfg: MonitoringConfig) -> list[dict[str, Any]]:
    rules = [alert.rule(target, cfg.alerts.labels) for alert in alerts(target, cfg.alerts.task_failure_ratio)]
    return [{"name": f"airflow.{target.namespace}.{target.release}", "rules": rules}]


def prometheus_rule(target: Target, cfg: MonitoringConfig) -> dict[str, Any]:
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": {
            "name": rules_name(target),
            "namespace": target.namespace,
            "labels": {**_own_labels(target), **selected_labels(cfg)},
        },
        "spec": {"groups": rule_groups(target, cfg)},
    }


def rules_file(target: Target, cfg: MonitoringConfig) -> str:
    """The same rules as a Prometheus rule file, for annotation mode (no operator)."""
    return str(yaml.safe_dump({"groups": rule_groups(target, cfg)}, sort_keys=False, width=1000))


# ---------------------------------------------------------------------------
# Grafana dashboard


@dataclass
class _Layout:
    panels: list[dict[str, Any]] = field(default_factory=list)
    x: int = 0
    y: int = 0
    row_height: int = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "id": len(self.panels) + 1,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def add(self, panel: dict[str, Any], width: int, height: int) -> None:
        if self.x + width > 24:
            self._newline()
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": height, "w": width, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)

    def series(
        self, title: str, *queries: tuple[str, str], unit: str = "short", desc: str = "", width: int = 8
    ) -> None:
        """A time series panel (a query and its legend each), 8 high."""
        self.add(_timeseries(title, list(queries), unit, desc), width, 8)

    def stat(self, title: str, expr: str, **options: Any) -> None:
        """A stat panel, 6 wide and 4 high."""
        self.add(_stat(title, expr, **options), 6, 4)


DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _targets(queries: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
        for i, (expr, legend) in enumerate(queries)
    ]


def _timeseries(title: str, queries: list[tuple[str, str]], unit: str = "short", desc: str = "") -> dict[str, Any]:
    return {
        "type": "timeseries",
        "title": title,
        "description": desc,
        "datasource": DATASOURCE,
        "targets": _targets(queries),
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10}}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
    }


def _stat(
    title: str, expr: str, unit: str = "short", thresholds: list[tuple[float | None, str]] | None = None, desc: str = ""
) -> dict[str, Any]:
    steps = [{"color": color, "value": value} for value, color in (thresholds or [(None, "green")])]
    return {
        "type": "stat",
        "title": title,
        "description": desc,
        "datasource": DATASOURCE,
        "targets": _targets([(expr, "")]),
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value"},
    }


def dashboard(target: Target) -> dict[str, Any]:
    """The Grafana dashboard of one Airflow release."""
    s = target.sel
    ns = target.namespace
    rate = "$__rate_interval"
    dag = 'dag_id=~"$dag_id"'
    pods = f'namespace="{ns}", container!="", image!=""'
    lay = _Layout()

    lay.row("Scheduler health")
    lay.stat(
        "Scheduler heartbeats / min",
        f"sum(rate(airflow_scheduler_heartbeat{s()}[{rate}])) * 60",
        thresholds=[(None, "red"), (1, "green")],
        desc="All schedulers together; 0 means no scheduler is alive.",
    )
    lay.stat(
        "DAG import errors", f"max(airflow_dag_processing_import_errors{s()})", thresholds=[(None, "green"), (1, "red")]
    )
    lay.stat("DAGs loaded", f"max(airflow_dagbag_size{s()})")
    lay.stat("Running DAG runs", f"max(airflow_scheduler_dagruns_running{s()})")
    lay.series(
        "Heartbeats / min",
        (f"sum(rate(airflow_scheduler_heartbeat{s()}[{rate}])) * 60", "scheduler"),
        (f"sum(rate(airflow_dag_processor_heartbeat{s()}[{rate}])) * 60", "dag processor"),
        (f"sum(rate(airflow_triggerer_heartbeat{s()}[{rate}])) * 60", "triggerer"),
    )
    lay.series(
        "Scheduler loop duration",
        (
            f"sum(rate(airflow_scheduler_scheduler_loop_duration_sum{s()}[{rate}])) / "
            f"sum(rate(airflow_scheduler_scheduler_loop_duration_count{s()}[{rate}]))",
            "mean",
        ),
        (f"max(airflow_scheduler_scheduler_loop_duration{s(P99)})", "p99"),
        (
            f"sum(rate(airflow_scheduler_critical_section_duration_sum{s()}[{rate}])) / "
            f"sum(rate(airflow_scheduler_critical_section_duration_count{s()}[{rate}]))",
            "critical section (mean)",
        ),
        unit="s",
    )
    lay.series(
        "DAG parsing",
        (f"max(airflow_dag_processing_total_parse_time{s()})", "total parse time"),
        (
            f"topk(5, max by (dag_file) (airflow_dag_processing_last_run_seconds_ago{s(HAS_DAG_FILE)}))",
            "{{dag_file}} last parsed ago",
        ),
        unit="s",
    )

    lay.row("DAG runs and task outcomes")
    lay.series(
        "Task instances finished / min",
        (f"sum(rate(airflow_ti_successes{s()}[{rate}])) * 60", "success"),
        (f"sum(rate(airflow_ti_failures{s()}[{rate}])) * 60", "failed"),
    )
    lay.series(
        "DAG runs finished / hour",
        (f"sum by (dag_id) (increase(airflow_dagrun_duration_count{s(dag)}[1h]))", "{{dag_id}} success"),
        (f"sum by (dag_id) (increase(airflow_dagrun_failed_count{s(dag)}[1h]))", "{{dag_id}} failed"),
    )
    lay.series(
        "Zombie tasks killed and operator failures",
        (
            f"sum(increase({target.metric('airflow_task_instances_without_heartbeats_killed')}{s()}[{rate}]))",
            "task instances without heartbeat killed",
        ),
        (f"sum by (operator) (increase(airflow_operator_failures{s()}[{rate}]))", "{{operator}} failures"),
    )

    lay.row("Durations")
    lay.series(
        "DAG run duration (successful runs)",
        (f"max by (dag_id) (airflow_dagrun_duration{s(dag, P50)})", "{{dag_id}} p50"),
        (f"max by (dag_id) (airflow_dagrun_duration{s(dag, P99)})", "{{dag_id}} p99"),
        unit="s",
    )
    lay.series(
        "Slowest tasks (p99)",
        (f"topk(10, max by (dag_id, task_id) (airflow_task_duration{s(dag, P99)}))", "{{dag_id}}.{{task_id}}"),
        unit="s",
    )
    lay.series(
        "Scheduling delay",
        (f"max by (dag_id) (airflow_dagrun_schedule_delay{s(dag, P50)})", "{{dag_id}} start delay"),
        (f"max(airflow_task_queued_duration{s(P99)})", "time in queue p99 (all tasks)"),
        unit="s",
    )

    lay.row("Queues and pools")
    lay.series(
        "Task instances by state",
        (f"sum(airflow_ti_scheduled{s(HAS_DAG)})", "scheduled"),
        (f"sum(airflow_ti_queued{s(HAS_DAG)})", "queued"),
        (f"sum(airflow_ti_running{s(HAS_DAG)})", "running"),
        (f"sum(airflow_ti_deferred{s(HAS_DAG)})", "deferred"),
    )
    lay.series(
        "Pool slots",
        (f"max by (pool) (airflow_pool_open_slots{s(HAS_POOL)})", "{{pool}} open"),
        (f"max by (pool) (airflow_pool_starving_tasks{s(HAS_POOL)})", "{{pool}} starving"),
        desc="Per pool: the chart's StatsD mapping labels open slots and starving tasks by pool. Running and "
        "queued slots per pool reach Prometheus only as one metric name per pool, so they are not shown.",
    )
    lay.series(
        "Scheduler: executable and starving tasks",
        (f"max(airflow_scheduler_tasks_executable{s()})", "executable"),
        (f"max(airflow_scheduler_tasks_starving{s()})", "starving (no pool slot)"),
    )

    lay.row("Executor slots")
    lay.series(
        "Executor slots",
        (f"max by (executor) (airflow_executor_open_slots{s()})", "open {{executor}}"),
        (f"max by (executor) (airflow_executor_queued_tasks{s()})", "queued {{executor}}"),
        (f"max by (executor) (airflow_executor_running_tasks{s()})", "running {{executor}}"),
        width=24,
    )

    lay.row("Resource use (all pods of the namespace)")
    lay.series(
        "CPU by pod",
        (f"sum by (pod) (rate(container_cpu_usage_seconds_total{{{pods}}}[{rate}]))", "{{pod}}"),
        unit="cores",
    )
    lay.series(
        "Memory (working set) by pod",
        (f"sum by (pod) (container_memory_working_set_bytes{{{pods}}})", "{{pod}}"),
        unit="bytes",
    )
    lay.series(
        "Memory use / limit",
        (
            f"sum by (pod) (container_memory_working_set_bytes{{{pods}}}) / "
            f'sum by (pod) (kube_pod_container_resource_limits{{namespace="{ns}", resource="memory"}})',
            "{{pod}}",
        ),
        unit="percentunit",
    )
    lay.series(
        "CPU throttling",
        (
            f"sum by (pod) (increase(container_cpu_cfs_throttled_periods_total{{{pods}}}[{rate}])) / "
            f"sum by (pod) (increase(container_cpu_cfs_periods_total{{{pods}}}[{rate}]))",
            "{{pod}}",
        ),
        unit="percentunit",
        desc="Share of CPU periods in which the container hit its CPU limit.",
    )
    lay.series(
        "Pods by phase",
        (f'sum by (phase) (kube_pod_status_phase{{namespace="{ns}"}})', "{{phase}}"),
        desc="Pending task pods mean the cluster cannot place them (resources, quotas, node selectors).",
    )
    lay.series(
        "Containers waiting (CrashLoopBackOff, ImagePullBackOff, ...)",
        (
            f'sum by (pod, reason) (kube_pod_container_status_waiting_reason{{namespace="{ns}"}})',
            "{{pod}} {{reason}}",
        ),
    )

    return {
        "uid": dashboard_uid(target),
        "title": dashboard_title(target),
        "tags": ["airflow", target.namespace],
        "timezone": "utc",
        "editable": True,
        "schemaVersion": 39,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "dag_id",
                    "label": "DAG",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": f"label_values(airflow_dagrun_duration_count{s(HAS_DAG)}, dag_id)",
                    "definition": f"label_values(airflow_dagrun_duration_count{s(HAS_DAG)}, dag_id)",
                    "refresh": 2,
                    "multi": True,
                    "includeAll": True,
                    "allValue": ".+",
                    "current": {"text": "All", "value": "$__all"},
                    "sort": 1,
                    "hide": 0,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": lay.panels,
    }


def dashboard_config_map(target: Target, namespace: str) -> dict[str, Any]:
    """The dashboard as a ConfigMap the Grafana sidecar loads (kube-prometheus-stack's label)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": dashboard_config_map_name(target),
            "namespace": namespace,
            "labels": {**_own_labels(target), DASHBOARD_LABEL: DASHBOARD_LABEL_VALUE},
        },
        "data": {f"airflow-{target.slug}.json": json.dumps(dashboard(target), separators=(",", ":"))},
    }


def dashboard_queries(board: Mapping[str, Any]) -> list[str]:
    """Every query of a dashboard: its panels' targets and its query variables."""
    queries = [str(t["expr"]) for p in board.get("panels", []) for t in p.get("targets", [])]
    queries += [str(v["query"]) for v in board.get("templating", {}).get("list", []) if v.get("type") == "query"]
    return queries


def rules_config_map(target: Target, cfg: MonitoringConfig) -> dict[str, Any]:
    """Annotation mode: the alert rules as a rule file for a Prometheus without the operator."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": rules_name(target), "namespace": target.namespace, "labels": _own_labels(target)},
        "data": {"airflow-alerts.yaml": rules_file(target, cfg)},
    }
