"""What every container that runs Airflow needs, checked on the rendered pods (the offline preview).

Real Airflow processes, run with what the stacks render, found three ways to fail that no API
server sees: with no airflow.cfg mounted, Airflow writes a default one into AIRFLOW_HOME when it
starts, which a read-only root refuses (the `db-clean` CronJob never started); Python needs a
writable temporary directory (the chart's cleanup CronJob: "No usable temporary directory found");
and without the metadata connection Airflow talks to a SQLite file that is not there. One rule for
every container that runs Airflow, whoever renders it (the chart, AirflowRelease's Jobs and
CronJobs):

- airflow.cfg is a mount at `$AIRFLOW_HOME/airflow.cfg` (or at `$AIRFLOW_CONFIG`);
- the metadata connection is set (`AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`, its `_CMD` or `_SECRET`),
  and on Airflow 3 (read from the image tag) the async engine's own URL too (the one Airflow
  would derive keeps `sslmode`, which asyncpg refuses);
- with a read-only root, `/tmp` is a writable mount;
- with the task pods' stand-in database (secret_files.TASK_POD_DATABASE), the image's entrypoint
  does not wait for it (`CONNECTION_CHECK_MAX_COUNT=0`: found on the node, where every task pod
  waited a minute for a database that never answers, then failed).

A container runs Airflow when its command line calls the `airflow` CLI, or when it is the
KubernetesExecutor's pod template container (`base`), whose command the executor supplies. The
scheduler's log groomer (`/clean-logs`, a shell script that deletes old files) and the backup's
`pg_dump` are not Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..config.secret_paths import AIRFLOW_HOME, ASYNC_CONN_ENV
from .secret_files import NO_DATABASE_WAIT, TASK_POD_DATABASE

SYNC_CONN_ENV = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
POD_TEMPLATE_CONTAINER = "base"
_AIRFLOW_CLI = re.compile(r"(?:^|[\s;&|(`])airflow\s+[a-z]")
_VERSION = re.compile(r"(?<![0-9.])([0-9]+)\.[0-9]+\.[0-9]+")
# Volumes a container cannot write, whatever its mount says.
_READ_ONLY_SOURCES = ("configMap", "secret", "projected", "downwardAPI")


def runs_airflow(kind: str, container: Mapping[str, Any]) -> bool:
    line = " ".join(str(part) for part in [*(container.get("command") or []), *(container.get("args") or [])])
    if _AIRFLOW_CLI.search(line):
        return True
    return kind == "Pod" and container.get("name") == POD_TEMPLATE_CONTAINER and not line


def _major(image: Any) -> int | None:
    """The Airflow major version in an image tag (`apache/airflow:3.2.1-python3.12` -> 3), if any."""
    reference = str(image or "").split("@", 1)[0]
    tag = reference.rsplit(":", 1)[1] if ":" in reference.rsplit("/", 1)[-1] else ""
    found = _VERSION.search(tag)
    return int(found.group(1)) if found else None


def _has(env: set[str], option: str) -> bool:
    return bool({option, f"{option}_CMD", f"{option}_SECRET"} & env)


def _writable_mounts(spec: Mapping[str, Any], container: Mapping[str, Any]) -> set[str]:
    volumes = {v.get("name"): v for v in spec.get("volumes") or [] if isinstance(v, Mapping)}
    out = set()
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount.get("name")) or {}
        if mount.get("readOnly") or any(source in volume for source in _READ_ONLY_SOURCES):
            continue
        out.add(str(mount.get("mountPath", "")).rstrip("/") or "/")
    return out


def runtime_problems(kind: str, spec: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    """What a container that runs Airflow lacks (nothing for any other container)."""
    if not runs_airflow(kind, container):
        return []
    name = container.get("name")
    values = {e.get("name"): e.get("value") for e in container.get("env") or [] if isinstance(e, Mapping)}
    env = {str(n) for n in values}
    out = []
    home = str(values.get("AIRFLOW_HOME") or AIRFLOW_HOME).rstrip("/")
    config = str(values.get("AIRFLOW_CONFIG") or f"{home}/airflow.cfg")
    mounted = {str(m.get("mountPath", "")).rstrip("/") for m in container.get("volumeMounts") or []}
    if config not in mounted:
        out.append(
            f"container {name!r} runs Airflow without airflow.cfg mounted at {config}: Airflow writes a default "
            "one there when it starts (a read-only root refuses it) and runs with settings nobody chose"
        )
    if not _has(env, SYNC_CONN_ENV):
        out.append(f"container {name!r} runs Airflow without the metadata connection ({SYNC_CONN_ENV}_CMD)")
    elif (_major(container.get("image")) or 0) >= 3 and not _has(env, ASYNC_CONN_ENV):
        out.append(
            f"container {name!r} runs Airflow 3 without its async database URL ({ASYNC_CONN_ENV}_CMD): the one "
            "Airflow derives keeps `sslmode`, which asyncpg refuses"
        )
    stand_in = values.get(SYNC_CONN_ENV) == TASK_POD_DATABASE[SYNC_CONN_ENV]
    if stand_in and any(values.get(n) != v for n, v in NO_DATABASE_WAIT.items()):
        out.append(
            f"container {name!r} has the task pods' stand-in database but not CONNECTION_CHECK_MAX_COUNT=0: the "
            "image's entrypoint waits for that database, which never answers, and then fails"
        )
    read_only = (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is True
    if read_only and "/tmp" not in _writable_mounts(spec, container):
        out.append(
            f"container {name!r} runs Airflow with a read-only root and no writable /tmp: Python finds no "
            "usable temporary directory"
        )
    return out
