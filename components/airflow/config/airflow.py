# Longer than 600 lines: the parser of the whole `airflow` object and its dataclasses, in the order of
# the configuration reference; its self-contained parts (Fernet, spread, pools, DAG bundles,
# maintenance, secret paths) are modules of their own.
"""Typed stack configuration, parsed once at the edge.

`parse_airflow` turns the `airflow` config object (the shape documented in the
docs/configuration.md) into an immutable `AirflowConfig`. Everything is checked here, before any
resource is declared: types, ranges, unknown keys, and combinations that cannot
work together. Errors are `ConfigError`s naming the key, the bad value and what
is allowed.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Literal

from ...core import names
from ...core.charts import ChartSource, parse_chart_source
from ...core.durations import go_duration_seconds
from ...core.git_refs import git_ref
from ...core.invariants import budget_drains
from ...core.reader import (
    QUANTITY as QUANTITY,
    ConfigError,
    ConfigTypeError,
    Node,
    dns_label,
    matches,
    semver,
    version_tuple,
)
from ...core.resources import Resources, parse_resources
from .dag_bundles import DEFAULT_BUNDLE_NAME, DEFAULT_CONNECTION_ID, GitBundle
from .fernet import FernetConfig, parse_fernet
from .pools import Pool, parse_pools
from .secret_paths import ENV_PATHS, FILE_ONLY_ENV, VOLUME_NAMES
from .spread import Spread, parse_spread
from .upgrades import check_chart_supports

DEFAULT_CHART_VERSION = "1.21.0"
DEFAULT_CHART_REPOSITORY = "https://airflow.apache.org"
DEFAULT_AIRFLOW_VERSION = "3.2.0"
DEFAULT_IMAGE_REPOSITORY = "apache/airflow"
AIRFLOW_CHART = ChartSource("airflow", DEFAULT_CHART_VERSION, DEFAULT_CHART_REPOSITORY)

SINGLE_EXECUTORS_3 = ("LocalExecutor", "CeleryExecutor", "KubernetesExecutor")
SINGLE_EXECUTORS_2 = ("LocalExecutor", "CeleryExecutor", "KubernetesExecutor", "CeleryKubernetesExecutor")

DagsMode = Literal["gitSync", "gitBundle", "hostPath", "persistentVolumeClaim", "image"]
DAGS_MODES = ("gitSync", "gitBundle", "hostPath", "persistentVolumeClaim", "image")
GitAuth = Literal["none", "token", "ssh"]

# Names the project reserves for itself inside a release.
MAX_RELEASE_NAME = 30


# ---------------------------------------------------------------------------
# Shared pieces


@dataclass(frozen=True)
class Disruption:
    """A PodDisruptionBudget: exactly one of max_unavailable / min_available."""

    enabled: bool = False
    max_unavailable: int | str | None = 1
    min_available: int | str | None = None

    def as_values(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.min_available is not None:
            config["minAvailable"] = self.min_available
        else:
            config["maxUnavailable"] = self.max_unavailable
        return {"enabled": self.enabled, "config": config}


@dataclass(frozen=True)
class Component:
    """Replicas, resources and disruption budget of one Airflow component."""

    enabled: bool = True
    replicas: int = 1
    resources: Resources = field(default_factory=Resources)
    disruption: Disruption = field(default_factory=Disruption)


@dataclass(frozen=True)
class Workers(Component):
    """Celery workers (and the resources of KubernetesExecutor task pods)."""

    concurrency: int = 16


@dataclass(frozen=True)
class Image:
    repository: str = DEFAULT_IMAGE_REPOSITORY
    tag: str = DEFAULT_AIRFLOW_VERSION
    pull_policy: str = "IfNotPresent"
    digest: str | None = None
    """`sha256:<hex>`: pods run exactly this image (the tag stays for humans and Airflow's version checks)."""

    @property
    def reference(self) -> str:
        """How a pod names the image: by digest when one is pinned, else by tag."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class GitSync:
    repo: str
    branch: str = "main"
    rev: str = "HEAD"
    sub_path: str = ""
    depth: int = 1
    period: str = "60s"
    auth: GitAuth = "none"
    username: str = "git"
    known_hosts: str | None = None


@dataclass(frozen=True)
class HostPathDags:
    path: str
    node: str | None = None
    size: str = "1Gi"


@dataclass(frozen=True)
class ClaimDags:
    claim_name: str
    sub_path: str | None = None


@dataclass(frozen=True)
class Dags:
    mode: DagsMode = "image"
    git_sync: GitSync | None = None
    git_bundle: GitBundle | None = None
    host_path: HostPathDags | None = None
    claim: ClaimDags | None = None
    mount_path: str | None = None


@dataclass(frozen=True)
class PgBouncer:
    enabled: bool = False
    replicas: int = 1
    max_client_conn: int = 100
    metadata_pool_size: int = 10
    result_backend_pool_size: int = 5
    resources: Resources = field(default_factory=Resources)
    disruption: Disruption = field(default_factory=Disruption)


@dataclass(frozen=True)
class Database:
    mode: Literal["bundled", "external"] = "bundled"
    storage_size: str = "8Gi"
    storage_class: str | None = None
    pgbouncer: PgBouncer = field(default_factory=PgBouncer)
    # PEM: the CA the external server's certificate chains to (sslmode=verify-ca / verify-full)
    ca_certificate: str | None = None


@dataclass(frozen=True)
class Admin:
    enabled: bool = True
    username: str = "admin"
    email: str = "admin@example.com"
    first_name: str = "Airflow"
    last_name: str = "Admin"


@dataclass(frozen=True)
class Redis:
    persistence_size: str = "1Gi"
    storage_class: str | None = None
    resources: Resources = field(default_factory=Resources)


@dataclass(frozen=True)
class IngressAuth:
    """External authentication (NGINX auth-url / auth-signin, e.g. oauth2-proxy)."""

    url: str
    signin: str | None = None
    response_headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ingress:
    """Ingress for the UI (api-server on Airflow 3, webserver on 2) and Flower."""

    enabled: bool = False
    host: str | None = None
    path: str = "/"
    class_name: str | None = None
    controller_namespace: str = "ingress-nginx"
    tls_issuer: str | None = None
    tls_issuer_kind: str = "ClusterIssuer"
    tls_secret: str | None = None
    auth: IngressAuth | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    flower_host: str | None = None
    flower_path: str = "/flower"

    @property
    def tls(self) -> bool:
        return bool(self.tls_issuer or self.tls_secret)


@dataclass(frozen=True)
class NetworkPolicies:
    """The chart's NetworkPolicies, with the allows Airflow needs that the chart leaves out."""

    enabled: bool = True
    metrics_namespaces: tuple[str, ...] = ()
    ui_namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskPods:
    """KubernetesExecutor task pods, rendered by the chart's own pod template from these."""

    resources: Resources = field(default_factory=Resources)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    extra_volumes: tuple[dict[str, Any], ...] = ()
    extra_volume_mounts: tuple[dict[str, Any], ...] = ()
    run_as_user: int | None = None
    run_as_group: int | None = None
    fs_group: int | None = None

    def as_values(self) -> dict[str, Any]:
        """`workers.kubernetes.*` chart values (only what is set)."""
        pod = {
            k: v
            for k, v in (("runAsUser", self.run_as_user), ("runAsGroup", self.run_as_group), ("fsGroup", self.fs_group))
            if v is not None
        }
        out: dict[str, Any] = {
            "resources": self.resources.as_values(),
            "nodeSelector": dict(self.node_selector),
            "tolerations": [dict(t) for t in self.tolerations],
            "env": [{"name": k, "value": v} for k, v in self.env.items()],
            "extraVolumes": [dict(v) for v in self.extra_volumes],
            "extraVolumeMounts": [dict(m) for m in self.extra_volume_mounts],
            "securityContexts": {"pod": pod} if pod else {},
        }
        return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class AirflowConfig:
    """Everything AirflowRelease needs, validated."""

    namespace: str = "airflow"
    create_namespace: bool = True
    release_name: str = "airflow"
    chart: ChartSource = field(default_factory=lambda: AIRFLOW_CHART)
    version: str = DEFAULT_AIRFLOW_VERSION
    image: Image = field(default_factory=Image)
    executor: str = "KubernetesExecutor"
    dags: Dags = field(default_factory=Dags)
    database: Database = field(default_factory=Database)
    scheduler: Component = field(default_factory=Component)
    api_server: Component = field(default_factory=Component)
    triggerer: Component = field(default_factory=Component)
    dag_processor: Component = field(default_factory=Component)
    workers: Workers = field(default_factory=Workers)
    flower: Component = field(default_factory=lambda: Component(enabled=False))
    statsd: Component = field(default_factory=Component)
    redis: Redis = field(default_factory=Redis)
    admin: Admin = field(default_factory=Admin)
    task_pods: TaskPods = field(default_factory=TaskPods)
    ingress: Ingress = field(default_factory=Ingress)
    network_policies: NetworkPolicies = field(default_factory=NetworkPolicies)
    extra_values: dict[str, Any] = field(default_factory=dict)
    fernet: FernetConfig = field(default_factory=FernetConfig)
    pools: tuple[Pool, ...] = ()
    spread: Spread = field(default_factory=Spread)
    read_only_root: bool = True
    """Airflow-image containers (and git-sync, PgBouncer) run with a read-only root filesystem."""

    @property
    def major(self) -> int:
        return version_tuple(self.version)[0]

    @property
    def executors(self) -> tuple[str, ...]:
        return tuple(self.executor.split(","))

    @property
    def uses_celery(self) -> bool:
        return any(e in ("CeleryExecutor", "CeleryKubernetesExecutor") for e in self.executors)

    @property
    def uses_kubernetes(self) -> bool:
        return any(e in ("KubernetesExecutor", "CeleryKubernetesExecutor") for e in self.executors)

    @property
    def uses_local(self) -> bool:
        return "LocalExecutor" in self.executors

    @property
    def ui_component(self) -> str:
        """The chart's values key of the web UI: apiServer on Airflow 3, webserver on 2."""
        return "apiServer" if self.major >= 3 else "webserver"


# ---------------------------------------------------------------------------
# Parsing


_PERCENT = re.compile(r"^(100|[1-9]?[0-9])%$")


def _budget_value(key: str, value: Any) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _PERCENT.match(value):
        return value
    raise ConfigError(key, value, "expected a whole number of pods (0 or more) or a percentage such as '50%'.")


def _disruption(node: Node, name: str, replicas: int) -> Disruption:
    sub = node.mapping(name)
    enabled = sub.boolean("enabled", False)
    max_u = _budget_value(sub.key("maxUnavailable"), sub.raw("maxUnavailable", None))
    min_a = _budget_value(sub.key("minAvailable"), sub.raw("minAvailable", None))
    sub.finish()
    if max_u is not None and min_a is not None:
        raise ConfigError(
            sub.key("minAvailable"),
            min_a,
            f"set either maxUnavailable or minAvailable, not both ({sub.key('maxUnavailable')} is {max_u!r}).",
        )
    if enabled:
        field_name, value = ("minAvailable", min_a) if min_a is not None else ("maxUnavailable", max_u)
        if value is not None:
            budget_drains(sub.key(field_name), field_name, value, replicas)
    if max_u is None and min_a is None:
        max_u = 1
    return Disruption(enabled=enabled, max_unavailable=max_u, min_available=min_a)


def _component(
    node: Node,
    name: str,
    *,
    default_replicas: int = 1,
    min_replicas: int = 1,
    max_replicas: int = 50,
    enabled_default: bool | None = None,
    scalable: bool = True,
    extra: tuple[str, ...] = (),
) -> tuple[Component, Node]:
    """Read the keys every component shares; the caller reads `extra` keys and finishes.

    A component the chart runs as a single pod (`scalable=False`: Flower, StatsD) takes
    neither `replicas` nor `podDisruptionBudget`, so such a key is an error, not ignored.
    """
    sub = node.mapping(name)
    enabled = True if enabled_default is None else sub.boolean("enabled", enabled_default)
    replicas = sub.integer("replicas", default_replicas, low=min_replicas, high=max_replicas) if scalable else 1
    resources = parse_resources(sub, "resources")
    disruption = _disruption(sub, "podDisruptionBudget", replicas) if scalable else Disruption()
    if not extra:
        sub.finish()
    return Component(enabled=enabled, replicas=replicas, resources=resources, disruption=disruption), sub


def _executor(node: Node, major: int) -> str:
    key = node.key("executor")
    value = node.string("executor", "KubernetesExecutor")
    parts = value.split(",")
    allowed = SINGLE_EXECUTORS_3 if major >= 3 else SINGLE_EXECUTORS_2
    if major >= 3 and value == "CeleryKubernetesExecutor":
        raise ConfigError(
            key,
            value,
            "CeleryKubernetesExecutor was removed in Airflow 3; allowed: "
            f"{', '.join(allowed)}, or a comma-separated list of them.",
            f"use 'CeleryExecutor,KubernetesExecutor' (multiple executors) on Airflow 3, or set {node.key('version')} "
            "to a 2.11.x release.",
        )
    if len(parts) > 1 and major < 3:
        raise ConfigError(
            key,
            value,
            f"a comma-separated list of executors needs Airflow 3; allowed on Airflow 2: {', '.join(allowed)}.",
            "use CeleryKubernetesExecutor on Airflow 2.",
        )
    for part in parts:
        if part not in allowed:
            suffix = ", or a comma-separated list of them" if major >= 3 else ""
            raise ConfigError(key, value, f"allowed on Airflow {major}: {', '.join(allowed)}{suffix}.")
    if len(set(parts)) != len(parts):
        raise ConfigError(key, value, "each executor may be listed only once.")
    return str(value)


_SSH_URL = re.compile(r"^(ssh://[^/\s]+/\S+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+)$")
_HTTPS_URL = re.compile(r"^https://[^/\s]+/\S+$")


def _git_source(sub: Node, secrets: StackSecrets) -> tuple[str, GitAuth, str | None]:
    """The repository URL, its authentication and known hosts, checked against the secret keys
    (the same rules for git-sync and the git DAG bundle)."""
    repo = sub.string("repo")
    names.url_host(sub.key("repo"), repo)
    is_ssh = matches(_SSH_URL, repo)
    if not is_ssh and not matches(_HTTPS_URL, repo):
        raise ConfigError(
            sub.key("repo"),
            repo,
            "expected an https:// URL (https://github.com/org/repo.git) or an SSH URL "
            "(git@github.com:org/repo.git or ssh://git@host/org/repo.git).",
        )
    default_auth = "ssh" if is_ssh else ("token" if secrets.git_token is not None else "none")
    auth = sub.string("auth", default_auth, choices=("none", "token", "ssh"))
    if auth == "ssh" and not is_ssh:
        raise ConfigError(sub.key("auth"), auth, f"SSH authentication needs an SSH repository URL, got {repo!r}.")
    if auth in ("none", "token") and is_ssh:
        raise ConfigError(sub.key("auth"), auth, f"an SSH repository URL ({repo!r}) needs auth 'ssh' with a key.")
    if auth == "token" and secrets.git_token is None:
        raise ConfigError(
            sub.key("auth"),
            auth,
            "token authentication needs the secret config key 'gitToken'.",
            "pulumi config set --secret gitToken <token>",
        )
    if auth == "ssh" and secrets.git_ssh_key is None:
        raise ConfigError(
            sub.key("auth"),
            auth,
            "SSH authentication needs the secret config key 'gitSshKey' (a private key).",
            "pulumi config set --secret gitSshKey < ~/.ssh/airflow_deploy_key",
        )
    known_hosts = sub.string("knownHosts", None)
    if auth == "ssh" and not known_hosts:
        raise ConfigError(
            sub.key("knownHosts"),
            known_hosts,
            f"SSH {'git-sync' if sub.path.endswith('gitSync') else 'git bundle'} needs the server's host keys "
            "(known_hosts lines), or a man in the middle could serve DAGs.",
            "ssh-keyscan github.com and put the lines in knownHosts.",
        )
    if known_hosts and auth != "ssh":
        raise ConfigError(sub.key("knownHosts"), known_hosts, "knownHosts is only used with auth 'ssh'.")
    return repo, auth, known_hosts


def _git_sync(node: Node, secrets: StackSecrets) -> GitSync:
    sub = node.mapping("gitSync")
    repo, auth, known_hosts = _git_source(sub, secrets)
    git = GitSync(
        repo=repo,
        branch=git_ref(sub.key("branch"), sub.string("branch", "main")),
        rev=git_ref(sub.key("rev"), sub.string("rev", "HEAD")),
        sub_path=names.sub_path(sub.key("subPath"), sub.string("subPath", ""), inside="the repository"),
        depth=sub.integer("depth", 1, low=0, high=1000),
        period=_sync_period(sub.key("period"), sub.string("period", "60s")),
        auth=auth,
        username=sub.string("username", "git"),
        known_hosts=known_hosts,
    )
    sub.finish()
    return git


# git-sync refuses a --period under 10ms; under a second it polls the remote without pause.
MIN_SYNC_PERIOD = 1.0


def _sync_period(key: str, value: str) -> str:
    """git-sync's --period: a Go duration (time.ParseDuration) of at least a second."""
    seconds = go_duration_seconds(value)
    if seconds is None:
        raise ConfigError(
            key,
            value,
            "git-sync cannot parse this: expected a Go duration such as 30s or 5m (or 1m30s: a unit on every number).",
        )
    if seconds < MIN_SYNC_PERIOD:
        raise ConfigError(
            key,
            value,
            "a sync period under 1s makes git-sync poll the repository without pause (git-sync itself refuses under "
            "10ms); expected 1s or more.",
            "use 30s or 60s (the default).",
        )
    return value


def _git_bundle(node: Node, secrets: StackSecrets, major: int) -> GitBundle:
    """Airflow 3's GitDagBundle (see dag_bundles.py)."""
    if major < 3:
        raise ConfigError(
            node.key("mode"),
            "gitBundle",
            "DAG bundles are an Airflow 3 feature; on Airflow 2 use gitSync.",
            f"set {node.key('mode')} to 'gitSync', or airflow.version to a 3.x release.",
        )
    sub = node.mapping("gitBundle")
    repo, auth, known_hosts = _git_source(sub, secrets)
    bundle = GitBundle(
        repo=repo,
        name=sub.string(
            "name",
            DEFAULT_BUNDLE_NAME,
            pattern=re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"),
            describe="expected letters, digits, '_', '.' and '-' (the bundle's name in the UI and the database).",
        ),
        tracking_ref=git_ref(sub.key("trackingRef"), sub.string("trackingRef", "main")),
        subdir=sub.string("subdir", ""),
        refresh_interval=sub.integer("refreshInterval", 60, low=10, high=86400),
        auth=auth,
        username=sub.string("username", "git"),
        known_hosts=known_hosts,
        connection_id=sub.string(
            "connectionId",
            DEFAULT_CONNECTION_ID,
            pattern=re.compile(r"^[A-Za-z0-9_]{1,250}$"),
            describe="expected letters, digits and underscores (an id that also works as AIRFLOW_CONN_<ID>).",
        ),
        ca_certificate=_ca_certificate(sub, repo),
    )
    names.sub_path(sub.key("subdir"), bundle.subdir, inside="the repository")
    sub.finish()
    return bundle


_PEM_CERTIFICATE = re.compile(r"^\s*(-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----\s*)+$")


def _first_line(text: str) -> str:
    """What an error shows of a PEM value: its first line (a header, never key material)."""
    lines = text.strip().splitlines()
    return (lines[0][:64] + " ...") if lines else ""


def _ca_certificate(sub: Node, repo: str) -> str | None:
    """`caCertificate`: the PEM of the CA a private HTTPS git server's certificate chains to."""
    ca: str | None = sub.string("caCertificate", None)
    if ca is None:
        return None
    if not repo.startswith("https://"):
        raise ConfigError(
            sub.key("caCertificate"),
            _first_line(ca),
            f"a CA certificate is only used with an https:// repository; {repo!r} is reached over SSH "
            "(its server is checked against knownHosts).",
            f"remove {sub.key('caCertificate')}.",
        )
    return pem_certificates(sub.key("caCertificate"), ca)


def pem_certificates(key: str, value: str) -> str:
    """A CA given as PEM text (the git bundle's, the external database's): certificates, never a key."""
    if not matches(_PEM_CERTIFICATE, value):
        raise ConfigError(
            key,
            _first_line(value),
            "expected one or more PEM certificates (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----); "
            "never a private key.",
            "openssl x509 -in ca.crt -outform PEM, and put its text here.",
        )
    return value


def _dags(node: Node, secrets: StackSecrets, image: Image, major: int = 3) -> Dags:
    sub = node.mapping("dags")
    mode = sub.string("mode", "image", choices=DAGS_MODES)
    mount_path = sub.string("mountPath", None, pattern=re.compile(r"^/\S*$"), describe="expected an absolute path.")
    sub.only_mode_settings(mode, ("gitSync", "gitBundle", "hostPath", "persistentVolumeClaim"))
    dags = Dags(mode=mode, mount_path=mount_path)
    if mode == "gitSync":
        dags = Dags(mode=mode, mount_path=mount_path, git_sync=_git_sync(sub, secrets))
    elif mode == "gitBundle":
        dags = Dags(mode=mode, mount_path=mount_path, git_bundle=_git_bundle(sub, secrets, major))
    elif mode == "hostPath":
        hp = sub.mapping("hostPath")
        path = hp.string("path", pattern=re.compile(r"^/\S*$"), describe="expected an absolute path on the node.")
        node_name = hp.string("node", None)
        if node_name is not None:
            names.node_name(hp.key("node"), node_name)
        size = hp.quantity("size", "1Gi", what="a storage size")
        hp.finish()
        dags = Dags(mode=mode, mount_path=mount_path, host_path=HostPathDags(path=path, node=node_name, size=size))
    elif mode == "persistentVolumeClaim":
        pvc = sub.mapping("persistentVolumeClaim")
        claim = dns_label(pvc.key("claimName"), pvc.string("claimName"), max_len=253)
        sub_path = pvc.string("subPath", None)
        if sub_path is not None:
            names.sub_path(pvc.key("subPath"), sub_path, inside="the claim")
        pvc.finish()
        dags = Dags(mode=mode, mount_path=mount_path, claim=ClaimDags(claim_name=claim, sub_path=sub_path))
    elif image.repository == DEFAULT_IMAGE_REPOSITORY:
        raise ConfigError(
            sub.key("mode"),
            mode,
            "DAGs baked into the image need your own image; the stock apache/airflow image has no DAGs.",
            "set airflow.image.repository (and tag) to your image, or choose gitSync, hostPath or "
            "persistentVolumeClaim.",
        )
    git_auth = dags.git_sync.auth if dags.git_sync else dags.git_bundle.auth if dags.git_bundle else None
    if secrets.git_token is not None and git_auth != "token":
        raise ConfigError(
            "gitToken", "[secret]", "gitToken is set but DAGs do not use git-sync or a git bundle with token auth."
        )
    if secrets.git_ssh_key is not None and git_auth != "ssh":
        raise ConfigError(
            "gitSshKey", "[secret]", "gitSshKey is set but DAGs do not use git-sync or a git bundle over SSH."
        )
    sub.finish()
    return dags


def _database(node: Node, secrets: StackSecrets) -> Database:
    sub = node.mapping("database")
    mode = sub.string("mode", "bundled", choices=("bundled", "external"))
    if mode == "external" and secrets.database_url is None:
        raise ConfigError(
            sub.key("mode"),
            mode,
            "an external database needs its URL in the secret config key 'databaseUrl'.",
            "pulumi config set --secret databaseUrl 'postgresql://user:password@host:5432/airflow?sslmode=require'",
        )
    if mode == "bundled" and secrets.database_url is not None:
        raise ConfigError(
            sub.key("mode"),
            mode,
            "'databaseUrl' is set, but the bundled Postgres would be used and the URL ignored.",
            f"set {sub.key('mode')} to 'external', or remove databaseUrl.",
        )
    ca = sub.string("caCertificate", None)
    if ca is not None:
        if mode != "external":
            raise ConfigError(
                sub.key("caCertificate"),
                _first_line(ca),
                "a CA certificate checks an external database's server; the bundled Postgres is reached without TLS.",
                f"remove {sub.key('caCertificate')}, or set {sub.key('mode')} to 'external'.",
            )
        pem_certificates(sub.key("caCertificate"), ca)
    storage_size = sub.quantity("storageSize", "8Gi", what="a storage size")
    storage_class = sub.string("storageClass", None)
    if storage_class is not None:
        dns_label(sub.key("storageClass"), storage_class, max_len=253)
    if mode == "external":
        for key in ("storageSize", "storageClass"):
            if sub.has(key):
                raise ConfigError(sub.key(key), sub.data[key], "only applies to the bundled database.")
    pgb_node = sub.mapping("pgbouncer")
    pgb_default = mode == "external"
    enabled = pgb_node.boolean("enabled", pgb_default)
    replicas = pgb_node.integer("replicas", 1, low=1, high=10)
    pgbouncer = PgBouncer(
        enabled=enabled,
        replicas=replicas,
        max_client_conn=pgb_node.integer("maxClientConn", 100, low=1, high=100000),
        metadata_pool_size=pgb_node.integer("metadataPoolSize", 10, low=1, high=1000),
        result_backend_pool_size=pgb_node.integer("resultBackendPoolSize", 5, low=1, high=1000),
        resources=parse_resources(pgb_node, "resources"),
        disruption=_disruption(pgb_node, "podDisruptionBudget", replicas),
    )
    pgb_node.finish()
    sub.finish()
    return Database(
        mode=mode, storage_size=storage_size, storage_class=storage_class, pgbouncer=pgbouncer, ca_certificate=ca
    )


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VOLUME_SOURCES = (
    "configMap",
    "secret",
    "persistentVolumeClaim",
    "emptyDir",
    "hostPath",
    "nfs",
    "csi",
    "projected",
    "ephemeral",
)
# Volumes the chart's pod template already has, which extraVolumeMounts may also use.
_CHART_POD_VOLUMES = ("logs", "config", "dags", *VOLUME_NAMES)


def _scalars_as_text(raw: dict[str, Any]) -> dict[str, Any]:
    """YAML scalars as the text Kubernetes takes (`true` -> 'true', 2 -> '2'); other values unchanged."""
    return {
        k: (str(v).lower() if isinstance(v, bool) else str(v)) if isinstance(v, bool | int | float) else v
        for k, v in raw.items()
    }


def _string_map(node: Node, name: str, key_pattern: re.Pattern[str], what: str) -> dict[str, str]:
    raw = node.plain_object(name, values={"type": ["string", "number", "boolean"]})
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not matches(key_pattern, key):
            raise ConfigError(f"{node.key(name)}.{key}", key, f"not a valid {what}.")
        if not isinstance(value, str | int | float | bool):
            raise ConfigTypeError(f"{node.key(name)}.{key}", value, "expected a string value.")
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _tolerations(node: Node) -> tuple[dict[str, Any], ...]:
    out = []
    for t in node.nodes("tolerations", "tolerations"):
        operator = t.string("operator", "Equal", choices=("Equal", "Exists"))
        tol: dict[str, Any] = {"operator": operator}
        key = t.string("key", None)
        if key is not None:
            tol["key"] = key
        value = t.string("value", None)
        if value is not None:
            if operator == "Exists":
                raise ConfigError(t.key("value"), value, "a toleration with operator Exists takes no value.")
            tol["value"] = value
        effect = t.string("effect", None, choices=("NoSchedule", "PreferNoSchedule", "NoExecute"))
        if effect is not None:
            tol["effect"] = effect
        names.toleration(t.path, operator, key, value)
        seconds = t.integer("tolerationSeconds", None, low=0)
        if seconds is not None:
            if effect != "NoExecute":
                raise ConfigError(t.key("tolerationSeconds"), seconds, "only applies with effect NoExecute.")
            tol["tolerationSeconds"] = seconds
        t.finish()
        out.append(tol)
    return tuple(out)


def same_mount_path(mounts: list[dict[str, Any]], path: str) -> int | None:
    """The index of an earlier mount at `path`, as the container runtime sees paths: `/data/` and
    `/data/./` are `/data` (the API server compares the text only, and lets them through)."""
    wanted = posixpath.normpath(path)
    return next((j for j, other in enumerate(mounts) if posixpath.normpath(other["mountPath"]) == wanted), None)


def _task_pods(node: Node) -> TaskPods:
    sub = node.mapping("taskPods")
    resources = parse_resources(sub, "resources")
    node_selector = names.label_map(
        sub.key("nodeSelector"),
        _scalars_as_text(sub.plain_object("nodeSelector", values={"type": ["string", "number", "boolean"]})),
    )
    tolerations = _tolerations(sub)
    env = _string_map(sub, "env", _ENV_NAME, "environment variable name")
    volumes_raw = sub.raw("extraVolumes", [])
    if not isinstance(volumes_raw, list):
        raise ConfigError(sub.key("extraVolumes"), volumes_raw, "expected a list of Kubernetes volumes.")
    volumes = []
    for i, vol in enumerate(volumes_raw):
        key = f"{sub.key('extraVolumes')}[{i}]"
        if not isinstance(vol, dict) or not isinstance(vol.get("name"), str):
            raise ConfigError(key, vol, "expected a Kubernetes volume: {name: ..., <source>: {...}}.")
        dns_label(f"{key}.name", vol["name"])
        sources = [k for k in vol if k != "name"]
        if len(sources) != 1 or sources[0] not in _VOLUME_SOURCES:
            raise ConfigError(key, vol, f"expected exactly one volume source of: {', '.join(_VOLUME_SOURCES)}.")
        if vol["name"] in _CHART_POD_VOLUMES:
            raise ConfigError(f"{key}.name", vol["name"], "this name is the chart's own volume; choose another.")
        volumes.append(dict(vol))
    known = {v["name"] for v in volumes} | set(_CHART_POD_VOLUMES)
    mounts: list[dict[str, Any]] = []
    for m in sub.nodes("extraVolumeMounts", "volume mounts"):
        mount: dict[str, Any] = {
            "name": m.string("name"),
            "mountPath": m.string("mountPath", pattern=re.compile(r"^/\S*$"), describe="expected an absolute path."),
        }
        if mount["name"] not in known:
            raise ConfigError(m.key("name"), mount["name"], f"no such volume; declared: {', '.join(sorted(known))}.")
        read_only = m.boolean("readOnly", None)
        if read_only is not None:
            mount["readOnly"] = read_only
        sub_path = m.string("subPath", None)
        if sub_path is not None:
            mount["subPath"] = names.sub_path(m.key("subPath"), sub_path)
        m.finish()
        earlier = same_mount_path(mounts, mount["mountPath"])
        if earlier is not None:
            raise ConfigError(
                m.key("mountPath"),
                mount["mountPath"],
                f"{sub.key('extraVolumeMounts')}[{earlier}] mounts at the same path; the API server refuses two mounts "
                "at one path in a container.",
            )
        mounts.append(mount)
    sec = sub.mapping("securityContext")
    task_pods = TaskPods(
        resources=resources,
        node_selector=node_selector,
        tolerations=tolerations,
        env=env,
        extra_volumes=tuple(volumes),
        extra_volume_mounts=tuple(mounts),
        run_as_user=sec.integer("runAsUser", None, low=1, high=2147483647),
        run_as_group=sec.integer("runAsGroup", None, low=0, high=2147483647),
        fs_group=sec.integer("fsGroup", None, low=0, high=2147483647),
    )
    sec.finish()
    sub.finish()
    return task_pods


_HOSTNAME = re.compile(r"^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,63}$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HTTPS_AUTH = re.compile(r"^https://[^\s/]+(/\S*)?$")
_HEADER = re.compile(r"^[A-Za-z0-9-]+$")


def _ingress_host(node: Node, name: str, example: str) -> str | None:
    """An Ingress host: ASCII (a look-alike is named), lowercase labels, a top-level domain (or one label)."""
    host = node.string(name, None)
    if host is None:
        return None
    names.host_name(node.key(name), host, wildcard=True)
    if not matches(_HOSTNAME, host):
        raise ConfigError(node.key(name), host, f"expected a lowercase DNS host name such as {example}.")
    return str(host)


def _ingress(node: Node, *, flower_enabled: bool) -> Ingress:
    sub = node.mapping("ingress")
    enabled = sub.boolean("enabled", False)
    host = _ingress_host(sub, "host", "airflow.example.com")
    path = sub.string("path", "/", pattern=re.compile(r"^/\S*$"), describe="expected a path starting with /.")
    class_name = sub.string("className", None)
    if class_name is not None:
        dns_label(sub.key("className"), class_name, max_len=253)
    controller_ns = dns_label(sub.key("controllerNamespace"), sub.string("controllerNamespace", "ingress-nginx"))
    tls = sub.mapping("tls")
    issuer = tls.string("issuer", None)
    issuer_kind = tls.string("issuerKind", "ClusterIssuer", choices=("ClusterIssuer", "Issuer"))
    secret = tls.string("secretName", None)
    tls.finish()
    if issuer and secret:
        raise ConfigError(
            sub.key("tls.secretName"), secret, "set either tls.issuer (cert-manager) or tls.secretName, not both."
        )
    if (issuer or secret) and not host:
        raise ConfigError(
            sub.key("host"),
            None,
            "TLS needs a host: a certificate is issued for, or must cover, a host name.",
            f"set {sub.key('host')} to the UI's DNS name.",
        )
    auth_node = sub.mapping("auth")
    auth = None
    if auth_node.has("url") or auth_node.has("signin"):
        url = auth_node.string(
            "url", pattern=_HTTPS_AUTH, describe="the authentication endpoint must be an https:// URL."
        )
        signin = auth_node.string(
            "signin", None, pattern=_HTTPS_AUTH, describe="the sign-in page must be an https:// URL."
        )
        names.url_host(auth_node.key("url"), url)
        if signin is not None:
            names.url_host(auth_node.key("signin"), signin)
        headers = auth_node.string_list("responseHeaders", [])
        for i, header in enumerate(headers):
            if not matches(_HEADER, header):
                raise ConfigError(f"{auth_node.key('responseHeaders')}[{i}]", header, "expected an HTTP header name.")
        auth = IngressAuth(url=url, signin=signin, response_headers=tuple(headers))
    else:
        auth_node.string_list("responseHeaders", [])
    auth_node.finish()
    annotations = names.annotation_map(
        sub.key("annotations"), sub.plain_object("annotations", values={"type": "string"})
    )
    flower = sub.mapping("flower")
    flower_host = _ingress_host(flower, "host", "flower.example.com")
    flower_path = flower.string("path", "/flower", pattern=re.compile(r"^/\S*$"), describe="expected a path.")
    flower.finish()
    if enabled and not host and (issuer or secret or auth):
        raise ConfigError(sub.key("host"), None, "TLS and authentication need a host name.")
    if (flower.has("host") or flower.has("path")) and not flower_enabled:
        raise ConfigError(sub.key("flower"), flower.data, "Flower is not enabled (airflow.flower.enabled).")
    sub.finish()
    return Ingress(
        enabled=enabled,
        host=host,
        path=path,
        class_name=class_name,
        controller_namespace=controller_ns,
        tls_issuer=issuer,
        tls_issuer_kind=issuer_kind,
        tls_secret=secret,
        auth=auth,
        annotations=annotations,
        flower_host=flower_host,
        flower_path=flower_path,
    )


def _network_policies(node: Node) -> NetworkPolicies:
    sub = node.mapping("networkPolicies")
    label = lambda key, value: dns_label(key, value)  # noqa: E731
    network = NetworkPolicies(
        enabled=sub.boolean("enabled", True),
        metrics_namespaces=tuple(sub.string_list("metricsNamespaces", [], item=label)),
        ui_namespaces=tuple(sub.string_list("uiNamespaces", [], item=label)),
    )
    sub.finish()
    return network


@dataclass(frozen=True)
class StackSecrets:
    """Sensitive inputs, from `pulumi config set --secret`.

    Plain text while the stack config is parsed (so contents are checked at the edge);
    a component user may pass Outputs instead, which count as present.
    """

    git_token: Any = None
    git_ssh_key: Any = None
    database_url: Any = None


ALLOWED_DB_SCHEMES = ("postgresql", "postgresql+psycopg2", "postgres")


@dataclass(frozen=True)
class DatabaseUrl:
    """An external Postgres URL split into what PgBouncer and Airflow need."""

    user: str
    password: str
    host: str
    port: int
    database: str
    sslmode: str

    def where(self) -> str:
        """Which database this is (`host:port/database`), without user, password or sslmode."""
        return f"{self.host}:{self.port}/{self.database}"

    def sqlalchemy(self) -> str:
        return pg_url(self.user, self.password, f"{self.host}:{self.port}", self.database, self.sslmode)

    def asyncpg(self) -> str:
        return asyncpg_url(self.user, self.password, f"{self.host}:{self.port}", self.database, self.sslmode)


def pg_url(user: str, password: str, hostport: str, database: str, sslmode: str) -> str:
    q = urllib.parse.quote
    return f"postgresql://{q(user, safe='')}:{q(password, safe='')}@{hostport}/{database}?sslmode={sslmode}"


def asyncpg_url(user: str, password: str, hostport: str, database: str, sslmode: str) -> str:
    """The same database for Airflow's async engine (SQLAlchemy's asyncpg dialect).

    Airflow derives its async URL by swapping the driver of the sync one and keeps the query, and
    SQLAlchemy hands every query parameter to `asyncpg.connect()` as a keyword: `sslmode` is
    libpq's name, which asyncpg refuses (TypeError: connect() got an unexpected keyword argument
    'sslmode'). asyncpg's own name is `ssl`, and it takes libpq's six modes as they are. The sync URL
    carries no other parameter (parse_database_url keeps only sslmode), so nothing else needs
    translating.
    """
    q = urllib.parse.quote
    return f"postgresql+asyncpg://{q(user, safe='')}:{q(password, safe='')}@{hostport}/{database}?ssl={sslmode}"


# libpq's modes that verify the server's certificate, against `airflow.database.caCertificate`.
VERIFYING_SSLMODES = ("verify-ca", "verify-full")
SSLMODES = ("disable", "allow", "prefer", "require", *VERIFYING_SSLMODES)
CA_KEY = "airflow.database.caCertificate"


def parse_database_url(value: str, key: str = "databaseUrl", *, has_ca: bool = False) -> DatabaseUrl:
    """Split and check an external database URL. The message never shows the password. `has_ca`:
    `airflow.database.caCertificate` is set (the sslmodes that verify need it, and it needs them)."""
    try:
        url = urllib.parse.urlsplit(value)
        port = url.port or 5432
    except ValueError:
        # The parser's own message would quote part of the password (a raw '/' or '#' ends the
        # user information early, and the rest is read as the port).
        raise ConfigError(
            key,
            "[secret]",
            "not a URL that survives parsing: its port is not a number, which happens when the password holds "
            "a raw '/', '#', '?', '@' or ':'.",
            "percent-encode the password (urllib.parse.quote(password, safe='')): / -> %2F, # -> %23, ? -> %3F, "
            "@ -> %40, : -> %3A.",
        ) from None
    if url.scheme not in ALLOWED_DB_SCHEMES:
        raise ConfigError(
            key,
            f"[secret with scheme {url.scheme!r}]",
            f"allowed schemes: {', '.join(ALLOWED_DB_SCHEMES)} (Airflow's metadata database here is PostgreSQL).",
        )
    missing = [
        part
        for part, present in (
            ("user", url.username),
            ("password", url.password),
            ("host", url.hostname),
            ("database", url.path.strip("/")),
        )
        if not present
    ]
    if missing:
        raise ConfigError(
            key,
            "[secret]",
            f"the URL lacks: {', '.join(missing)}; expected postgresql://user:password@host:5432/database.",
        )
    query = urllib.parse.parse_qs(url.query)
    sslmode = query.get("sslmode", ["prefer"])[0]
    if sslmode not in SSLMODES:
        raise ConfigError(key, f"[secret with sslmode={sslmode!r}]", f"allowed sslmode: {', '.join(SSLMODES)}.")
    if sslmode in VERIFYING_SSLMODES and not has_ca:
        raise ConfigError(
            key,
            f"[secret with sslmode={sslmode!r}]",
            f"sslmode={sslmode} checks the server's certificate against the CA it chains to, and none is given: "
            "PgBouncer would fail every server connection (`TLS connect error: failed to load CA`) and libpq "
            "would look for ~/.postgresql/root.crt, which no pod has.",
            f"set {CA_KEY} to the PEM of the server's CA (your cloud's RDS / Cloud SQL / Azure bundle), or use "
            "sslmode=require (TLS, the certificate not checked).",
        )
    if has_ca and sslmode not in VERIFYING_SSLMODES:
        raise ConfigError(
            CA_KEY,
            "[a CA certificate]",
            f"a CA certificate is used only with sslmode=verify-ca or verify-full; databaseUrl has sslmode={sslmode}, "
            "which would not check the server against it.",
            f"put sslmode=verify-full in databaseUrl, or remove {CA_KEY}.",
        )
    return DatabaseUrl(
        user=urllib.parse.unquote(url.username or ""),
        password=urllib.parse.unquote(url.password or ""),
        host=url.hostname or "",
        port=port,
        database=url.path.strip("/"),
        sslmode=sslmode,
    )


# Chart values the typed keys own. Overriding one through extraValues would let the chart
# generate (and re-roll on upgrade) a secret, put a secret into the Helm values, or point the
# pods at Secrets that no longer match the executor and version they were made for.
OWNED_VALUES = (
    "executor",
    "airflowVersion",
    "fernetKey",
    "fernetKeySecretName",
    "webserverSecretKey",
    "webserverSecretKeySecretName",
    "apiSecretKey",
    "apiSecretKeySecretName",
    "jwtSecret",
    "jwtSecretName",
    "data.metadataSecretName",
    "data.metadataConnection",
    "data.brokerUrlSecretName",
    "data.brokerUrl",
    "redis.password",
    "redis.passwordSecretName",
    "pgbouncer.configSecretName",
    "pgbouncer.metricsExporterSidecar.statsSecretName",
    "flower.secretName",
    "postgresql.auth",
    "createUserJob.defaultUser",
    "enableBuiltInSecretEnvVars",
)


def _owned_env(key: str, extra: dict[str, Any]) -> None:
    """`env` entries of extraValues may not redefine the variables that point Airflow at its secret files."""
    owned = {f"{option}_CMD" for option in FILE_ONLY_ENV} | set(FILE_ONLY_ENV)
    for path in ENV_PATHS:
        node: Any = extra
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        for i, entry in enumerate(node if isinstance(node, list) else []):
            name = entry.get("name") if isinstance(entry, dict) else None
            if name in owned:
                raise ConfigError(
                    f"{key}.{path}[{i}].name",
                    name,
                    "AirflowRelease hands Airflow this secret as a file (AIRFLOW__..._CMD); an env entry would "
                    "replace it or put the secret in the Helm values.",
                    f"remove '{key}.{path}[{i}]'.",
                )


def _owned_values(key: str, extra: dict[str, Any]) -> None:
    for path in OWNED_VALUES:
        node: Any = extra
        for part in path.split("."):
            node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT:
            raise ConfigError(
                f"{key}.{path}",
                "[not shown]",
                "this chart value is owned by the typed keys (generated secrets, executor, version); "
                "an override could re-roll a secret or put one in the Helm values.",
                f"remove '{key}.{path}'; use the typed key (airflow.executor, airflow.version, airflow.fernetKey, "
                "airflow.database, ...) instead.",
            )


_ABSENT = object()


def parse_airflow(raw: Any, secrets: StackSecrets | None = None, *, key: str = "airflow") -> AirflowConfig:
    """Parse and validate the `airflow` config object. Raises ConfigError."""
    secrets = secrets or StackSecrets()
    node = Node(raw, key)
    namespace = dns_label(node.key("namespace"), node.string("namespace", "airflow"))
    release = dns_label(node.key("releaseName"), node.string("releaseName", "airflow"), max_len=MAX_RELEASE_NAME)
    create_namespace = node.boolean("createNamespace", True)

    chart = parse_chart_source(node, AIRFLOW_CHART)

    version = semver(node.key("version"), node.string("version", DEFAULT_AIRFLOW_VERSION))
    major, minor, _ = version_tuple(version)
    if not (major == 3 or (major == 2 and minor >= 11)):
        raise ConfigError(node.key("version"), version, "supported Airflow versions: 2.11.x and 3.x.")
    check_chart_supports(node.key("version"), version, chart)

    image_node = node.mapping("image")
    image = Image(
        repository=image_node.string("repository", DEFAULT_IMAGE_REPOSITORY),
        tag=image_node.string("tag", version),
        pull_policy=image_node.string("pullPolicy", "IfNotPresent", choices=("Always", "IfNotPresent", "Never")),
        digest=image_node.string(
            "digest",
            None,
            pattern=re.compile(r"^sha256:[0-9a-f]{64}$"),
            describe="expected an image digest: sha256: and 64 lower-case hex digits (`docker buildx imagetools "
            "inspect <image>:<tag>` shows it).",
        ),
    )
    image_node.finish()

    executor = _executor(node, major)
    dags = _dags(node, secrets, image, major)
    database = _database(node, secrets)

    scheduler, _ = _component(node, "scheduler", max_replicas=10)
    ui_key = "apiServer" if major >= 3 else "webserver"
    wrong_ui = "webserver" if major >= 3 else "apiServer"
    if node.has(wrong_ui):
        raise ConfigError(
            node.key(wrong_ui),
            node.data[wrong_ui],
            f"Airflow {version} has no {wrong_ui}; its UI is the {ui_key}.",
            f"rename '{node.key(wrong_ui)}' to '{node.key(ui_key)}'.",
        )
    api_server, _ = _component(node, ui_key, max_replicas=20)
    triggerer, _ = _component(node, "triggerer", enabled_default=True, min_replicas=0)
    dag_processor, _ = _component(node, "dagProcessor", enabled_default=major >= 3)
    if major >= 3 and not dag_processor.enabled:
        raise ConfigError(node.key("dagProcessor.enabled"), False, "Airflow 3 always runs a standalone DAG processor.")
    workers_c, workers_node = _component(node, "workers", min_replicas=0, max_replicas=200, extra=("concurrency",))
    concurrency = workers_node.integer("concurrency", 16, low=1, high=1024)
    workers_node.finish()
    workers = Workers(**{**workers_c.__dict__, "concurrency": concurrency})
    if workers.replicas == 0 and executor.startswith("Celery") and "," not in executor:
        raise ConfigError(
            node.key("workers.replicas"), 0, f"the {executor} needs at least one Celery worker to run tasks."
        )
    flower, _ = _component(node, "flower", enabled_default=False, scalable=False)
    if flower.enabled and not any(e.startswith("Celery") for e in executor.split(",")):
        raise ConfigError(
            node.key("flower.enabled"), True, f"Flower monitors Celery workers; the executor is {executor}."
        )
    statsd, _ = _component(node, "statsd", enabled_default=True, scalable=False)

    redis_node = node.mapping("redis")
    redis = Redis(
        persistence_size=redis_node.quantity("persistenceSize", "1Gi", what="a storage size"),
        storage_class=redis_node.string("storageClass", None),
        resources=parse_resources(redis_node, "resources"),
    )
    if redis.storage_class is not None:
        dns_label(redis_node.key("storageClass"), redis.storage_class, max_len=253)
    redis_node.finish()

    admin_node = node.mapping("admin")
    admin = Admin(
        enabled=admin_node.boolean("enabled", True),
        username=admin_node.string(
            "username",
            "admin",
            pattern=re.compile(r"^[A-Za-z0-9_.@-]{1,64}$"),
            describe="expected 1-64 of A-Z a-z 0-9 _ . @ -.",
        ),
        email=admin_node.string(
            "email",
            "admin@example.com",
            pattern=re.compile(r"^[^@\s]+@[^@\s]+$"),
            describe="expected an e-mail address.",
        ),
        first_name=admin_node.string("firstName", "Airflow"),
        last_name=admin_node.string("lastName", "Admin"),
    )
    admin_node.finish()

    task_pods = _task_pods(node)
    ingress = _ingress(node, flower_enabled=flower.enabled)
    network = _network_policies(node)
    extra_values = node.plain_object("extraValues")
    _owned_values(node.key("extraValues"), extra_values)
    _owned_env(node.key("extraValues"), extra_values)
    fernet, pools, spread = parse_fernet(node), parse_pools(node), parse_spread(node)
    read_only_root = node.boolean("readOnlyRootFilesystem", True)
    node.finish()

    if isinstance(secrets.database_url, str):
        parse_database_url(secrets.database_url, has_ca=database.ca_certificate is not None)
    if isinstance(secrets.git_ssh_key, str) and "PRIVATE KEY" not in secrets.git_ssh_key:
        raise ConfigError(
            "gitSshKey", "[secret]", "expected a PEM/OpenSSH private key (-----BEGIN ... PRIVATE KEY-----)."
        )

    return AirflowConfig(
        namespace=namespace,
        create_namespace=create_namespace,
        release_name=release,
        chart=chart,
        version=version,
        image=image,
        executor=executor,
        dags=dags,
        database=database,
        scheduler=scheduler,
        api_server=api_server,
        triggerer=triggerer,
        dag_processor=dag_processor,
        workers=workers,
        flower=flower,
        statsd=statsd,
        redis=redis,
        admin=admin,
        task_pods=task_pods,
        ingress=ingress,
        network_policies=network,
        extra_values=extra_values,
        fernet=fernet,
        pools=pools,
        spread=spread,
        read_only_root=read_only_root,
    )
