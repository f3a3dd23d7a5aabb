"""Never a raw exception: fuzzed stack files and component arguments end in acceptance or a ConfigError.

Hypothesis mutates the shipped stacks (one to three places: a value replaced by any JSON-like
value or by a known troublemaker, a key removed, a key added) and feeds the result to the
entry points the program uses: a stack file through `stack_file.read` and `check_config` (what
`pulumi up` and the offline preview run), AirflowPlatform's arguments through `config_of`, and
AirflowRelease's through `checked_args`. Whatever the input, the outcome is acceptance or a
ConfigError whose message starts with the key it names; any other exception fails the test with
the smallest input that raised it. Runs are deterministic (derandomized, no example database)
and bounded in number, so the whole module takes seconds.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from components.airflow.component import AirflowRelease
from components.core.reader import MAX_DEPTH, ConfigError
from components.platform.component import CONFIG_KEYS, config_of
from tests.helpers import DB_URL, PROJECT, ROOT, SSH_KEY, stack_edge

# AIRFLOW_K8S_FUZZ_EXAMPLES=5000 explores further, with fresh random inputs each run (a finding is
# printed with the input that raised it: add it to the tests below).
EXPLORE = int(os.environ.get("AIRFLOW_K8S_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXPLORE or 100,
    deadline=None,
    derandomize=not EXPLORE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# Values that broke parsers before, or sit on the edge of a rule.
TROUBLE = [
    "",
    " ",
    "0",
    "-1",
    "1e400",
    "NaN",
    "1" * 5000,
    "yes",
    "latest",
    "{{ .Values.x }}",
    "fd00::/8",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "::/0",
    "/",
    "..",
    "../../etc",
    "a" * 300,
    "٣",
    "0 0 30 2 *",
    "* * * * 7",
    "*/5 * * * *",
    "postgresql://u:p@h:5432/d",
    "postgresql://u:p@airflow-pgbouncer:6543/d",
    "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "ghp_" + "a1B2" * 9,
    "-----BEGIN RSA PRIVATE KEY-----\nMIIabc\n-----END RSA PRIVATE KEY-----\n",
    "g\u0456thub.com",  # a Cyrillic i
    "main..x",
    "10Gi",
    "1000000",
    "Equal",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=24),
    st.sampled_from(TROUBLE),
)


def _stack(name: str) -> dict[str, Any]:
    """A shipped stack file as a document, its secure values replaced by well-formed test values."""
    doc = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())
    plain = {"databaseUrl": DB_URL, "gitSshKey": SSH_KEY}
    for key, value in doc["config"].items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            value["secure"] = plain[key.split(":", 1)[1]]
    return dict(doc)


def _wide() -> dict[str, Any]:
    """The dev stack with the keys it leaves out: teams, their Secrets, connections, variables, task images."""
    doc = _stack("dev")
    doc["config"].update(
        {
            f"{PROJECT}:teams": [
                {
                    "name": "data",
                    "quota": {"cpu": "4", "memory": "8Gi", "pods": 20},
                    "limits": {"default": {"cpu": "500m", "memory": "512Mi"}, "max": {"cpu": "2", "memory": "4Gi"}},
                    "egress": [{"cidr": "10.20.0.0/16", "ports": [5432], "except": ["10.20.1.0/24"]}],
                    "secrets": ["warehouse"],
                }
            ],
            f"{PROJECT}:teamSecrets": {"secure": {"data": {"warehouse": {"password": "pw-0123456789"}}}},
            f"{PROJECT}:connections": {"secure": {"warehouse": "postgresql://etl:pw@wh.internal:5432/dw"}},
            f"{PROJECT}:variables": {"team": "data", "limits": {"rows": 10}},
            f"{PROJECT}:taskImages": {"python": "python:3.13.7-slim-bookworm"},
        }
    )
    return doc


BASES = {"dev": _stack("dev"), "prod": _stack("prod"), "wide": _wide()}


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


# Key names the stacks use (so a mutation often adds a key a parser knows, in the wrong place).
VOCABULARY = sorted({k.split(":", 1)[-1] for base in BASES.values() for k in _keys(base)})
KEYS = st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=10))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=10,
)
# Component arguments are Python values: a few that no stack file can hold.
ODD = st.one_of(st.binary(max_size=4), st.tuples(SCALARS), st.just({1: "a", "b": 2}), st.just({"k"}))


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key in value:
            out += _paths(value[key], (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*path, i))
    return out


def _mutate(data: st.DataObject, doc: Any, root: tuple[Any, ...], values: st.SearchStrategy[Any]) -> Any:
    """`doc` changed in one to three places under `root`."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p[: len(root)] == root and len(p) > len(root)]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        action = data.draw(st.sampled_from(("replace", "replace", "delete", "add")))
        if action == "replace":
            parent[path[-1]] = copy.deepcopy(data.draw(values))
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][data.draw(KEYS)] = copy.deepcopy(data.draw(values))
    return doc


def _ends_cleanly(run: Callable[[], Any]) -> None:
    """Acceptance, or a ConfigError that names its key first."""
    try:
        run()
    except ConfigError as exc:
        assert exc.key and str(exc).startswith(f"config key '{exc.key}'"), str(exc)


YAML_CHARACTERS = "config: airflow-k8s-{}[]&*!|>'\"#%@,?\n\t0123456789.~"


class TestTheShippedStacksAreTheFuzzersStart:
    @pytest.mark.parametrize("name", sorted(BASES))
    def test_each_base_stack_loads_clean_so_every_refusal_is_the_mutations(self, name):
        stack_edge(yaml.safe_dump(BASES[name], allow_unicode=True))


class TestStackFiles:
    @FUZZ
    @given(data=st.data(), name=st.sampled_from(sorted(BASES)))
    def test_a_mutated_stack_file_is_accepted_or_refused_naming_a_key(self, data, name):
        doc = _mutate(data, BASES[name], ("config",), VALUES)
        _ends_cleanly(lambda: stack_edge(yaml.safe_dump(doc, allow_unicode=True)))

    @settings(FUZZ, max_examples=EXPLORE or 200)
    @given(text=st.text(alphabet=st.sampled_from(list(YAML_CHARACTERS)), max_size=80))
    def test_any_text_as_a_stack_file_is_read_or_refused_naming_a_key(self, text):
        _ends_cleanly(lambda: stack_edge(text))

    def test_nesting_deeper_than_the_bound_is_refused_naming_the_key_and_the_line(self):
        deep = "[" * 5000 + "]" * 5000
        text = f"config:\n  {PROJECT}:variables:\n    big: {deep}\n"
        shown = re.escape("config key 'variables.big[0][0][0]...'")
        with pytest.raises(ConfigError, match=rf"{shown}.*deeper than {MAX_DEPTH}"):
            stack_edge(text)

    def test_nesting_within_the_bound_is_read(self):
        dev = (ROOT / "Pulumi.dev.yaml").read_text()
        stack_edge(dev + f"  {PROJECT}:variables:\n    nested: {'[' * (MAX_DEPTH - 1)}{']' * (MAX_DEPTH - 1)}\n")

    def test_an_infinite_number_inside_an_object_is_refused_naming_its_key(self):
        dev = (ROOT / "Pulumi.dev.yaml").read_text()
        text = dev.replace("    scheduler:\n      replicas: 1", "    scheduler:\n      replicas: .inf")
        with pytest.raises(ConfigError, match=r"config key 'airflow.scheduler.replicas'.*finite number"):
            stack_edge(text)

    def test_aliases_that_expand_beyond_the_bound_are_refused(self):
        lines = ["config:", f"  {PROJECT}:variables:", "    a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"    a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
        with pytest.raises(ConfigError, match=r"config key 'variables'.*larger than any setting needs"):
            stack_edge("\n".join(lines) + "\n")


_BY_KEY = {key: arg for arg, key in CONFIG_KEYS.items()}


def _args(doc: dict[str, Any]) -> dict[str, Any]:
    """A stack as AirflowPlatform's arguments (secure values as the plain values a caller passes)."""
    return {
        _BY_KEY[k.split(":", 1)[1]]: v["secure"] if isinstance(v, dict) and set(v) == {"secure"} else v
        for k, v in doc["config"].items()
        if k.startswith(PROJECT)
    }


DEV_ARGS = _args(BASES["dev"])
WIDE_ARGS = _args(BASES["wide"])


class TestComponentArgs:
    def test_the_dev_and_wide_stacks_as_platform_args_are_accepted(self):
        config_of(DEV_ARGS)
        config_of(WIDE_ARGS)

    @FUZZ
    @given(data=st.data())
    def test_mutated_airflow_platform_args_are_accepted_or_refused_naming_a_key(self, data):
        args = _mutate(data, WIDE_ARGS, (), st.one_of(VALUES, ODD))
        _ends_cleanly(lambda: config_of(args))

    @FUZZ
    @given(data=st.data())
    def test_mutated_airflow_release_args_are_accepted_or_refused_naming_a_key(self, data):
        config = BASES["dev"]["config"]
        args: dict[str, Any] = {
            "settings": config[f"{PROJECT}:airflow"],
            "logs": config[f"{PROJECT}:logs"],
            "extra_values": {},
            "connections": {"warehouse": "postgresql://etl:pw@wh.internal:5432/dw"},
            "variables": {"team": "data"},
        }
        args = _mutate(data, args, (), st.one_of(VALUES, ODD))
        _ends_cleanly(lambda: AirflowRelease.checked_args(args))  # type: ignore[arg-type]

    def test_an_ipv6_exception_inside_an_ipv4_block_is_refused_naming_it(self):
        teams = [{"name": "data", "egress": [{"cidr": "10.0.0.0/8", "except": ["fd00::/8"]}]}]
        with pytest.raises(ConfigError, match=r"config key 'teams\[0\].egress\[0\].except\[0\]'.*IPv4 block"):
            config_of({**DEV_ARGS, "teams": teams})

    def test_keys_that_are_not_text_are_refused_naming_the_argument(self):
        with pytest.raises(ConfigError, match=r"config key 'airflow.extraValues'.*keys must be text"):
            config_of({**DEV_ARGS, "airflow": {**DEV_ARGS["airflow"], "extraValues": {1: "a"}}})

    def test_a_number_no_quantity_can_spell_is_refused_naming_its_key(self):
        airflow = copy.deepcopy(DEV_ARGS["airflow"])
        airflow["scheduler"]["resources"]["requests"]["memory"] = 1e21  # str() gives '1e+21'
        with pytest.raises(ConfigError, match=r"config key 'airflow.scheduler.resources.requests.memory'"):
            config_of({**DEV_ARGS, "airflow": airflow})

    def test_a_value_no_stack_file_can_hold_is_refused_naming_its_argument(self):
        with pytest.raises(ConfigError, match=r"config key 'variables.team'.*got a bytes"):
            config_of({**WIDE_ARGS, "variables": {"team": b"data"}})

    def test_an_airflow_release_without_settings_is_refused_naming_the_argument(self):
        with pytest.raises(ConfigError, match=r"config key 'settings'.*AirflowConfig or a mapping"):
            AirflowRelease.checked_args({})  # type: ignore[typeddict-item]

    def test_an_airflow_release_connections_argument_that_is_not_a_mapping_is_refused(self):
        settings = BASES["dev"]["config"][f"{PROJECT}:airflow"]
        with pytest.raises(ConfigError, match=r"config key 'connections'.*expected a mapping"):
            AirflowRelease.checked_args({"settings": settings, "connections": ["a"]})  # type: ignore[typeddict-item]
