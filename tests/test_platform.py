"""AirflowPlatform: the whole stack from one config, in Python and through the component package."""

from __future__ import annotations

import asyncio

import pulumi
import pytest
import yaml
from pulumi.output import _OutputData

from components.core.reader import ConfigError
from components.offline.program import is_secret
from components.platform.component import CONFIG_KEYS, SECRET_ARGS, _known, config_of
from components.platform.config import SECRET_KEYS
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
