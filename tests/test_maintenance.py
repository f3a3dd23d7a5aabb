"""Metadata database care: the backup and cleanup CronJobs as the stack declares them, and bad settings."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components import ConfigError
from components.core.reader import Node
from components.offline.preview import preview
from components.offline.program import is_secret, unwrap
from components.platform.config import parse_stack
from tests.helpers import DB_URL, ROOT, docs_text, of_type, release, render_release, run_stack, secrets_by_name
from tests.test_readme import documented

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
CELERY_EXTERNAL = {"executor": "CeleryExecutor", "dags": GIT, "database": {"mode": "external"}}
MAINTENANCE = {
    "backup": {"schedule": "5 1 * * *", "keep": 4, "size": "3Gi"},
    "cleanup": {"retentionDays": 45, "schedule": "@weekly"},
}


def cronjob(run, name: str) -> dict[str, Any]:
    (found,) = [r for r in of_type(run, "batch/v1:CronJob") if unwrap(r.inputs)["metadata"]["name"] == name]
    return dict(unwrap(found.inputs))


def pod(cron: dict[str, Any]) -> dict[str, Any]:
    return dict(cron["spec"]["jobTemplate"]["spec"]["template"]["spec"])


@pytest.fixture(scope="module")
def external_run():
    return run_stack(CELERY_EXTERNAL, secrets={"databaseUrl": DB_URL}, extra={"maintenance": MAINTENANCE})


class TestBackupCronJob:
    def test_the_backup_runs_on_the_schedule_one_at_a_time_keeping_the_configured_number(self, external_run):
        cron = cronjob(external_run, "airflow-metadata-backup")
        assert cron["spec"]["schedule"] == "5 1 * * *"
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        env = {e["name"]: e.get("value") for e in pod(cron)["containers"][0]["env"]}
        assert env["BACKUP_KEEP"] == "4"
        assert "pg_dump --format=custom" in pod(cron)["containers"][0]["command"][2]

    def test_the_database_credentials_come_from_a_mounted_service_file_never_args_or_env(self, external_run):
        spec = pod(cron := cronjob(external_run, "airflow-metadata-backup"))
        container = spec["containers"][0]
        assert "s3cr" not in str(cron)
        assert not any("valueFrom" in e for e in container["env"])
        (volume,) = [v for v in spec["volumes"] if v["name"] == "backup-secrets"]
        (source,) = volume["projected"]["sources"]
        assert source["secret"] == {
            "name": "airflow-pulumi-backup",
            "items": [{"key": "pg_service.conf", "path": "pg_service.conf"}],
        }
        assert volume["projected"]["defaultMode"] == 0o440
        secret = secrets_by_name(external_run)["airflow-pulumi-backup"]
        data = secret.inputs["stringData"]
        assert is_secret(data)
        text = unwrap(data)["pg_service.conf"]
        # the database itself (a dump needs one session; PgBouncer pools transactions)
        assert "host=db.internal\n" in text and "port=5432\n" in text and "dbname=airflow\n" in text
        assert "password=s3cr@t-db\n" in text and "sslmode=require\n" in text

    def test_dumps_go_to_a_claim_that_survives_destroy(self, external_run):
        claims = of_type(external_run, "core/v1:PersistentVolumeClaim")
        (claim,) = [r for r in claims if r.name == "airflow-backup-claim"]
        assert claim.retain_on_delete
        assert unwrap(claim.inputs)["spec"]["resources"]["requests"]["storage"] == "3Gi"
        spec = pod(cronjob(external_run, "airflow-metadata-backup"))
        volume = {"name": "backups", "persistentVolumeClaim": {"claimName": "airflow-metadata-backups"}}
        assert volume in spec["volumes"]

    def test_the_backup_pod_runs_hardened_without_a_token(self, external_run):
        spec = pod(cronjob(external_run, "airflow-metadata-backup"))
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        sc = spec["containers"][0]["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False

    def test_the_bundled_database_is_dumped_as_its_postgres_user(self):
        run = run_stack({"dags": GIT}, extra={"maintenance": {"backup": {}}})
        text = unwrap(secrets_by_name(run)["airflow-pulumi-backup"].inputs["stringData"])["pg_service.conf"]
        assert "host=airflow-postgresql.airflow\n" in text and "user=postgres\n" in text

    def test_the_cronjobs_start_after_the_release(self, external_run):
        for name in ("airflow-metadata-backup", "airflow-db-clean"):
            (res,) = [r for r in of_type(external_run, "batch/v1:CronJob") if r.name == name]
            assert release(external_run).urn in res.dependencies

    def test_the_preview_validates_both_cronjobs_with_no_problem(self, external_run, tmp_path):
        result = preview(ROOT, "test", tmp_path, run_checkov=False, program_run=external_run)
        assert result.problems == []
        kinds = {(o["kind"], o["metadata"]["name"]) for o in result.objects}
        assert {("CronJob", "airflow-metadata-backup"), ("CronJob", "airflow-db-clean")} <= kinds


S3_LOGS: dict[str, Any] = {"mode": "remote", "remote": {"target": "s3", "baseLogFolder": "s3://logs/airflow"}}
ROLE = "arn:aws:iam::123456789012:role/airflow"


class TestBucketTarget:
    def test_with_static_keys_the_backup_reads_remote_loggings_connection_from_its_file(self):
        run = run_stack(
            {"dags": GIT},
            secrets={"logsConnection": "aws://AKIA:key@"},
            extra={"logs": S3_LOGS, "maintenance": {"backup": {"target": "bucket", "size": "5Gi"}}},
        )
        spec = pod(cronjob(run, "airflow-metadata-backup"))
        env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
        assert env["BACKUP_URL"] == "s3://logs/airflow-metadata-backups"
        assert env["BACKUP_CONN_ID"] == "aws_logs"
        assert "LocalFilesystemBackend" in env["AIRFLOW__SECRETS__BACKEND"]
        sources = next(v for v in spec["volumes"] if v["name"] == "backup-secrets")["projected"]["sources"]
        assert {s["secret"]["name"] for s in sources} == {"airflow-pulumi-backup", "airflow-pulumi-environment"}
        assert {"name": "backups", "emptyDir": {"sizeLimit": "5Gi"}} in spec["volumes"]
        assert not [r for r in of_type(run, "PersistentVolumeClaim") if r.name == "airflow-backup-claim"]
        assert "AKIA" not in str(cronjob(run, "airflow-metadata-backup"))

    def test_with_a_cloud_identity_the_backup_runs_as_its_own_annotated_account(self):
        logs = {"mode": "remote", "remote": {**S3_LOGS["remote"], "workloadIdentity": True}}
        run = run_stack(
            {"dags": GIT},
            extra={
                "logs": logs,
                "identity": {"provider": "aws", "default": ROLE},
                "maintenance": {"backup": {"target": "bucket", "bucketFolder": "s3://backups/airflow"}},
            },
        )
        spec = pod(cronjob(run, "airflow-metadata-backup"))
        assert spec["serviceAccountName"] == "airflow-metadata-backup"
        env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
        assert env["BACKUP_URL"] == "s3://backups/airflow" and "BACKUP_CONN_ID" not in env
        (account,) = [r for r in of_type(run, "core/v1:ServiceAccount") if r.name == "airflow-backup-account"]
        assert unwrap(account.inputs)["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE}

    @pytest.mark.parametrize(
        ("extra", "key", "fragment"),
        [
            ({}, "maintenance.backup.target", "needs logs.mode 'remote' with target s3 or gcs"),
            (
                {
                    "logs": {
                        "mode": "remote",
                        "remote": {"target": "gcs", "baseLogFolder": "gs://l/a", "workloadIdentity": True},
                    },
                    "identity": {
                        "provider": "gcp",
                        "components": {"scheduler": "a-b-c-d@proj-x.iam.gserviceaccount.com"},
                    },
                },
                "identity.components.apiServer",
                "without an identity",
            ),
        ],
    )
    def test_a_bucket_target_needs_a_bucket_and_a_way_in(self, extra, key, fragment):
        with pytest.raises(ConfigError) as err:
            parse_stack({"airflow": {"dags": GIT}, "maintenance": {"backup": {"target": "bucket"}}, **extra}, set())
        assert err.value.key == key
        assert fragment in str(err.value)

    def test_a_backup_identity_is_required_when_the_others_have_one(self):
        logs = {"mode": "remote", "remote": {**S3_LOGS["remote"], "workloadIdentity": True}}
        identity = {
            "provider": "aws",
            "components": {c: ROLE for c in ("scheduler", "apiServer", "triggerer", "dagProcessor", "taskPods")},
        }
        with pytest.raises(ConfigError) as err:
            parse_stack(
                {
                    "airflow": {"dags": GIT},
                    "logs": logs,
                    "identity": identity,
                    "maintenance": {"backup": {"target": "bucket"}},
                },
                set(),
            )
        assert err.value.key == "maintenance.backup.target"
        assert "identity.components.metadataBackup" in str(err.value)

    def test_a_bucket_folder_of_another_cloud_is_refused(self):
        with pytest.raises(ConfigError) as err:
            parse_stack(
                {
                    "airflow": {"dags": GIT},
                    "logs": S3_LOGS,
                    "logsConnection": "aws://k:s@",
                    "maintenance": {"backup": {"target": "bucket", "bucketFolder": "gs://other/x"}},
                },
                {"logsConnection"},
            )
        assert err.value.key == "maintenance.backup.bucketFolder"


class TestCleanup:
    def test_db_clean_removes_rows_older_than_the_retention_and_is_not_a_dry_run_in_production(self, external_run):
        cron = cronjob(external_run, "airflow-db-clean")
        assert cron["spec"]["schedule"] == "@weekly"
        command = pod(cron)["containers"][0]["args"][2]
        assert "airflow db clean --clean-before-timestamp" in command and "-45 days" in command
        assert "--dry-run" not in command
        # the database connection as a file, like every Airflow container here
        env = {e["name"] for e in pod(cron)["containers"][0]["env"]}
        assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD" in env

    def test_on_a_laptop_cleanup_is_a_dry_run_unless_told_otherwise(self):
        laptop = {"environment": "laptop"}
        run = run_stack({"dags": GIT}, cluster=laptop, extra={"maintenance": {"cleanup": {}}})
        assert "--dry-run" in pod(cronjob(run, "airflow-db-clean"))["containers"][0]["args"][2]
        run = run_stack({"dags": GIT}, cluster=laptop, extra={"maintenance": {"cleanup": {"dryRun": False}}})
        assert "--dry-run" not in pod(cronjob(run, "airflow-db-clean"))["containers"][0]["args"][2]

    def test_finished_task_pods_are_cleaned_by_our_cronjob_with_the_kubernetes_executor(self):
        run = run_stack({"dags": GIT}, extra={"maintenance": {"cleanup": {}}})
        cron = cronjob(run, "airflow-cleanup-pods")
        assert cron["spec"]["schedule"] == "*/15 * * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
        assert pod(cron)["containers"][0]["args"][2] == "exec airflow kubernetes cleanup-pods --namespace=airflow"
        # the chart's own cleanup CronJob takes no volumes of its own (no /tmp, no secret files): off
        assert "airflow-cleanup" not in {o["metadata"]["name"] for o in render_release(release(run))}
        run = run_stack({"dags": GIT}, extra={"maintenance": {"cleanup": {"finishedPods": False}}})
        assert [r for r in of_type(run, "batch/v1:CronJob") if r.name == "airflow-cleanup-pods"] == []
        run = run_stack({"dags": GIT, "executor": "CeleryExecutor"}, extra={"maintenance": {"cleanup": {}}})
        assert [r for r in of_type(run, "batch/v1:CronJob") if r.name == "airflow-cleanup-pods"] == []

    def test_the_pod_cleanup_runs_as_its_own_account_allowed_only_to_list_and_delete_pods(self):
        run = run_stack({"dags": GIT}, extra={"maintenance": {"cleanup": {}}})
        spec = pod(cronjob(run, "airflow-cleanup-pods"))
        assert spec["serviceAccountName"] == "airflow-cleanup-pods"
        assert spec["automountServiceAccountToken"] is False  # the token is mounted explicitly, where needed
        (main,) = spec["containers"]
        token = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}[
            "/var/run/secrets/kubernetes.io/serviceaccount"
        ]
        (volume,) = [v for v in spec["volumes"] if v["name"] == token]
        assert {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}} in volume["projected"]["sources"]
        assert all(token not in {m["name"] for m in c["volumeMounts"]} for c in spec["initContainers"])
        (role,) = [
            unwrap(r.inputs)
            for r in of_type(run, "rbac.authorization.k8s.io/v1:Role")
            if r.name == "airflow-cleanup-pods-role"
        ]
        assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "delete"]}]
        (binding,) = [
            unwrap(r.inputs)
            for r in of_type(run, "rbac.authorization.k8s.io/v1:RoleBinding")
            if r.name == "airflow-cleanup-pods-binding"
        ]
        assert binding["roleRef"]["name"] == role["metadata"]["name"] == "airflow-cleanup-pods"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "airflow-cleanup-pods", "namespace": "airflow"}
        ]

    def test_without_a_maintenance_key_nothing_is_declared(self):
        run = run_stack({"dags": GIT})
        assert of_type(run, "batch/v1:CronJob") == []
        assert "airflow-pulumi-backup" not in secrets_by_name(run)


class TestMaintenanceConfig:
    @pytest.mark.parametrize(
        ("maintenance", "key", "fragment"),
        [
            ({"backup": {"schedule": "every night"}}, "maintenance.backup.schedule", "five fields"),
            ({"backup": {"schedule": "0 2 * *"}}, "maintenance.backup.schedule", "five fields"),
            ({"backup": {"keep": 0}}, "maintenance.backup.keep", "1"),
            ({"backup": {"size": "lots"}}, "maintenance.backup.size", "storage size"),
            ({"backup": {"storageClass": "Fast_SSD"}}, "maintenance.backup.storageClass", ""),
            ({"cleanup": {"retentionDays": 0}}, "maintenance.cleanup.retentionDays", "1"),
            ({"cleanup": {"dryrun": True}}, "maintenance.cleanup.dryrun", "unknown"),
            ({"backups": {}}, "maintenance.backups", "unknown"),
        ],
    )
    def test_bad_maintenance_settings_are_refused_naming_the_key(self, maintenance, key, fragment):
        with pytest.raises(ConfigError) as err:
            parse_stack({"airflow": {"dags": GIT}, "maintenance": maintenance}, set())
        assert err.value.key == key
        assert fragment in str(err.value)

    def test_every_maintenance_key_is_documented_in_the_readme(self):
        Node.asked.clear()
        parse_stack({"airflow": {"dags": GIT}, "maintenance": MAINTENANCE}, set())
        parse_stack(
            {
                "airflow": {"dags": GIT},
                "logs": S3_LOGS,
                "logsConnection": "aws://k:s@",
                "maintenance": {"backup": {"target": "bucket", "bucketFolder": "s3://b/x"}},
            },
            {"logsConnection"},
        )
        keys = sorted({k for k in Node.asked if k.startswith("maintenance")})
        assert len(keys) >= 10
        assert [k for k in keys if not documented(k)] == []

    def test_the_readme_documents_the_restore_command_the_test_proves(self):
        from components.airflow.values.maintenance import RESTORE_COMMAND

        readme = docs_text()
        assert RESTORE_COMMAND.split(" --dbname")[0] in readme
        assert re.search(r"airflow db migrate", readme)
