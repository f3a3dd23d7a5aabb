"""Airflow pools as code (`airflow.pools`), imported by a one-off Job.

The official chart has no pools value; Airflow's own way in is `airflow pools import
<file>` (Airflow 2.11 and 3.x: a JSON object `{name: {slots, description,
include_deferred}}`, each pool created or updated). AirflowRelease ships the file in a
ConfigMap and runs that command in a Job named after the file's content, so a change to
the pools is a new Job that runs once, after the release. Pools removed from config are
not deleted (the import never deletes): `airflow pools delete <name>`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from ...core.reader import ConfigError, Node

# Airflow stores pool names in a 256-character column; we keep to characters that read the
# same in a shell, a URL and the UI.
_POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,255}$")
POOLS_FILE = "pools.json"


@dataclass(frozen=True)
class Pool:
    name: str
    slots: int
    description: str = ""
    include_deferred: bool = False


def parse_pools(node: Node) -> tuple[Pool, ...]:
    """Read `<airflow>.pools`: {name: {slots, description, includeDeferred}}."""
    pools = []
    for name, sub in node.entries("pools"):
        if not _POOL_NAME.match(name):
            raise ConfigError(
                sub.path,
                name,
                "a pool name is 1-256 of letters, digits, '_', '.', ':' and '-', starting with a letter or digit.",
            )
        pools.append(
            Pool(
                name=name,
                slots=sub.integer("slots", low=-1, high=1_000_000),
                description=sub.string("description", ""),
                include_deferred=sub.boolean("includeDeferred", False),
            )
        )
        sub.finish()
    return tuple(pools)


def pools_file(pools: tuple[Pool, ...]) -> str:
    """The file `airflow pools import` reads (stable: sorted keys)."""
    data = {
        p.name: {"slots": p.slots, "description": p.description, "include_deferred": p.include_deferred} for p in pools
    }
    return json.dumps(data, sort_keys=True, indent=2) + "\n"


def pools_job_name(release: str, pools: tuple[Pool, ...]) -> str:
    """`<release>-import-pools-<hash>`: a new name (a new Job, run once) whenever the pools change."""
    digest = hashlib.sha256(pools_file(pools).encode()).hexdigest()[:10]
    return f"{release}-import-pools-{digest}"


def pools_configmap_name(release: str) -> str:
    return f"{release}-pulumi-pools"
