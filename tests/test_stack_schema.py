"""The JSON Schema of stack files (schemas/stack.schema.json): generated from the config parsers,
up to date, complete, met by the shipped and example stacks, and failed by the bad configs' type
errors at the key the parser names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from components.core.reader import ConfigError, ConfigTypeError, Node, recording
from components.offline import stack_schema
from components.offline.stack_schema import EXAMPLES, SCHEMA_FILE, example_stacks, main
from components.platform import stack_file
from components.platform.config import KNOWN_KEYS, PROJECT, parse_stack
from tests.helpers import ROOT
from tests.test_bad_configs import FILES, rejection

SHIPPED = [ROOT / "Pulumi.dev.yaml", ROOT / "Pulumi.prod.yaml"]
MODELINE = "# yaml-language-server: $schema=./schemas/stack.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / SCHEMA_FILE).read_text())
    return loaded


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.Draft7Validator:
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def leaf_errors(validator: jsonschema.Draft7Validator, doc: Any) -> list[jsonschema.ValidationError]:
    """Every error, those inside anyOf alternatives included (an editor shows the closest)."""
    out: list[jsonschema.ValidationError] = []

    def walk(error: jsonschema.ValidationError) -> None:
        out.append(error)
        for inner in error.context or []:
            walk(inner)

    for error in validator.iter_errors(doc):
        walk(error)
    return out


def as_key(path: Any) -> str:
    """A schema error's path in the document (config, airflow-k8s:airflow, pools, etl) as the
    parser names that key (airflow.pools.etl)."""
    parts = [str(p) for p in list(path)[1:]]
    if not parts:
        return ""
    first = parts[0].removeprefix(f"{PROJECT}:")
    return ".".join([first, *parts[1:]])


def with_opaque_secrets(doc: dict[str, Any]) -> dict[str, Any]:
    """The corpus holds `secure:` values in plain text; a real stack file holds ciphertext."""
    config = {
        key: {"secure": "v1:AAAAAAAAAAAAAAAA"} if isinstance(value, dict) and set(value) == {"secure"} else value
        for key, value in (doc.get("config") or {}).items()
    }
    return {**{k: v for k, v in doc.items() if k != "expect"}, "config": config}


def plain_rejections(kind: type[ConfigError], words: str = "") -> list[tuple[Path, ConfigError, dict[str, Any]]]:
    """The bad configs rejected with a `kind` error (its message containing `words`) of a key that
    is plain in the file: a schema sees nothing inside a `secure:` value."""
    found = []
    for path in FILES:
        try:
            doc = stack_file.load(path.read_text())
        except ConfigError:
            continue  # not YAML the Pulumi CLI reads (a key twice)
        error = rejection(path)
        top = error.key.removeprefix(f"{PROJECT}:").split(".")[0].split("[")[0]
        value = (doc.get("config") or {}).get(f"{PROJECT}:{top}", (doc.get("config") or {}).get(top))
        secure = isinstance(value, dict) and set(value) == {"secure"}
        if isinstance(error, kind) and words in str(error) and not secure:
            found.append((path, error, with_opaque_secrets(doc)))
    return found


class TestTheShippedSchema:
    def test_it_is_what_the_parsers_make_now(self, capsys):
        assert main(["--check"]) == 0, "run ./run.sh schema"
        assert capsys.readouterr().out == (f"{SCHEMA_FILE} is up to date\ndocs/configuration.md is up to date\n")

    def test_a_stale_schema_fails_the_check_with_the_command_that_fixes_it(self, tmp_path, capsys):
        for name in ("Pulumi.dev.yaml", "Pulumi.prod.yaml", "docs/configuration.md", "schemas/stack.schema.json"):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text((ROOT / name).read_text())
        (tmp_path / "schemas" / "stack.schema.json").write_text("{}\n")
        assert main(["--check", "--root", str(tmp_path)]) == 1
        assert "stack.schema.json is stale: run `./run.sh schema`" in capsys.readouterr().err

    def test_it_is_a_draft_7_schema_with_every_top_level_key_by_its_full_and_short_name(self, schema):
        assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
        properties = schema["properties"]["config"]["properties"]
        assert set(properties) == {f"{PROJECT}:{k}" for k in KNOWN_KEYS} | set(KNOWN_KEYS)

    def test_the_stack_files_name_it_in_their_first_line_and_the_reference_says_how(self):
        for path in SHIPPED:
            assert path.read_text().splitlines()[0] == MODELINE, path.name
        reference = (ROOT / "docs" / "configuration.md").read_text()
        assert MODELINE in reference and "./run.sh schema" in reference


class TestComplete:
    def test_every_key_name_the_parsers_read_is_in_it(self, schema):
        read = set()
        for path in (ROOT / "components").rglob("*.py"):
            if "offline" in path.parts or path.name == "reader.py":
                continue
            accessor = r"\.(?:string|boolean|integer|quantity|string_list|nodes|mapping|plain_object|raw|entries)"
            read |= set(re.findall(accessor + r'\(\s*"([A-Za-z_]\w*)"', path.read_text()))
        named: set[str] = set()

        def collect(node: Any) -> None:
            if isinstance(node, dict):
                named.update(node.get("properties", {}) if isinstance(node.get("properties"), dict) else ())
                for value in node.values():
                    collect(value)
            elif isinstance(node, list):
                for value in node:
                    collect(value)

        collect(schema)
        assert len(read) > 150
        assert sorted(read - named) == [], "add an example stack to schemas/examples that reads them"

    def test_every_key_of_the_configuration_reference_is_in_it(self, schema):
        def below(node: dict[str, Any], part: str) -> dict[str, Any] | None:
            """The schema of `part` under `node`: a property, an entry (`*`), in list items or alternatives."""
            for alternative in (node, node.get("else"), node.get("items"), *node.get("anyOf", [])):
                if not isinstance(alternative, dict):
                    continue
                if part in alternative.get("properties", {}):
                    found: dict[str, Any] = alternative["properties"][part]
                    return found
                if part == "*" and isinstance(alternative.get("additionalProperties"), dict):
                    entry: dict[str, Any] = alternative["additionalProperties"]
                    return entry
                if alternative is not node and (deeper := below(alternative, part)) is not None:
                    return deeper
            return None

        def has(path: list[str]) -> bool:
            node: dict[str, Any] | None = schema["definitions"][path[0]]
            for part in path[1:]:
                node = below(node, part) if node is not None else None
            return node is not None

        described = stack_schema._descriptions(ROOT)
        examples_of_entries = {"taskImages.python", "taskImages.no_python", "taskImages.task"}
        missing = [
            key
            for key in described
            if not key.startswith("*.")
            and key.split(".")[0] in KNOWN_KEYS
            and "." in key
            and key.split(".")[0] not in ("connections", "variables")  # opaque: secure, or free-form
            and key not in examples_of_entries
            and not has(key.split("."))
        ]
        assert missing == []

    def test_the_example_stacks_are_valid_stacks(self):
        stacks = example_stacks()
        assert len(stacks) == len(SHIPPED) + len(list((ROOT / EXAMPLES).glob("*.yaml"))) >= 5
        for stack in stacks:
            parse_stack(stack.values, set(stack.secret_keys))


class TestTheStacksMeetIt:
    @pytest.mark.parametrize("path", [*SHIPPED, *sorted((ROOT / EXAMPLES).glob("*.yaml"))], ids=lambda p: p.name)
    def test_the_shipped_and_example_stacks_validate(self, validator, path):
        doc = stack_file.load(path.read_text())
        assert [e.message for e in validator.iter_errors(doc)] == []


class TestTheBadConfigsFailIt:
    def test_each_type_error_of_a_plain_key_fails_it_at_that_key(self, validator):
        """The rule: the parser rejects the file with a ConfigTypeError (a value of another JSON type
        than the key takes) of a key that is not `secure:`."""
        cases = plain_rejections(ConfigTypeError)
        assert len(cases) >= 6
        for path, error, doc in cases:
            at = {as_key(e.absolute_path) for e in leaf_errors(validator, doc)}
            assert error.key.removeprefix(f"{PROJECT}:") in at, (path.name, error.key, at)

    def test_each_unknown_plain_key_fails_it_at_the_object_that_does_not_take_it(self, validator):
        cases = plain_rejections(ConfigError, "unknown key")
        assert len(cases) >= 4
        for path, error, doc in cases:
            parent = error.key.removeprefix(f"{PROJECT}:").rpartition(".")[0]
            at = {as_key(e.absolute_path) for e in leaf_errors(validator, doc)}
            assert parent in at, (path.name, error.key, at)

    def test_a_value_outside_a_keys_choices_fails_it(self, validator):
        cases = plain_rejections(ConfigError, "is not valid; allowed: ")  # Node.string's choices
        assert len(cases) >= 4
        for path, error, doc in cases:
            at = {as_key(e.absolute_path) for e in leaf_errors(validator, doc)}
            assert error.key.removeprefix(f"{PROJECT}:") in at, (path.name, error.key, at)


class TestTheRecord:
    def test_a_recording_holds_what_each_key_accepts_by_its_shape(self):
        with recording() as shapes:
            node = Node({"mode": "a", "teams": [{"name": "x"}], "pools": {"etl": {"slots": 2}}}, "s")
            node.string("mode", choices=("a", "b"))
            for team in node.nodes("teams", "teams"):
                team.string("name")
            for _, pool in node.entries("pools"):
                pool.integer("slots", low=1)
                pool.finish()
            node.finish()
        assert list(shapes.accepts["s.mode"].values()) == [{"type": "string", "enum": ["a", "b"]}]
        assert set(shapes.accepts) == {"s", "s.mode", "s.teams", "s.teams[]", "s.teams[].name", "s.pools", "s.pools.*",
                                       "s.pools.*.slots"}  # fmt: skip
        assert shapes.closed == {"s", "s.pools.*"}

    def test_nothing_is_recorded_outside_a_recording(self):
        with recording() as shapes:
            pass
        Node({"a": "b"}, "s").string("a")
        assert shapes.accepts == {}

    def test_a_type_error_is_a_config_error(self):
        with pytest.raises(ConfigTypeError, match="expected a string, got a list") as err:
            Node({"a": []}, "s").string("a")
        assert isinstance(err.value, ConfigError)
