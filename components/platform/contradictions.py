"""Contradictions between capabilities: settings each valid alone that together never work.

One model of the deployed platform (`Platform`, built from the parsed stack) answers the
questions a running platform depends on, and each rule is one answer that comes out wrong:

- can every pod be scheduled: the DAG and log volumes on one node;
- can every pod reach what it must: the metadata database is not the stack's own PgBouncer;
- can every pod write where it must: logs not inside the DAG folder (or the DAG claim), the log
  volume not mounted read-only, task pods under a uid or group that can write the shared logs;
- does every observable still work: task pods keep the remote-logging settings, the logs
  connection is of the log folder's cloud, Prometheus scrapes often enough for the alerts'
  windows;
- is the UI served where it is configured: an ingress path prefix matches Airflow's base URL,
  Flower and the UI on distinct paths, one certificate for one host.

Namespaces (a team in the namespace of an operator that reads Secrets cluster-wide) are the
namespace rule's (components/platform/guards.py `check_namespaces`); a connection URI whose
scheme Airflow parses to an empty type is the URI rule's (`uri_problem`). Each contradiction
is a ConfigError naming the key to change, its value (never a secret's) and what would work.
"""

from __future__ import annotations

import json
import posixpath
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..airflow.config.airflow import parse_database_url
from ..core.airflow_user import AIRFLOW_UID
from ..core.reader import ConfigError

if TYPE_CHECKING:
    from .types import StackConfig


@dataclass(frozen=True)
class Place:
    """Where a volume's files live, as far as the stack says."""

    key: str
    host_path: str | None = None
    node: str | None = None
    claim: str | None = None


@dataclass(frozen=True)
class Platform:
    """The deployed platform, as the contradiction rules need to see it."""

    stack: StackConfig
    release: str
    namespace: str
    # Services of this release, by name (also reachable as <name>.<namespace>[.svc[.cluster.local]]).
    services: dict[str, str]
    logs: Place | None
    dags: Place | None

    @property
    def airflow(self) -> Any:
        return self.stack.airflow

    def own_service(self, host: str) -> str | None:
        """What this release's Service `host` names (short or qualified), or None."""
        host = host.lower().rstrip(".")
        for suffix in (f".{self.namespace}.svc.cluster.local", f".{self.namespace}.svc", f".{self.namespace}"):
            if host.endswith(suffix):
                host = host[: -len(suffix)]
                break
        return self.services.get(host)


def model(stack: StackConfig) -> Platform:
    a = stack.airflow
    release = a.release_name
    services = {f"{release}-pgbouncer": "PgBouncer", f"{release}-redis": "Redis", f"{release}-statsd": "StatsD"}
    services[f"{release}-{'api-server' if a.major >= 3 else 'webserver'}"] = "the Airflow UI"
    if a.database.mode == "bundled":
        services[f"{release}-postgresql"] = "the bundled Postgres"
    logs = stack.logs
    logs_place = None
    if logs.uses_claim:
        logs_place = Place("logs", host_path=logs.host_path, node=logs.node, claim=f"{release}-logs")
    dags_place = None
    if a.dags.host_path is not None:
        hp = a.dags.host_path
        dags_place = Place("airflow.dags.hostPath", host_path=hp.path, node=hp.node, claim=f"{release}-dags")
    elif a.dags.claim is not None:
        dags_place = Place("airflow.dags.persistentVolumeClaim", claim=a.dags.claim.claim_name)
    return Platform(stack, release, a.namespace, services, logs_place, dags_place)


Rule = Callable[[Platform], None]


def _inside(path: str, folder: str) -> bool:
    path, folder = posixpath.normpath(path), posixpath.normpath(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


# ---------------------------------------------------------------------------
# Can every pod be scheduled


def volumes_on_one_node(p: Platform) -> None:
    if p.logs is None or p.dags is None or not (p.logs.node and p.dags.node) or p.logs.node == p.dags.node:
        return
    raise ConfigError(
        "logs.hostPath.node",
        p.logs.node,
        f"the DAG folder is pinned to node {p.dags.node!r} (airflow.dags.hostPath.node) and the logs to this one; "
        "every Airflow pod mounts both, so none could be scheduled.",
        "pin both to one node, or leave node unset on a one-node cluster.",
    )


# ---------------------------------------------------------------------------
# Can every pod reach what it must


def database_not_our_own_service(p: Platform) -> None:
    url = p.stack.secrets.database_url
    if not isinstance(url, str) or p.airflow.database.mode != "external":
        return
    host = parse_database_url(url, has_ca=p.airflow.database.ca_certificate is not None).host
    own = p.own_service(host)
    if own is None:
        return
    circular = own == "PgBouncer" and p.airflow.database.pgbouncer.enabled
    raise ConfigError(
        "databaseUrl",
        f"[secret with host {host!r}]",
        f"this is the stack's own {own} Service"
        + (
            ", which forwards to databaseUrl: PgBouncer would connect to itself and no query would reach a database."
            if circular
            else ", not a Postgres database; with an external database it is not the database either."
        ),
        "set databaseUrl to the database itself (its DNS name); PgBouncer sits in front of it on its own.",
    )


# ---------------------------------------------------------------------------
# Can every pod write where it must


def logs_outside_the_dags(p: Platform) -> None:
    logs, dags = p.logs, p.dags
    if logs is None or dags is None:
        return
    same_claim = logs.claim is not None and logs.claim == dags.claim
    nested = bool(logs.host_path and dags.host_path) and (
        _inside(str(logs.host_path), str(dags.host_path)) or _inside(str(dags.host_path), str(logs.host_path))
    )
    if not (same_claim or nested):
        return
    key, value = ("logs.hostPath.path", logs.host_path) if nested else (f"{dags.key}.claimName", dags.claim)
    raise ConfigError(
        key,
        value,
        "task logs would be written into the DAG folder: the DAG processor parses every file there (one more "
        "with each task try), git-sync or a deploy replaces the folder and the logs with it.",
        "give the logs a folder (or claim) of their own, outside the DAG folder.",
    )


def logs_mounted_writable(p: Platform) -> None:
    logs = p.stack.logs
    if logs.mode != "nfs":
        return
    options = {option.strip() for option in logs.mount_options}
    if "ro" in options or "read-only" in options:
        raise ConfigError(
            "logs.nfs.mountOptions",
            list(logs.mount_options),
            "the log volume would be mounted read-only: every Airflow pod and task writes its logs there, so each "
            "task would fail to start its log file.",
            "remove 'ro' (the export must be writable by uid 50000 or group 0).",
        )


def task_pods_can_write_logs(p: Platform) -> None:
    pods = p.airflow.task_pods
    if p.logs is None or not p.airflow.uses_kubernetes:
        return
    uid = pods.run_as_user if pods.run_as_user is not None else AIRFLOW_UID
    groups = {
        pods.run_as_group if pods.run_as_group is not None else 0,
        pods.fs_group if pods.fs_group is not None else 0,
    }
    if uid == AIRFLOW_UID or 0 in groups:
        return
    raise ConfigError(
        "airflow.taskPods.securityContext.runAsUser",
        uid,
        f"task pods would run as uid {uid} in groups {sorted(groups)}, but the shared log folders belong to uid "
        f"{AIRFLOW_UID} and group 0 (writable by the group): the task could not write its log.",
        "keep runAsGroup or fsGroup 0 (the Airflow image's group), or run as uid 50000.",
    )


# ---------------------------------------------------------------------------
# Does every observable still work

_LOGGING_OPTIONS = (
    "AIRFLOW__LOGGING__REMOTE_LOGGING",
    "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER",
    "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
    "AIRFLOW__LOGGING__DELETE_LOCAL_LOGS",
)


def task_env_keeps_logging(p: Platform) -> None:
    if p.stack.logs.mode == "emptyDir":
        return
    for name in p.airflow.task_pods.env:
        if name.upper() in _LOGGING_OPTIONS:
            raise ConfigError(
                f"airflow.taskPods.env.{name}",
                p.airflow.task_pods.env[name],
                "the `logs` key sets where task logs go; this variable would override it in task pods only (their "
                "logs then go elsewhere than where the UI reads them, or nowhere: logs.mode is "
                f"{p.stack.logs.mode!r}).",
                f"remove airflow.taskPods.env.{name}; change the `logs` key instead.",
            )


# Airflow connection types of each remote-logging target's cloud.
_CLOUD_OF = {"aws": "s3", "s3": "s3", "google_cloud_platform": "gcs", "gcpssh": "gcs", "wasb": "wasb", "adls": "wasb"}


def connection_type(value: str) -> str | None:
    """The conn_type Airflow reads from a connection URI or JSON (URI: urlsplit's scheme, '-' -> '_')."""
    text = value.strip()
    if text.startswith("{"):
        try:
            conn = json.loads(text)
        except ValueError:
            return None
        return str(conn.get("conn_type") or "") if isinstance(conn, dict) else None
    scheme = urllib.parse.urlsplit(text).scheme
    return "postgres" if scheme == "postgresql" else scheme.replace("-", "_")


def logs_connection_of_the_folders_cloud(p: Platform) -> None:
    remote, conn = p.stack.logs.remote, p.stack.logs_connection
    if remote is None or remote.target == "elasticsearch" or not isinstance(conn, str):
        return
    conn_type = connection_type(conn)
    cloud = _CLOUD_OF.get(conn_type or "")
    if cloud is None or cloud == remote.target:
        return
    raise ConfigError(
        "logsConnection",
        f"[secret of type {conn_type!r}]",
        f"a {conn_type!r} connection cannot reach a {remote.target} log folder ({remote.base_log_folder}): Airflow "
        "would fail to write every task log remotely.",
        f"set logsConnection to a connection of the folder's cloud ({remote.target}), or change logs.remote.",
    )


_PROMETHEUS_DURATION = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_RANGE = re.compile(r"\[(\d+[smhdwy])\]")


def prometheus_seconds(text: str) -> float:
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PROMETHEUS_DURATION.findall(text))


def alert_windows(p: Platform) -> list[tuple[float, str]]:
    """(seconds, alert) of every range window in the stack's own alert rules."""
    from ..monitoring.values import Target, alerts

    target = Target(p.airflow, p.namespace, p.release, operator=True)
    return [(prometheus_seconds(w), alert.name) for alert in alerts(target) for w in _RANGE.findall(alert.expr)]


def scrapes_fit_the_alert_windows(p: Platform) -> None:
    install = p.stack.monitoring.install
    if install is None:
        return
    interval = prometheus_seconds(install.prometheus.scrape_interval)
    windows = alert_windows(p)
    if not windows:
        return
    window, alert = min(windows)
    if 2 * interval <= window:
        return
    raise ConfigError(
        "monitoring.install.prometheus.scrapeInterval",
        install.prometheus.scrape_interval,
        f"the alert {alert} looks at a {int(window)}s window, which needs two samples: scraped every "
        f"{int(interval)}s it holds fewer, so rate() is empty and the heartbeat alerts fire forever.",
        f"scrape at most every {int(window // 2)}s (30s is the default).",
    )


# ---------------------------------------------------------------------------
# Is the UI served where it is configured


def _base_url(p: Platform) -> tuple[str, str | None]:
    section = "api" if p.airflow.major >= 3 else "webserver"
    config = p.airflow.extra_values.get("config")
    options = config.get(section) if isinstance(config, Mapping) else None
    value = options.get("base_url") if isinstance(options, Mapping) else None
    return f"airflow.extraValues.config.{section}.base_url", value if isinstance(value, str) else None


def _prefix(path: str) -> str:
    return "/" + path.strip("/")


def ingress_path_matches_base_url(p: Platform) -> None:
    ing = p.airflow.ingress
    if not ing.enabled:
        return
    key, base_url = _base_url(p)
    base_path = _prefix(urllib.parse.urlsplit(base_url).path) if base_url else "/"
    if base_path == _prefix(ing.path):
        return
    example = f"https://{ing.host or '<host>'}{_prefix(ing.path)}"
    if base_url is None:
        raise ConfigError(
            "airflow.ingress.path",
            ing.path,
            "the UI is served under this prefix, but Airflow's base URL is not: its pages, assets and API calls "
            "would point at '/', outside the prefix.",
            f"set {key} to {example!r} (or serve the UI at '/').",
        )
    raise ConfigError(
        key,
        base_url,
        f"its path {base_path!r} is not the ingress path {_prefix(ing.path)!r} (airflow.ingress.path): the links "
        "Airflow makes would miss the UI.",
        f"set it to {example!r}, or airflow.ingress.path to {base_path!r}.",
    )


def flower_and_ui_apart(p: Platform) -> None:
    ing = p.airflow.ingress
    if not (ing.enabled and p.airflow.flower.enabled):
        return
    ui_host, flower_host = ing.host or "", ing.flower_host or ing.host or ""
    if flower_host == ui_host and _prefix(ing.flower_path) == _prefix(ing.path):
        raise ConfigError(
            "airflow.ingress.flower.path",
            ing.flower_path,
            "Flower and the UI would be served on one host and path; the ingress controller sends each request to "
            "one of them only.",
            "keep Flower under its own path (the default '/flower') or host.",
        )
    if ing.tls and flower_host != ui_host:
        raise ConfigError(
            "airflow.ingress.flower.host",
            flower_host,
            f"both Ingresses use one TLS Secret ({ing.tls_secret or 'the issuer-made certificate'}), which is for "
            f"{ui_host!r}: browsers would refuse Flower's host (and cert-manager would issue the one Secret twice, "
            "for each host in turn).",
            "serve Flower on the UI's host under airflow.ingress.flower.path (unset flower.host).",
        )


RULES: tuple[Rule, ...] = (
    volumes_on_one_node,
    database_not_our_own_service,
    logs_outside_the_dags,
    logs_mounted_writable,
    task_pods_can_write_logs,
    task_env_keeps_logging,
    logs_connection_of_the_folders_cloud,
    scrapes_fit_the_alert_windows,
    ingress_path_matches_base_url,
    flower_and_ui_apart,
)


def check_contradictions(stack: StackConfig) -> None:
    platform = model(stack)
    for rule in RULES:
        rule(platform)
