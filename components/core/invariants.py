# Longer than 600 lines: one function per guarantee any chart's final values keep, each named by an error
# message and a test: one catalogue, read top to bottom.
"""Guarantees that hold for the final values of every Helm Release, whatever chart and whatever path
put a value there (typed keys, `extraValues`, task pods, logs, monitoring).

The typed keys validate what they read, but a list of forbidden `extraValues` keys only knows the
paths it names; its twin one level over walks around it. These checks therefore run on the FINAL
merged values of a Release, the same values it is declared with, and say which config key put the
bad value there (`Origins`):

- no secret value at any path (secret-shaped keys, env entries, `extraEnv` text, private keys,
  Fernet-key-shaped strings, credentials inside URLs);
- no container as uid 0, privileged, with privilege escalation, host namespaces, added dangerous
  capabilities, or a hostPath of `/` or a system folder;
- what the cluster would reject at deploy time (image references, `latest`, memory and CPU
  amounts, disruption budgets that block every drain).

`check_other_release` runs them all on a chart's values (the Spark operator, kube-prometheus-stack,
KEDA); the Airflow Release adds its own (components/airflow/values/invariants.py). Plain functions, no
Pulumi.
"""

from __future__ import annotations

import base64
import binascii
import math
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml

from .credentials import redact_url as redact_url, text_credential, url_credentials as url_credentials
from .names import host_name
from .reader import ConfigError
from .resources import amount_valid

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


ABSENT: Any = object()


def get(values: Any, path: Path) -> Any:
    node = values
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return ABSENT
            node = node[part]
        else:
            if not isinstance(node, Mapping) or part not in node:
                return ABSENT
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


def env_entries(path: Path, value: Any) -> Iterator[tuple[Path, dict[str, Any]]]:
    if path and path[-1] in ("env", "extraEnv", "envs") and isinstance(value, list):
        for i, entry in enumerate(value):
            if isinstance(entry, dict):
                yield (*path, i), entry


def extra_env_text(path: Path, value: Any) -> list[dict[str, Any]] | None:
    """The Airflow chart's `extraEnv` / `extraEnvFrom` strings are YAML lists (rendered with tpl)."""
    if path and path[-1] in ("extraEnv", "extraEnvFrom") and isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return []
        return [e for e in parsed if isinstance(e, dict)] if isinstance(parsed, list) else []
    return None


def secrets_in(
    values: Mapping[str, Any],
    origins: Origins,
    *,
    owned_env: frozenset[str] = frozenset(),
    stand_ins: Mapping[str, str] | None = None,
) -> None:
    """No credential at any path: secret-shaped keys, env entries, `extraEnv` text, URLs, keys.
    `stand_ins`: env entries (name -> value) that are known to hold no credential."""
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
        for entry_path, entry in env_entries(path, value):
            if stand_ins and stand_ins.get(str(entry.get("name"))) == entry.get("value"):
                continue
            _env_entry(entry_path, entry, origins, owned_env)
        parsed = extra_env_text(path, value)
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
            "Kubernetes rounds percentages up), so node drains would block, and every cluster upgrade with them.",
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
