"""Restart long-running Airflow pods when what they read from our Secrets changes.

Airflow reads its Secrets' files (secret_files.py) when a process starts and keeps what it
built from them (database engine, Fernet, broker connection): a changed Secret, whose files
kubelet refreshes in place, does not restart it. The chart's own `checksum/*` pod
annotations only cover Secrets the chart renders itself, and AirflowRelease renders them
all (`<release>-pulumi-*`), so without help a new connection password, database URL or
Fernet key would reach task pods (which start fresh) but not the scheduler, triggerer,
DAG processor, api-server, Celery workers or Flower.

`pod_annotations` puts annotations on exactly those components' pods; a changed annotation
value is a changed pod template, which Kubernetes rolls out (PodDisruptionBudgets and the
chart's update strategies apply). Values must never carry secret material: AirflowRelease
uses the Secrets' `metadata.resourceVersion`, which changes whenever their data changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .spread import spread_components

if TYPE_CHECKING:
    from ..config.airflow import AirflowConfig

PREFIX = "airflow-k8s/"


def long_running(cfg: AirflowConfig) -> list[str]:
    """Chart values paths of the components whose pods read Airflow's Secrets and run for long."""
    paths = [p for p in spread_components(cfg) if p != "pgbouncer"]
    if cfg.flower.enabled and cfg.uses_celery:
        paths.append("flower")
    return paths


def pod_annotations(cfg: AirflowConfig, annotations: dict[str, str]) -> dict[str, Any]:
    """`<component>.podAnnotations` chart values for every long-running component."""
    if not annotations:
        return {}
    values: dict[str, Any] = {}
    for path in long_running(cfg):
        target = values
        for part in path.split("."):
            target = target.setdefault(part, {})
        target["podAnnotations"] = dict(annotations)
    return values


def revision_annotations(revisions: dict[str, str | None]) -> dict[str, str]:
    """`airflow-k8s/<secret>-revision: <resourceVersion>` for every Secret with a known version."""
    return {f"{PREFIX}{role}-revision": str(version) for role, version in sorted(revisions.items()) if version}


# Secrets whose change must restart pods: AirflowRelease role -> which pods read it.
AIRFLOW_SECRETS = ("fernet-key", "metadata", "broker-url", "environment", "database-ca")
PGBOUNCER_SECRETS = ("pgbouncer-config", "database-ca")


def revision_values(cfg: AirflowConfig, revisions: dict[str, str | None]) -> dict[str, Any]:
    """Pod annotations carrying the resourceVersion of each Secret the pods read: Airflow's
    components for the Airflow Secrets, PgBouncer for its configuration (it reads its
    `pgbouncer.ini` and `users.txt` once, so a new database password needs a restart too)."""
    airflow = revision_annotations({k: v for k, v in revisions.items() if k in AIRFLOW_SECRETS})
    values = pod_annotations(cfg, airflow)
    pgbouncer = revision_annotations({k: v for k, v in revisions.items() if k in PGBOUNCER_SECRETS})
    if pgbouncer and cfg.database.pgbouncer.enabled:
        values["pgbouncer"] = {"podAnnotations": pgbouncer}
    return values
