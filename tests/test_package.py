"""The component package: the schema other languages are generated from, and its metadata."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
import yaml

from components.platform.component import SECRET_ARGS, AirflowPlatformArgs
from components.provider import VERSION, mark_secrets, schema
from tests.helpers import ROOT

TOKEN = "airflow-k8s:index:AirflowPlatform"


@pytest.fixture(scope="module")
def platform() -> dict[str, Any]:
    return dict(schema()["resources"][TOKEN])


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class TestSchema:
    def test_the_package_is_named_like_the_type_tokens_and_carries_the_distribution_version(self):
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
        doc = schema()
        assert doc["name"] == "airflow-k8s"
        assert doc["version"] == VERSION == pyproject["project"]["version"]
        assert list(doc["resources"]) == [TOKEN]

    def test_every_argument_of_the_python_component_is_an_input(self, platform):
        assert set(platform["inputProperties"]) == {_camel(a) for a in AirflowPlatformArgs.__annotations__}

    def test_every_input_and_output_is_documented(self, platform):
        for kind in ("inputProperties", "properties"):
            for name, prop in platform[kind].items():
                assert prop.get("description", "").strip(), f"{kind}.{name} has no description"
        assert platform["description"].strip()

    def test_every_credential_input_is_marked_secret_and_nothing_else_is(self, platform):
        secret = {name for name, prop in platform["inputProperties"].items() if prop.get("secret")}
        assert secret == {_camel(a) for a in SECRET_ARGS}
        assert secret >= {"databaseUrl", "gitToken", "gitSshKey", "connections", "previousFernetKeys"}

    def test_the_admin_password_output_is_secret(self, platform):
        assert platform["properties"]["adminPassword"]["secret"] is True

    def test_no_input_is_required_so_the_laptop_defaults_apply(self, platform):
        assert not platform.get("requiredInputs")

    def test_marking_secrets_refuses_an_argument_the_schema_lacks(self):
        broken: dict[str, Any] = {"resources": {TOKEN: {"inputProperties": {}, "properties": {"adminPassword": {}}}}}
        with pytest.raises(KeyError):
            mark_secrets(broken)


class TestPluginFiles:
    def test_the_plugin_runs_on_the_python_runtime_with_the_stack_program_pins(self):
        plugin = yaml.safe_load((ROOT / "components" / "PulumiPlugin.yaml").read_text())
        assert plugin == {"runtime": "python"}
        requirements = (ROOT / "components" / "requirements.txt").read_text().split()
        assert "-r" in requirements and "../requirements.txt" in requirements

    def test_the_typescript_example_pins_the_sdk_the_engine_matches(self):
        import json

        package = json.loads((ROOT / "examples" / "typescript" / "package.json").read_text())
        assert package["dependencies"]["@pulumi/pulumi"] == "3.259.0"
        assert package["dependencies"]["@pulumi/airflow-k8s"] == "file:sdks/airflow-k8s"
