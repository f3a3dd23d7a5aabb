"""Guarantees on the final values of the Airflow Release, whatever path put a value there.

The chart-generic guarantees (no credential in values, no root or privileged container, pullable
images, runnable resources, drainable budgets) are components/core/invariants.py. On top of them,
the Airflow Release keeps:

- the values AirflowRelease owns (Secret names, the admin Job, the built-in secret variables it
  replaces with files, hooks off, NetworkPolicies, ingress authentication) are exactly what it
  rendered;
- nothing the Airflow chart passes through `tpl` carries `{{` (every string is);
- no mount over the folders AirflowRelease mounts (secrets, logs).

Plain functions, no Pulumi: AirflowRelease calls `check_airflow` before it declares its Release, the
stack edge (`components.platform.config.parse_stack`) before any resource, and the offline preview
`rendered_problems` on the rendered objects.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import yaml

from ...core.invariants import (
    ABSENT,
    HIDDEN,
    Origins,
    Path,
    Source,
    budgets_drain,
    containers_safe,
    dotted,
    env_entries,
    extra_env_text,
    get,
    host_valid,
    images_valid,
    no_templates,
    resources_valid,
    secret_shaped,
    secrets_in,
    system_folder,
    walk,
    walked,
)
from ...core.reader import ConfigError
from ...core.workloads import pod_spec_of
from ..config.secret_paths import FILE_ONLY_ENV


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


# Every variable AirflowRelease hands Airflow as a file, Airflow 2's name of the database URL, and the secrets backend.
_OWNED_ENV_PREFIXES = (*FILE_ONLY_ENV, "AIRFLOW__CORE__SQL_ALCHEMY_CONN", "AIRFLOW__SECRETS__BACKEND")


def owned_env_name(name: str) -> bool:
    """Our secret variables, their `_CMD` and `_SECRET` forms, and the secrets backend."""
    return any(name == p or name in (f"{p}_CMD", f"{p}_SECRET") for p in _OWNED_ENV_PREFIXES)


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
            final if final is not ABSENT else None,
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
    from ...logs.config import LOGS_PATH
    from .secret_files import SECRETS_DIR

    reserved = (SECRETS_DIR, LOGS_PATH)
    for path, value in walk(ours):
        if not path or path[-1] not in ("extraVolumes", "extraVolumeMounts") or not isinstance(value, list):
            continue
        final = get(values, path)
        missing = [item for item in value if not isinstance(final, list) or item not in final]
        if missing:
            raise ConfigError(
                origins.key(path),
                final if final is not ABSENT else None,
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
    from .secret_files import FILE_ONLY_ENV, TASK_POD_DATABASE

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
    secrets_in(values, origins, owned_env=frozenset(), stand_ins=TASK_POD_DATABASE)
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
        entries: list[tuple[Path, Mapping[str, Any], bool]] = [(p, e, False) for p, e in env_entries(path, value)]
        entries += [((*path, i), e, True) for i, e in enumerate(extra_env_text(path, value) or [])]
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
    from ...core.merge import deep_merge
    from ...logs.config import claim_name, logs_values
    from .chart import merge_extra_values, typed_values

    base = typed_values(cfg, dags_claim=dags_claim, connections_secret=connections_secret)
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
# Rendered objects (the offline preview)

# Objects that need the node by design, each with the reason. Matched by kind and name suffix.
RENDERED_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("DaemonSet", "-prometheus-node-exporter"): "node-exporter reads the node's /proc, /sys and root filesystem "
    "(read-only) and its network and process namespaces: that is what it measures",
    ("Job", "-logs-permissions"): "AirflowRelease's one-off chown of a root-owned hostPath logs folder: uid 0 with "
    "only CHOWN and FOWNER, no escalation, read-only root",
}


def rendered_problems(objects: list[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, str, str]]:
    """(source, object, message) for every pod that breaks a guarantee once rendered: root, privileged,
    escalating or host-namespace containers, system hostPath volumes, Airflow's secret variables
    set to anything but the file AirflowRelease mounts, and containers running Airflow without what
    it reads and writes (airflow_runtime.py)."""
    from .airflow_runtime import runtime_problems
    from .secret_files import FILE_ONLY_ENV, SECRETS_DIR, TASK_POD_DATABASE

    owned = set(FILE_ONLY_ENV)
    out: list[tuple[str, str, str]] = []
    for source, obj in objects:
        spec = pod_spec_of(obj)
        if spec is None:
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
                if env_name in owned and "value" in entry and TASK_POD_DATABASE.get(env_name) != entry["value"]:
                    out.append((source, ident, f"container {cname!r} sets {env_name} to a literal value"))
                if env_name.removesuffix("_CMD") in owned and env_name.endswith("_CMD"):
                    value = str(entry.get("value", ""))
                    if not value.startswith(f"cat {SECRETS_DIR}/"):
                        out.append(
                            (source, ident, f"container {cname!r}: {env_name} does not read a file of {SECRETS_DIR}")
                        )
    return out
