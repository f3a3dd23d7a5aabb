"""Typed config of metadata-database care (the `maintenance` stack key): backups and cleanup.

- `backup`: a CronJob that runs `pg_dump --format=custom` against the metadata database itself
  (never through PgBouncer), on a schedule, into a retained claim, keeping the newest `keep` dumps.
- `cleanup`: a CronJob running `airflow db clean` for rows older than `retentionDays` (a dry run
  by default on a laptop cluster), plus the chart's own cleanup of finished KubernetesExecutor pods.

Errors are `ConfigError`s naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ._reader import ConfigError, Node, dns_label

# Five cron fields (minute hour day-of-month month day-of-week), or a macro Kubernetes accepts.
_CRON_FIELD = r"(\*|\d+|\d+-\d+)(/\d+)?(,(\*|\d+|\d+-\d+)(/\d+)?)*|[A-Za-z]{3}(-[A-Za-z]{3})?(,[A-Za-z]{3})*"
CRON = re.compile(
    rf"^({_CRON_FIELD})( ({_CRON_FIELD})){{4}}$|^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$"
)


@dataclass(frozen=True)
class Backup:
    enabled: bool = False
    schedule: str = "17 2 * * *"
    keep: int = 14
    size: str = "20Gi"
    storage_class: str | None = None


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
    value = str(node.string("schedule", default))
    if not CRON.match(value):
        raise ConfigError(
            node.key("schedule"),
            value,
            "expected a cron schedule of five fields (minute hour day month weekday, e.g. '17 2 * * *') or @daily.",
        )
    return value


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
    )
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
