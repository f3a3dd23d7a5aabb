"""AirflowPlatform: the whole stack from one config, in Python and through the component package."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi import InputPropertiesError
from pulumi.output import _OutputData

from components.core.arguments import ArgumentError
from components.core.reader import ConfigError
from components.offline.preview import preview
from components.offline.program import ProgramRun, is_secret, run_program, unwrap
from components.platform.component import CONFIG_KEYS, SECRET_ARGS, _known, config_of
from components.platform.config import SECRET_KEYS, parse_stack
from components.provider import AirflowK8sProvider
from tests.helpers import ROOT, of_type, release, run_stack

GIT_DAGS = {"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}}


def _snake(key: str) -> str:
    return {v: k for k, v in CONFIG_KEYS.items()}[key]


class TestStackProgram:
    def test_the_stack_program_declares_one_platform_at_the_root_and_every_component_under_it(self):
        run = run_stack(GIT_DAGS, cluster={"environment": "laptop"}, extra={"teams": [{"name": "ml"}]})
        (platform,) = of_type(run, "AirflowPlatform")
        assert platform.name == "airflow"
        for token in ("AirflowRelease", "TaskNamespace"):
            for component in of_type(run, token):
                assert component.parent == platform.urn

    def test_every_component_moved_under_the_platform_keeps_an_alias_to_its_old_root_place(self):
        run = run_stack(GIT_DAGS, cluster={"environment": "laptop"}, extra={"teams": [{"name": "ml"}]})
        (platform,) = of_type(run, "AirflowPlatform")
        children = [r for r in run.resources if r.parent == platform.urn]
        assert {r.name for r in children} == {"airflow", "monitoring", "team-ml"}
        for child in children:
            assert any(spec.get("noParent") for spec in child.alias_specs), child.name


class TestPackageArgs:
    def test_a_platform_with_another_name_prefixes_its_children_so_two_can_share_a_stack(self):
        run = run_stack(program="platform_args")
        (platform,) = of_type(run, "AirflowPlatform")
        names = {r.name for r in run.resources if r.parent == platform.urn}
        assert names == {"data", "data-team-ml", "data-spark", "data-monitoring"}

    def test_secrets_passed_as_plain_values_are_kept_secret(self):
        run = run_stack(program="platform_args")
        credentials = [r for r in of_type(run, "core/v1:Secret") if "git-credentials" in r.name]
        assert credentials
        for res in credentials:
            data = res.inputs["stringData"]
            assert is_secret(data) or all(is_secret(v) for v in data.values())

    def test_every_credential_key_of_the_stack_config_is_a_secret_argument(self):
        assert {CONFIG_KEYS[a] for a in SECRET_ARGS} == set(SECRET_KEYS)

    def test_an_unknown_argument_is_refused_with_its_name(self):
        with pytest.raises(ConfigError, match="airflw"):
            config_of({"airflw": {}})

    def test_a_bad_value_names_the_stack_config_key(self):
        with pytest.raises(ConfigError, match=r"airflow\.executor"):
            config_of({"airflow": {"executor": "NoSuchExecutor"}})

    def test_a_secret_whose_value_is_not_yet_known_is_refused_without_echoing_anything(self):
        loop = asyncio.new_event_loop()
        try:
            pending: pulumi.Output[str] = object.__new__(pulumi.Output)
            pending._data = loop.create_future()
            with pytest.raises(ConfigError, match="database_url") as err:
                config_of({"database_url": pending})
            assert "not known before the deployment" in str(err.value)
        finally:
            loop.close()

    def test_a_secret_output_the_engine_sent_with_its_value_is_read_and_stays_secret(self):
        # What the provider host hands the component for a secret input (pulumi/provider/server.py):
        # an Output over already-known data.
        loop = asyncio.new_event_loop()
        try:
            known = loop.create_future()
            known.set_result(_OutputData(resources=set(), value="tok-123456789", is_known=True, is_secret=True))
            sent: pulumi.Output[str] = object.__new__(pulumi.Output)
            sent._data = known
            assert _known(sent) == ("tok-123456789", True)
        finally:
            loop.close()


RELEASE_PROGRAM = """\
from components import AirflowRelease

AirflowRelease("warehouse", {"settings": {"excutor": "KubernetesExecutor", "dags": DAGS}})
"""

PLATFORM_PROGRAM = """\
from components import AirflowPlatform

AirflowPlatform("data", {"airflow": {"dags": DAGS, **AIRFLOW}, "task_images": IMAGES})
"""


def run_caller(tmp_path: Path, program: str, **names: Any) -> Exception:
    """Run a small program that calls a component (with `names` defined first); its error."""
    path = tmp_path / "caller.py"
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in {"DAGS": GIT_DAGS["dags"], **names}.items()) + program)
    with pytest.raises(ConfigError) as err:
        run_program(ROOT, "test", config={}, secret_keys=set(), project="airflow-k8s", program=path)
    return err.value


class TestErrorsFitTheirCaller:
    def test_a_python_caller_of_airflow_release_is_told_the_argument_path_it_wrote_in_one_message(self, tmp_path):
        error = run_caller(tmp_path, RELEASE_PROGRAM)
        assert isinstance(error, ArgumentError) and isinstance(error, pulumi.RunError)
        message = str(error)
        assert message.startswith(
            "AirflowRelease 'warehouse': argument 'settings.excutor': 'KubernetesExecutor' is not valid; unknown key. "
            "Did you mean 'executor'? Known keys here: "
        )
        assert message.endswith(" Fix: rename or remove 'settings.excutor'.")
        assert "stack file" not in message and "\n" not in message
        # Pulumi's Python host prints a RunError's message alone; nothing chained to it either.
        assert error.__cause__ is None and error.__suppress_context__

    def test_a_python_caller_of_airflow_platform_is_told_its_argument_paths(self, tmp_path):
        error = run_caller(tmp_path, PLATFORM_PROGRAM, AIRFLOW={"excutor": "KubernetesExecutor"}, IMAGES={})
        assert str(error).startswith("AirflowPlatform 'data': argument 'airflow.excutor': 'KubernetesExecutor'")
        assert "stack file" not in str(error)
        error = run_caller(tmp_path, PLATFORM_PROGRAM, AIRFLOW={}, IMAGES={"etl": "not an image!!"})
        assert str(error).startswith("AirflowPlatform 'data': argument 'task_images.etl': 'not an image!!'")

    def test_a_yaml_or_typescript_caller_gets_an_input_property_error_spelt_as_the_schema_spells_it(self):
        provider = AirflowK8sProvider()
        inputs = {"airflow": {**GIT_DAGS, "excutor": "KubernetesExecutor"}, "taskImages": {}}
        with pytest.raises(InputPropertiesError) as err:
            provider.construct("data", "airflow-k8s:index:AirflowPlatform", inputs)
        assert err.value.errors is not None
        ((error),) = err.value.errors
        assert error["property_path"] == "airflow.excutor"
        assert error["reason"].startswith("'KubernetesExecutor' is not valid; unknown key. Did you mean 'executor'?")
        assert err.value.message == "AirflowPlatform 'data': invalid argument"
        with pytest.raises(InputPropertiesError) as err:
            provider.construct(
                "data", "airflow-k8s:index:AirflowPlatform", {"airflow": GIT_DAGS, "taskImages": {"etl": "no!!"}}
            )
        assert err.value.errors and err.value.errors[0]["property_path"] == "taskImages.etl"

    def test_a_stack_file_keeps_the_stack_file_wording(self):
        with pytest.raises(ConfigError) as err:
            parse_stack({"airflow": {**GIT_DAGS, "excutor": "KubernetesExecutor"}})
        assert not isinstance(err.value, ArgumentError)
        assert str(err.value).startswith("config key 'airflow.excutor': 'KubernetesExecutor' is not valid;")
        assert str(err.value).endswith("Fix: rename or remove 'airflow.excutor' in the stack file.")

    def test_a_fix_only_a_stack_files_author_can_follow_is_left_out_for_a_caller(self):
        error = ConfigError("airflow.dags.gitSync.auth", "ssh", "needs a key.", "pulumi config set --secret gitSshKey")
        assert error.text("settings.dags.gitSync.auth", caller=True) == (
            "argument 'settings.dags.gitSync.auth': 'ssh' is not valid; needs a key."
        )
        assert str(error).endswith("Fix: pulumi config set --secret gitSshKey")


class TestExamples:
    def test_the_yaml_example_is_a_valid_platform_config(self):
        program = yaml.safe_load((ROOT / "examples" / "yaml" / "Pulumi.yaml").read_text())
        (resource,) = program["resources"].values()
        assert resource["type"] == "airflow-k8s:AirflowPlatform"
        args = {_snake(k): v for k, v in resource["properties"].items()}
        args["airflow"] = {**args["airflow"], "namespace": "airflow-yaml"}  # the ${namespace} config value
        cfg = config_of(args)
        assert cfg.airflow.namespace == "airflow-yaml"

    def test_both_examples_add_the_package_from_this_repository(self):
        for example in ("yaml", "typescript"):
            project = yaml.safe_load((ROOT / "examples" / example / "Pulumi.yaml").read_text())
            assert project["packages"] == {"airflow-k8s": "../../components"}


PYTHON_EXAMPLE = ROOT / "examples" / "python"


def run_python_example(**config: str) -> ProgramRun:
    """examples/python/__main__.py under the offline preview's mocks, with this stack config."""
    return run_program(
        PYTHON_EXAMPLE,
        "dev",
        config={f"airflow-python:{k}": v for k, v in config.items()},
        secret_keys=set(),
        project="airflow-python",
    )


class TestThePythonExample:
    def test_it_is_a_python_project_that_installs_the_components_from_this_checkout_with_the_pinned_engine(self):
        project = yaml.safe_load((PYTHON_EXAMPLE / "Pulumi.yaml").read_text())
        assert project["name"] == "airflow-python"
        assert project["runtime"]["name"] == "python"
        lines = [
            line
            for line in (PYTHON_EXAMPLE / "requirements.txt").read_text().splitlines()
            if line and not line.startswith("#")
        ]
        assert lines == ["../..", "-r ../../requirements.txt"]
        assert "pulumi==3.259.0" in (ROOT / "requirements.txt").read_text().splitlines()

    def test_it_imports_only_what_a_user_would_the_package_and_pulumi(self):
        tree = ast.parse((PYTHON_EXAMPLE / "__main__.py").read_text())
        imported = {
            (node.module if isinstance(node, ast.ImportFrom) else alias.name)
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        assert imported == {"pulumi", "pulumi_airflow_k8s"}

    def test_it_declares_airflow_through_one_platform_and_exports_what_the_other_examples_do(self):
        run = run_python_example()
        (platform,) = of_type(run, "AirflowPlatform")
        assert platform.name == "airflow" and platform.parent.endswith("::airflow-python-dev")
        (airflow,) = of_type(run, "AirflowRelease")
        assert airflow.parent == platform.urn
        chart = unwrap(release(run).inputs)
        assert (chart["chart"], chart["version"], chart["namespace"]) == ("airflow", "1.21.0", "airflow-py")
        assert run.outputs["namespace"] == "airflow-py"
        # what the YAML and TypeScript examples export, plus the record of the platform's deployed
        # identity, which AirflowPlatform keeps in a Python program's stack (docs/guarantees.md)
        shared = ["adminPassword", "adminUsername", "namespace", "uiServiceName", "uiServicePort"]
        assert sorted(run.outputs) == sorted([*shared, "deployedIdentity"])
        assert "adminPassword" in run.secret_outputs

    def test_the_e2e_run_points_it_at_its_chart_version_and_namespace_through_stack_config(self):
        chart = {"repository": "http://127.0.0.1:1", "version": "1.21.0"}
        run = run_python_example(namespace="airflow-e2e", kubernetesVersion="1.33", chart=json.dumps(chart))
        inputs = unwrap(release(run).inputs)
        assert inputs["namespace"] == "airflow-e2e"
        assert inputs["repositoryOpts"] == {"repo": "http://127.0.0.1:1"}

    def test_its_preview_renders_and_validates_every_object_without_a_problem(self, tmp_path: Path):
        result = preview(ROOT, "python-example", tmp_path, run_checkov=False, program_run=run_python_example())
        assert result.problems == []
        assert any(o["kind"] == "Deployment" and o["metadata"]["namespace"] == "airflow-py" for o in result.objects)
