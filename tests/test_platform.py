"""AirflowPlatform: the whole stack from one config, in Python and through the component package."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi import InputPropertiesError
from pulumi.output import _OutputData

from components.core.arguments import ArgumentError
from components.core.reader import ConfigError
from components.offline.program import is_secret, run_program
from components.platform.component import CONFIG_KEYS, SECRET_ARGS, _known, config_of
from components.platform.config import SECRET_KEYS, parse_stack
from components.provider import AirflowK8sProvider
from tests.helpers import ROOT, of_type, run_stack

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
