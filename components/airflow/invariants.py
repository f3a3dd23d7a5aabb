# Longer than 600 lines: one function per guarantee on the final chart values, each named by an error
# message and a test, checked together by check_airflow_values: one catalogue, read top to bottom.
"""Guarantees checked on what is deployed, whatever path put it there.

The typed keys validate what they read, and `extraValues` (Airflow, Spark, monitoring),
`taskPods`, LogStorage and Monitoring all add chart values next to them. A list of
forbidden `extraValues` keys only knows the paths it names; its twin one level over walks
around it. These checks therefore run on the FINAL merged values of every Helm Release,
the same values the Release is declared with, and say which config key put the bad value
there:

- no secret value at any path (secret-shaped keys, env entries, `extraEnv` text, private
  keys, Fernet-key-shaped strings, credentials inside URLs);
- the values AirflowRelease owns (Secret names, the admin Job, the built-in secret
  variables it replaces with files, hooks off, NetworkPolicies, ingress authentication)
  are exactly what it rendered;
- no container as uid 0, privileged, with privilege escalation, host namespaces, added
  dangerous capabilities, or a hostPath of `/` or a system folder;
- nothing the Airflow chart passes through `tpl` carries `{{` (every string is);
- what the cluster would reject at deploy time (image references, `latest`, memory and
  CPU amounts, disruption budgets that block every drain, mounts over the secrets folder).

Plain functions, no Pulumi: AirflowRelease, SparkOperator and Monitoring call them before
they declare their Release, the stack edge (`components.platform.config.parse_stack`) before any
resource, and the offline preview on the rendered objects (`check_rendered`).
"""

from __future__ import annotations

import base64
import binascii
import math
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import yaml

from components.core.credentials import redact_url as redact_url, text_credential, url_credentials as url_credentials
from components.core.names import host_name
from components.core.reader import QUANTITY, ConfigError

Path = tuple[str | int, ...]

HIDDEN = "[not shown]"

# Keys whose string value is a credential. Names of Secrets (`...SecretName`, `existingSecret`,
# `credentialsSecret`, `secretKeyRef`, ...) are references, never values.
_SECRET_KEY = re.compile(
    r"(?i)(^pass$|passw|pwd$|secret|token|fernet|sql_?alchemy_?conn|private_?key|api_?key|access_?key|credential"
    r"|^auth$|connection_?string|^conn$|broker_?url|result_?backend|^dsn$|jwt_?secret|jwt_?private)"
)
_REFERENCE_KEY = re.compile(
    r"(?i)(name|names|ref|refs|from|file|path|mode|enabled|items|type|kind|mount|userkey|passwordkey|secretkey"
    r"|keyref|volume|policy|selector|annotations|labels)$"
)
# Keys that are references although they look like values.
_REFERENCE_KEYS = frozenset(
    {
        "existingSecret",
        "credentialsSecret",
        "sshKeySecret",
        "passwordSecretName",
        "secretName",
        "knownHosts",
        "secretKeyRef",
        "secretRef",
        "automountServiceAccountToken",
    }
)
# Keys whose value is a credential whatever it looks like.
_ALWAYS_SECRET_KEYS = frozenset(
    {
        "password",
        "pass",
        "fernetKey",
        "webserverSecretKey",
        "apiSecretKey",
        "jwtSecret",
        "postgresPassword",
        "adminPassword",
        "sql_alchemy_conn",
        "brokerUrl",
        "secret_key",
        "fernet_key",
        "jwt_secret",
        "token",
    }
)
# Subtrees whose keys are names, not settings (annotations, labels, selectors).
_METADATA = frozenset(
    {"annotations", "podAnnotations", "airflowPodAnnotations", "labels", "podLabels", "nodeSelector", "matchLabels"}
)
# A credential assigned inside a text value (a config file, JSON kwargs, a script): `password = 'x'`.
_ASSIGNED_SECRET = re.compile(
    r"(?i)[\"']?\b(password|passwd|client_secret|secret_key|api_key|apikey|access_token|auth_token|token)\b[\"']?"
    r"\s*[:=]\s*[\"']([^\"'\s$]{3,})[\"']"
)
_FERNET_SHAPED = re.compile(r"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{43}=(?![A-Za-z0-9_\-=])")

# Host folders a pod must never mount: the node's own system.
SYSTEM_FOLDERS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var",
    "/home",
    "/opt",
    "/snap",
)
_DANGEROUS_CAPABILITIES = frozenset(
    {"ALL", "SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYS_MODULE", "DAC_READ_SEARCH", "NET_RAW", "SYS_RAWIO", "BPF"}
)
# Container runtimes refuse memory limits below 6 MiB (runc's minimum); no Airflow process
# starts in less than this either.
MIN_MEMORY = Decimal(6 * 2**20)
# No node offers more than this to one pod: a request above it is never scheduled.
MAX_CPU = Decimal(1000)
MAX_MEMORY = Decimal(64 * 2**40)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_REPOSITORY = re.compile(
    r"^(?:(?:[a-z0-9]([a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_VERSION_IN_TAG = re.compile(r"(?<![0-9.])([0-9]+)\.([0-9]+)\.([0-9]+)")


# ---------------------------------------------------------------------------
# Paths and where a value came from


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _walk(value: Any, path: Path, out: list[tuple[Path, Any]]) -> None:
    out.append((path, value))
    if isinstance(value, Mapping):
        for key, item in value.items():
            _walk(item, (*path, str(key)), out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, (*path, i), out)


# Trees walked during one check (`walked()`): each guarantee walks the same values again.
_WALKED: dict[int, tuple[Any, list[tuple[Path, Any]]]] | None = None


def walk(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every node of a values tree, parents before children."""
    if _WALKED is not None and not path:
        seen = _WALKED.get(id(value))
        if seen is None or seen[0] is not value:
            seen = _WALKED[id(value)] = (value, [])
            _walk(value, (), seen[1])
        return iter(seen[1])
    out: list[tuple[Path, Any]] = []
    _walk(value, path, out)
    return iter(out)


@contextmanager
def walked() -> Iterator[None]:
    """Within it, a values tree is walked once, however many guarantees look at it (the trees
    must not change meanwhile: checks only read them)."""
    global _WALKED
    outer = _WALKED
    _WALKED = {} if outer is None else outer
    try:
        yield
    finally:
        _WALKED = outer


_ABSENT: Any = object()


def get(values: Any, path: Path) -> Any:
    node = values
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return _ABSENT
            node = node[part]
        else:
            if not isinstance(node, Mapping) or part not in node:
                return _ABSENT
            node = node[part]
    return node


@dataclass(frozen=True)
class Source:
    """Chart values a config key contributed: `key` is its config path (e.g. `airflow.extraValues`)."""

    key: str
    values: Mapping[str, Any]


def _locate(source: Any, merged: Any, path: Path) -> Path | None:
    """`path` of the merged values inside `source`, following list items by equality."""
    node, current = source, merged
    out: list[str | int] = []
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or not isinstance(current, list) or part >= len(current):
                return None
            wanted = current[part]
            index = next((i for i, item in enumerate(node) if item == wanted), None)
            if index is None:
                if part < len(node) and isinstance(node[part], dict) and isinstance(wanted, dict):
                    index = part
                else:
                    return None
            node, current = node[index], current[part]
            out.append(index)
        else:
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
            current = current[part] if isinstance(current, Mapping) else None
            out.append(part)
    return tuple(out)


class Origins:
    """Name the config key behind a path of merged values."""

    def __init__(self, merged: Mapping[str, Any], sources: list[Source], typed: Callable[[Path], str]) -> None:
        self.merged = merged
        self.sources = sources
        self.typed = typed

    def key(self, path: Path) -> str:
        for source in self.sources:
            found = _locate(source.values, self.merged, path)
            if found is not None:
                return f"{source.key}.{dotted(found)}" if found else source.key
        return self.typed(path)

    def from_user(self, path: Path) -> bool:
        return any(_locate(s.values, self.merged, path) is not None for s in self.sources)


def _airflow_typed_key(path: Path) -> str:
    """The typed key that renders an Airflow chart value (best effort, for messages)."""
    text = dotted(path)
    for prefix, key in (
        ("workers.kubernetes.", "airflow.taskPods."),
        ("workers.celery.", "airflow.workers."),
        ("workers.", "airflow.workers."),
        ("images.airflow.", "airflow.image."),
        ("defaultAirflowRepository", "airflow.image.repository"),
        ("defaultAirflowTag", "airflow.image.tag"),
        ("postgresql.primary.persistence.", "airflow.database."),
        ("ingress.apiServer.annotations", "airflow.ingress.annotations"),
        ("ingress.web.annotations", "airflow.ingress.annotations"),
        ("ingress.", "airflow.ingress."),
        ("dags.gitSync.", "airflow.dags.gitSync."),
        ("networkPolicies.", "airflow.networkPolicies."),
    ):
        if text.startswith(prefix):
            return key + text[len(prefix) :] if key.endswith(".") else key
    return f"airflow.{text} (a chart value AirflowRelease renders)"


# ---------------------------------------------------------------------------
# Checks that apply to the values of any Release


def _is_reference_key(key: str) -> bool:
    return key in _REFERENCE_KEYS or (
        key not in _ALWAYS_SECRET_KEYS and bool(_REFERENCE_KEY.search(key)) and not key.lower().endswith("password")
    )


def secret_shaped(key: str) -> bool:
    """A key whose string value would be a credential (`password`, `pass`, `fernetKey`, `token`, ...)."""
    if key in _ALWAYS_SECRET_KEYS:
        return True
    return bool(_SECRET_KEY.search(key)) and not _is_reference_key(key)


def fernet_shaped(text: str) -> bool:
    for match in _FERNET_SHAPED.finditer(text):
        try:
            if len(base64.urlsafe_b64decode(match.group(0))) == 32:
                return True
        except (ValueError, binascii.Error):
            continue
    return False


def system_folder(path: str) -> bool:
    """`/`, or a node's system folder or anything inside one (`/etc`, `/var/run/docker.sock`, ...)."""
    norm = "/" + posixpath.normpath("/" + path.strip()).lstrip("/")
    if norm in ("/", "/."):
        return True
    return any(norm == folder or norm.startswith(folder + "/") for folder in SYSTEM_FOLDERS)


def quantity(text: Any) -> Decimal | None:
    """A Kubernetes quantity's value, or None when it is not one."""
    from components.airflow.config import quantity_value

    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        return Decimal(str(text))
    if isinstance(text, str) and QUANTITY.match(text):
        return quantity_value(text)
    return None


def _env_entries(path: Path, value: Any) -> Iterator[tuple[Path, dict[str, Any]]]:
    if path and path[-1] in ("env", "extraEnv", "envs") and isinstance(value, list):
        for i, entry in enumerate(value):
            if isinstance(entry, dict):
                yield (*path, i), entry


def _extra_env_text(path: Path, value: Any) -> list[dict[str, Any]] | None:
    """The Airflow chart's `extraEnv` / `extraEnvFrom` strings are YAML lists (rendered with tpl)."""
    if path and path[-1] in ("extraEnv", "extraEnvFrom") and isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return []
        return [e for e in parsed if isinstance(e, dict)] if isinstance(parsed, list) else []
    return None


def secrets_in(values: Mapping[str, Any], origins: Origins, *, owned_env: frozenset[str] = frozenset()) -> None:
    """No credential at any path: secret-shaped keys, env entries, `extraEnv` text, URLs, keys."""
    for path, value in walk(values):
        key = str(path[-1]) if path and isinstance(path[-1], str) else ""
        if isinstance(value, str) and value.strip():
            if secret_shaped(key) and not _METADATA.intersection(p for p in path if isinstance(p, str)):
                legacy = "defaultUser" in path
                raise ConfigError(
                    origins.key(path),
                    HIDDEN,
                    "a credential in the Helm values: Helm stores values in clear in the release Secret and "
                    "`helm get values` shows them to anyone who can read it"
                    + (
                        "; the chart's defaultUser password is the legacy admin/admin path (AirflowRelease creates "
                        "the admin from a generated Secret)."
                        if legacy
                        else "."
                    ),
                    f"remove '{origins.key(path)}'; AirflowRelease generates and mounts its secrets (see the "
                    "README's secret keys: databaseUrl, gitToken, logsConnection, connections, teamSecrets).",
                )
            found = text_credential(value, urls=False)
            if found is not None:
                raise ConfigError(
                    origins.key(path),
                    HIDDEN,
                    f"{found.detail} in the Helm values (Helm stores them in clear in the release Secret).",
                    f"put it in a secret key instead: {found.shape.belongs}.",
                )
            kind = url_credentials(value)
            if kind:
                raise ConfigError(
                    origins.key(path),
                    redact_url(value)[:120],
                    f"a URL carrying {kind} in the Helm values.",
                    "remove the credential from the URL; connections go in the secret key 'connections', the "
                    "database in 'databaseUrl', git credentials in 'gitToken'/'gitSshKey'.",
                )
            assigned = _ASSIGNED_SECRET.search(value)
            if assigned:
                raise ConfigError(
                    origins.key(path),
                    HIDDEN,
                    f"this text assigns a credential ('{assigned.group(1)}' = ...) in the Helm values (configuration "
                    "files, backend_kwargs and scripts in values are stored in clear with the release).",
                    "read it from a file or Secret instead (Airflow's *_CMD or *_SECRET options, a secrets backend "
                    "authenticating by its workload identity).",
                )
            if fernet_shaped(value):
                raise ConfigError(
                    origins.key(path),
                    HIDDEN,
                    "a Fernet-key-shaped string (44 characters of URL-safe base64) in the Helm values.",
                    "AirflowRelease generates the Fernet key; rotate it with airflow.fernetKey.generation, import "
                    "old keys with the secret key 'previousFernetKeys'.",
                )
        if key in ("extraSecrets", "extraConfigMaps") and isinstance(value, Mapping):
            for name, spec in value.items():
                data = spec.get("data") or spec.get("stringData") if isinstance(spec, Mapping) else None
                if key == "extraSecrets" and data:
                    raise ConfigError(
                        origins.key((*path, str(name))),
                        HIDDEN,
                        "a Secret's data written into the Helm values (the chart's extraSecrets): Helm stores it in "
                        "clear in the release.",
                        "put the values in the secret config key 'teamSecrets' or 'connections', or create the Secret "
                        "outside the chart and reference it by name.",
                    )
        for entry_path, entry in _env_entries(path, value):
            _env_entry(entry_path, entry, origins, owned_env)
        parsed = _extra_env_text(path, value)
        for i, entry in enumerate(parsed or []):
            _env_entry((*path, i), entry, origins, owned_env, text=True)


def _env_entry(
    path: Path, entry: Mapping[str, Any], origins: Origins, owned_env: frozenset[str], *, text: bool = False
) -> None:
    name = entry.get("name")
    if not isinstance(name, str):
        return
    key = origins.key(path[:-1] if text else path) + (f" (entry {name!r})" if text else ".name")
    literal = entry.get("value")
    reads_file = name.endswith("_CMD") and isinstance(literal, str) and re.fullmatch(r"cat /\S+", literal.strip())
    if name in owned_env and not reads_file:
        raise ConfigError(key, name, "this variable is AirflowRelease's.", "remove the entry.")
    if (
        isinstance(literal, str)
        and literal.strip()
        and not reads_file
        and secret_shaped(name.lower().replace("__", "_"))
    ):
        raise ConfigError(
            key,
            name,
            "an environment variable named like a credential with its value written into the Helm values.",
            "take it from a Secret (valueFrom.secretKeyRef, or a team's secret in teamSecrets), or put the "
            "connection in the secret key 'connections'.",
        )


_OWNED_ENV_PREFIXES = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
    "AIRFLOW__CORE__SQL_ALCHEMY_CONN",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__WEBSERVER__SECRET_KEY",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW_CONN_AIRFLOW_DB",
    "AIRFLOW__SECRETS__BACKEND",
)


def owned_env_name(name: str) -> bool:
    """Our secret variables, their `_CMD` and `_SECRET` forms, and the secrets backend."""
    return any(name == p or name in (f"{p}_CMD", f"{p}_SECRET") for p in _OWNED_ENV_PREFIXES)


def containers_safe(values: Mapping[str, Any], origins: Origins, *, uid_keys: tuple[str, ...] = ("uid",)) -> None:
    """No root, privileged or escalating container, no host namespaces, no system hostPath."""
    for path, value in walk(values):
        if not path or not isinstance(path[-1], str):
            continue
        key = path[-1]
        if key in ("runAsUser", *uid_keys) and value == 0 and not isinstance(value, bool):
            raise ConfigError(
                origins.key(path),
                0,
                "uid 0 is root: a process escaping its container would be root on the node.",
                "use a non-root uid (Airflow's image: 50000) or remove the override.",
            )
        if key in ("privileged", "allowPrivilegeEscalation", "hostNetwork", "hostPID", "hostIPC") and value is True:
            raise ConfigError(
                origins.key(path),
                True,
                f"{key} gives a container the node's privileges; no Airflow, Spark or monitoring pod needs it.",
                f"remove '{origins.key(path)}' or set it to false.",
            )
        if key == "runAsNonRoot" and value is False and origins.from_user(path):
            raise ConfigError(
                origins.key(path), False, "containers must run as non-root.", f"remove '{origins.key(path)}'."
            )
        if key == "add" and len(path) >= 2 and path[-2] == "capabilities" and isinstance(value, list):
            bad = [c for c in value if isinstance(c, str) and c.upper().removeprefix("CAP_") in _DANGEROUS_CAPABILITIES]
            if bad:
                raise ConfigError(
                    origins.key(path),
                    value,
                    f"capabilities {', '.join(bad)} let a container act on the node.",
                    "drop them; the containers run with every capability dropped.",
                )
        if key == "hostPath" and isinstance(value, Mapping):
            folder = value.get("path")
            if isinstance(folder, str) and system_folder(folder):
                raise ConfigError(
                    origins.key((*path, "path")),
                    folder,
                    "a hostPath volume of '/' or of a system folder ("
                    + ", ".join(SYSTEM_FOLDERS[:8])
                    + ", ...) hands the container the node.",
                    "mount a folder of its own (such as /data/airflow-dags), or use a PersistentVolumeClaim.",
                )


def images_valid(values: Mapping[str, Any], origins: Origins, *, airflow_major: int | None = None) -> None:
    """Image references the kubelet can pull: a repository without a tag or spaces, a tag that is not `latest`."""
    for path, value in walk(values):
        if not isinstance(value, Mapping):
            continue
        image_like = any(p in ("images", "image") for p in path) or not path
        if not image_like:
            continue
        pairs = (("defaultAirflowRepository", "defaultAirflowTag"),) if not path else (("repository", "tag"),)
        for repo_key, tag_key in pairs:
            repo, tag = value.get(repo_key), value.get(tag_key)
            if isinstance(repo, str):
                image_repository(origins.key((*path, repo_key)), repo)
            if isinstance(tag, str):
                airflow_image = not path or "airflow" in path or "pod_template" in path
                stock = isinstance(repo, str) and repo.endswith("apache/airflow")
                if airflow_image and not isinstance(repo, str):
                    parent = values.get("defaultAirflowRepository")
                    stock = isinstance(parent, str) and parent.endswith("apache/airflow")
                major = airflow_major if airflow_image and (stock or "airflow" in tag) else None
                image_tag(origins.key((*path, tag_key)), tag, airflow_major=major)


def image_repository(key: str, value: str) -> None:
    if value != value.strip() or any(c.isspace() for c in value):
        raise ConfigError(key, value, "an image repository has no spaces.", "remove the whitespace.")
    if "@" in value:
        raise ConfigError(
            key, value, "a repository, not a reference: the digest goes in airflow.image.digest.", "drop '@...'."
        )
    last = value.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = value.rpartition(":")
        raise ConfigError(
            key,
            value,
            "a repository without a tag: the kubelet would pull '<repository>:<tag>:<tag>'.",
            f"set the repository to {repo!r} and the tag ({tag!r}) in the matching tag key (airflow.image.tag).",
        )
    if not _REPOSITORY.match(value):
        raise ConfigError(
            key,
            value,
            "expected an image repository such as apache/airflow or registry.example.com:5000/team/airflow "
            "(lowercase letters, digits, '.', '_', '-', separated by '/').",
        )


def image_tag(key: str, value: str, *, airflow_major: int | None = None) -> None:
    value_tag, _, digest = value.partition("@")
    if digest and re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        value = value_tag  # `<tag>@<digest>`: how the chart's pod template is pinned
    if not _TAG.match(value):
        raise ConfigError(key, value, "an image tag is 1-128 letters, digits, '_', '.' or '-' (no ':', '@' or spaces).")
    if value.lower() == "latest":
        raise ConfigError(
            key,
            value,
            "'latest' moves: every pod start may run another image (and another Airflow than airflow.version).",
            "pin a tag such as 3.2.0 (and airflow.image.digest for an immutable image).",
        )
    if airflow_major is not None:
        found = _VERSION_IN_TAG.search(value)
        if found and int(found.group(1)) != airflow_major and int(found.group(1)) in (1, 2, 3, 4):
            raise ConfigError(
                key,
                value,
                f"this tag is Airflow {found.group(1)}.x, but airflow.version is {airflow_major}.x: the chart renders "
                f"Airflow {airflow_major}'s commands and configuration, which the image would not understand.",
                "make airflow.version and the image tag the same Airflow version.",
            )


def resources_valid(values: Mapping[str, Any], origins: Origins) -> None:
    """CPU and memory amounts a container can run with."""
    for path, value in walk(values):
        if len(path) < 3 or path[-2] not in ("requests", "limits") or path[-1] not in ("cpu", "memory"):
            continue
        amount_valid(origins.key(path), str(path[-1]), value)


def amount_valid(key: str, resource: str, value: Any, *, one_pod: bool = True) -> None:
    """A container's CPU or memory amount it can run with: memory of 6Mi or more, CPU of 1m or more; for
    `one_pod` (not a namespace's quota) no more than a node can offer."""
    amount = quantity(value)
    if amount is None:
        return
    if resource == "memory" and amount < MIN_MEMORY:
        raise ConfigError(
            key,
            value,
            "memory below 6Mi: a bare number is bytes, and container runtimes refuse limits under 6 MiB "
            "(no Airflow process starts in that either).",
            "use a unit: 512Mi, 2Gi.",
        )
    if resource == "cpu" and amount < Decimal("0.001"):
        raise ConfigError(key, value, "CPU of at least 1m (0.001 of a core).", "use a value such as 100m or 1.")
    if one_pod and resource == "cpu" and amount > MAX_CPU:
        raise ConfigError(
            key,
            value,
            f"CPU of at most {MAX_CPU} cores: no node has more, so the pod would never be scheduled (a bare number "
            "is cores: 500 is five hundred, 500m half of one).",
            "use a value such as 500m or 2.",
        )
    if one_pod and resource == "memory" and amount > MAX_MEMORY:
        raise ConfigError(
            key,
            value,
            "memory of at most 64Ti: no node has more, so the pod would never be scheduled.",
            "use a value such as 512Mi or 4Gi.",
        )


def budgets_drain(values: Mapping[str, Any], origins: Origins) -> None:
    """No PodDisruptionBudget that lets no pod be evicted (every node drain would block)."""
    for path, value in walk(values):
        if not path or path[-1] != "podDisruptionBudget" or not isinstance(value, Mapping):
            continue
        if value.get("enabled") is not True:
            continue
        parent = get(values, path[:-1])
        replicas = parent.get("replicas", 1) if isinstance(parent, Mapping) else 1
        config = value.get("config", value)
        if not isinstance(config, Mapping) or not isinstance(replicas, int):
            continue
        for field in ("minAvailable", "maxUnavailable"):
            if field in config and config[field] is not None:
                budget_drains(origins.key((*path, "config", field)), field, config[field], replicas)


def budget_drains(key: str, field: str, value: Any, replicas: int) -> None:
    """Refuse a budget that allows no eviction of `replicas` pods (Kubernetes rounds percentages up)."""
    if replicas < 1:
        return
    if isinstance(value, str) and value.endswith("%"):
        try:
            percent = Decimal(value[:-1])
        except ArithmeticError:
            return
        pods = math.ceil(percent * replicas / 100)
    elif isinstance(value, int) and not isinstance(value, bool):
        pods = value
    else:
        return
    blocked = pods >= replicas if field == "minAvailable" else pods <= 0
    if blocked:
        raise ConfigError(
            key,
            value,
            f"with {replicas} replica(s) this budget lets no pod be evicted ({field} {value} = {pods} pod(s); "
            "Kubernetes rounds percentages up), so every node drain and cluster upgrade would block.",
            "use maxUnavailable: 1, or raise the replicas.",
        )


def host_valid(key: str, host: str) -> None:
    """A DNS name the API server accepts in an Ingress, in ASCII (components/core/names.py)."""
    if host:
        host_name(key, host, wildcard=True)


def no_templates(values: Mapping[str, Any], origins: Origins) -> None:
    """The Airflow chart renders nearly every string of its values through `tpl`: `{{` in one would run
    as a template inside the chart (reading `.Values`, other Secrets' names, or failing the install)."""
    for path, value in walk(values):
        if isinstance(value, str) and "{{" in value:
            raise ConfigError(
                origins.key(path),
                value if len(value) < 80 else value[:77] + "...",
                "no '{{' in chart values: the Airflow chart passes this string through Helm's `tpl`, so it "
                "would be executed as a template.",
                "write the literal value; a `{{ ds }}`-style Jinja template belongs in a DAG, not in chart values.",
            )


# ---------------------------------------------------------------------------
# The Airflow Release


# Chart values AirflowRelease renders that must reach the Release unchanged.
OWNED_PATHS: tuple[Path, ...] = (
    ("executor",),
    ("airflowVersion",),
    ("fernetKey",),
    ("fernetKeySecretName",),
    ("webserverSecretKey",),
    ("webserverSecretKeySecretName",),
    ("apiSecretKey",),
    ("apiSecretKeySecretName",),
    ("jwtSecret",),
    ("jwtSecretName",),
    ("data",),
    ("redis", "password"),
    ("redis", "passwordSecretName"),
    ("pgbouncer", "configSecretName"),
    ("pgbouncer", "metricsExporterSidecar", "statsSecretName"),
    ("postgresql", "auth"),
    ("createUserJob", "defaultUser"),
    ("createUserJob", "args"),
    ("createUserJob", "command"),
    ("createUserJob", "useHelmHooks"),
    ("migrateDatabaseJob", "useHelmHooks"),
    ("migrateDatabaseJob", "enabled"),
    ("migrateDatabaseJob", "args"),
    ("migrateDatabaseJob", "command"),
    ("webserver", "defaultUser"),
    ("enableBuiltInSecretEnvVars",),
    ("flower", "password"),
    ("elasticsearch", "connection"),
    ("opensearch", "connection"),
    ("dags", "gitSync", "credentialsSecret"),
    ("dags", "gitSync", "sshKeySecret"),
    ("dags", "gitSync", "knownHosts"),
    ("dags", "gitSync", "repo"),
    ("config", "core", "fernet_key"),
    ("config", "database", "sql_alchemy_conn"),
    ("config", "database", "sql_alchemy_conn_async"),
    ("config", "core", "sql_alchemy_conn"),
    ("config", "celery", "broker_url"),
    ("config", "celery", "result_backend"),
    ("config", "api", "secret_key"),
    ("config", "webserver", "secret_key"),
    ("config", "api_auth", "jwt_secret"),
)
_HOOK_KEYS = ("useHelmHooks",)
OWNED_ENV = (
    "AirflowRelease hands Airflow this secret as a file (AIRFLOW__..._CMD pointing into /opt/airflow/secrets); "
    "an env entry of the same name in any container or task pod would replace it or put the secret in the Helm "
    "values."
)
_AUTH_ANNOTATIONS = ("auth-url", "auth-signin", "auth-response-headers")
_SNIPPET = re.compile(r"(-snippet|enable-global-auth|auth-type|satisfy)$")


def _owned(values: Mapping[str, Any], ours: Mapping[str, Any], origins: Origins) -> None:
    for path in OWNED_PATHS:
        mine, theirs = get(ours, path), get(values, path)
        if mine == theirs:
            continue
        # Where exactly they differ, for the message: a secret-shaped leaf first, else the first leaf.
        where = path
        leaves = [
            sub for sub, item in walk(theirs) if sub and not isinstance(item, Mapping | list) and get(mine, sub) != item
        ]
        if leaves:
            pick = next((sub for sub in leaves if isinstance(sub[-1], str) and secret_shaped(sub[-1])), leaves[0])
            where = (*path, *pick)
        shown = HIDDEN
        if path == ("migrateDatabaseJob", "enabled"):
            raise ConfigError(
                origins.key(where),
                theirs,
                "AirflowRelease runs the schema migration itself, as a Job named after its pod template "
                "(<release>-migrate-<hash>): kept once finished, replaced by the next image's. The chart's Job "
                "has one name on every upgrade, and a Job cannot change (apache/airflow#27561).",
                f"remove '{origins.key(where)}'.",
            )
        if path[-1] in _HOOK_KEYS:
            raise ConfigError(
                origins.key(where),
                theirs,
                "Helm hooks stay off: helm.v3.Release waits for the release to be ready, and a hook Job that waits "
                "for the database migration deadlocks it (apache/airflow#11979).",
                f"remove '{origins.key(where)}'.",
            )
        raise ConfigError(
            origins.key(where),
            shown,
            "this chart value is owned by AirflowRelease (a Secret it generates, the admin Job that reads the "
            "password from a file, the executor and version, the secrets backend): an override could re-roll a "
            "secret, put one in the Helm values, or run a command with a password in its arguments.",
            f"remove '{origins.key(where)}'; use the typed key (airflow.executor, airflow.version, airflow.admin, "
            "airflow.fernetKey, airflow.database, the secret config keys) instead.",
        )


def _ingress_auth(values: Mapping[str, Any], ours: Mapping[str, Any], origins: Origins) -> None:
    ingress = get(ours, ("ingress",))
    if not isinstance(ingress, Mapping):
        return
    for name, spec in ingress.items():
        notes = spec.get("annotations") if isinstance(spec, Mapping) else None
        if not isinstance(notes, Mapping):
            continue
        configured = {k: v for k, v in notes.items() if k.rsplit("/", 1)[-1] in _AUTH_ANNOTATIONS}
        if not configured:
            continue
        final = get(values, ("ingress", name, "annotations"))
        final = final if isinstance(final, Mapping) else {}
        for k, v in configured.items():
            if final.get(k) != v:
                path: Path = ("ingress", name, "annotations", k)
                raise ConfigError(
                    origins.key(path) if origins.from_user(path) else origins.key(("ingress", name, "annotations")),
                    final.get(k, "<removed>"),
                    f"airflow.ingress.auth is configured, so '{k}' stays {v!r}: emptying or replacing it would "
                    "switch authentication off for the UI.",
                    "change airflow.ingress.auth instead, or remove the override.",
                )
        enabled = get(values, ("ingress", name, "enabled"))
        if enabled is False and get(ours, ("ingress", name, "enabled")) is True:
            continue
        for k, v in final.items():
            if _SNIPPET.search(k.rsplit("/", 1)[-1]):
                path = ("ingress", name, "annotations", k)
                raise ConfigError(
                    origins.key(path),
                    v,
                    "with authentication configured, no annotation may change how NGINX authenticates "
                    "(snippets, auth-type, satisfy, enable-global-auth).",
                    f"remove '{origins.key(path)}'.",
                )


def _network_policies(
    values: Mapping[str, Any], ours: Mapping[str, Any], origins: Origins, production: bool | None
) -> None:
    final = get(values, ("networkPolicies", "enabled"))
    path: Path = ("networkPolicies", "enabled")
    if production and final is not True:
        raise ConfigError(
            origins.key(path) if origins.from_user(path) else "airflow.networkPolicies.enabled",
            final if final is not _ABSENT else None,
            "NetworkPolicies stay on in production (cluster.environment 'production'): without them every pod "
            "in the cluster reaches the database, Redis and the execution API.",
            "remove the override; to allow more, use airflow.networkPolicies.uiNamespaces / metricsNamespaces.",
        )
    if production:
        for sub, value in walk(values):
            if not sub or sub[-1] not in ("from", "extraNetworkPolicies") or not isinstance(value, list):
                continue
            for i, peer in enumerate(value):
                if not isinstance(peer, Mapping):
                    continue
                cidr = (peer.get("ipBlock") or {}).get("cidr") if isinstance(peer.get("ipBlock"), Mapping) else None
                everyone = (
                    not peer
                    or (peer.get("namespaceSelector") == {} and not peer.get("podSelector"))
                    or cidr in ("0.0.0.0/0", "::/0")
                )
                if everyone:
                    raise ConfigError(
                        origins.key((*sub, i)),
                        dict(peer),
                        "this peer admits every pod of the cluster (or every address), which switches the "
                        "NetworkPolicy off in effect; NetworkPolicies stay on in production.",
                        "name the namespaces that need access (airflow.networkPolicies.uiNamespaces / "
                        "metricsNamespaces).",
                    )
    if get(ours, path) is True and final is not True:
        raise ConfigError(
            origins.key(path),
            final,
            "airflow.networkPolicies.enabled is true; chart values may not switch the policies off behind it.",
            "set airflow.networkPolicies.enabled instead.",
        )


def _mounts(values: Mapping[str, Any], ours: Mapping[str, Any], origins: Origins) -> None:
    """No user mount at, over or inside the folders AirflowRelease mounts (secrets, /tmp, logs)."""
    from components.airflow.secret_files import SECRETS_DIR
    from components.logs.config import LOGS_PATH

    reserved = (SECRETS_DIR, LOGS_PATH)
    for path, value in walk(ours):
        if not path or path[-1] not in ("extraVolumes", "extraVolumeMounts") or not isinstance(value, list):
            continue
        final = get(values, path)
        missing = [item for item in value if not isinstance(final, list) or item not in final]
        if missing:
            raise ConfigError(
                origins.key(path),
                final if final is not _ABSENT else None,
                "AirflowRelease keeps its own volumes and mounts here (the secrets Airflow reads as files, its "
                "writable /tmp): a list in chart values replaces the whole list, so these would be gone "
                f"({', '.join(str(m.get('name')) for m in missing if isinstance(m, Mapping))}).",
                "add volumes for task pods with airflow.taskPods.extraVolumes / extraVolumeMounts; for other "
                "components, include AirflowRelease's entries in the list as well.",
            )
    for path, value in walk(values):
        if not path or path[-1] not in ("extraVolumeMounts", "volumeMounts") or not isinstance(value, list):
            continue
        mine = get(ours, path)
        mine = mine if isinstance(mine, list) else []
        for i, mount in enumerate(value):
            if not isinstance(mount, Mapping) or mount in mine:
                continue
            target = mount.get("mountPath")
            if isinstance(target, str):
                clash = overlapping(target, reserved)
                if clash:
                    raise ConfigError(
                        origins.key((*path, i, "mountPath")),
                        target,
                        f"this mount would cover or sit inside {clash}, where AirflowRelease mounts Airflow's "
                        "secrets and logs.",
                        "mount it somewhere else, such as /opt/airflow/extra.",
                    )


def overlapping(target: str, reserved: tuple[str, ...]) -> str | None:
    norm = posixpath.normpath(target)
    for folder in reserved:
        if norm == folder or norm.startswith(folder + "/") or folder.startswith(norm.rstrip("/") + "/"):
            return folder
    return None


def check_airflow_values(
    values: Mapping[str, Any],
    ours: Mapping[str, Any],
    *,
    sources: list[Source],
    airflow_major: int,
    production: bool | None = None,
) -> None:
    """Every guarantee on the final values of an Airflow Release. `ours` are the same values without
    what users added (extraValues); `sources` are what they added, to name their keys."""
    from components.airflow.secret_files import FILE_ONLY_ENV

    origins = Origins(values, sources, _airflow_typed_key)
    owned_env = frozenset(FILE_ONLY_ENV) | {f"{n}_CMD" for n in FILE_ONLY_ENV}
    for path, value in walk(values):
        if path and path[-1] in _HOOK_KEYS and value is not False:
            raise ConfigError(
                origins.key(path),
                value,
                "Helm hooks stay off: helm.v3.Release waits for the release to be ready, and a hook Job that waits "
                "for the database migration deadlocks it (apache/airflow#11979).",
                f"remove '{origins.key(path)}'.",
            )
    _owned(values, ours, origins)
    no_templates(values, origins)
    template = values.get("podTemplate")
    if isinstance(template, str) and template.strip():
        try:
            parsed = yaml.safe_load(template)
        except yaml.YAMLError:
            parsed = None
        if not isinstance(parsed, Mapping):
            raise ConfigError(origins.key(("podTemplate",)), HIDDEN, "expected a pod as YAML text.")
        inner = Origins(parsed, [], lambda p: f"{origins.key(('podTemplate',))} (at {dotted(p)})")
        secrets_in(parsed, inner)
        containers_safe(parsed, inner)
        _env_overrides(parsed, {}, inner, owned_env)
    for path, value in walk(values):
        in_ingress = len(path) >= 2 and path[0] == "ingress" and isinstance(value, str)
        if in_ingress and (path[-1] == "host" or (path[-1] == "name" and "hosts" in path)):
            host_valid(origins.key(path), value)
    _env_overrides(values, ours, origins, owned_env)
    secrets_in(values, origins, owned_env=frozenset())
    containers_safe(values, origins)
    images_valid(values, origins, airflow_major=airflow_major)
    resources_valid(values, origins)
    budgets_drain(values, origins)
    _ingress_auth(values, ours, origins)
    _network_policies(values, ours, origins, production)
    _mounts(values, ours, origins)


def _env_overrides(values: Mapping[str, Any], ours: Mapping[str, Any], origins: Origins, owned: frozenset[str]) -> None:
    """Our secret variables and their *_CMD never redefined in any env list or extraEnv text."""
    for path, value in walk(values):
        if path and path[-1] == "secret" and isinstance(value, list):
            for i, item in enumerate(value):
                env_name = item.get("envName") if isinstance(item, Mapping) else None
                if isinstance(env_name, str) and (env_name in owned or owned_env_name(env_name)):
                    raise ConfigError(
                        origins.key((*path, i, "envName")),
                        env_name,
                        "the chart's `secret` list would set this variable in every Airflow container from another "
                        "Secret, in place of the file AirflowRelease hands Airflow.",
                        "remove the entry.",
                    )
        entries: list[tuple[Path, Mapping[str, Any], bool]] = [(p, e, False) for p, e in _env_entries(path, value)]
        entries += [((*path, i), e, True) for i, e in enumerate(_extra_env_text(path, value) or [])]
        mine = get(ours, path)
        for entry_path, entry, text in entries:
            name = entry.get("name")
            if not isinstance(name, str) or not (name in owned or owned_env_name(name)):
                continue
            if not text and isinstance(mine, list) and entry in mine:
                continue
            if not text and _metadata_reference(values, name, entry):
                continue
            key = origins.key(entry_path[:-1] if text else entry_path)
            raise ConfigError(
                key + (f" (entry {name!r})" if text else ".name"),
                name,
                OWNED_ENV,
                "remove the entry; to change the secret, change the secret config key it comes from.",
            )


def _metadata_reference(values: Mapping[str, Any], name: str, entry: Mapping[str, Any]) -> bool:
    """`AIRFLOW_CONN_AIRFLOW_DB` read from our own metadata Secret: the chart's built-in variable as
    the chart would set it, which KEDA's ScaledObject reads from the worker's spec (keda_values.py).
    It replaces nothing: the value is the metadata connection the files hold."""
    data = values.get("data")
    secret = data.get("metadataSecretName") if isinstance(data, Mapping) else None
    ref = (entry.get("valueFrom") or {}).get("secretKeyRef") if isinstance(entry.get("valueFrom"), Mapping) else None
    return (
        name == "AIRFLOW_CONN_AIRFLOW_DB"
        and isinstance(secret, str)
        and isinstance(ref, Mapping)
        and ref.get("name") == secret
        and ref.get("key") == "connection"
        and "value" not in entry
    )


def airflow_release_values(
    cfg: Any,
    *,
    logs: Any = None,
    extra: Mapping[str, Any] | None = None,
    connections_secret: str | None = None,
    dags_claim: str | None = None,
) -> dict[str, Any]:
    """The final values AirflowRelease declares its Release with (pod annotations aside)."""
    from components.airflow.values import chart_values, deep_merge, merge_extra_values
    from components.logs.config import claim_name, logs_values

    base = chart_values(cfg, dags_claim=dags_claim, connections_secret=connections_secret)
    if logs is not None:
        claim = claim_name(cfg.release_name) if logs.uses_claim else None
        base = deep_merge(base, logs_values(logs, cfg.release_name, claim))
    return merge_extra_values(merge_extra_values(base, dict(extra or {})), cfg.extra_values)


def check_airflow(
    cfg: Any,
    *,
    logs: Any = None,
    extra: Mapping[str, Any] | None = None,
    extra_key: str = "extra_values",
    connections_secret: str | None = None,
    dags_claim: str | None = None,
    production: bool | None = None,
) -> dict[str, Any]:
    """Check the Airflow Release AirflowRelease would declare; returns its values."""
    final = airflow_release_values(
        cfg, logs=logs, extra=extra, connections_secret=connections_secret, dags_claim=dags_claim
    )
    # What AirflowRelease itself renders (no extra values of any kind), to compare owned paths against.
    ours = airflow_release_values(
        replace(cfg, extra_values={}), logs=logs, connections_secret=connections_secret, dags_claim=dags_claim
    )
    sources = [Source("airflow.extraValues", cfg.extra_values)]
    if extra:
        sources.append(Source(extra_key, extra))
    with walked():
        check_airflow_values(final, ours, sources=sources, airflow_major=cfg.major, production=production)
    return final


# ---------------------------------------------------------------------------
# Other Releases (Spark operator, kube-prometheus-stack)


def check_other_release(values: Mapping[str, Any], *, extra_key: str, extra: Mapping[str, Any], typed: str) -> None:
    """The guarantees that hold for every chart: no credential, no root or privileged container, no
    system hostPath, pullable images, runnable resources, drainable budgets."""
    origins = Origins(values, [Source(extra_key, extra)], lambda p: f"{typed}.{dotted(p)} (a chart value)")
    with walked():
        secrets_in(values, origins)
        containers_safe(values, origins, uid_keys=())
        images_valid(values, origins)
        resources_valid(values, origins)
        budgets_drain(values, origins)


# ---------------------------------------------------------------------------
# Rendered objects (the offline preview)

_WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod", "CronJob")
# Objects that need the node by design, each with the reason. Matched by kind and name suffix.
RENDERED_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("DaemonSet", "-prometheus-node-exporter"): "node-exporter reads the node's /proc, /sys and root filesystem "
    "(read-only) and its network and process namespaces: that is what it measures",
    ("Job", "-logs-permissions"): "AirflowRelease's one-off chown of a root-owned hostPath logs folder: uid 0 with "
    "only CHOWN and FOWNER, no escalation, read-only root",
}


def _pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    kind = obj.get("kind")
    raw = obj.get("spec")
    spec: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template") if isinstance(spec, Mapping) else None
    return template.get("spec") if isinstance(template, Mapping) else None


def rendered_problems(objects: list[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, str, str]]:
    """(source, object, message) for every pod that breaks a guarantee once rendered: root, privileged,
    escalating or host-namespace containers, system hostPath volumes, Airflow's secret variables
    set to anything but the file AirflowRelease mounts, and containers running Airflow without what
    it reads and writes (airflow_runtime.py)."""
    from components.airflow.airflow_runtime import runtime_problems
    from components.airflow.secret_files import FILE_ONLY_ENV, SECRETS_DIR

    owned = set(FILE_ONLY_ENV)
    out: list[tuple[str, str, str]] = []
    for source, obj in objects:
        if obj.get("kind") not in _WORKLOADS:
            continue
        spec = _pod_spec(obj)
        if not isinstance(spec, Mapping):
            continue
        name = str(obj.get("metadata", {}).get("name", "?"))
        ident = f"{obj.get('kind')}/{name}"
        if any(obj.get("kind") == k and name.endswith(suffix) for k, suffix in RENDERED_EXCEPTIONS):
            continue
        pod_sc = spec.get("securityContext") or {}
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag) is True:
                out.append((source, ident, f"{flag}: true shares the node's namespaces with the pod"))
        for volume in spec.get("volumes") or []:
            folder = (volume.get("hostPath") or {}).get("path") if isinstance(volume, Mapping) else None
            if isinstance(folder, str) and system_folder(folder):
                out.append((source, ident, f"volume {volume.get('name')!r} mounts the node's {folder}"))
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        for container in containers:
            if not isinstance(container, Mapping):
                continue
            cname = container.get("name")
            sc = container.get("securityContext") or {}
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            if uid == 0:
                out.append((source, ident, f"container {cname!r} runs as uid 0 (root)"))
            if sc.get("privileged") is True:
                out.append((source, ident, f"container {cname!r} is privileged"))
            if sc.get("allowPrivilegeEscalation") is True:
                out.append((source, ident, f"container {cname!r} allows privilege escalation"))
            out.extend((source, ident, message) for message in runtime_problems(str(obj.get("kind")), spec, container))
            for entry in container.get("env") or []:
                env_name = entry.get("name") if isinstance(entry, Mapping) else None
                if not isinstance(env_name, str):
                    continue
                if env_name in owned and "value" in entry:
                    out.append((source, ident, f"container {cname!r} sets {env_name} to a literal value"))
                if env_name.removesuffix("_CMD") in owned and env_name.endswith("_CMD"):
                    value = str(entry.get("value", ""))
                    if not value.startswith(f"cat {SECRETS_DIR}/"):
                        out.append(
                            (source, ident, f"container {cname!r}: {env_name} does not read a file of {SECRETS_DIR}")
                        )
    return out
