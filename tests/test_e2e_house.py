"""The e2e scenarios of e2e/house.py: what they accept as an upgrade, and how they point the
examples at the local control plane (the runs themselves need the engine: `./run.sh e2e`)."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from e2e import house
from e2e.harness import STACK, StepError
from tests.helpers import ROOT

PLATFORM = "urn:pulumi:e2e::airflow-k8s::airflow-k8s:index:AirflowPlatform::airflow"
SECRET = (
    "urn:pulumi:e2e::airflow-k8s::airflow-k8s:index:AirflowPlatform$airflow-k8s:index:AirflowRelease"
    "$kubernetes:core/v1:Secret::airflow-fernet-key-secret"
)


class TestUpgradePlan:
    def test_creating_the_platform_and_matching_everything_else_by_alias_is_an_upgrade(self):
        plan = {"steps": [{"op": "create", "urn": PLATFORM}, {"op": "same", "urn": SECRET}]}
        assert house.upgrade_problems(plan) == []

    def test_a_resource_the_base_never_had_is_created_without_a_problem(self):
        new = SECRET.replace("airflow-fernet-key-secret", "airflow-metadata-async-secret")
        plan = {"steps": [{"op": "create", "urn": PLATFORM}, {"op": "create", "urn": new}]}
        assert house.upgrade_problems(plan) == []

    def test_a_moved_resource_without_its_alias_is_named_twice(self):
        old = (
            "urn:pulumi:e2e::airflow-k8s::airflow-k8s:index:AirflowRelease"
            "$kubernetes:core/v1:Secret::airflow-fernet-key-secret"
        )
        plan = {"steps": [{"op": "delete", "urn": old}, {"op": "create", "urn": SECRET}]}
        assert house.upgrade_problems(plan) == [f"delete {old}", f"create {SECRET}"]

    def test_a_replacement_a_deletion_or_another_creation_is_named(self):
        plan = {
            "steps": [
                {"op": "replace", "urn": SECRET},
                {"op": "delete", "urn": SECRET},
                {"op": "create", "urn": SECRET},
            ]
        }
        assert house.upgrade_problems(plan) == [f"replace {SECRET}", f"delete {SECRET}", f"create {SECRET}"]

    def test_the_base_is_a_recorded_commit_and_the_newest_ancestor_without_the_platform(self):
        base = house.upgrade_base()
        assert base == house.UPGRADE_BASE and len(base) == 40
        files = house._git("ls-tree", "-r", "--name-only", base).split()
        assert "components/__init__.py" in files
        assert not has_platform(base)
        newer = house._git("rev-list", f"{base}..HEAD").split()
        assert newer and all(has_platform(commit) for commit in newer)  # every commit since has it
        assert has_platform("HEAD")

    def test_a_commit_that_is_not_in_the_history_is_named_with_the_way_out(self, monkeypatch):
        monkeypatch.setattr(house, "UPGRADE_BASE", "0" * 40)
        with pytest.raises(StepError, match=r"is not an ancestor of HEAD.*git fetch --unshallow"):
            house.upgrade_base()


def has_platform(commit: str) -> bool:
    """Does the tree of `commit` declare AirflowPlatform (found by its class, wherever its file is)?"""
    proc = subprocess.run(
        ["git", "grep", "-q", "-e", "^class AirflowPlatform(", commit, "--", "*.py"], cwd=ROOT, check=False
    )
    return proc.returncode == 0


class TestExamplesOnTheControlPlane:
    def test_the_yaml_example_gets_the_local_chart_and_the_servers_version(self, tmp_path: Path):
        shutil.copy2(ROOT / "examples" / "yaml" / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
        chart = {"repository": "http://127.0.0.1:1", "version": "1.21.0"}
        namespace = house.example_program("yaml", tmp_path, chart, "1.34")
        props = yaml.safe_load((tmp_path / "Pulumi.yaml").read_text())["resources"]["airflow"]["properties"]
        assert namespace == "airflow-yaml"
        assert props["airflow"]["chart"] == chart and props["cluster"]["kubernetesVersion"] == "1.34"

    def test_the_typescript_example_gets_them_as_stack_config(self, tmp_path: Path):
        chart = {"repository": "http://127.0.0.1:1", "version": "1.21.0"}
        assert house.example_program("typescript", tmp_path, chart, "1.34") == "airflow-ts"
        config = yaml.safe_load((tmp_path / f"Pulumi.{STACK}.yaml").read_text())["config"]
        assert config["airflow-typescript:chart"] == chart
        index = (ROOT / "examples" / "typescript" / "index.ts").read_text()
        for key in ("chart", "kubernetesVersion", "namespace"):
            assert f'"{key}"' in index

    def test_the_python_example_gets_them_as_stack_config_and_is_deployed_without_the_package(self, tmp_path: Path):
        chart = {"repository": "http://127.0.0.1:1", "version": "1.21.0"}
        assert house.example_program("python", tmp_path, chart, "1.34") == "airflow-py"
        config = yaml.safe_load((tmp_path / f"Pulumi.{STACK}.yaml").read_text())["config"]
        assert config == {
            "airflow-python:chart": chart,
            "airflow-python:kubernetesVersion": "1.34",
            "airflow-python:namespace": "airflow-py",
        }
        program = (ROOT / "examples" / "python" / "__main__.py").read_text()
        for key in ("chart", "kubernetesVersion", "namespace"):
            assert f'"{key}"' in program
        assert "python" in house.EXAMPLES and "python" not in house.PACKAGE_EXAMPLES

    def test_the_examples_copy_holds_what_the_python_examples_requirements_install(self):
        requirements = (ROOT / "examples" / "python" / "requirements.txt").read_text().splitlines()
        assert "../.." in requirements
        for name in house.DISTRIBUTION_FILES:
            assert (ROOT / name).is_file()
        readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
        assert readme in house.DISTRIBUTION_FILES
