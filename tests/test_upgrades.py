"""Upgrades: an Airflow version the pinned chart does not support is refused with the way
forward, the schema migration runs as a Job that is kept and never blocks the next upgrade, and the
runbook the README links to covers each upgrade with its rollback."""

from __future__ import annotations

from typing import Any

import pytest

from components import ConfigError
from components.airflow.config.airflow import parse_airflow
from components.airflow.config.upgrades import AIRFLOW_SUPPORT
from components.airflow.values.jobs import migrate_job
from components.offline.program import is_secret, unwrap
from tests.helpers import ROOT, of_type, release, render_release, run_stack

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
RUNBOOK = ROOT / "docs" / "upgrades.md"


class TestChartSupport:
    @pytest.mark.parametrize("version", ["3.3.0", "3.10.1"])
    def test_an_airflow_newer_than_the_pinned_chart_supports_is_refused_naming_the_chart_upgrade(self, version):
        with pytest.raises(ConfigError) as err:
            parse_airflow({"version": version, "dags": GIT})
        assert err.value.key == "airflow.version"
        message = str(err.value)
        assert f"Airflow {version} needs a newer Airflow chart than the pinned airflow 1.21.0" in message
        assert "2.11.0 to 3.2.x" in message and "upgrade the chart first" in message

    @pytest.mark.parametrize("version", ["2.11.0", "2.11.1", "3.0.6", "3.2.0", "3.2.2"])
    def test_every_version_the_chart_knows_is_accepted(self, version):
        assert parse_airflow({"version": version, "dags": GIT}).version == version

    def test_a_newer_chart_or_a_local_chart_is_not_held_to_the_pinned_charts_range(self):
        newer = parse_airflow({"version": "3.3.0", "chart": {"version": "1.22.0"}, "dags": GIT})
        assert newer.chart.version == "1.22.0"
        local = parse_airflow({"version": "3.3.0", "chart": {"path": "charts/airflow"}, "dags": GIT})
        assert local.chart.path == "charts/airflow"

    def test_the_support_table_matches_the_chart_archive(self):
        import tarfile

        import yaml

        from components.offline.render import find_chart

        with tarfile.open(find_chart(ROOT, "airflow", "1.21.0")) as tar:
            handle = tar.extractfile("airflow/Chart.yaml")
            assert handle is not None
            meta = yaml.safe_load(handle.read())
        assert AIRFLOW_SUPPORT[meta["version"]][1] == meta["appVersion"]


def migration_jobs(run) -> list[dict[str, Any]]:
    return [dict(unwrap(r.inputs)) for r in of_type(run, "batch/v1:Job") if r.name == "airflow-migrate"]


class TestMigrationJob:
    """Jobs are immutable (apache/airflow#27561): the chart's migration Job, one name on every
    upgrade, had to be deleted as soon as it finished, and a failed one vanished with its log."""

    def test_the_migration_is_our_job_and_the_chart_renders_none(self):
        run = run_stack({"dags": GIT})
        (job,) = migration_jobs(run)
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["bash", "-c", "exec airflow db migrate"]
        assert container["image"] == "apache/airflow:3.2.0"
        rendered = render_release(release(run))
        assert [o["metadata"]["name"] for o in rendered if o["kind"] == "Job"] == ["airflow-create-user"]
        assert "airflow-migrate-database-job" not in {o["metadata"]["name"] for o in rendered}

    def test_a_finished_migration_is_kept_with_its_log(self):
        (job,) = migration_jobs(run_stack({"dags": GIT}))
        assert "ttlSecondsAfterFinished" not in job["spec"]
        # and does not wait for the schema it is about to make
        assert job["spec"]["template"]["spec"]["initContainers"] == []

    def test_each_image_is_a_new_job_so_a_second_change_right_after_never_meets_a_finished_one(self):
        names = [
            migration_jobs(run_stack({"dags": GIT, "version": version, **({"image": {"tag": tag}} if tag else {})}))[0][
                "metadata"
            ]["name"]
            for version, tag in (("3.2.0", None), ("3.2.1", None), ("3.2.1", "3.2.1-python3.12"))
        ]
        assert all(n.startswith("airflow-migrate-") and len(n) <= 63 for n in names)
        assert len(set(names)) == 3

    def test_the_same_config_keeps_the_same_job(self):
        cfg = parse_airflow({"dags": GIT})
        assert migrate_job(cfg) == migrate_job(parse_airflow({"dags": GIT}))
        more = parse_airflow({"dags": GIT, "scheduler": {"replicas": 3}})
        assert migrate_job(more)["metadata"]["name"] == migrate_job(cfg)["metadata"]["name"]


EXTERNAL = {"executor": "CeleryExecutor", "dags": GIT, "database": {"mode": "external"}}
URL = "postgresql://airflow:{password}@{host}:5432/{database}?sslmode=require"


def external_migration(password: str = "pw-one", host: str = "db.internal", database: str = "airflow") -> Any:
    run = run_stack(EXTERNAL, secrets={"databaseUrl": URL.format(password=password, host=host, database=database)})
    (job,) = [r for r in of_type(run, "batch/v1:Job") if r.name == "airflow-migrate"]
    return job.inputs["metadata"]


class TestMigrationOfAnotherDatabase:
    """The database URL reaches the pods through a Secret, not the Job's template: a restore into a
    new database (docs/database.md) or a move to another server ran no `airflow db migrate`, so a
    dump of an older Airflow was never brought up to the release's schema (the node's backup part)."""

    def test_another_database_on_the_same_server_is_a_new_migration_job(self):
        assert external_migration()["name"] != external_migration(database="airflow_restored")["name"]

    def test_another_server_is_a_new_migration_job(self):
        assert external_migration()["name"] != external_migration(host="db2.internal")["name"]

    def test_a_new_password_for_the_same_database_migrates_nothing_again(self):
        assert external_migration()["name"] == external_migration(password="pw-two")["name"]

    def test_the_jobs_name_is_no_secret_and_carries_no_credential(self):
        metadata = external_migration(password="pw-one")
        assert not is_secret(metadata["name"])
        assert metadata["name"].startswith("airflow-migrate-") and "pw-one" not in metadata["name"]

    def test_the_bundled_databases_job_keeps_the_name_its_template_gives(self):
        (job,) = migration_jobs(run_stack({"dags": GIT}))
        assert job["metadata"]["name"] == migrate_job(parse_airflow({"dags": GIT}))["metadata"]["name"]


class TestRunbook:
    def test_the_readme_links_the_runbook(self):
        assert "(docs/upgrades.md)" in (ROOT / "README.md").read_text()

    @pytest.mark.parametrize("section", ["## An Airflow patch upgrade", "## A chart upgrade", "## Airflow 2.11 -> 3.x"])
    def test_each_upgrade_says_what_changes_what_is_kept_and_how_to_roll_back(self, section):
        text = RUNBOOK.read_text()
        body = text.split(section, 1)[1].split("\n## ", 1)[0]
        for part in ("**What changes:**", "**What is kept:**", "**Rolling back:**"):
            assert part in body, (section, part)

    def test_the_backup_comes_before_db_migrate_with_the_cronjob_the_stack_declares(self):
        text = RUNBOOK.read_text()
        assert text.index("create job --from=cronjob/airflow-metadata-backup") < text.index("## An Airflow patch")
        assert "airflow db migrate" in text
