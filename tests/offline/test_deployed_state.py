"""--baseline-state: the preview compares with what is deployed, a `pulumi stack export` whose
Helm Releases are rendered from their deployed values with the same Helm."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from components.offline.__main__ import main
from components.offline.deployed_state import (
    RELEASE_TYPE,
    SECRET_SIG,
    SECRET_VALUE,
    STACK_TYPE,
    DeployedStateError,
    read_export,
)
from components.offline.preview import preview, table
from components.offline.program import ProgramRun, is_secret, run_program, unwrap
from components.offline.report import counts
from tests.helpers import ROOT

EXPORTED_STACK = "production"  # another name than the previewed stack's: the URNs are read as its own


def as_state(value: Any) -> Any:
    """A program's input as Pulumi's state holds it: a secret as its signature and a ciphertext."""
    if is_secret(value):
        return {SECRET_SIG: SECRET_VALUE, "ciphertext": "v1:AAAAAAAAAAAA"}
    if isinstance(value, dict):
        return {k: as_state(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_state(v) for v in value]
    return value


def export_of(run: ProgramRun) -> dict[str, Any]:
    """What `pulumi stack export` writes after an `up` of `run`: every resource under the URN the
    engine gives it (its parents' types, the stack's left out, in its type), with its inputs; a
    Release with the values it was installed with among its outputs; the stack and a default
    provider."""
    prefix = f"urn:pulumi:{EXPORTED_STACK}::{run.project}::"
    stack_urn = f"{prefix}{STACK_TYPE}::{run.project}-{EXPORTED_STACK}"
    by_urn = {r.urn: r for r in run.resources}

    def chain(urn: str) -> str:
        res = by_urn.get(urn)
        if res is None:
            return ""
        above = chain(res.parent)
        return f"{above}${res.type}" if above else res.type

    def engine_urn(urn: str) -> str:
        return f"{prefix}{chain(urn)}::{by_urn[urn].name}" if urn in by_urn else stack_urn

    resources: list[dict[str, Any]] = [
        {"urn": stack_urn, "type": STACK_TYPE, "custom": False, "outputs": {"namespace": "airflow"}},
        {"urn": f"{prefix}pulumi:providers:kubernetes::default_4_32_0", "type": "pulumi:providers:kubernetes"},
    ]
    for res in run.resources:
        inputs = as_state(res.inputs)
        outputs = copy.deepcopy(inputs)
        if res.type == RELEASE_TYPE:
            plain = unwrap(res.inputs)
            outputs["status"] = {"name": plain["name"], "namespace": plain.get("namespace"), "revision": 3}
        resources.append(
            {
                "urn": engine_urn(res.urn),
                "custom": res.custom,
                "type": res.type,
                "parent": engine_urn(res.parent),
                "inputs": inputs,
                "outputs": outputs,
            }
        )
    return {"version": 3, "deployment": {"manifest": {"time": "2026-01-01T00:00:00Z"}, "resources": resources}}


def airflow_release(export: dict[str, Any]) -> dict[str, Any]:
    return next(
        r
        for r in export["deployment"]["resources"]
        if r["type"] == RELEASE_TYPE and r["outputs"].get("chart") == "airflow"
    )


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program(ROOT, "dev")


@pytest.fixture
def exported(run: ProgramRun, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    export = export_of(run)
    path = tmp_path / "state.json"
    path.write_text(json.dumps(export))
    return path, export


class TestTheDeployedState:
    def test_a_stack_deployed_as_the_program_declares_it_shows_no_change(self, run, exported, tmp_path):
        path, _ = exported
        result = preview(ROOT, "dev", tmp_path / "out", run_checkov=False, program_run=run, baseline_state=path)
        assert result.problems == []
        assert counts(result.rows) == {"same": len(result.rows)}
        assert result.baseline is not None and result.baseline.kind == "state"
        first = table(result).splitlines()[0]
        assert first == (
            f"Compared with the deployed state in {path} (a stack export of stack '{EXPORTED_STACK}': "
            f"{len(run.resources)} resources, 3 Helm Release(s) rendered from their deployed values)."
        )

    def test_a_deployed_value_the_program_changes_is_that_one_line_of_that_object(self, run, exported, tmp_path):
        path, export = exported
        deployed = airflow_release(export)["outputs"]["values"]
        deployed.setdefault("config", {}).setdefault("core", {})["load_examples"] = "True"
        path.write_text(json.dumps(export))
        result = preview(ROOT, "dev", tmp_path / "out", run_checkov=False, program_run=run, baseline_state=path)
        changed = [r for r in result.rows if r.op != "same"]
        assert {(r.type, r.name) for r in changed} >= {("v1/ConfigMap", "airflow/airflow-config")}
        lines = table(result, show_diff=True).splitlines()
        at = next(i for i, line in enumerate(lines) if "v1/ConfigMap" in line and "airflow/airflow-config " in line)
        field, _hunk, removed, added = (line.strip() for line in lines[at + 1 : at + 5])
        assert re.fullmatch(r'~ data\["airflow\.cfg"\]: 1 of \d+ lines changed', field)
        assert (removed, added) == ("- load_examples = True", "+ load_examples = False")

    def test_a_release_that_is_not_deployed_yet_is_created_with_its_objects(self, run, exported, tmp_path):
        path, export = exported
        spark = next(
            r for r in export["deployment"]["resources"] if r.get("outputs", {}).get("chart") == "spark-operator"
        )
        export["deployment"]["resources"].remove(spark)
        path.write_text(json.dumps(export))
        result = preview(ROOT, "dev", tmp_path / "out", run_checkov=False, program_run=run, baseline_state=path)
        created = [r for r in result.rows if r.op == "create"]
        assert any(r.type == RELEASE_TYPE for r in created)
        assert any(r.type == "apps/v1/Deployment" and "spark" in r.name for r in created)

    def test_values_the_export_shows_with_show_secrets_are_rendered_and_encrypted_ones_are_named(self, tmp_path):
        values = {"a": {SECRET_SIG: SECRET_VALUE, "plaintext": json.dumps({"b": 1.0})}}
        values["c"] = {SECRET_SIG: SECRET_VALUE, "ciphertext": "v1:xyz"}
        export = {
            "deployment": {
                "resources": [
                    {
                        "urn": "urn:pulumi:prod::p::kubernetes:helm.sh/v3:Release::r",
                        "type": RELEASE_TYPE,
                        "inputs": {"chart": "airflow", "values": values},
                        "outputs": {"chart": "airflow", "version": "1.21.0", "values": values},
                    }
                ]
            }
        }
        path = tmp_path / "export.json"
        path.write_text(json.dumps(export))
        state = read_export(path, [])
        (release,) = state.releases
        assert release.urn == "urn:pulumi:prod::p::kubernetes:helm.sh/v3:Release::r"  # declared by no program
        assert release.inputs["values"] == {"a": {"b": 1}, "c": "[secret]"}
        assert state.hidden == ["r.values.c"]
        assert state.resources[0]["inputs"]["values"] == {"a": "[secret]", "c": "[secret]"}  # never shown


class TestBadStateFiles:
    def test_a_file_that_is_not_json_is_one_line(self, tmp_path):
        path = tmp_path / "state.json"
        path.write_text("not json")
        with pytest.raises(DeployedStateError, match=r"^--baseline-state .*state.json is not JSON \("):
            read_export(path, [])

    def test_json_that_is_not_a_stack_export_says_how_to_write_one(self, tmp_path):
        path = tmp_path / "state.json"
        path.write_text(json.dumps({"resources": []}))
        with pytest.raises(DeployedStateError) as err:
            read_export(path, [])
        assert str(err.value) == (
            f"--baseline-state {path} is not a `pulumi stack export` (no deployment.resources); "
            "write one with `pulumi stack export --stack <stack> --file <file>`"
        )

    def test_the_command_refuses_a_missing_file_in_one_line_with_exit_2(self, tmp_path, capsys):
        missing = tmp_path / "nowhere.json"
        with pytest.raises(SystemExit) as done:
            main(["dev", "--baseline-state", str(missing)])
        assert done.value.code == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"error: argument --baseline-state: {missing}: no such file (write one with ")

    def test_the_command_refuses_a_file_that_is_no_export_with_exit_2(self, tmp_path, capsys):
        path = tmp_path / "state.json"
        path.write_text("[]")
        code = main(["dev", "--baseline-state", str(path), "--no-checkov", "--out", str(tmp_path / "out")])
        assert code == 2
        assert capsys.readouterr().err.splitlines() == [
            f"error: --baseline-state {path} is not a `pulumi stack export` (no deployment.resources); "
            "write one with `pulumi stack export --stack <stack> --file <file>`"
        ]
