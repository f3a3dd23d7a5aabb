"""Part `backup` of node-prod (issue 25 scenario 5, e2e/node/prod_backup.py), offline: the stack
it deploys is prod's maintenance, node-sized, and one the components accept; the Jobs it makes
from the CronJobs are what `kubectl create job --from=cronjob/...` makes (the restore: the
documented command on the backup's own pod); it reads the backup's and `airflow db clean`'s
output the way they write it; and the external database's admin makes a database the Airflow
user owns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.airflow.config.airflow import parse_database_url
from components.airflow.values.maintenance import BACKUP_SCRIPT, backup_cronjob
from e2e.node import config, external_db, host, images, prod_backup, scenario_prod
from e2e.node.image_check import POSTGRES_REF
from e2e.node.parts import PROD_SELECT_ENV, selected
from tests.helpers import ROOT
from tests.test_node_prod import node_config, parsed, prod_node_preview  # noqa: F401 (its fixture)


def stack() -> dict[str, Any]:
    return prod_backup.backup_stack(scenario_prod.prod_stack(node_config()))


class TestTheStack:
    def test_it_is_prods_maintenance_node_sized_and_the_components_accept_it(self):
        prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["airflow-k8s:maintenance"]
        maint = parsed(stack()).maintenance
        assert maint.backup.enabled and maint.cleanup.enabled
        assert (maint.backup.schedule, maint.backup.keep) == (prod["backup"]["schedule"], prod["backup"]["keep"])
        assert (maint.cleanup.schedule, maint.cleanup.retention_days) == (
            prod["cleanup"]["schedule"],
            prod["cleanup"]["retentionDays"],
        )
        assert (maint.backup.size, maint.backup.storage_class) == ("2Gi", config.STORAGE_CLASS)
        assert maint.cleanup.dry_run  # the dry run first; the part sets dryRun false for the real one

    def test_the_old_run_is_older_than_prods_retention(self):
        assert parsed(stack()).maintenance.cleanup.retention_days < prod_backup.AGE_DAYS

    def test_the_config_it_starts_from_is_left_as_it_was(self):
        cfg = scenario_prod.prod_stack(node_config())
        prod_backup.backup_stack(cfg)
        assert "airflow-k8s:maintenance" not in cfg


class TestInNodeProd:
    def test_it_runs_with_node_prod_and_alone_when_named(self):
        assert prod_backup.PART in scenario_prod.PROD_PARTS  # green on the node
        parts = scenario_prod.PROD_PARTS
        trial = scenario_prod.PROD_TRIAL_PARTS
        assert prod_backup.PART in selected(parts, "", trial, PROD_SELECT_ENV)
        assert selected(parts, "backup", trial, PROD_SELECT_ENV) == [prod_backup.PART]


def backup_cron() -> dict[str, Any]:
    """The component's backup CronJob, as the API server returns it."""
    deployed = parsed(stack())
    cron = backup_cronjob(deployed.airflow, deployed.maintenance)
    cron["metadata"] |= {"namespace": "airflow", "uid": "1234"}
    return {"apiVersion": "batch/v1", "kind": "CronJob", **cron}


class TestJobsFromTheCronJobs:
    def test_by_hand_it_is_the_cronjobs_job_marked_manual_and_owned_by_it(self):
        cron = backup_cron()
        job = prod_backup.job_from_cronjob(cron, "airflow-backup-manual-1")
        assert job["spec"] == cron["spec"]["jobTemplate"]["spec"]
        assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
        assert job["metadata"]["ownerReferences"][0] | {} == {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": "airflow-metadata-backup",
            "uid": "1234",
        }
        assert job["metadata"]["labels"]["component"] == "metadata-backup"

    def test_the_restore_runs_the_documented_command_with_the_backups_claim_and_service_file(self):
        cron = backup_cron()
        dump = "/backups/airflow-metadata-20261207T150000Z.dump"
        job = prod_backup.job_from_cronjob(cron, "airflow-restore-1", prod_backup.restore_command(dump))
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == [
            "pg_restore",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--dbname=airflow_restored",
            dump,
        ]
        assert job["spec"]["backoffLimit"] == 0  # a failed restore is not retried into a non-empty database
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert claims == ["airflow-metadata-backups"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["PGSERVICEFILE"].endswith("/pg_service.conf") and env["PGSERVICE"]
        assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][0] == "bash"

    def test_docs_database_md_shows_the_restore_job_the_part_makes(self):
        doc = (ROOT / "docs" / "database.md").read_text()
        shown = json.dumps(prod_backup.restore_command("/backups/airflow-metadata-<time>.dump"))
        assert shown in doc
        assert "create job --from=cronjob/airflow-metadata-backup airflow-restore --dry-run=client -o json" in doc


class TestStoppingTheWriters:
    def test_docs_step_1_stops_what_the_part_stops(self):
        doc = (ROOT / "docs" / "database.md").read_text()
        assert f"scale deploy,sts -l '{prod_backup.SELECTOR}' --replicas=0" in doc

    def test_the_selector_reads_as_kubectl_reads_it(self):
        assert prod_backup.selected_by({"tier": "airflow", "component": "scheduler"})
        assert not prod_backup.selected_by({"tier": "airflow", "component": "redis"})
        assert not prod_backup.selected_by({"component": "scheduler"})

    def test_every_workload_step_1_stops_names_its_replicas_so_pulumi_up_puts_it_back(
        self,
        prod_node_preview: Any,  # noqa: F811
    ):
        # Helm's three-way merge restores a scaled-down workload only when its manifest names
        # `replicas`; the chart's Redis StatefulSet does not (the node run found it left at 0).
        workloads = [
            o
            for o in prod_node_preview.objects
            if o["kind"] in ("Deployment", "StatefulSet")
            and (o["metadata"].get("labels") or {}).get("tier") == "airflow"
        ]
        stopped = [o for o in workloads if prod_backup.selected_by(o["metadata"]["labels"])]
        assert len(stopped) >= 8
        assert [o["metadata"]["name"] for o in stopped if "replicas" not in o["spec"]] == []
        redis = [o for o in workloads if o["metadata"]["labels"].get("component") == "redis"]
        assert redis and "replicas" not in redis[0]["spec"]


class TestWhatItReads:
    def test_the_backups_last_line_as_the_script_writes_it(self, tmp_path: Path):
        dump = tmp_path / "airflow-metadata-20261207T150000Z.dump"
        dump.write_bytes(b"PGDMP" + b"x" * 95)
        last = BACKUP_SCRIPT.strip().splitlines()[-1]
        out = subprocess.run(
            ["bash", "-c", last],
            env={"PATH": os.environ["PATH"], "dump": str(dump), "BACKUP_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert prod_backup.dump_written(out) == (str(dump), 100, 1)

    def test_db_cleans_findings_per_table(self):
        log = (
            "Performing dry run for db cleanup.\n"
            "Performing dry run for table dag_run\nChecking table dag_run\n"
            "Found 1 rows meeting deletion criteria.\n\n"
            "Checking table log\nFound 0 rows meeting deletion criteria.\n"
        )
        assert prod_backup.clean_found(log) == {"dag_run": 1, "log": 0}

    def test_row_counts_as_psql_prints_them(self):
        sql = prod_backup.counts_sql(("dag_run", "variable"))
        assert sql == "SELECT 'dag_run', count(*) FROM dag_run UNION ALL SELECT 'variable', count(*) FROM variable"
        assert prod_backup.parse_counts("dag_run|2\nvariable|1\n") == {"dag_run": 2, "variable": 1}

    def test_the_old_run_is_aged_by_the_columns_db_clean_reads_and_its_id_is_quoted(self):
        sql = prod_backup.age_sql("dag_run", "d", "manual__2026-12-07T15:00:00+00:00'x")
        assert "start_date = start_date - interval '100 days'" in sql
        assert sql.endswith("run_id = 'manual__2026-12-07T15:00:00+00:00''x'")

    def test_the_restored_url_is_the_same_server_and_tls_another_database(self):
        url = external_db.database_url("10.89.0.1", 40123, "p@ss/wo#rd")
        target = parse_database_url(prod_backup.with_database(url, "airflow_restored"))
        assert (target.host, target.port, target.password, target.sslmode, target.database) == (
            "10.89.0.1",
            40123,
            "p@ss/wo#rd",
            "require",
            "airflow_restored",
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs in namespaces: root only")
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
@pytest.mark.skipif(None in images.cached([POSTGRES_REF]).values(), reason="the PostgreSQL image is not cached")
def test_the_external_databases_admin_makes_a_database_the_airflow_user_owns(tmp_path: Path):
    archive = images.cached([POSTGRES_REF])[POSTGRES_REF]
    assert archive is not None
    db = external_db.ExternalPostgres(tmp_path / "db", archive, "127.0.0.1", host.free_port())
    try:
        db.start()
        made = db.psql(f"CREATE DATABASE {prod_backup.RESTORED} OWNER {external_db.USER}", "require", admin=True)
        refused = db.psql("CREATE DATABASE other", "require")
        used = db.psql("CREATE TABLE t (x int); SELECT current_user", "require", prod_backup.RESTORED)
    finally:
        db.stop()
    assert made.returncode == 0, made.stderr
    assert refused.returncode != 0  # the Airflow user cannot: an admin makes it, as on a managed database
    assert used.returncode == 0 and used.stdout.split()[-1] == external_db.USER, used.stderr
