"""The metadata database's backup and cleanup CronJobs: plain functions of typed config.

Backup. The Airflow image ships the PostgreSQL client (`pg_dump`, `pg_restore`). The CronJob
connects to the database itself, never through PgBouncer (a dump needs one session; PgBouncer
pools transactions), with every connection parameter, the password included, in a libpq service
file (`pg_service.conf`) mounted from the Secret `<release>-pulumi-backup`: nothing secret in the
pod spec, the command line or the environment. It writes `airflow-metadata-<UTC time>.dump`
(`pg_dump --format=custom`), checks the dump reads back (`pg_restore --list`) before it takes
the final name, and keeps the newest `keep` dumps on a retained claim.

Cleanup. `airflow db clean` for rows older than the retention, as a CronJob of the release's own
image with the database connection as a file (airflow_jobs.py), `--dry-run` where configured.
"""

from __future__ import annotations

from typing import Any

from ..config.airflow import AirflowConfig, DatabaseUrl
from ..config.maintenance import MaintenanceConfig
from .chart import AIRFLOW_UID, CONTAINER_SECURITY, POD_SECURITY, READ_ONLY_ROOT, SecretNames
from .jobs import _labels, cli_job
from .secret_files import (
    CONNECTIONS_FILE,
    DATABASE_CA_FILE,
    DATABASE_CA_KEY,
    LOCAL_FILESYSTEM_BACKEND,
    TMP_VOLUME,
    tmp_volume,
)

BACKUP_DIR = "/backups"
BACKUP_SECRETS_DIR = "/opt/airflow/backup-secrets"
PG_SERVICE_FILE = "pg_service.conf"
PG_SERVICE = "airflow-metadata"
DUMP_PREFIX = "airflow-metadata-"

# The whole backup, as the CronJob runs it (bash -c). Inputs: PGSERVICEFILE and PGSERVICE (libpq
# reads every connection parameter from the service file), BACKUP_DIR and BACKUP_KEEP.
# With BACKUP_URL (a bucket target), the checked dump is copied there by Airflow's object storage
# (the image's providers; BACKUP_CONN_ID or, unset, the cloud SDK's default credentials), read
# back for its size, and the bucket keeps the newest BACKUP_KEEP.
BACKUP_SCRIPT = r"""set -euo pipefail
umask 007
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
dump="$BACKUP_DIR/airflow-metadata-$stamp.dump"
rm -f "$BACKUP_DIR"/airflow-metadata-*.dump.partial
pg_dump --format=custom --file="$dump.partial"
pg_restore --list "$dump.partial" > /dev/null
mv "$dump.partial" "$dump"
if [ -n "${BACKUP_URL:-}" ]; then
  python - "$dump" <<'PY'
import os, shutil, sys
try:
    from airflow.sdk import ObjectStoragePath
except ImportError:  # Airflow 2.11
    from airflow.io.path import ObjectStoragePath
dump = sys.argv[1]
folder = ObjectStoragePath(os.environ["BACKUP_URL"].rstrip("/") + "/", conn_id=os.environ.get("BACKUP_CONN_ID") or None)
target = folder / os.path.basename(dump)
with open(dump, "rb") as src, target.open("wb") as out:
    shutil.copyfileobj(src, out, 8 << 20)
size = os.path.getsize(dump)
if target.stat().st_size != size:
    sys.exit(f"{target}: {target.stat().st_size} bytes after upload, {size} expected")
dumps = sorted((p for p in folder.iterdir() if p.name.startswith("airflow-metadata-") and p.name.endswith(".dump")),
               key=lambda p: p.name, reverse=True)
keep = int(os.environ["BACKUP_KEEP"])
for old in dumps[keep:]:
    old.unlink()
print(f"uploaded {target} ({size} bytes); {min(len(dumps), keep)} dumps kept")
PY
  rm -f "$dump"
  exit 0
fi
ls -1 "$BACKUP_DIR"/airflow-metadata-*.dump | sort -r | tail -n +"$((BACKUP_KEEP + 1))" | xargs -r rm -f --
echo "wrote $dump ($(stat -c %s "$dump") bytes); $(ls -1 "$BACKUP_DIR"/airflow-metadata-*.dump | wc -l) dumps kept"
"""

# The documented restore (README "Restoring the metadata database"), into an empty database.
RESTORE_COMMAND = "pg_restore --no-owner --no-privileges --exit-on-error --dbname={dbname} {dump}"


def backup_secret_name(release: str) -> str:
    return f"{release}-pulumi-backup"


def backup_claim_name(release: str) -> str:
    return f"{release}-metadata-backups"


def pg_service_file(target: DatabaseUrl, service: str = PG_SERVICE, rootcert: str | None = None) -> str:
    """A libpq service file naming the database itself, password included (a secret); `rootcert`:
    the file of the CA its certificate is checked against (sslmode=verify-ca / verify-full)."""
    for part, value in (("user", target.user), ("password", target.password), ("database", target.database)):
        if "\n" in value:
            raise ValueError(f"the database {part} contains a line break, which a libpq service file cannot hold")
    return (
        f"[{service}]\n"
        f"host={target.host}\n"
        f"port={target.port}\n"
        f"dbname={target.database}\n"
        f"user={target.user}\n"
        f"password={target.password}\n"
        f"sslmode={target.sslmode}\n" + (f"sslrootcert={rootcert}\n" if rootcert else "")
    )


def backup_rootcert(cfg: AirflowConfig) -> str | None:
    """Where the backup pod finds the external database's CA, if one is set."""
    return f"{BACKUP_SECRETS_DIR}/{DATABASE_CA_FILE}" if cfg.database.ca_certificate is not None else None


def backup_claim(cfg: AirflowConfig, maint: MaintenanceConfig) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": maint.backup.size}}}
    if maint.backup.storage_class:
        spec["storageClassName"] = maint.backup.storage_class
    return {
        "metadata": {"name": backup_claim_name(cfg.release_name), "labels": _labels(cfg, "metadata-backup")},
        "spec": spec,
    }


def _high_uid(pod: dict[str, Any]) -> None:
    """The pod's uid said on every container too (scanners look at containers: CKV_K8S_40)."""
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        container["securityContext"] = {**container["securityContext"], "runAsUser": AIRFLOW_UID, "runAsGroup": 0}


def _cron(cfg: AirflowConfig, name: str, component: str, schedule: str, job_spec: dict[str, Any]) -> dict[str, Any]:
    labels = _labels(cfg, component)
    _high_uid(job_spec["template"]["spec"])
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"metadata": {"labels": labels}, "spec": job_spec},
        },
    }


def backup_service_account(release: str) -> str:
    return f"{release}-metadata-backup"


def backup_cronjob(cfg: AirflowConfig, maint: MaintenanceConfig) -> dict[str, Any]:
    """The `pg_dump` CronJob (metadata without namespace): to the claim, or through an emptyDir
    (at most `backup.size`) to the bucket."""
    r = cfg.release_name
    b = maint.backup
    labels = {**_labels(cfg, "metadata-backup"), **b.identity_labels}
    env = [
        {"name": "PGSERVICEFILE", "value": f"{BACKUP_SECRETS_DIR}/{PG_SERVICE_FILE}"},
        {"name": "PGSERVICE", "value": PG_SERVICE},
        {"name": "BACKUP_DIR", "value": BACKUP_DIR},
        {"name": "BACKUP_KEEP", "value": str(b.keep)},
    ]
    secret_items = [
        {"secret": {"name": backup_secret_name(r), "items": [{"key": PG_SERVICE_FILE, "path": PG_SERVICE_FILE}]}}
    ]
    if cfg.database.ca_certificate is not None:  # the service file's sslrootcert (backup_rootcert)
        items = [{"key": DATABASE_CA_KEY, "path": DATABASE_CA_FILE}]
        secret_items.append({"secret": {"name": SecretNames(r).database_ca, "items": items}})
    backups: dict[str, Any] = {"name": "backups", "persistentVolumeClaim": {"claimName": backup_claim_name(r)}}
    if b.target == "bucket":
        backups = {"name": "backups", "emptyDir": {"sizeLimit": b.size}}
        env += [{"name": "BACKUP_URL", "value": b.bucket_url or ""}, {"name": "AIRFLOW_HOME", "value": "/tmp/airflow"}]
        if b.connection_id:
            # The remote-logging connection, read by Airflow's LocalFilesystemBackend from the file.
            env += [
                {"name": "BACKUP_CONN_ID", "value": b.connection_id},
                *({"name": f"AIRFLOW__SECRETS__{k.upper()}", "value": v} for k, v in _secrets_backend().items()),
            ]
            names = SecretNames(r)
            secret_items.append(
                {"secret": {"name": names.environment, "items": [{"key": CONNECTIONS_FILE, "path": CONNECTIONS_FILE}]}}
            )
    container = {
        "name": "pg-dump",
        "image": cfg.image.reference,
        "imagePullPolicy": cfg.image.pull_policy,
        "command": ["bash", "-c", BACKUP_SCRIPT],
        "env": env,
        "securityContext": {**CONTAINER_SECURITY, **(READ_ONLY_ROOT if cfg.read_only_root else {})},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "volumeMounts": [
            {"name": "backup-secrets", "mountPath": BACKUP_SECRETS_DIR, "readOnly": True},
            {"name": "backups", "mountPath": BACKUP_DIR},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
        ],
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # A cloud identity reaches the pod through its ServiceAccount (IRSA's and Azure's webhooks
        # project their own token; GKE's metadata server needs none): no API token either way.
        "automountServiceAccountToken": False,
        "securityContext": dict(POD_SECURITY),
        "containers": [container],
        "volumes": [
            {"name": "backup-secrets", "projected": {"defaultMode": 0o440, "sources": secret_items}},
            backups,
            tmp_volume(),
        ],
    }
    if b.identity_annotations:
        pod["serviceAccountName"] = backup_service_account(r)
    job = {
        "backoffLimit": 2,
        "activeDeadlineSeconds": 3 * 3600,
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }
    return _cron(cfg, f"{r}-metadata-backup", "metadata-backup", b.schedule, job)


def _secrets_backend() -> dict[str, str]:
    """`[secrets]` settings that make Airflow read the connections file the backup pod mounts."""
    import json

    kwargs = {"connections_file_path": f"{BACKUP_SECRETS_DIR}/{CONNECTIONS_FILE}"}
    return {"backend": LOCAL_FILESYSTEM_BACKEND, "backend_kwargs": json.dumps(kwargs)}


def cleanup_command(days: int, dry_run: bool) -> str:
    """`airflow db clean` for rows older than `days` days (the cutoff computed when the Job runs)."""
    return (
        "airflow db clean --clean-before-timestamp "
        f"\"$(date -u -d '-{days} days' '+%Y-%m-%d %H:%M:%S+00:00')\" --skip-archive --yes"
        + (" --dry-run" if dry_run else "")
    )


def cleanup_cronjob(cfg: AirflowConfig, maint: MaintenanceConfig) -> dict[str, Any]:
    """The `airflow db clean` CronJob (metadata without namespace)."""
    c = maint.cleanup
    job = cli_job(cfg, f"{cfg.release_name}-db-clean", "db-clean", cleanup_command(c.retention_days, c.dry_run))
    job["spec"]["backoffLimit"] = 2
    job["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    return _cron(cfg, f"{cfg.release_name}-db-clean", "db-clean", c.schedule, job["spec"])


CLEANUP_PODS_SCHEDULE = "*/15 * * * *"


def cleans_finished_pods(cfg: AirflowConfig, maint: MaintenanceConfig) -> bool:
    return maint.cleanup.enabled and maint.cleanup.finished_pods and cfg.uses_kubernetes


def cleanup_pods_name(release: str) -> str:
    """The CronJob, its ServiceAccount, Role and RoleBinding."""
    return f"{release}-cleanup-pods"


def cleanup_pods_cronjob(cfg: AirflowConfig) -> dict[str, Any]:
    """`airflow kubernetes cleanup-pods` every 15 minutes: removes finished KubernetesExecutor task pods.

    The chart's own `cleanup` CronJob (chart 1.21.0) takes no volumes of its own: with a read-only
    root it has no /tmp and cannot get the database connection as a file, and it crashed at every
    run. This one is a CLI Job like db-clean, run as its own ServiceAccount (pods: list, delete).
    """
    name = cleanup_pods_name(cfg.release_name)
    job = cli_job(
        cfg, name, "cleanup-pods", f"airflow kubernetes cleanup-pods --namespace={cfg.namespace}", service_account=name
    )
    job["spec"]["backoffLimit"] = 1
    job["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    return _cron(cfg, name, "cleanup-pods", CLEANUP_PODS_SCHEDULE, job["spec"])


def cleanup_pods_role(cfg: AirflowConfig) -> dict[str, Any]:
    """The Role the cleanup ServiceAccount is bound to: what `cleanup-pods` does, in Airflow's namespace."""
    return {
        "metadata": {"name": cleanup_pods_name(cfg.release_name), "labels": _labels(cfg, "cleanup-pods")},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "delete"]}],
    }
