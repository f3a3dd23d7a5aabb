"""Checks across the whole parsed stack, at the edge, before any resource is declared.

`check_stack` runs last in `components.platform.config.parse_stack`. It holds the rules that need
more than one key (every namespace the stack creates or uses, under one rule), the rules on
typed keys that the cluster or a tool would otherwise reject at deploy time, and then the
invariants of `components.core.invariants` (and `components.airflow.values.invariants` for Airflow) on
the final values of every Release the stack declares (Airflow with LogStorage's and Monitoring's
values merged, the Spark operator, kube-prometheus-stack).

Messages name the config key, the bad value (never a secret's text) and the fix.
"""

from __future__ import annotations

import difflib
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..airflow.values import invariants
from ..airflow.values.guards import SYSTEM_PREFIXES, check_airflow_config, size_valid
from ..core import invariants as chart_invariants
from ..core.credentials import credential_in
from ..core.names import SYSTEM_NAMESPACES
from ..core.reader import ConfigError, json_value
from ..core.resources import amount_valid
from ..teams.config import check_limit_range
from .contradictions import check_contradictions

if TYPE_CHECKING:
    from .types import StackConfig

# Namespaces the platform's shared controllers usually run in, when the stack does not say.
KNOWN_CONTROLLER_NAMESPACES = {
    "ingress-nginx": "the NGINX ingress controller",
    "cert-manager": "cert-manager",
    "keda": "KEDA",
    "gatekeeper-system": "Gatekeeper",
    "kyverno": "Kyverno",
}
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "ip6-localhost", "localhost.localdomain")
_SECRET_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass(frozen=True)
class NamespaceUse:
    key: str
    namespace: str
    role: str
    created: bool = True


def namespaces(stack: StackConfig) -> list[NamespaceUse]:
    """Every namespace the stack creates or uses, with the config key that names it."""
    a = stack.airflow
    install = stack.monitoring.install
    # The platform's namespaces first, so a clash names the key of the tenant (Spark jobs, a team).
    uses = [NamespaceUse("airflow.namespace", a.namespace, "Airflow", a.create_namespace)]
    if install is not None:
        uses.append(NamespaceUse("monitoring.install.namespace", install.namespace, "monitoring"))
    if a.ingress.enabled:
        uses.append(
            NamespaceUse(
                "airflow.ingress.controllerNamespace",
                a.ingress.controller_namespace,
                "the ingress controller",
                created=False,
            )
        )
    if stack.spark.enabled:
        uses.append(NamespaceUse("spark.namespace", stack.spark.namespace, "the Spark operator"))
        for i, job in enumerate(stack.spark.job_namespaces):
            uses.append(NamespaceUse(f"spark.jobNamespaces[{i}]", job.name, "Spark jobs", job.create))
    keda = stack.keda
    if keda.enabled:
        where = "install" if keda.install is not None else "existing"
        uses.append(NamespaceUse(f"keda.{where}.namespace", keda.namespace, "KEDA", created=keda.install is not None))
    for i, team in enumerate(stack.teams):
        uses.append(NamespaceUse(f"teams[{i}].namespace", team.namespace, f"team {team.name!r}"))
    return uses


def check_namespaces(stack: StackConfig) -> None:
    """One rule for every namespace: never a system namespace, never one another role already uses."""
    uses = namespaces(stack)
    for use in uses:
        if use.namespace in SYSTEM_NAMESPACES or use.namespace.startswith(SYSTEM_PREFIXES):
            if use.role == "the ingress controller":
                continue  # the controller is the cluster's; we only admit its traffic
            raise ConfigError(
                use.key,
                use.namespace,
                f"{use.role} needs a namespace of its own, not a system or shared namespace "
                f"({', '.join(SYSTEM_NAMESPACES)}, or any kube-*/openshift-* namespace): pods there share "
                "ServiceAccounts, Secrets and policies with the cluster's own components.",
                f"set {use.key} to a dedicated namespace such as 'airflow', 'spark-jobs' or '<team>-tasks'.",
            )
        known = KNOWN_CONTROLLER_NAMESPACES.get(use.namespace)
        if known and use.role not in ("the ingress controller", known):
            raise ConfigError(
                use.key,
                use.namespace,
                f"this is where {known} usually runs; {use.role} needs a namespace of its own.",
                f"set {use.key} to a dedicated namespace.",
            )
    seen: dict[str, NamespaceUse] = {}
    for use in uses:
        other = seen.get(use.namespace)
        if other is not None and other.role != use.role:
            raise ConfigError(
                use.key,
                use.namespace,
                f"{other.key} already puts {other.role} in this namespace; {use.role} needs its own (pods "
                "of one could run as the other's ServiceAccounts and read its Secrets).",
                f"set {use.key} to another namespace.",
            )
        seen.setdefault(use.namespace, use)


# ---------------------------------------------------------------------------
# Credentials where they do not belong


def _no_url_credentials(key: str, url: str | None, where: str) -> None:
    if not url:
        return
    kind = chart_invariants.url_credentials(url)
    if kind:
        raise ConfigError(
            key,
            chart_invariants.redact_url(url),
            f"the URL carries {kind}; stack files and Helm values are read by many, and this key is plain text.",
            where,
        )


def check_urls(stack: StackConfig) -> None:
    a = stack.airflow
    git = a.dags.git_sync
    if git is not None:
        _no_url_credentials(
            "airflow.dags.gitSync.repo",
            git.repo,
            "put the token in the secret key 'gitToken' (pulumi config set --secret gitToken <token>) with "
            "airflow.dags.gitSync.auth: token, or use SSH with 'gitSshKey'; keep the URL plain "
            "(https://github.com/org/repo.git).",
        )
    bundle = a.dags.git_bundle
    if bundle is not None:
        _no_url_credentials(
            "airflow.dags.gitBundle.repo",
            bundle.repo,
            "put the token in the secret key 'gitToken' (with airflow.dags.gitBundle.auth: token) or use SSH with "
            "'gitSshKey'; keep the URL plain (https://github.com/org/repo.git).",
        )
    for key, chart in (
        ("airflow.chart.repository", a.chart),
        ("spark.chart.repository", stack.spark.chart if stack.spark.enabled else None),
        ("monitoring.install.chart.repository", stack.monitoring.install.chart if stack.monitoring.install else None),
    ):
        if chart is not None and not chart.path:
            _no_url_credentials(
                key,
                chart.repository,
                "this project has no secret key for chart repository credentials: use a repository that needs "
                "none (a mirror inside your network), or download the chart and set chart.path.",
            )
    if a.ingress.auth is not None:
        for key, url in (
            ("airflow.ingress.auth.url", a.ingress.auth.url),
            ("airflow.ingress.auth.signin", a.ingress.auth.signin),
        ):
            _no_url_credentials(
                key,
                url,
                "the ingress controller calls this URL for every request and shows it in its configuration; the "
                "auth service (oauth2-proxy) keeps its own credentials.",
            )
    remote = stack.logs.remote
    if remote is not None and remote.base_log_folder:
        _no_url_credentials(
            "logs.remote.baseLogFolder",
            remote.base_log_folder,
            "put the credentials in the secret key 'logsConnection' (pulumi config set --secret logsConnection "
            "'<connection URI>') or use workloadIdentity: true; keep the folder plain (s3://bucket/prefix).",
        )


def check_plain_credentials(
    values: Mapping[str, Any], secret_keys: Iterable[str], *, urls: bool, either: Iterable[str] = ()
) -> None:
    """Secrets by shape (components/core/credentials.py), in every key that is not secret: a private
    key, a token, a chat webhook, a kubeconfig with credentials or (with `urls`) a URL with
    credentials is refused, naming the key and the secret key it belongs in, never the value.
    `either`: keys that may be set plain or secret (`variables`): the fix says to make them secret."""
    secret = set(secret_keys)
    for key, raw in values.items():
        if key in secret:
            continue
        value = raw
        if isinstance(raw, str) and raw[:1] in "{[":
            try:
                value = json_value(key, raw)
            except json.JSONDecodeError:
                value = raw
        found = credential_in(value, urls=urls)
        if found is None:
            continue
        fix = f"put it in a secret key: {found.shape.belongs}."
        if key in either:
            fix = f"set '{key}' as a secret (pulumi config set --secret {key} '<json>'), or {fix}"
        raise ConfigError(
            f"{key}{found.where}",
            "[not shown]",
            f"this looks like {found.detail}; a plain config key is stored in clear in the stack file, shown by "
            "`pulumi config` and in every preview.",
            fix,
        )


# ---------------------------------------------------------------------------
# Connection URIs and the database URL


def uri_problem(text: str) -> str | None:
    """Why an Airflow connection URI would not come back as written, or None.

    Airflow splits URIs with urllib: a raw '/', '#', '?' or '@' inside the login or password ends
    that part early (the rest becomes the host, the path or a fragment Airflow drops)."""
    if any(c.isspace() for c in text.strip()) or text != text.strip():
        return "it contains whitespace"
    if "#" in text:
        return "it contains '#', which ends the URI there (everything after it is dropped)"
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        return "its port is not a number (a ':' or '/' in the password must be percent-encoded)"
    del port
    if not parts.scheme:
        scheme = text.split("://", 1)[0]
        return (
            f"Airflow reads its type from the scheme with urlsplit, which takes no {scheme!r} (a scheme is letters, "
            "digits, '+', '-' and '.'): the type would be empty; write '_' as '-' (google-cloud-platform://), "
            "Airflow turns it back"
        )
    if parts.netloc.count("@") > 1:
        return "its user information contains '@'"
    if "@" in parts.path or "@" in parts.query:
        return "its user information contains '/' or '?', so the host is read from the password"
    for piece in (parts.netloc, parts.path, parts.query):
        if re.search(r"%(?![0-9A-Fa-f]{2})", piece):
            return "it contains '%' that is not a percent-escape"
    return None


def _uri(key: str, text: str) -> None:
    problem = uri_problem(text)
    if problem:
        raise ConfigError(
            key,
            "[secret]",
            f"this connection URI does not survive parsing: {problem}.",
            "percent-encode special characters in the login and password (urllib.parse.quote(password, safe='')): "
            "/ -> %2F, # -> %23, ? -> %3F, @ -> %40, : -> %3A, % -> %25, space -> %20.",
        )


def check_connections(stack: StackConfig) -> None:
    url = stack.secrets.database_url
    if isinstance(url, str):
        _uri("databaseUrl", url)
        host = (urllib.parse.urlsplit(url).hostname or "").lower()
        if host in LOCAL_HOSTS or host.startswith("127."):
            raise ConfigError(
                "databaseUrl",
                f"[secret with host {host!r}]",
                "inside a pod, localhost is the pod itself: no database listens there.",
                "use the database's DNS name or Service (db.example.internal, <service>.<namespace>.svc).",
            )
    for conn_id, value in stack.connections.items():
        if isinstance(value, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.\-_]*://", value.strip()):
            _uri(f"connections.{conn_id}", value)
    logs = stack.logs_connection
    if isinstance(logs, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.\-_]*://", logs.strip()):
        _uri("logsConnection", logs)
    remote = stack.logs.remote
    if (
        remote is not None
        and remote.target != "elasticsearch"
        and not remote.workload_identity
        and not remote.connection_id
    ):
        raise ConfigError(
            "logs.remote.connectionId",
            "",
            "an empty connection id makes Airflow read the logs with no connection, so 'logsConnection' would "
            "be silently dropped.",
            "remove logs.remote.connectionId (the default names one) or set an id such as 'aws_logs'.",
        )


def check_team_secrets(stack: StackConfig) -> None:
    for team, secrets in stack.team_secrets.items():
        for secret, data in secrets.items():
            for data_key in data:
                if not _SECRET_DATA_KEY.match(data_key) or len(data_key) > 253:
                    raise ConfigError(
                        f"teamSecrets.{team}.{secret}",
                        f"[secret with a key of {len(data_key)} characters]",
                        "a Secret's data keys are letters, digits, '-', '_' and '.' (no spaces or '/'); the API "
                        "server refuses the Secret otherwise.",
                        "rename the key, for example 'api-key' or 'api_key'.",
                    )


def check_monitoring(stack: StackConfig) -> None:
    install = stack.monitoring.install
    if install is not None:
        for part, settings in (
            ("prometheus", install.prometheus),
            ("grafana", install.grafana),
            ("alertmanager", install.alertmanager),
        ):
            if install.persistence:
                size_valid(f"monitoring.install.{part}.storageSize", getattr(settings, "storage_size", None))
    existing = stack.monitoring.existing
    ns = existing.dashboard_namespace if existing is not None else None
    if ns and (ns in SYSTEM_NAMESPACES or ns.startswith(SYSTEM_PREFIXES)):
        raise ConfigError(
            "monitoring.existing.dashboardNamespace",
            ns,
            "the dashboard ConfigMap needs a namespace of its own (your Grafana's), not a system namespace.",
            "set it to the namespace your Grafana's dashboard sidecar watches.",
        )


def check_teams(stack: StackConfig) -> None:
    for i, team in enumerate(stack.teams):
        quota_keys = {"requests.memory": "memory", "limits.memory": "limitsMemory"}
        for part, amounts in (
            ("quota", team.quota),
            ("limits.default", team.default_limits),
            ("limits.defaultRequest", team.default_requests),
            ("limits.max", team.max_limits),
        ):
            for name, text in amounts.items():
                resource = "memory" if "memory" in name.lower() else "cpu" if "cpu" in name.lower() else ""
                key = f"teams[{i}].{part}.{quota_keys.get(name, name)}"
                amount_valid(key, resource, text, one_pod=part != "quota")
        check_limit_range(f"teams[{i}].limits", team)


def check_logs(stack: StackConfig) -> None:
    logs = stack.logs
    if logs.uses_claim:
        size_valid("logs.size", logs.size)
    if logs.host_path and chart_invariants.system_folder(logs.host_path):
        raise ConfigError(
            "logs.hostPath.path",
            logs.host_path,
            "'/' or a system folder of the node would be mounted into every Airflow pod.",
            "use a folder of its own, such as /data/airflow-logs.",
        )


# ---------------------------------------------------------------------------
# Releases


def check_releases(stack: StackConfig) -> None:
    """The invariants on the final values of every Release the stack declares."""
    from ..airflow.values.chart import SecretNames
    from ..monitoring.values import airflow_values as monitoring_airflow_values, stack_values
    from ..spark.values import chart_values as spark_chart_values

    a = stack.airflow
    remote = stack.logs.remote
    declared = bool(stack.connections or stack.variables or stack.spark.enabled) or (
        remote is not None and bool(remote.connection_id) and stack.logs_connection is not None
    )

    invariants.check_airflow(
        a,
        logs=stack.logs,
        extra=monitoring_airflow_values(stack.monitoring, a),
        extra_key="monitoring (annotations on the Airflow chart)",
        connections_secret=SecretNames(a.release_name).environment if declared else None,
        dags_claim=f"{a.release_name}-dags" if a.dags.host_path is not None else None,
        production=stack.cluster.production,
    )
    if stack.spark.enabled:
        chart_invariants.check_other_release(
            spark_chart_values(stack.spark),
            extra_key="spark.extraValues",
            extra=stack.spark.extra_values,
            typed="spark",
        )
    install = stack.monitoring.install
    if install is not None:
        chart_invariants.check_other_release(
            stack_values(install),
            extra_key="monitoring.install.extraValues",
            extra=install.extra_values,
            typed="monitoring.install",
        )


def check_stack(stack: StackConfig) -> None:
    """Every cross-key and deploy-time rule, then the invariants on every Release's values."""
    check_namespaces(stack)
    check_urls(stack)
    check_connections(stack)
    check_airflow_config(stack.airflow, previous_keys=len(stack.previous_fernet_keys))
    check_team_secrets(stack)
    check_teams(stack)
    check_logs(stack)
    check_monitoring(stack)
    check_contradictions(stack)
    check_releases(stack)


# ---------------------------------------------------------------------------
# Config namespaces


def foreign_keys(keys: Iterable[str], project: str, known: Iterable[str]) -> None:
    """Keys under a namespace that looks like this project's (`airflowk8s:logs`, `airflow_k8s:airflow`,
    `Airflow-K8s:...`) are refused: Pulumi hands them to the program under that other namespace, where
    nothing reads them, so the setting would silently not apply."""

    def norm(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    known = list(known)
    for full in keys:
        namespace, sep, name = full.partition(":")
        if not sep or namespace == project:
            continue
        close = norm(namespace) == norm(project) or bool(
            difflib.get_close_matches(namespace, [project], n=1, cutoff=0.8)
        )
        if close or (name in known and namespace not in ("pulumi", "kubernetes", "random", "aws", "gcp", "azure")):
            raise ConfigError(
                full,
                "[value not shown]",
                f"unknown config namespace {namespace!r}: this project reads only '{project}:' keys, so this one "
                f"would be ignored. Did you mean '{project}:{name}'?",
                f"rename the key to '{project}:{name}' in the stack file (pulumi config rm '{full}'; pulumi config "
                f"set --path '{project}:{name}...').",
            )
