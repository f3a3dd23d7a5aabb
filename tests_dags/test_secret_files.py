"""Airflow 3.2 itself reads what AirflowRelease hands it: secrets through `*_CMD` files,
connections and variables through LocalFilesystemBackend.

The fixture (tests_dags/fixtures/secret_files.json) is kept equal to what the components
render by tests/test_secret_files.py. Each case runs in a fresh interpreter so Airflow
builds its configuration from exactly that environment, as a container would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "secret_files.json").read_text())


def airflow(tmp_path: Path, script: str, drop: str | None = None) -> Any:
    """Run `script` with the fixture's environment and files (under tmp_path); its JSON output."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    here = str(secrets)
    for path, content in FIXTURE["files"].items():
        if Path(path).name != drop:
            (secrets / Path(path).name).write_text(content)
    (secrets / "connections.json").write_text(FIXTURE["connections.json"])
    (secrets / "variables.json").write_text(FIXTURE["variables.json"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__SECRETS__BACKEND": FIXTURE["config"]["backend"],
            "AIRFLOW__SECRETS__BACKEND_KWARGS": FIXTURE["config"]["backend_kwargs"].replace(
                FIXTURE["secrets_dir"], here
            ),
        }
    )
    for entry in FIXTURE["env"]:
        env[entry["name"]] = entry["value"].replace(FIXTURE["secrets_dir"], here)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


CONF = """
import json
from airflow.configuration import conf
print(json.dumps({
    "fernet_key": conf.get("core", "fernet_key"),
    "sql_alchemy_conn": conf.get("database", "sql_alchemy_conn"),
    "sql_alchemy_conn_async": conf.get("database", "sql_alchemy_conn_async"),
    "api_secret_key": conf.get("api", "secret_key"),
    "jwt_secret": conf.get("api_auth", "jwt_secret"),
    "broker_url": conf.get("celery", "broker_url"),
}))
"""


def sample(name: str) -> str:
    return next(v for p, v in FIXTURE["files"].items() if p.endswith("/" + name))


def test_airflow_reads_its_secrets_from_the_mounted_files(tmp_path):
    assert airflow(tmp_path, CONF) == {
        "fernet_key": sample("fernet-key"),
        "sql_alchemy_conn": sample("sql-alchemy-conn"),
        "sql_alchemy_conn_async": sample("sql-alchemy-conn-async"),
        "api_secret_key": sample("api-secret-key"),
        "jwt_secret": sample("jwt-secret"),
        "broker_url": sample("celery-broker-url"),
    }


def test_a_missing_file_is_an_error_not_a_silent_default(tmp_path):
    with pytest.raises(AssertionError, match="Cannot execute cat"):
        airflow(tmp_path, CONF, drop="sql-alchemy-conn")


def test_every_option_read_from_a_file_is_one_airflow_accepts_a_command_for(tmp_path):
    script = """
import json
from airflow.configuration import conf
print(json.dumps(sorted("__".join(("AIRFLOW", s.upper(), k.upper())) for s, k in conf.sensitive_config_values)))
"""
    sensitive = set(airflow(tmp_path, script))
    # The Celery broker URL is sensitive through the Celery provider's own config.
    assert {e["name"].removesuffix("_CMD") for e in FIXTURE["env"]} <= sensitive


def test_connections_and_variables_come_from_the_files(tmp_path):
    script = """
import json
from airflow.models import Connection, Variable
warehouse = Connection.get_connection_from_secrets("warehouse")
k8s = Connection.get_connection_from_secrets("kubernetes_default")
print(json.dumps({
    "warehouse": [warehouse.conn_type, warehouse.host, warehouse.login, warehouse.password, warehouse.port],
    "kubernetes_default": [k8s.conn_type, k8s.extra_dejson],
    "environment": Variable.get("environment"),
    "buckets": Variable.get("buckets", deserialize_json=True),
}))
"""
    assert airflow(tmp_path, script) == {
        "warehouse": ["postgres", "warehouse", "etl", "pw", 5432],
        "kubernetes_default": ["kubernetes", {"in_cluster": True}],
        "environment": "prod",
        "buckets": ["a", "b"],
    }
