"""The DOCS documents every reliability key the parsers read, and its procedures parse."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.core.reader import Node
from components.platform.config import parse_stack
from tests.golden import UPDATE_COMMAND
from tests.helpers import DB_URL, docs_text

DOCS = docs_text()
GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
KEY = "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg="


def reliability() -> str:
    start = DOCS.index("## Reliability")
    return DOCS[start : DOCS.index("\n## ", start + 1)]


def full_config() -> tuple[dict[str, str], set[str]]:
    airflow = {
        "dags": GIT,
        "executor": "CeleryExecutor",
        "database": {"mode": "external"},
        "fernetKey": {"generation": 2, "keepPrevious": False, "rotate": True},
        "pools": {"etl": {"slots": 4, "description": "ETL", "includeDeferred": True}},
        "spread": {
            "enabled": True,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "maxSkew": 2,
        },
    }
    values = {
        "airflow": json.dumps(airflow),
        "databaseUrl": DB_URL,
        "connections": json.dumps({"warehouse": "postgresql://u:p@h/db"}),
        "variables": json.dumps({"environment": "prod"}),
        "previousFernetKeys": KEY,
    }
    return values, {"databaseUrl", "connections", "previousFernetKeys"}


def documented(key: str) -> bool:
    return f"`{key}`" in DOCS


class TestReference:
    def test_every_key_of_fernet_rotation_pools_and_spreading_is_in_the_reference(self):
        Node.asked.clear()
        values, secrets = full_config()
        parse_stack(values, secrets)
        keys = {re.sub(r"^airflow\.pools\.[^.]+\.", "airflow.pools.<name>.", k) for k in Node.asked}
        mine = {k for k in keys if k.startswith(("airflow.fernetKey", "airflow.pools", "airflow.spread"))}
        assert len(mine) == 13
        assert sorted(k for k in mine if not documented(k)) == []

    @pytest.mark.parametrize(
        "key", ["connections", "previousFernetKeys", "connections.<conn_id>", "variables", "variables.<key>"]
    )
    def test_the_top_level_keys_are_in_the_reference(self, key):
        assert documented(key)
        reference = DOCS[DOCS.index("## Configuration reference") : DOCS.index("## Monitoring (")]
        assert f"| `{key}` |" in reference


class TestProcedures:
    def test_the_reliability_section_covers_each_guarantee(self):
        text = reliability()
        for heading in (
            "### Nothing is renamed by accident",
            "### Rotating the Fernet key",
            "### Keys from before",
            "### Connections, variables and pools as code",
            "### Changed Secrets restart the pods that read them",
            "### Spread across nodes",
            "### Bad input never deploys",
            "### What `pulumi destroy` keeps",
        ):
            assert heading in text
        assert UPDATE_COMMAND in text and "airflow rotate-fernet-key" in text

    def test_every_config_command_of_the_procedures_gives_a_config_the_parser_accepts(self):
        text = reliability()
        commands = re.findall(r"pulumi config set (--secret )?(--path )?(\S+) ([^\s']+)\s*(?:#.*)?$", text, flags=re.M)
        assert len(commands) >= 6
        airflow: dict[str, Any] = {"dags": GIT}
        values: dict[str, Any] = {}
        for _, path, key, value in commands:
            parsed: Any = json.loads(value) if value in ("true", "false") or value.isdigit() else value
            parts = key.split(".")
            if parts[0] == "airflow":
                target = airflow
                for part in parts[1:-1]:
                    target = target.setdefault(part, {})
                target[parts[-1]] = parsed
            elif path:
                values.setdefault(parts[0], {})[parts[1]] = parsed
        values = {k: json.dumps(v) for k, v in values.items()}
        secret: set[str] = set()
        if "pulumi config set --secret previousFernetKeys" in text:
            # The "Keys from before" procedure imports keys, then rotates (with keepPrevious false from before).
            values["previousFernetKeys"], secret = KEY, {"previousFernetKeys"}
        cfg = parse_stack({"airflow": json.dumps(airflow), **values}, secret)
        assert cfg.airflow.fernet.generation == 2 and cfg.airflow.pools[0].slots == 8
        assert cfg.variables == {"environment": "prod"}

    def test_the_rotation_steps_are_in_order(self):
        text = reliability()
        assert text.index("fernetKey.generation 2") < text.index("fernetKey.keepPrevious false")
