"""The DOCS documents every config key the parser reads, and its two commands exist."""

from __future__ import annotations

import json
import re

from components.core.reader import Node
from components.platform.config import parse_stack
from tests.helpers import DB_URL, KNOWN_HOSTS, ROOT, SSH_KEY, docs_text

DOCS = docs_text()

COMPONENTS = (
    "scheduler",
    "apiServer",
    "webserver",
    "triggerer",
    "dagProcessor",
    "workers",
    "flower",
    "statsd",
    "database.pgbouncer",
    "redis",
    "taskPods",
)


def configs():
    base = {
        "scheduler": {"resources": {"requests": {"cpu": "1"}}},
        "flower": {"enabled": True},
        "executor": "CeleryExecutor",
    }
    yield (
        {
            **base,
            "dags": {"mode": "gitSync", "gitSync": {"repo": "git@github.com:o/d.git", "knownHosts": KNOWN_HOSTS}},
            "database": {"mode": "external"},
        },
        {"gitSshKey": SSH_KEY, "databaseUrl": DB_URL},
    )
    yield {**base, "dags": {"mode": "hostPath", "hostPath": {"path": "/d"}}}, {}
    yield {**base, "dags": {"mode": "persistentVolumeClaim", "persistentVolumeClaim": {"claimName": "d"}}}, {}
    yield (
        {"version": "2.11.0", "dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/o/d.git"}}},
        {"gitToken": "t"},
    )


def documented(key: str) -> bool:
    if f"`{key}`" in DOCS:
        return True
    for component in COMPONENTS:
        prefix = f"airflow.{component}."
        if key.startswith(prefix) and f"`<component>.{key[len(prefix) :]}`" in DOCS:
            return True
    return False


def test_every_config_key_the_parser_reads_is_in_the_readme():
    Node.asked.clear()
    for airflow, secrets in configs():
        parse_stack({"airflow": json.dumps(airflow), "cluster": '{"environment": "laptop"}', **secrets}, set(secrets))
    keys = {re.sub(r"\[\d+\]", "", k) for k in Node.asked}
    assert len(keys) > 60
    missing = sorted(k for k in keys if not documented(k))
    assert missing == []


def test_the_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    assert "./run.sh preview" in DOCS
    assert "./run.sh test" in DOCS
    assert "./run.sh test" in (ROOT / ".ci" / "run").read_text()
