"""Rules on the typed `airflow` keys that the cluster would enforce too late (or never).

`check_airflow_config` runs when AirflowRelease is declared (and, through
components/platform/guards.py, when the stack's config is parsed). Messages name the config key,
the bad value (never a secret's text) and the fix.
"""

from __future__ import annotations

import posixpath
import re
from decimal import Decimal
from typing import TYPE_CHECKING

from ...core import invariants as chart_invariants
from ...core.names import SYSTEM_NAMESPACES
from ...core.reader import ConfigError, quantity
from . import invariants

if TYPE_CHECKING:
    from ..config.airflow import AirflowConfig

# The cluster's own namespaces (core.names.SYSTEM_NAMESPACES and these prefixes): nothing of this stack goes there.
SYSTEM_PREFIXES = ("kube-", "openshift-")
MIN_STORAGE = Decimal(2**20)
# Where the chart mounts the DAGs (dags.mountPath, default `<airflowHome>/dags`) and airflow.cfg.
DAGS_MOUNT_PATH = "/opt/airflow/dags"
AIRFLOW_CFG_PATH = "/opt/airflow/airflow.cfg"


# ---------------------------------------------------------------------------
# Values the cluster rejects at deploy time


def size_valid(key: str, text: str | None) -> None:
    amount = quantity(text) if text is not None else None
    if amount is not None and amount < MIN_STORAGE:
        raise ConfigError(
            key,
            text,
            "a volume of less than 1Mi: the API server refuses a claim of 0, and a bare number is bytes.",
            "use a size such as 1Gi or 10Gi.",
        )


def _host(key: str, host: str | None) -> None:
    if host:
        chart_invariants.host_valid(key, host)


def check_airflow_config(cfg: AirflowConfig, *, key: str = "airflow", previous_keys: int | None = None) -> None:
    """Rules on the typed Airflow keys that the cluster would enforce too late (or never)."""
    from ...logs.config import LOGS_PATH
    from .secret_files import SECRETS_DIR

    chart_invariants.image_repository(f"{key}.image.repository", cfg.image.repository)
    stock = cfg.image.repository.endswith("apache/airflow")
    chart_invariants.image_tag(
        f"{key}.image.tag", cfg.image.tag, airflow_major=cfg.major if stock or "airflow" in cfg.image.tag else None
    )
    # Resource amounts and disruption budgets are checked where they are read (core/resources.py,
    # airflow/config/airflow.py `_disruption`) and again on the final chart values (core/invariants.py).
    if cfg.database.mode == "bundled":
        size_valid(f"{key}.database.storageSize", cfg.database.storage_size)
    if cfg.uses_celery:
        size_valid(f"{key}.redis.persistenceSize", cfg.redis.persistence_size)
    if cfg.dags.host_path is not None:
        size_valid(f"{key}.dags.hostPath.size", cfg.dags.host_path.size)
        if chart_invariants.system_folder(cfg.dags.host_path.path):
            raise ConfigError(
                f"{key}.dags.hostPath.path",
                cfg.dags.host_path.path,
                "'/' or a system folder of the node would be mounted into every Airflow pod.",
                "use a folder of its own, such as /data/airflow-dags.",
            )
    if cfg.dags.mount_path:
        clash = invariants.overlapping(cfg.dags.mount_path, (SECRETS_DIR, LOGS_PATH, "/tmp", "/opt/airflow/config"))
        if clash or cfg.dags.mount_path.rstrip("/") in ("", "/opt/airflow", "/opt", "/etc", "/usr", "/bin"):
            raise ConfigError(
                f"{key}.dags.mountPath",
                cfg.dags.mount_path,
                f"the DAG volume would cover {clash or 'a folder the image needs'} (Airflow's secrets, logs, "
                "temporary files or its home).",
                "use a folder of its own, such as /opt/airflow/dags (the chart's default).",
            )
    # Where the task pod template already mounts something: a second mount at one path is refused by the API server.
    dags_path = (cfg.dags.mount_path or DAGS_MOUNT_PATH) if cfg.dags.mode != "image" else None
    taken = {path: what for path, what in ((dags_path, "the DAGs"), (AIRFLOW_CFG_PATH, "airflow.cfg")) if path}
    for i, mount in enumerate(cfg.task_pods.extra_volume_mounts):
        path = posixpath.normpath(str(mount.get("mountPath", "")))
        if path in taken:
            raise ConfigError(
                f"{key}.taskPods.extraVolumeMounts[{i}].mountPath",
                mount.get("mountPath"),
                f"the task pods already mount {taken[path]} at this path; the API server refuses two mounts at one "
                "path in a container.",
                "mount it somewhere else, such as /opt/airflow/extra.",
            )
        clash = invariants.overlapping(str(mount.get("mountPath", "")), (SECRETS_DIR, LOGS_PATH))
        if clash:
            raise ConfigError(
                f"{key}.taskPods.extraVolumeMounts[{i}].mountPath",
                mount.get("mountPath"),
                f"this mount would cover or sit inside {clash}, where AirflowRelease mounts Airflow's secrets and "
                "logs.",
                "mount it somewhere else, such as /opt/airflow/extra.",
            )
    _typed_strings(cfg, key)
    _task_pods(cfg, key)
    _ingress_annotations(cfg, key)
    _host(f"{key}.ingress.host", cfg.ingress.host)
    _host(f"{key}.ingress.flower.host", cfg.ingress.flower_host)
    fernet = cfg.fernet
    imported = fernet.imported if previous_keys is None else previous_keys
    if fernet.rotate and not fernet.keep_previous and fernet.generation > 1 and not imported:
        raise ConfigError(
            f"{key}.fernetKey.keepPrevious",
            False,
            "the rotation Job re-encrypts with the new key what the previous key encrypted; without the previous "
            "key in the list it can decrypt nothing, and every connection and variable encrypted with it is lost.",
            "rotate with keepPrevious: true (the default); once the rotation Job has completed, set rotate: false "
            "and then keepPrevious: false.",
        )
    if not fernet.keep_previous and fernet.generation == 1 and not imported:
        raise ConfigError(
            f"{key}.fernetKey.keepPrevious",
            False,
            "generation 1 has no previous key to drop.",
            "remove keepPrevious (it is only for the last step of a rotation).",
        )
    net = cfg.network_policies
    for i, ns in enumerate(net.ui_namespaces + net.metrics_namespaces):
        if ns in SYSTEM_NAMESPACES and ns != "default":
            which = "uiNamespaces" if i < len(net.ui_namespaces) else "metricsNamespaces"
            index = i if i < len(net.ui_namespaces) else i - len(net.ui_namespaces)
            raise ConfigError(
                f"{key}.networkPolicies.{which}[{index}]",
                ns,
                "admitting a system namespace admits every cluster component in it.",
                "name the namespace of the client (your ingress controller, your Prometheus).",
            )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _typed_strings(cfg: AirflowConfig, key: str) -> None:
    """No typed Airflow string carries `{{`: the chart renders its values through `tpl`."""
    from dataclasses import asdict

    data = asdict(cfg)
    data.pop("extra_values", None)
    data[cfg.ui_component] = data.pop("api_server")
    data["taskPods"] = data.pop("task_pods")
    for path, value in chart_invariants.walk(data):
        if isinstance(value, str) and "{{" in value:
            parts = list(path)
            name = ".".join(_camel(p) if isinstance(p, str) and "_" in p and p.islower() else str(p) for p in parts)
            raise ConfigError(
                f"{key}.{name}",
                value,
                "no '{{' in chart values: the Airflow chart passes its strings through Helm's `tpl`, so it would be "
                "executed as a template.",
                "write the literal value.",
            )


def _task_pods(cfg: AirflowConfig, key: str) -> None:
    from .secret_files import FILE_ONLY_ENV

    pods = cfg.task_pods
    owned = set(FILE_ONLY_ENV) | {f"{n}_CMD" for n in FILE_ONLY_ENV}
    for name, value in pods.env.items():
        if name in owned or invariants.owned_env_name(name):
            raise ConfigError(
                f"{key}.taskPods.env.{name}", name, invariants.OWNED_ENV, f"remove '{key}.taskPods.env.{name}'."
            )
        if value.strip() and chart_invariants.secret_shaped(name.lower().replace("__", "_")):
            raise ConfigError(
                f"{key}.taskPods.env.{name}",
                chart_invariants.HIDDEN,
                "an environment variable named like a credential with its value written into the Helm values.",
                "put it in the secret key 'connections' (or 'variables' set with --secret), or a team's Secret.",
            )
    for i, volume in enumerate(pods.extra_volumes):
        host = volume.get("hostPath")
        folder = host.get("path") if isinstance(host, dict) else None
        if isinstance(folder, str) and chart_invariants.system_folder(folder):
            raise ConfigError(
                f"{key}.taskPods.extraVolumes[{i}].hostPath.path",
                folder,
                "a hostPath volume of '/' or of a system folder hands the task pod the node.",
                "mount a folder of its own, or use a PersistentVolumeClaim.",
            )


def _ingress_annotations(cfg: AirflowConfig, key: str) -> None:
    ing = cfg.ingress
    if ing.auth is None:
        return
    for name, value in ing.annotations.items():
        short = name.rsplit("/", 1)[-1]
        if short.startswith("auth-") or re.search(r"(-snippet|enable-global-auth|satisfy)$", short):
            raise ConfigError(
                f"{key}.ingress.annotations.{name}",
                value,
                f"{key}.ingress.auth is configured: its annotations (auth-url, auth-signin, ...) come from there, "
                "and no annotation may empty them or change how NGINX authenticates.",
                f"change {key}.ingress.auth instead, or remove the annotation.",
            )
