"""Typed config of metadata-database care (the `maintenance` stack key): backups and cleanup.

- `backup`: a CronJob that runs `pg_dump --format=custom` against the metadata database itself
  (never through PgBouncer), on a schedule, into a retained claim, keeping the newest `keep` dumps.
- `cleanup`: a CronJob running `airflow db clean` for rows older than `retentionDays` (a dry run
  by default on a laptop cluster), plus the chart's own cleanup of finished KubernetesExecutor pods.

Errors are `ConfigError`s naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from ...core.cron import schedule
from ...core.reader import ConfigError, Node, dns_label

if TYPE_CHECKING:
    from ...logs.config import LogsConfig

BackupTarget = Literal["claim", "bucket"]
# Remote-logging targets a backup can follow into their bucket (Airflow's object storage: s3://, gs://).
BUCKET_SCHEMES = {"s3": "s3://", "gcs": "gs://"}
BUCKET_FOLDER = "airflow-metadata-backups"


@dataclass(frozen=True)
class Backup:
    enabled: bool = False
    schedule: str = "17 2 * * *"
    keep: int = 14
    size: str = "20Gi"
    storage_class: str | None = None
    target: BackupTarget = "claim"
    bucket_url: str | None = None
    """`bucket`: the folder dumps go to (resolved from the remote-logging bucket)."""
    connection_id: str = ""
    """`bucket`: the remote-logging connection (static keys), or "" for the pods' cloud identity."""
    identity_annotations: dict[str, str] = field(default_factory=dict)
    """The backup ServiceAccount's cloud identity (`identity.components.metadataBackup` or the default)."""
    identity_labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Cleanup:
    enabled: bool = False
    schedule: str = "43 3 * * *"
    retention_days: int = 90
    dry_run: bool = False
    finished_pods: bool = True


@dataclass(frozen=True)
class MaintenanceConfig:
    backup: Backup = field(default_factory=Backup)
    cleanup: Cleanup = field(default_factory=Cleanup)


def _schedule(node: Node, default: str) -> str:
    """A CronJob schedule the API server accepts and that fires (components/core/cron.py)."""
    return schedule(node.key("schedule"), node.string("schedule", default))


def parse_maintenance(raw: Any, *, production: bool = True) -> MaintenanceConfig:
    """Parse the `maintenance` object. A present `backup` or `cleanup` object is on unless it says
    `enabled: false`; `cleanup.dryRun` defaults to true on a laptop cluster."""
    node = Node(raw, "maintenance")
    b = node.mapping("backup")
    backup = Backup(
        enabled=b.boolean("enabled", node.has("backup")),
        schedule=_schedule(b, Backup.schedule),
        keep=b.integer("keep", Backup.keep, low=1, high=1000),
        size=b.quantity("size", Backup.size, what="a storage size"),
        storage_class=b.string("storageClass", None),
        target=b.string("target", "claim", choices=("claim", "bucket")),
        bucket_url=b.string(
            "bucketFolder",
            None,
            pattern=re.compile(r"^(s3|gs)://[^/\s]+(/\S*)?$"),
            describe="expected an s3:// or gs:// folder (bucket, then a prefix).",
        ),
    )
    if backup.bucket_url is not None and backup.target != "bucket":
        raise ConfigError(b.key("bucketFolder"), backup.bucket_url, f"only with {b.key('target')}: bucket.")
    if backup.target == "bucket" and b.has("storageClass"):
        raise ConfigError(b.key("storageClass"), backup.storage_class, "only with target 'claim' (no claim is made).")
    if backup.storage_class is not None:
        dns_label(b.key("storageClass"), backup.storage_class, max_len=253)
    b.finish()
    c = node.mapping("cleanup")
    cleanup = Cleanup(
        enabled=c.boolean("enabled", node.has("cleanup")),
        schedule=_schedule(c, Cleanup.schedule),
        retention_days=c.integer("retentionDays", Cleanup.retention_days, low=1, high=3650),
        dry_run=c.boolean("dryRun", not production),
        finished_pods=c.boolean("finishedPods", True),
    )
    c.finish()
    node.finish()
    return MaintenanceConfig(backup=backup, cleanup=cleanup)


def resolve_backup_bucket(maint: MaintenanceConfig, logs: LogsConfig) -> MaintenanceConfig:
    """`backup.target: bucket`: the folder in the remote-logging bucket (unless `bucketFolder` names
    one) and the credentials remote logging uses (its connection, or the pods' cloud identity)."""
    backup = maint.backup
    if not backup.enabled or backup.target != "bucket":
        return maint
    remote = logs.remote
    if remote is None or remote.target not in BUCKET_SCHEMES:
        shown = remote.target if remote is not None else logs.mode
        raise ConfigError(
            "maintenance.backup.target",
            "bucket",
            f"dumps go to the remote-logging bucket, and remote logs go to {shown!r}; a bucket target needs "
            "logs.mode 'remote' with target s3 or gcs.",
            "set maintenance.backup.target to 'claim' (a retained volume), or log remotely to S3 or GCS.",
        )
    url = backup.bucket_url
    if url is None:
        bucket = remote.base_log_folder.split("://", 1)[1].split("/", 1)[0]
        url = f"{BUCKET_SCHEMES[remote.target]}{bucket}/{BUCKET_FOLDER}"
    elif not url.startswith(BUCKET_SCHEMES[remote.target]):
        raise ConfigError(
            "maintenance.backup.bucketFolder",
            url,
            f"the backup uses remote logging's credentials, which reach {remote.target} "
            f"({BUCKET_SCHEMES[remote.target]}...) only.",
        )
    return replace(maint, backup=replace(backup, bucket_url=url, connection_id=remote.connection_id))
