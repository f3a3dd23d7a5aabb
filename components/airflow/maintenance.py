"""The metadata database's backup and cleanup, declared as children of AirflowRelease.

Thin Pulumi wiring of values/maintenance.py: the backup Secret (a libpq service file for the
database itself), the retained backup claim, and the two CronJobs, which start after the release.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from ..logs.config import LogsConfig
from .config.airflow import AirflowConfig, DatabaseUrl
from .config.maintenance import MaintenanceConfig, parse_maintenance, resolve_backup_bucket
from .values.maintenance import (
    PG_SERVICE_FILE,
    backup_claim,
    backup_cronjob,
    backup_rootcert,
    backup_secret_name,
    backup_service_account,
    cleans_finished_pods,
    cleanup_cronjob,
    cleanup_pods_cronjob,
    cleanup_pods_name,
    cleanup_pods_role,
    pg_service_file,
)


def settings(value: MaintenanceConfig | Mapping[str, Any] | None, logs: LogsConfig | None) -> MaintenanceConfig:
    """The maintenance settings, a bucket target resolved against the release's log storage."""
    if value is None:
        return MaintenanceConfig()
    maint = value if isinstance(value, MaintenanceConfig) else parse_maintenance(value)
    if maint.backup.enabled and maint.backup.target == "bucket" and maint.backup.bucket_url is None:
        maint = resolve_backup_bucket(maint, logs or LogsConfig())
    return maint


def declare(
    owner: pulumi.Resource,
    name: str,
    cfg: AirflowConfig,
    maint: MaintenanceConfig,
    namespace: pulumi.Input[str],
    target: pulumi.Output[DatabaseUrl],
    release: pulumi.Resource,
) -> None:
    """Children of `owner`: `<name>-backup-secret`, `<name>-backup-claim` (retained and protected),
    `<name>-metadata-backup`, `<name>-db-clean` and `<name>-cleanup-pods` (CronJobs, after `release`)."""
    if maint.backup.enabled:
        rootcert = backup_rootcert(cfg)
        service_file: pulumi.Input[str] = target.apply(lambda t: pg_service_file(t, rootcert=rootcert))
        secret = k8s.core.v1.Secret(
            f"{name}-backup-secret",
            metadata={
                "name": backup_secret_name(cfg.release_name),
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "pulumi", "release": cfg.release_name},
            },
            type="Opaque",
            string_data={PG_SERVICE_FILE: pulumi.Output.secret(service_file)},
            opts=pulumi.ResourceOptions(parent=owner),
        )
        needs: list[pulumi.Resource] = [release, secret]
        if maint.backup.target == "claim":
            claim_obj = backup_claim(cfg, maint)
            needs.append(
                k8s.core.v1.PersistentVolumeClaim(
                    f"{name}-backup-claim",
                    metadata={**claim_obj["metadata"], "namespace": namespace},
                    spec=claim_obj["spec"],
                    # Kept like every claim that holds data (retained and protected): after `pulumi destroy
                    # --exclude-protected` it stays in the cluster and in the state, so the next `up` takes
                    # it over instead of failing with "already exists".
                    opts=pulumi.ResourceOptions(parent=owner, retain_on_delete=True, protect=True),
                )
            )
        if maint.backup.identity_annotations:
            needs.append(
                k8s.core.v1.ServiceAccount(
                    f"{name}-backup-account",
                    metadata={
                        "name": backup_service_account(cfg.release_name),
                        "namespace": namespace,
                        "labels": {"release": cfg.release_name, **maint.backup.identity_labels},
                        "annotations": dict(maint.backup.identity_annotations),
                    },
                    automount_service_account_token=False,
                    opts=pulumi.ResourceOptions(parent=owner),
                )
            )
        cron = backup_cronjob(cfg, maint)
        k8s.batch.v1.CronJob(
            f"{name}-metadata-backup",
            metadata={**cron["metadata"], "namespace": namespace},
            spec=cron["spec"],
            opts=pulumi.ResourceOptions(parent=owner, depends_on=needs),
        )
    if maint.cleanup.enabled:
        cron = cleanup_cronjob(cfg, maint)
        k8s.batch.v1.CronJob(
            f"{name}-db-clean",
            metadata={**cron["metadata"], "namespace": namespace},
            spec=cron["spec"],
            opts=pulumi.ResourceOptions(parent=owner, depends_on=[release]),
        )
    if cleans_finished_pods(cfg, maint):
        _cleanup_pods(owner, name, cfg, namespace, release)


def _cleanup_pods(
    owner: pulumi.Resource, name: str, cfg: AirflowConfig, namespace: pulumi.Input[str], release: pulumi.Resource
) -> None:
    """`<name>-cleanup-pods`: the CronJob removing finished task pods, its ServiceAccount, Role and binding."""
    child = pulumi.ResourceOptions(parent=owner)
    role = cleanup_pods_role(cfg)
    account_name = cleanup_pods_name(cfg.release_name)
    account = k8s.core.v1.ServiceAccount(
        f"{name}-cleanup-pods-account",
        metadata={**role["metadata"], "namespace": namespace},
        automount_service_account_token=False,
        opts=child,
    )
    role_res = k8s.rbac.v1.Role(
        f"{name}-cleanup-pods-role",
        metadata={**role["metadata"], "namespace": namespace},
        rules=role["rules"],
        opts=child,
    )
    binding = k8s.rbac.v1.RoleBinding(
        f"{name}-cleanup-pods-binding",
        metadata={**role["metadata"], "namespace": namespace},
        role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account_name},
        subjects=[{"kind": "ServiceAccount", "name": account_name, "namespace": namespace}],
        opts=pulumi.ResourceOptions(parent=owner, depends_on=[account, role_res]),
    )
    cron = cleanup_pods_cronjob(cfg)
    k8s.batch.v1.CronJob(
        f"{name}-cleanup-pods",
        metadata={**cron["metadata"], "namespace": namespace},
        spec=cron["spec"],
        opts=pulumi.ResourceOptions(parent=owner, depends_on=[release, binding]),
    )
