"""Airflow's own validation in the preview (components/offline/airflow_checks.py): what the stack hands
Airflow, judged by Airflow's code in .venv-dags. Failing cases and their fixed twins go to one judge (an
Airflow import takes seconds); one preview shows a finding under its stack key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.offline import airflow_checks
from components.offline.checks import Item
from components.offline.dry_run import Target
from components.offline.preview import preview
from components.offline.program import load_stack_config, run_program
from tests.helpers import ROOT

PYTHON = ROOT / ".venv-dags" / "bin" / "python"
SECRET = "pw-not-to-be-shown"


def option(key: str, section: str, name: str, value: str) -> dict[str, str]:
    return {"key": key, "section": section, "option": name, "value": value}


CFG = "airflow.extraValues.config"

BAD: dict[str, Any] = {
    "connections": {
        "connections.no_scheme": f"//etl:{SECRET}@warehouse:5432/dw",
        "connections.empty_type": {"conn_type": "", "host": "warehouse", "password": SECRET},
    },
    "crons": {"maintenance.backup.schedule": "0 0 30 2 *", "maintenance.cleanup.schedule": "0 0 31 4,6 *"},
    "pools": {"airflow.pools.": "", "airflow.pools.long": "p" * 300},
    "variables": {"variables.long": "v" * 300},
    "config": [
        option(f"{CFG}.core.parallelism", "core", "parallelism", "lots"),
        option(f"{CFG}.core.paralelism", "core", "paralelism", "8"),
        option(f"{CFG}.scheduler.use_job_schedule", "scheduler", "use_job_schedule", "maybe"),
    ],
}  # fmt: skip
FIXED: dict[str, Any] = {
    "connections": {
        "connections.warehouse": f"postgresql://etl:{SECRET}@warehouse:5432/dw",
        "connections.api": {"conn_type": "http", "host": "api.example.com"},
        "connections.aws": "aws://?region_name=eu-west-1",
    },
    "crons": {"maintenance.backup.schedule": "0 0 29 2 *", "maintenance.cleanup.schedule": "0 0 31 4,6 1",
              "maintenance.other.schedule": "@every 6h"},
    "pools": {"airflow.pools.etl": "etl", "airflow.pools.default_pool": "default_pool"},
    "variables": {"variables.short": "v" * 250},
    "config": [
        option(f"{CFG}.core.parallelism", "core", "parallelism", "32"),
        option(f"{CFG}.scheduler.use_job_schedule", "scheduler", "use_job_schedule", "False"),
        option("", "core", "an_option_of_the_chart_airflow_forgot", "x"),
    ],
}  # fmt: skip


def judged(request: dict[str, Any]) -> dict[str, str]:
    verdict = airflow_checks.finish(airflow_checks.start(ROOT), request)
    assert verdict.ran, verdict
    assert verdict.airflow.startswith("3."), verdict
    return {p.object: p.message for p in verdict.problems}


@pytest.fixture(scope="module", autouse=True)
def airflow_venv() -> None:
    if not PYTHON.is_file():
        if os.environ.get("AIRFLOW_K8S_E2E") == "required":
            pytest.fail(f"no {PYTHON}: ./run.sh test sets up .venv-dags (AIRFLOW_K8S_E2E=required)")
        pytest.skip("no .venv-dags (./run.sh test sets it up)")


@pytest.fixture(scope="module")
def verdicts() -> tuple[dict[str, str], dict[str, str]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_K8S_AIRFLOW_CHECKS", "on")
        both = {
            part: {**BAD[part], **{f"fixed:{k}": v for k, v in FIXED[part].items()}}
            for part in ("connections", "crons", "pools", "variables")
        }
        found = judged({**both, "config": BAD["config"] + FIXED["config"]})
    return found, {k: v for k, v in found.items() if k.startswith("fixed:")}


class TestConnections:
    def test_a_uri_or_object_airflow_reads_with_an_empty_type_is_refused_without_its_password(self, verdicts):
        found, _ = verdicts
        for key in BAD["connections"]:
            assert "empty conn_type" in found[key], found
            assert SECRET not in found[key]

    def test_their_fixed_twins_pass(self, verdicts):
        found, _ = verdicts
        assert not [k for k in found if k.startswith("fixed:connections.")]


class TestSchedules:
    def test_a_schedule_that_never_fires_is_refused(self, verdicts):
        found, _ = verdicts
        assert "'0 0 30 2 *' never fires" in found["maintenance.backup.schedule"]
        assert "never fires" in found["maintenance.cleanup.schedule"]

    def test_their_fixed_twins_pass_and_a_kubernetes_only_syntax_is_left_to_the_api_server(self, verdicts):
        found, _ = verdicts
        assert not [k for k in found if k.startswith("fixed:maintenance.")]


class TestPoolsAndVariables:
    def test_an_empty_or_too_long_pool_name_is_refused_as_airflow_pools_import_does(self, verdicts):
        found, _ = verdicts
        assert "Pool name shouldn't be empty" in found["airflow.pools."]
        assert "Pool name cannot be more than 256 characters" in found["airflow.pools.long"]

    def test_a_variable_key_longer_than_airflows_column_is_refused(self, verdicts):
        found, _ = verdicts
        assert "300 characters" in found["variables.long"] and "takes 250" in found["variables.long"]

    def test_their_fixed_twins_pass(self, verdicts):
        found, _ = verdicts
        assert not [k for k in found if k.startswith(("fixed:airflow.pools.", "fixed:variables."))]


class TestAirflowCfg:
    def test_an_option_airflow_cannot_read_as_its_type_or_does_not_know_is_refused(self, verdicts):
        found, _ = verdicts
        assert "cannot read it as integer" in found["airflow.extraValues.config.core.parallelism"]
        assert "has no option 'paralelism' in [core]" in found[f"{CFG}.core.paralelism"]
        assert "cannot read it as boolean" in found["airflow.extraValues.config.scheduler.use_job_schedule"]

    def test_its_fixed_twins_pass_and_an_unknown_option_no_stack_key_set_is_not_the_stacks_doing(self, verdicts):
        _, fixed = verdicts
        found, _ = verdicts
        assert fixed == {}
        assert not [k for k in found if "an_option_of_the_chart" in k]

    def test_the_rendered_airflow_cfg_names_the_stack_key_that_set_an_option(self):
        cfg = "[core]\nparallelism = lots\nload_examples = False\n"
        items = [
            Item("airflow-release", {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"airflow.cfg": cfg}})
        ]
        config = {"airflow-k8s:airflow": '{"extraValues": {"config": {"core": {"parallelism": "lots"}}}}'}
        request = airflow_checks.request_of(config, {}, items)
        assert request["config"] == [
            {
                "key": "airflow.extraValues.config.core.parallelism",
                "section": "core",
                "option": "parallelism",
                "value": "lots",
            },
            {"key": "", "section": "core", "option": "load_examples", "value": "False"},
        ]

    def test_placeholder_connections_are_not_judged(self):
        config = {"airflow-k8s:connections": '{"db": "postgresql://u:placeholder@h/db"}'}
        assert airflow_checks.request_of(config, {"airflow-k8s:connections": "placeholder"}, [])["connections"] == {}


class TestInThePreview:
    def test_a_finding_is_a_problem_under_its_stack_key(self, tmp_path: Path, monkeypatch):
        monkeypatch.setenv("AIRFLOW_K8S_AIRFLOW_CHECKS", "on")
        doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
        config = doc["config"]
        del config["airflow-k8s:spark"]
        config["airflow-k8s:monitoring"] = {"mode": "off"}
        config["airflow-k8s:airflow"]["extraValues"] = {"config": {"core": {"paralelism": "8"}}}
        stack_file = tmp_path / "Pulumi.case.yaml"
        stack_file.write_text(yaml.safe_dump(doc))
        project, values, secret_keys, _ = load_stack_config(ROOT, "dev", stack_file=stack_file)
        run = run_program(ROOT, "dev", config=values, secret_keys=secret_keys, project=project)
        result = preview(ROOT, "dev", tmp_path / "out", program_run=run, run_checkov=False, dry_run=Target("off"))
        found = [p for p in result.problems if p.rule == "airflow"]
        assert [p.object for p in found] == ["airflow.extraValues.config.core.paralelism"], found
        assert found[0].message.startswith("stack key airflow.extraValues.config.core.paralelism: Airflow 3.")
        assert result.airflow is not None and result.airflow.ran


class TestTheProjectFolder:
    def test_a_relative_project_folder_as_run_sh_preview_passes_it_still_runs_the_checks(self, monkeypatch):
        monkeypatch.chdir(ROOT)
        monkeypatch.setenv("AIRFLOW_K8S_AIRFLOW_CHECKS", "on")
        verdict = airflow_checks.finish(airflow_checks.start(Path(".")), {"crons": BAD["crons"]})
        assert verdict.ran, verdict
        assert sorted(p.object for p in verdict.problems) == sorted(BAD["crons"])
