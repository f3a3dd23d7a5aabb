"""Typed config of task-log storage (the `logs` stack key) and the chart values it implies.

Plain functions of typed config: which volume objects LogStorage declares is decided
here, and `logs_values` is the fragment of Airflow chart values it hands AirflowRelease.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..core import names
from ..core.reader import ConfigError, Node, dns_label

LogsMode = Literal["emptyDir", "hostPath", "nfs", "dynamic", "remote"]
RemoteTarget = Literal["s3", "gcs", "wasb", "elasticsearch"]

# The chart's logs path (airflowHome + /logs); the chart mounts the claim there in every pod.
LOGS_PATH = "/opt/airflow/logs"

_FOLDER_SCHEMES: dict[str, str] = {"s3": "s3://", "gcs": "gs://", "wasb": "wasb://"}
_DEFAULT_CONN: dict[str, str] = {"s3": "aws_logs", "gcs": "google_cloud_logs", "wasb": "wasb_logs", "elasticsearch": ""}


@dataclass(frozen=True)
class Retention:
    """The chart's log groomer: deletes local task logs older than `days`."""

    enabled: bool = True
    days: int = 15
    frequency_minutes: int = 15


@dataclass(frozen=True)
class Remote:
    target: RemoteTarget
    base_log_folder: str = ""
    connection_id: str = ""
    workload_identity: bool = False
    delete_local_logs: bool = False


@dataclass(frozen=True)
class LogsConfig:
    """Where task logs live. `emptyDir` keeps the chart's default (lost with the pod)."""

    mode: LogsMode = "emptyDir"
    size: str = "10Gi"
    host_path: str | None = None
    node: str | None = None
    nfs_server: str | None = None
    nfs_path: str | None = None
    mount_options: tuple[str, ...] = ()
    storage_class: str | None = None
    """`dynamic`: the claim's class; `hostPath`: the name of the class of the volume (default: our own)."""
    adopt_storage_class: bool = False
    """`hostPath`: the class already exists (`cluster.storageClasses`): use it, do not declare it."""
    remote: Remote | None = None
    retention: Retention = field(default_factory=Retention)

    @property
    def uses_claim(self) -> bool:
        return self.mode in ("hostPath", "nfs", "dynamic")


_ABS = re.compile(r"^/\S*$")


def parse_logs(raw: Any, *, logs_connection: Any = None, production: bool = False) -> LogsConfig:
    """Parse the `logs` config object. `logs_connection` is the secret `logsConnection` key."""
    node = Node(raw, "logs")
    mode = node.string("mode", "emptyDir", choices=("emptyDir", "hostPath", "nfs", "dynamic", "remote"))
    node.only_mode_settings(mode, ("hostPath", "nfs", "dynamic", "remote"))
    size = node.quantity("size", "10Gi", what="a storage size")
    ret = node.mapping("retention")
    retention = Retention(
        enabled=ret.boolean("enabled", True),
        days=ret.integer("days", 15, low=1, high=3650),
        frequency_minutes=ret.integer("frequencyMinutes", 15, low=1, high=1440),
    )
    ret.finish()
    cfg = LogsConfig(mode=mode, size=size, retention=retention)

    if mode == "hostPath":
        if production:
            raise ConfigError(
                node.key("mode"),
                mode,
                "hostPath keeps logs on one node's disk, which production pods on other nodes cannot reach; "
                "allowed when cluster.environment is 'production': nfs, dynamic, remote.",
                "use logs.mode 'dynamic' with a ReadWriteMany StorageClass (EFS, Filestore, Azure Files) or 'remote'.",
            )
        hp = node.mapping("hostPath")
        cfg = LogsConfig(
            mode=mode,
            size=size,
            retention=retention,
            host_path=hp.string("path", pattern=_ABS, describe="expected an absolute path on the node."),
            node=hp.string("node", None),
            storage_class=hp.string("storageClass", None),
        )
        if cfg.node is not None:
            names.node_name(hp.key("node"), cfg.node)
        if cfg.storage_class is not None:
            dns_label(hp.key("storageClass"), cfg.storage_class, max_len=253)
        hp.finish()
    elif mode == "nfs":
        nfs = node.mapping("nfs")
        cfg = LogsConfig(
            mode=mode,
            size=size,
            retention=retention,
            nfs_server=names.host_or_ip(nfs.key("server"), nfs.string("server")),
            nfs_path=nfs.string("path", pattern=_ABS, describe="expected an absolute export path."),
            mount_options=tuple(nfs.string_list("mountOptions", ["nfsvers=4.1", "hard"])),
        )
        nfs.finish()
    elif mode == "dynamic":
        dyn = node.mapping("dynamic")
        storage_class = dns_label(dyn.key("storageClass"), dyn.string("storageClass"), max_len=253)
        dyn.finish()
        cfg = LogsConfig(mode=mode, size=size, retention=retention, storage_class=storage_class)
    elif mode == "remote":
        cfg = LogsConfig(mode=mode, size=size, retention=retention, remote=_remote(node, logs_connection))

    if logs_connection is not None and not (cfg.remote and not cfg.remote.workload_identity):
        raise ConfigError(
            "logsConnection", "[secret]", "logsConnection is set but logs.mode is not 'remote' with a connection."
        )
    node.finish()
    return cfg


def adopt_host_path_class(cfg: LogsConfig, cluster_classes: tuple[str, ...]) -> LogsConfig:
    """A hostPath class the cluster already has (declared in `cluster.storageClasses`) is used, not declared."""
    if cfg.mode == "hostPath" and cfg.storage_class is not None and cfg.storage_class in cluster_classes:
        return replace(cfg, adopt_storage_class=True)
    return cfg


def _remote(node: Node, logs_connection: Any) -> Remote:
    sub = node.mapping("remote")
    target = sub.string("target", choices=("s3", "gcs", "wasb", "elasticsearch"))
    identity = sub.boolean("workloadIdentity", False)
    folder = ""
    if target != "elasticsearch":
        scheme = _FOLDER_SCHEMES[target]
        folder = sub.string(
            "baseLogFolder",
            pattern=re.compile(rf"^{re.escape(scheme)}[^/\s]+(/\S*)?$"),
            describe=f"expected a {target} location starting with {scheme} (bucket or container, then a prefix).",
        )
        names.no_look_alike(sub.key("baseLogFolder"), folder.split("://", 1)[1].split("/", 1)[0], "bucket or account")
    elif sub.has("baseLogFolder"):
        raise ConfigError(sub.key("baseLogFolder"), sub.data["baseLogFolder"], "Elasticsearch logging has no folder.")
    if target == "elasticsearch" and identity:
        raise ConfigError(sub.key("workloadIdentity"), True, "Elasticsearch needs its URL in 'logsConnection'.")
    conn_id = sub.string(
        "connectionId",
        _DEFAULT_CONN[target],
        pattern=re.compile(r"^[A-Za-z0-9_]*$"),
        describe="expected letters, digits and underscores (an id that also works as AIRFLOW_CONN_<ID>).",
    )
    if not identity and logs_connection is None:
        raise ConfigError(
            sub.key("target"),
            target,
            "remote logging needs credentials: the secret config key 'logsConnection' (an Airflow connection URI or "
            "JSON; for Elasticsearch its URL), or workloadIdentity: true (IRSA, GKE or Azure workload identity).",
            "pulumi config set --secret logsConnection '<connection>'",
        )
    remote = Remote(
        target=target,
        base_log_folder=folder,
        # With an identity, S3 and GCS need no connection (boto3's and google-auth's default
        # credentials); WASB still needs its account URL, in a connection without credentials.
        connection_id="" if identity and target != "wasb" else conn_id,
        workload_identity=identity,
        delete_local_logs=sub.boolean("deleteLocalLogs", False),
    )
    sub.finish()
    return remote


# ---------------------------------------------------------------------------
# Names and values


def storage_class_name(namespace: str, release: str, cfg: LogsConfig | None = None) -> str:
    """The hostPath StorageClass is cluster-scoped: one per namespace and release, unless
    `logs.hostPath.storageClass` names it (a class of the cluster's, or one made under that name)."""
    if cfg is not None and cfg.mode == "hostPath" and cfg.storage_class:
        return cfg.storage_class
    return f"{namespace}-{release}-logs-local"


def volume_name(namespace: str, release: str) -> str:
    return f"{namespace}-{release}-logs"


def claim_name(release: str) -> str:
    return f"{release}-logs"


def wasb_identity_connection(base_log_folder: str) -> str:
    """An Azure Blob Storage connection with no credentials: the account URL only, so Airflow's
    WasbHook falls back on DefaultAzureCredential (Azure workload identity in the pod)."""
    import json

    account = base_log_folder.split("@", 1)[1].split("/", 1)[0] if "@" in base_log_folder else ""
    return json.dumps({"conn_type": "wasb", "host": f"https://{account}"}, sort_keys=True)


def elasticsearch_secret_name(release: str) -> str:
    return f"{release}-pulumi-elasticsearch"


GROOMED_COMPONENTS = ("scheduler", "triggerer", "dagProcessor")
SHARED_CLAIM_UNGROOMED = ("triggerer", "dagProcessor")


def logs_values(cfg: LogsConfig, release: str, claim: str | None) -> dict[str, Any]:
    """The fragment of Airflow chart values for this log storage."""
    groomer = {
        "enabled": cfg.retention.enabled,
        "retentionDays": cfg.retention.days,
        "frequencyMinutes": cfg.retention.frequency_minutes,
    }
    values: dict[str, Any] = {c: {"logGroomerSidecar": dict(groomer)} for c in GROOMED_COMPONENTS}
    values["workers"] = {"celery": {"logGroomerSidecar": dict(groomer)}}
    if cfg.uses_claim:
        values["logs"] = {"persistence": {"enabled": True, "existingClaim": claim or claim_name(release)}}
        # One shared claim: the Celery workers' per-pod log volumes are not needed, and the
        # scheduler's groomer sweeps every component's logs on it; groomers in the triggerer
        # and DAG processor would sweep the same files again (on NFS/EFS, at a cost).
        values["workers"]["celery"]["persistence"] = {"enabled": False}
        for component in SHARED_CLAIM_UNGROOMED:
            values[component]["logGroomerSidecar"]["enabled"] = False
    else:
        values["logs"] = {"persistence": {"enabled": False}}
    if cfg.remote is not None:
        r = cfg.remote
        logging: dict[str, Any] = {"remote_logging": "True", "delete_local_logs": str(r.delete_local_logs)}
        if r.target == "elasticsearch":
            values["elasticsearch"] = {"enabled": True, "secretName": elasticsearch_secret_name(release)}
        else:
            logging["remote_base_log_folder"] = r.base_log_folder
            logging["remote_log_conn_id"] = r.connection_id
            if r.target == "s3":
                logging["encrypt_s3_logs"] = "True"
        values["config"] = {"logging": logging}
    return values
