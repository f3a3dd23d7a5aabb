"""The preview's fast paths give the answers of the slow ones they stand in for."""

from __future__ import annotations

import copy
import datetime
import os
import pathlib
import random
from typing import Any

import pytest
import yaml

from components.core import invariants
from components.core.merge import deep_merge
from components.offline import yamlout
from components.offline.checks import Item, schema_problems, schemas
from components.offline.render import load_all, render

CHARTS = pathlib.Path(
    os.environ.get("AIRFLOW_K8S_CHARTS") or pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "charts"
)

AWKWARD = [
    "",
    " leading space",
    "trailing space ",
    "yes",
    "no",
    "on",
    "null",
    "~",
    "true",
    "0x1F",
    "0o17",
    "017",
    "1e3",
    "1_000",
    ".inf",
    "-.nan",
    "12:30:00",
    "2001-01-01",
    "a: b",
    "- item",
    "# comment",
    "&anchor",
    "*alias",
    "!tag",
    "%directive",
    "@at",
    "`tick",
    "{flow}",
    "[flow]",
    "multi\nline\ntext\n",
    "tab\tinside",
    "quote ' and \" both",
    "ünïcödé ✓",
    "very " * 40 + "long",
    "=",
    "<<",
    "?",
    "key:",
    "\x07bell",
]


def sample() -> list[Any]:
    nested: dict[str, Any] = {s: s for s in AWKWARD}
    return [
        {"kind": "ConfigMap", "data": nested, "list": AWKWARD, "empty": {}, "none": [], "n": None},
        {"ints": [0, -1, 8793, 2**63], "bools": [True, False], "floats": [1.5, 1e20, float("inf")]},
        {"when": datetime.date(2026, 11, 24), "deep": [[{"a": [{"b": None}]}]], 3: "int key"},
        AWKWARD,
        "a bare string",
        None,
    ]


def standard(objects: list[Any]) -> str:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump_all(objects, Dumper=dumper, sort_keys=False, default_flow_style=False))


class TestYamlOut:
    def test_awkward_values_are_written_exactly_as_pyyaml_writes_them(self) -> None:
        assert yamlout.dump_all(sample()) == standard(sample())

    def test_one_document_is_written_as_pyyaml_writes_it(self) -> None:
        value = sample()[0]
        assert yamlout.dump(value) == yaml.dump(
            value, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False, default_flow_style=False
        )

    def test_what_is_written_reads_back_as_the_same_objects(self) -> None:
        objects = sample()[:2]
        assert list(yaml.safe_load_all(yamlout.dump_all(objects))) == objects

    def test_a_rendered_chart_is_written_exactly_as_pyyaml_writes_it(self) -> None:
        chart = CHARTS / "kube-prometheus-stack-88.5.3.tgz"
        if not chart.is_file():
            pytest.skip("the chart archives are not beside the project")
        objects = [r.obj for r in render(chart, {}, "monitoring", "monitoring")]
        assert len(objects) > 50
        assert yamlout.dump_all(objects) == standard(objects)

    def test_a_mapping_that_appears_twice_is_written_twice_and_never_as_an_alias(self) -> None:
        shared = {"name": "x"}
        text = yamlout.dump_all([{"a": shared, "b": shared}])
        assert "&" not in text and "*" not in text
        assert load_all(text) == [{"a": shared, "b": shared}]


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 8080}],
                            "resources": {"limits": {"memory": "128Mi"}},
                        }
                    ]
                },
            },
        },
    }


def _places(node: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((node, key))
            _places(value, out)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.append((node, i))
            _places(value, out)
    return out


def _mutations(obj: dict[str, Any], count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        mutated = copy.deepcopy(obj)
        places = _places(mutated, [])
        parent, key = rng.choice(places)
        parent[key] = rng.choice([12345, "text", {"bogus": 1}, None, [1], True, -1.5])
        out.append(mutated)
    return out


class TestSchemaFastPath:
    def test_the_compiled_schemas_are_in_use(self) -> None:
        assert schemas.FAST_PATH, "jsonschema-rs is pinned in requirements-test.txt"
        assert schemas._fast_validator(schemas._schema_dir_for("1.31"), "apps", "v1", "Deployment") is not None

    def test_a_valid_object_has_no_problems(self) -> None:
        assert schema_problems([Item("t", deployment())], "1.31") == []

    def test_the_fast_and_the_explaining_validator_agree_on_hundreds_of_broken_objects(self) -> None:
        schema_dir = schemas._schema_dir_for("1.31")
        slow = schemas._builtin_validator(schema_dir, "apps", "v1", "Deployment")
        fast = schemas._fast_validator(schema_dir, "apps", "v1", "Deployment")
        assert slow is not None and fast is not None
        disagreements = [
            obj for obj in _mutations(deployment(), 400, seed=7) if fast.is_valid(obj) != slow.is_valid(obj)
        ]
        assert disagreements == []

    def test_an_unknown_field_is_still_explained(self) -> None:
        obj = deployment()
        obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
        problems = schema_problems([Item("t", obj)], "1.31")
        assert len(problems) == 1
        assert "imagePullPolicyy" in problems[0].message


class TestMergeAndWalk:
    def test_a_merge_changes_neither_side_and_shares_nothing_with_them(self) -> None:
        base = {"a": {"b": [1, {"c": 2}], "d": 1}, "e": [{"f": 1}]}
        override = {"a": {"b": [3], "x": {"y": 1}}, "e": {"g": 2}}
        before = (copy.deepcopy(base), copy.deepcopy(override))
        merged = deep_merge(base, override)
        assert merged == {"a": {"b": [3], "d": 1, "x": {"y": 1}}, "e": {"g": 2}}
        assert (base, override) == before
        merged["a"]["x"]["y"] = 99
        merged["a"]["b"].append(4)
        assert (base, override) == before

    def test_a_tree_walked_twice_in_one_check_is_walked_the_same(self) -> None:
        tree = {"a": [{"b": 1}, 2], "c": {"d": None}}
        plain = list(invariants.walk(tree))
        with invariants.walked():
            assert list(invariants.walk(tree)) == plain
            assert list(invariants.walk(tree)) == plain
            assert list(invariants.walk(tree["a"], ("a",))) == [p for p in plain if p[0][:1] == ("a",)]
        assert invariants._WALKED is None
