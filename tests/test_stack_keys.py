"""The registry of top-level stack keys (components/platform/keys.py): every list of top-level keys
(the parser's, AirflowPlatform's arguments, its typed arguments, StackConfig, the JSON Schema and
the configuration reference) comes from it or is checked against it."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from pulumi.provider.experimental.util import camel_case

from components.core.reader import ConfigError
from components.offline.stack_schema import SCHEMA_FILE, main, reference_with_table
from components.platform import component
from components.platform.config import EITHER_KEYS, KNOWN_KEYS, OBJECT_KEYS, SECRET_KEYS, parse_stack
from components.platform.keys import BY_NAME, STACK_KEYS, reference_table
from components.platform.types import StackConfig
from components.provider import schema
from tests.helpers import ROOT


class TestOneDeclarationPerKey:
    def test_each_key_and_each_argument_is_declared_once(self):
        assert len({k.name for k in STACK_KEYS}) == len(STACK_KEYS)
        assert len({k.arg for k in STACK_KEYS}) == len(STACK_KEYS)

    def test_the_parser_knows_exactly_the_registrys_keys_by_kind(self):
        assert tuple(k.name for k in STACK_KEYS) == KNOWN_KEYS
        assert set(SECRET_KEYS) == {k.name for k in STACK_KEYS if k.kind == "secret"}
        assert set(OBJECT_KEYS) == {k.name for k in STACK_KEYS if k.kind == "object"}
        assert EITHER_KEYS == ("variables",)

    def test_a_key_the_registry_calls_secret_is_refused_in_plain_text(self):
        for key in SECRET_KEYS:
            with pytest.raises(ConfigError, match="must be stored encrypted") as caught:
                parse_stack({key: "x"}, set())
            assert caught.value.key == f"airflow-k8s:{key}"


class TestTheComponentArguments:
    def test_the_argument_map_is_the_registrys(self):
        assert {k.arg: k.name for k in STACK_KEYS} == component.CONFIG_KEYS
        assert tuple(k.arg for k in STACK_KEYS if k.secret) == component.SECRET_ARGS

    def test_the_typed_arguments_are_the_registrys_arguments(self):
        assert set(component.AirflowPlatformArgs.__annotations__) == {k.arg for k in STACK_KEYS}

    def test_each_arguments_docstring_and_so_its_package_schema_description_is_the_registrys_doc_line(self):
        inputs = schema()["resources"]["airflow-k8s:index:AirflowPlatform"]["inputProperties"]
        described = {name: " ".join(prop["description"].split()) for name, prop in inputs.items()}
        assert described == {camel_case(k.arg): k.docstring for k in STACK_KEYS}
        assert {name for name, prop in inputs.items() if prop.get("secret")} == {
            camel_case(k.arg) for k in STACK_KEYS if k.secret
        }


class TestTheTypedConfig:
    def test_every_field_of_the_stack_config_holds_a_registry_key(self):
        fields = {f.name for f in dataclasses.fields(StackConfig)}
        assert fields == {k.target.split(".")[0] for k in STACK_KEYS}

    def test_each_key_lands_in_its_field(self):
        stack = parse_stack(
            {
                "gitToken": "tok",
                "airflow": {
                    "dags": {"mode": "gitSync", "gitSync": {"repo": "https://example.com/r.git", "auth": "token"}}
                },
                "cluster": {"environment": "laptop"},
            },
            {"gitToken"},
        )
        head, _, attr = BY_NAME["gitToken"].target.partition(".")
        assert getattr(getattr(stack, head), attr) == "tok"


class TestTheSchemaAndTheReference:
    def test_the_schema_describes_each_top_level_key_with_its_doc_line(self):
        definitions = json.loads((ROOT / SCHEMA_FILE).read_text())["definitions"]
        for key in STACK_KEYS:
            assert definitions[key.name]["description"] == key.doc.replace("`", ""), key.name
            if key.secret:
                assert definitions[key.name]["$ref"] == "#/definitions/secure", key.name

    def test_the_reference_holds_the_registrys_table(self):
        text = (ROOT / "docs" / "configuration.md").read_text()
        assert reference_table() in text
        assert reference_with_table(ROOT) == text
        for key in STACK_KEYS:
            assert re.search(rf"^\| `{key.name}` \|", reference_table(), re.M)

    def test_a_stale_table_fails_the_check_with_the_command_that_fixes_it(self, tmp_path, capsys):
        for name in ("Pulumi.dev.yaml", "Pulumi.prod.yaml", "docs/configuration.md", "schemas/stack.schema.json"):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text((ROOT / name).read_text())
        doc = tmp_path / "docs" / "configuration.md"
        doc.write_text(doc.read_text().replace("| `keda` |", "| `kedda` |"))
        assert main(["--check", "--root", str(tmp_path)]) == 1
        assert "docs/configuration.md is stale: run `./run.sh schema`" in capsys.readouterr().err
