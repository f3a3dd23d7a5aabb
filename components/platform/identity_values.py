"""What cloud identity hands the charts and checks across keys: plain functions of typed config."""

from __future__ import annotations

from typing import Any

from ..airflow.config.airflow import AirflowConfig
from ..airflow.config.maintenance import MaintenanceConfig
from ..core.reader import ConfigError
from ..logs.config import LogsConfig
from .identity_config import ANNOTATION, STORAGE, IdentityConfig

# identity component -> the Airflow chart values key of its ServiceAccount and pods.
CHART_KEYS = {
    "scheduler": "scheduler",
    "triggerer": "triggerer",
    "dagProcessor": "dagProcessor",
    "workers": "workers.celery",
    "taskPods": "workers.kubernetes",
}


def _at(values: dict[str, Any], path: str) -> dict[str, Any]:
    for part in path.split("."):
        values = values.setdefault(part, {})
    return values


def airflow_components(airflow: AirflowConfig) -> list[str]:
    """The identity components this Airflow release runs."""
    runs = {
        "scheduler": True,
        airflow.ui_component: True,
        "triggerer": airflow.triggerer.enabled,
        "dagProcessor": airflow.dag_processor.enabled,
        "workers": airflow.uses_celery,
        "taskPods": airflow.uses_kubernetes,
    }
    return [component for component, on in runs.items() if on]


def airflow_values(identity: IdentityConfig, airflow: AirflowConfig) -> dict[str, Any]:
    """ServiceAccount annotations (and, on Azure, pod labels) of every Airflow component with an identity."""
    values: dict[str, Any] = {}
    for component in airflow_components(airflow):
        annotations, labels = identity.service_account(component)
        if not annotations:
            continue
        key = CHART_KEYS.get(component, airflow.ui_component)
        target = _at(values, key)
        target["serviceAccount"] = {"annotations": annotations}
        if labels:
            target["labels"] = labels
        if component == "workers":
            # The chart reads the Celery workers' ServiceAccount from `workers.serviceAccount` too.
            _at(values, "workers")["serviceAccount"] = {"annotations": annotations}
    return values


def spark_accounts(identity: IdentityConfig) -> dict[str, dict[str, dict[str, str]]]:
    """{"driver"|"executor": {"annotations": ..., "labels": ...}} for SparkOperator's ServiceAccounts."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for role, component in (("driver", "sparkDriver"), ("executor", "sparkExecutor")):
        annotations, labels = identity.service_account(component)
        if annotations:
            out[role] = {"annotations": annotations, "labels": labels}
    return out


def check_identity(identity: IdentityConfig, airflow: AirflowConfig, logs: LogsConfig, logs_connection: Any) -> None:
    """Refuse an identity next to static keys for the same storage, a remote-logging identity of
    another cloud, and components that would write logs without one."""
    remote = logs.remote
    if remote is None or remote.target not in STORAGE.values():
        return
    if identity.provider is None:
        return
    same_cloud = STORAGE[identity.provider] == remote.target
    covered = [c for c in airflow_components(airflow) if identity.of(c)]
    if same_cloud and logs_connection is not None and covered:
        raise ConfigError(
            "logsConnection",
            "[secret]",
            f"the Airflow pods already reach {remote.base_log_folder} as a cloud identity "
            f"({ANNOTATION[identity.provider]} on {', '.join(covered)}); static keys in logsConnection as well "
            "would be used instead of it, and would have to be rotated by hand.",
            "drop logsConnection (pulumi config rm logsConnection) and set logs.remote.workloadIdentity: true; "
            "or, to keep the keys, drop identity.default and identity.components for the Airflow components.",
        )
    if remote.workload_identity and not same_cloud:
        raise ConfigError(
            "logs.remote.workloadIdentity",
            True,
            f"remote logs go to {remote.target} ({remote.base_log_folder}), but identity.provider is "
            f"{identity.provider!r}, whose identity reaches {STORAGE[identity.provider]} only.",
            "set identity.provider to the cloud of the bucket, or give remote logging a logsConnection.",
        )
    if remote.workload_identity:
        missing = [c for c in airflow_components(airflow) if not identity.of(c)]
        if missing:
            raise ConfigError(
                f"identity.components.{missing[0]}",
                None,
                f"every Airflow component reads or writes task logs in {remote.base_log_folder}; "
                f"without an identity these could not: {', '.join(missing)}.",
                "set identity.default (all components), or an identity for each of them.",
            )


def backup_identity(maint: MaintenanceConfig, identity: IdentityConfig) -> MaintenanceConfig:
    """A bucket backup without a connection runs as the cloud identity `metadataBackup` (or the default)."""
    from dataclasses import replace

    b = maint.backup
    if not (b.enabled and b.target == "bucket" and not b.connection_id):
        return maint
    if not identity.enabled:
        return maint  # credentials the pods get otherwise (a node role, ...), as remote logging does
    annotations, labels = identity.service_account("metadataBackup")
    if not annotations:
        raise ConfigError(
            "maintenance.backup.target",
            "bucket",
            f"remote logging reaches {b.bucket_url} through the pods' cloud identity, and the backup has none.",
            "set identity.default or identity.components.metadataBackup, or use target 'claim'.",
        )
    return replace(maint, backup=replace(b, identity_annotations=annotations, identity_labels=labels))
