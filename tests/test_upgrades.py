"""Upgrades: an Airflow version the pinned chart does not support is refused with the way
forward, and the runbook the README links to covers each upgrade with its rollback."""

from __future__ import annotations

import pytest

from components import ConfigError
from components.airflow.config import parse_airflow
from components.airflow.upgrades import AIRFLOW_SUPPORT
from tests.helpers import ROOT

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
