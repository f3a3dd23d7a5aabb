"""The stack's configuration: read once from Pulumi, parsed into typed objects.

Top-level keys (in the project's namespace) are those of the registry (components/platform/keys.py);
any other key is an error, so a misspelt key never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from ..airflow.config.airflow import AirflowConfig, StackSecrets, parse_airflow
from ..airflow.config.fernet import parse_previous_keys
from ..airflow.config.maintenance import parse_maintenance, resolve_backup_bucket
from ..airflow.config.task_images import parse_task_images, platform_variables as task_image_owners
from ..airflow.values.secret_files import check_one_secrets_backend
from ..core.cluster_target import (
    API_VERSION,
    KUBERNETES_VERSIONS,
    SECRET_MUTABLE_KEY,
    require_mutable_secrets,
    require_target,
)
from ..core.ids import check_no_clash
from ..core.names import is_label_value, is_qualified_name
from ..core.reader import (
    DNS1123_LABEL,
    ConfigError,
    ConfigTypeError,
    Node,
    bounded,
    dns_label,
    json_value,
    matches,
    register_secrets,
)
from ..keda.config import parse_keda
from ..logs.config import adopt_host_path_class, parse_logs
from ..monitoring.config import parse_monitoring
from ..spark.config import SparkConfig, parse_spark
from ..teams.config import parse_team_secrets, parse_teams
from .environment import parse_environment
from .guards import check_plain_credentials, check_stack, foreign_keys
from .identity_config import parse_identity
from .identity_values import backup_identity, check_identity
from .keys import STACK_KEYS, names
from .types import ClusterConfig as ClusterConfig, StackConfig as StackConfig

PROJECT = "airflow-k8s"

# The top-level keys, from their registry (components/platform/keys.py).
SECRET_KEYS = names("secret")
OBJECT_KEYS = names("object")
EITHER_KEYS = names("either")  # plain or secret: the user decides
CONFIRM_KEYS = names("confirm")  # a deliberate change of identity (components/platform/deployed.py)
KNOWN_KEYS = tuple(key.name for key in STACK_KEYS)


def _claim_ref(key: str, value: str) -> str:
    parts = value.split("/")
    if len(parts) != 2:
        raise ConfigError(key, value, "expected 'namespace/name'.")
    dns_label(key, parts[0])
    dns_label(key, parts[1], max_len=253)
    return value


def _pod_labels(key: str, value: str) -> str:
    """A pre-existing pod, by its labels: 'kube-system/k8s-app=kube-dns' (pairs joined by ',')."""
    ns, _, labels = value.partition("/")
    pairs = [pair.partition("=") for pair in labels.split(",")] if labels else []
    if (
        not matches(DNS1123_LABEL, ns)
        or not pairs
        or not all(sep and is_qualified_name(k) and is_label_value(v) for k, sep, v in pairs)
    ):
        raise ConfigError(key, value, "expected 'namespace/key=value' or 'namespace/key=value,key=value'.")
    return value


def _api_version(key: str, value: str) -> str:
    """An API the cluster serves: 'group/version' or 'group/version/Kind' (as Helm's APIVersions.Has takes)."""
    if not matches(API_VERSION, value):
        raise ConfigError(key, value, "expected 'group/version' or 'group/version/Kind', e.g. 'cert-manager.io/v1'.")
    return value


def parse_cluster(raw: Any) -> ClusterConfig:
    node = Node(raw, "cluster")
    label = lambda key, value: dns_label(key, value, max_len=253)  # noqa: E731
    cluster = ClusterConfig(
        storage_classes=tuple(node.string_list("storageClasses", [], item=label)),
        ingress_classes=tuple(node.string_list("ingressClasses", [], item=label)),
        persistent_volume_claims=tuple(node.string_list("persistentVolumeClaims", [], item=_claim_ref)),
        namespaces=tuple(node.string_list("namespaces", [], item=dns_label)),
        pods=tuple(node.string_list("pods", [], item=_pod_labels)),
        secrets=tuple(node.string_list("secrets", [], item=_claim_ref)),
        kubernetes_version=node.string("kubernetesVersion", "1.31", choices=KUBERNETES_VERSIONS),
        environment=node.string("environment", "production", choices=("laptop", "production")),
        api_versions=tuple(node.string_list("apiVersions", [], item=_api_version)),
    )
    node.finish()
    return cluster


def _decode(key: str, value: Any, secret: bool = False) -> Any:
    if isinstance(value, str):
        try:
            return json_value(key, value, secret=secret)
        except json.JSONDecodeError:
            shown = "[secret]" if secret else value  # never echo a secret
            raise ConfigTypeError(
                key, shown, "expected an object (set it in the stack file, or with --path)."
            ) from None
    return value


def parse_stack(values: Mapping[str, Any], secret_keys: set[str] | frozenset[str] = frozenset()) -> StackConfig:
    """Parse the project's config keys (short names, e.g. 'airflow', 'databaseUrl'), then check the
    guarantees on what would be deployed: namespaces, URLs, deploy-time values, and the invariants
    on the final values of every Release (components/core/invariants.py), and credentials by
    their shape in the plain keys (URLs with credentials last, after the keys that say where
    theirs belong)."""
    stack = read_stack(values, secret_keys)
    check_stack(stack)
    check_plain_credentials(values, secret_keys, urls=True, either=EITHER_KEYS)
    return stack


def read_stack(values: Mapping[str, Any], secret_keys: set[str] | frozenset[str] = frozenset()) -> StackConfig:
    """Read and type the project's config keys, each checked on its own and against the others; the
    guards on the values the stack would deploy are `parse_stack`'s."""
    for key, value in values.items():
        bounded(key, value, secret=key in secret_keys, plain=True)
    register_secrets([values[k] for k in secret_keys if k in values])
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
    # Credentials by their shape in any plain key, before a parser could show one in its message
    # (URLs with credentials last, after the keys that say where theirs belong).
    check_plain_credentials(values, secret_keys, urls=False, either=EITHER_KEYS)
    secrets = StackSecrets(
        git_token=values.get("gitToken"), git_ssh_key=values.get("gitSshKey"), database_url=values.get("databaseUrl")
    )
    cluster = parse_cluster(_decode("cluster", values.get("cluster", {})))
    airflow = parse_airflow(_decode("airflow", values.get("airflow", {})), secrets)
    if cluster.production and airflow.dags.mode == "hostPath":
        raise ConfigError(
            "airflow.dags.mode",
            "hostPath",
            "a hostPath folder lives on one node; allowed when cluster.environment is 'production': gitSync, "
            "persistentVolumeClaim, image.",
            "use gitSync, or set cluster.environment to 'laptop' on a minikube/kind cluster.",
        )
    logs_connection = values.get("logsConnection")
    logs = parse_logs(
        _decode("logs", values.get("logs", {})), logs_connection=logs_connection, production=cluster.production
    )
    logs = adopt_host_path_class(logs, cluster.storage_classes)
    spark = (
        parse_spark(_decode("spark", values["spark"]), airflow_namespace=airflow.namespace)
        if "spark" in values
        else SparkConfig()
    )
    monitoring = parse_monitoring(
        _decode("monitoring", values.get("monitoring", {})), production=cluster.production, airflow=airflow
    )
    if monitoring.install is not None and cfg_network_needs(airflow, monitoring.install.namespace):
        # Prometheus scrapes StatsD (and PgBouncer) across the Airflow NetworkPolicies.
        net = airflow.network_policies
        airflow = replace(
            airflow,
            network_policies=replace(net, metrics_namespaces=(*net.metrics_namespaces, monitoring.install.namespace)),
        )
    platform = ((spark.namespace, *spark.job_namespace_names) if spark.enabled else ()) + (
        (monitoring.install.namespace,) if monitoring.install is not None else ()
    )
    teams = parse_teams(
        _decode("teams", values["teams"]) if "teams" in values else None,
        airflow_namespace=airflow.namespace,
        other_namespaces=platform,
    )
    team_secrets = parse_team_secrets(
        _decode("teamSecrets", values["teamSecrets"], secret=True) if "teamSecrets" in values else None, teams
    )
    connections, variables = parse_environment(
        values, secret_keys, spark=spark, logs=logs, bundle=airflow.dags.git_bundle
    )
    task_images = parse_task_images(_decode("taskImages", values.get("taskImages", {})))
    check_no_clash("variables", variables, task_image_owners(task_images))
    remote_conn = logs.remote is not None and bool(logs.remote.connection_id)
    if bool(connections or variables or task_images or airflow.dags.git_bundle) or spark.enabled or remote_conn:
        check_one_secrets_backend([("airflow.extraValues", airflow.extra_values)])
    previous_keys = parse_previous_keys(values["previousFernetKeys"]) if "previousFernetKeys" in values else ()
    keda = parse_keda(_decode("keda", values.get("keda", {})), airflow)
    maintenance = parse_maintenance(
        _decode("maintenance", values.get("maintenance", {})), production=cluster.production
    )
    identity = parse_identity(_decode("identity", values.get("identity", {})))
    check_identity(identity, airflow, logs, logs_connection)
    maintenance = backup_identity(resolve_backup_bucket(maintenance, logs), identity)
    for component in ("sparkDriver", "sparkExecutor"):
        if component in identity.components and not spark.enabled:
            raise ConfigError(
                f"identity.components.{component}",
                identity.components[component],
                "there are no Spark pods: the `spark` key is not set (or not enabled).",
                f"remove identity.components.{component}, or set the spark key.",
            )
    stack = StackConfig(
        airflow=airflow,
        cluster=cluster,
        secrets=secrets,
        logs=logs,
        logs_connection=logs_connection,
        spark=spark,
        monitoring=monitoring,
        teams=teams,
        team_secrets=team_secrets,
        connections=connections,
        variables=variables,
        previous_fernet_keys=previous_keys,
        task_images=task_images,
        keda=keda,
        maintenance=maintenance,
        identity=identity,
        identity_change=_identity_change(values.get("identityChange")),
    )
    return stack


def _identity_change(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9-]+/[a-z0-9-]+", value):
        raise ConfigError(
            f"{PROJECT}:identityChange",
            value,
            "expected '<old namespace>/<old release name>', the identity the stack last deployed, which the "
            "error about the change names.",
        )
    return value


def cfg_network_needs(airflow: AirflowConfig, namespace: str) -> bool:
    net = airflow.network_policies
    return net.enabled and namespace not in net.metrics_namespaces


def read_pulumi_config() -> tuple[dict[str, Any], set[str]]:
    """Every config key of the running Pulumi program (full names, `<namespace>:<key>`) and which are secret."""
    from pulumi.runtime import config as runtime_config

    merged: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_full = {key for key in merged if runtime_config.is_config_secret(key)}
    return merged, secret_full | set(runtime_config.get_config_secret_keys_env())


def check_config(config: Mapping[str, Any], secret_full: Iterable[str], project: str = PROJECT) -> StackConfig:
    """The stack edge, whole: the config Pulumi hands the program (full key names, as `pulumi config
    --json` shows them) with no key under a look-alike namespace, this project's keys parsed and
    checked (`parse_stack`), and a production stack naming its cluster. What `load()` runs."""
    secret_full = set(secret_full)
    register_secrets([v for k, v in config.items() if k in secret_full])
    foreign_keys(config, project, KNOWN_KEYS)
    prefix = f"{project}:"
    values = {k[len(prefix) :]: v for k, v in config.items() if k.startswith(prefix)}
    secrets = {k[len(prefix) :] for k in secret_full if k.startswith(prefix)}
    cfg = parse_stack(values, secrets)
    target = {name: config.get(f"kubernetes:{name}") for name in ("context", "kubeconfig")}
    require_target(cfg.cluster.production, target)
    require_mutable_secrets(fernet_rewrite(cfg), config.get(SECRET_MUTABLE_KEY), os.environ)
    return cfg


def fernet_rewrite(cfg: StackConfig) -> str | None:
    """The Fernet setting that makes the key Secret's data differ from a first deployment's."""
    fernet = cfg.airflow.fernet
    if fernet.generation > 1:
        return f"airflow.fernetKey.generation {fernet.generation}"
    if fernet.imported:
        return "previousFernetKeys"
    return None


def load() -> StackConfig:
    """Read and validate this stack's config. Call once, before declaring resources."""
    import pulumi

    config, secret_full = read_pulumi_config()
    return check_config(config, secret_full, pulumi.get_project())
