"""One-off Airflow CLI Jobs AirflowRelease declares: the schema migration, Fernet key rotation and
pool import.

Plain functions returning Kubernetes objects (without namespace), testable without Pulumi.
Each Job runs the release's own Airflow image with the chart's airflow.cfg, and the database
connection and the Fernet keys from the Secrets AirflowRelease owns (as files: secret_files.py),
waits for the schema first (`airflow db check-migrations`, like the chart's own pods; the
migration itself aside), and runs
hardened: non-root, no privilege escalation, no capabilities, read-only root (with /tmp), no
service account token. Labelled `tier: airflow` and `release: <release>`, so the chart's
NetworkPolicies let it reach PgBouncer.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..config.airflow import AirflowConfig
from ..config.pools import POOLS_FILE, Pool, pools_configmap_name, pools_file, pools_job_name
from .chart import CONTAINER_SECURITY, POD_SECURITY, READ_ONLY_ROOT, SIDECAR_RESOURCES, SecretNames
from .fernet import rotate_job_name
from .secret_files import (
    SECRETS_DIR,
    SECRETS_VOLUME,
    TMP_VOLUME,
    WAIT_FOR_MIGRATIONS_ARGS,
    SecretFile,
    config_mount,
    database_ca_env,
    database_ca_sources,
    projected_secrets,
    secret_files,
    tmp_volume,
)

JOB_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
BACKOFF_LIMIT = 6  # retried with back-off (10 s, 20 s, ... up to 6 min): the database may still be migrating


def _labels(cfg: AirflowConfig, component: str) -> dict[str, str]:
    return {
        "tier": "airflow",
        "component": component,
        "release": cfg.release_name,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def _files(cfg: AirflowConfig) -> list[SecretFile]:
    """The database connection and the Fernet keys, as files (see secret_files.py)."""
    names = SecretNames(cfg.release_name)
    return [f for f in secret_files(cfg, "job") if f.secret in (names.fernet_key, names.metadata, names.metadata_async)]


# The API token of a Job that calls the Kubernetes API, mounted explicitly where the automatic one
# would be (the pod keeps automountServiceAccountToken false), as the chart does for the scheduler.
API_TOKEN_VOLUME = "kube-api-access"
API_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def api_token_volume() -> dict[str, Any]:
    return {
        "name": API_TOKEN_VOLUME,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ]
        },
    }


def cli_job(
    cfg: AirflowConfig,
    name: str,
    component: str,
    command: str,
    volumes: list[dict[str, Any]] | None = None,
    mounts: list[dict[str, Any]] | None = None,
    service_account: str | None = None,
    wait_for_schema: bool = True,
) -> dict[str, Any]:
    """A Job running `command` (an `airflow ...` command line) once, after the schema is current.

    Every container gets what Airflow reads and writes, as the chart's own pods do: the chart's
    airflow.cfg, the database connection and Fernet keys as files, and /tmp (read-only root). With
    `service_account`, the command runs as it, with its API token (the wait for the schema without)."""
    image = cfg.image.reference
    files = _files(cfg)
    config_volume, config = config_mount(cfg)
    file_mounts: list[dict[str, Any]] = [
        config,
        {"name": SECRETS_VOLUME, "mountPath": SECRETS_DIR, "readOnly": True},
        {"name": TMP_VOLUME, "mountPath": "/tmp"},
    ]
    container: dict[str, Any] = {
        "image": image,
        "imagePullPolicy": cfg.image.pull_policy,
        "env": [f.cmd_env() for f in files] + database_ca_env(cfg),
        "securityContext": {**CONTAINER_SECURITY, **(READ_ONLY_ROOT if cfg.read_only_root else {})},
        "resources": {k: dict(v) for k, v in JOB_RESOURCES.items()},
        "volumeMounts": file_mounts,
    }
    labels = _labels(cfg, component)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "OnFailure",
        "automountServiceAccountToken": False,
        "securityContext": dict(POD_SECURITY),
        "initContainers": [{**container, "name": "wait-for-airflow-migrations", "args": list(WAIT_FOR_MIGRATIONS_ARGS)}]
        if wait_for_schema
        else [],
        "containers": [
            {
                **container,
                "name": component,
                "args": ["bash", "-c", f"exec {command}"],
                "volumeMounts": file_mounts + (mounts or []),
            }
        ],
        "volumes": [config_volume, projected_secrets(files, database_ca_sources(cfg)), tmp_volume(), *(volumes or [])],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
        pod_spec["volumes"].append(api_token_volume())
        pod_spec["containers"][0]["volumeMounts"].append(
            {"name": API_TOKEN_VOLUME, "mountPath": API_TOKEN_PATH, "readOnly": True}
        )
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"backoffLimit": BACKOFF_LIMIT, "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    }


def migrate_job(cfg: AirflowConfig, database: str = "") -> dict[str, Any]:
    """`airflow db migrate`, as `<release>-migrate-<hash of its pod template and its database>`.

    Jobs are immutable (apache/airflow#27561) and the chart names its migration Job the same on
    every upgrade, so it had to be deleted as soon as it finished (a failed migration vanished with
    its log). Named after its template, this Job is kept once finished, with its pod and log, and a
    new image (or any other change to the template) is a new Job, which Pulumi creates before it
    deletes the old one: a second upgrade right after the first never meets an immutable Job.
    `pulumi up` waits for it and fails if it fails; in the cluster only the pods that need the
    schema wait for it (their wait-for-airflow-migrations), so it runs beside the Release.

    `database` (an external database's `DatabaseUrl.where()`: host, port and name, no credential)
    is hashed too: the URL reaches the pod through a Secret, not its template, and a database moved
    or restored from a dump (docs/database.md) needs its own `airflow db migrate`, which is a no-op
    on a schema already current."""
    job = cli_job(cfg, "", "run-airflow-migrations", "airflow db migrate", wait_for_schema=False)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    container["resources"] = {k: dict(v) for k, v in SIDECAR_RESOURCES["job"].items()}
    hashed = json.dumps(job["spec"]["template"], sort_keys=True) + (f"\n{database}" if database else "")
    job["metadata"]["name"] = f"{cfg.release_name}-migrate-{hashlib.sha256(hashed.encode()).hexdigest()[:10]}"
    return job


def rotate_fernet_key_job(cfg: AirflowConfig) -> dict[str, Any]:
    """`airflow rotate-fernet-key`: re-encrypt connections, variables and triggers with the first key."""
    return cli_job(cfg, rotate_job_name(cfg.release_name, cfg.fernet), "rotate-fernet-key", "airflow rotate-fernet-key")


POOLS_MOUNT = "/opt/airflow/pools"


def pools_configmap(cfg: AirflowConfig, pools: tuple[Pool, ...]) -> dict[str, Any]:
    return {
        "metadata": {"name": pools_configmap_name(cfg.release_name), "labels": _labels(cfg, "pools")},
        "data": {POOLS_FILE: pools_file(pools)},
    }


def import_pools_job(cfg: AirflowConfig, pools: tuple[Pool, ...]) -> dict[str, Any]:
    """`airflow pools import`: create or update every declared pool."""
    return cli_job(
        cfg,
        pools_job_name(cfg.release_name, pools),
        "import-pools",
        f"airflow pools import {POOLS_MOUNT}/{POOLS_FILE}",
        volumes=[{"name": "pools", "configMap": {"name": pools_configmap_name(cfg.release_name)}}],
        mounts=[{"name": "pools", "mountPath": POOLS_MOUNT, "readOnly": True}],
    )
