"""The stack's configuration: read once from Pulumi, parsed into typed objects.

Top-level keys (in the project's namespace) are listed in `KNOWN_KEYS`; any other key
is an error, so a misspelt key never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._reader import ConfigError, Node, dns_label
from .config import AirflowConfig, StackSecrets, parse_airflow

PROJECT = "airflow-k8s"

SECRET_KEYS = ("gitToken", "gitSshKey", "databaseUrl")
OBJECT_KEYS = ("airflow", "cluster")
KNOWN_KEYS = OBJECT_KEYS + SECRET_KEYS


@dataclass(frozen=True)
class ClusterConfig:
    """What the cluster already has: declared, so the preview never assumes it."""

    storage_classes: tuple[str, ...] = ()
    ingress_classes: tuple[str, ...] = ()
    persistent_volume_claims: tuple[str, ...] = ()
    kubernetes_version: str = "1.31"


@dataclass(frozen=True)
class StackConfig:
    airflow: AirflowConfig
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    secrets: StackSecrets = field(default_factory=StackSecrets)


def _claim_ref(key: str, value: str) -> str:
    parts = value.split("/")
    if len(parts) != 2:
        raise ConfigError(key, value, "expected 'namespace/claim-name'.")
    dns_label(key, parts[0])
    dns_label(key, parts[1], max_len=253)
    return value


def parse_cluster(raw: Any) -> ClusterConfig:
    node = Node(raw, "cluster")
    label = lambda key, value: dns_label(key, value, max_len=253)  # noqa: E731
    cluster = ClusterConfig(
        storage_classes=tuple(node.string_list("storageClasses", [], item=label)),
        ingress_classes=tuple(node.string_list("ingressClasses", [], item=label)),
        persistent_volume_claims=tuple(node.string_list("persistentVolumeClaims", [], item=_claim_ref)),
        kubernetes_version=node.string(
            "kubernetesVersion",
            "1.31",
            choices=[f"1.{m}" for m in range(27, 36)],
        ),
    )
    node.finish()
    return cluster


def _decode(key: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(key, value, "expected an object (set it in the stack file, or with --path).") from None
    return value


def parse_stack(values: Mapping[str, Any], secret_keys: set[str] | frozenset[str] = frozenset()) -> StackConfig:
    """Parse the project's config keys (short names, e.g. 'airflow', 'databaseUrl')."""
    for key in values:
        if key not in KNOWN_KEYS:
            close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{PROJECT}:{key}",
                values[key] if key not in secret_keys else "[secret]",
                f"unknown key.{hint} Known keys: {', '.join(KNOWN_KEYS)}.",
                f"pulumi config rm {key}",
            )
    for key in SECRET_KEYS:
        if key in values and key not in secret_keys:
            raise ConfigError(
                f"{PROJECT}:{key}",
                "[not shown]",
                "this key holds a credential and must be stored encrypted.",
                f"pulumi config set --secret {key} <value>",
            )
    for key in OBJECT_KEYS:
        if key in secret_keys:
            raise ConfigError(
                f"{PROJECT}:{key}",
                "[secret]",
                f"this object must not be a secret; credentials go in the top-level keys {', '.join(SECRET_KEYS)}.",
            )
    secrets = StackSecrets(
        git_token=values.get("gitToken"),
        git_ssh_key=values.get("gitSshKey"),
        database_url=values.get("databaseUrl"),
    )
    airflow = parse_airflow(_decode("airflow", values.get("airflow", {})), secrets)
    cluster = parse_cluster(_decode("cluster", values.get("cluster", {})))
    return StackConfig(airflow=airflow, cluster=cluster, secrets=secrets)


def read_pulumi_config(project: str) -> tuple[dict[str, Any], set[str]]:
    """This project's keys and which are secret, from the running Pulumi program."""
    from pulumi.runtime import config as runtime_config

    prefix = f"{project}:"
    merged: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_full = set(runtime_config._SECRET_KEYS.get()) | set(runtime_config.get_config_secret_keys_env())
    values = {k[len(prefix) :]: v for k, v in merged.items() if k.startswith(prefix)}
    secrets = {k[len(prefix) :] for k in secret_full if k.startswith(prefix)}
    return values, secrets


def load() -> StackConfig:
    """Read and validate this stack's config. Call once, before declaring resources."""
    import pulumi

    values, secret_keys = read_pulumi_config(pulumi.get_project())
    return parse_stack(values, secret_keys)
