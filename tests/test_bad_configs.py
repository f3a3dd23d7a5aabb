"""Bad input never deploys: every stack config in tests/bad_configs/ fails before any resource.

Each file is shaped like a `Pulumi.<stack>.yaml` with, next to its `config:` block, an
`expect:` block: the config key the error must name and fragments of the message (what is
allowed, and the fix). A `{secure: <value>}` entry holds its value in plain text here; the
walker hands it to the program as a secret key, as `pulumi up` would after decryption.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.core.reader import ConfigError
from components.offline.program import run_program
from components.platform import stack_file
from tests.helpers import PROJECT, ROOT

CORPUS = ROOT / "tests" / "bad_configs"
FILES = sorted(CORPUS.glob("*.yaml"))


def load(path: Path) -> tuple[dict[str, Any], dict[str, str], set[str]]:
    """(the file, config as Pulumi hands it to a program, the secret keys).

    The `config:` block is read the way the Pulumi CLI reads it (components/platform/stack_file.py):
    YAML scalars as Go's yaml.v3 resolves them, a duplicated key an error (a ConfigError, raised
    before any resource, like the program's own)."""
    text = path.read_text()
    doc = yaml.safe_load(text)
    raw, secret_keys = stack_file.read(text, PROJECT)
    config: dict[str, str] = {}
    for key, value in raw.items():
        if key in secret_keys:
            plain = value["secure"]
            config[key] = plain if isinstance(plain, str) else json.dumps(plain)
        else:
            config[key] = value
    return doc, config, secret_keys


def secret_texts(doc: dict[str, Any]) -> list[str]:
    """Every string inside a secure value long enough to be recognised in a message."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str) and len(value) >= 6:
            out.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for value in doc["config"].values():
        if isinstance(value, dict) and set(value) == {"secure"}:
            walk(value["secure"])
    return out


def _has_secure(doc: dict[str, Any]) -> bool:
    return any(isinstance(v, dict) and set(v) == {"secure"} for v in doc["config"].values())


WITH_SECRETS = [p for p in FILES if _has_secure(yaml.safe_load(p.read_text()))]


def rejection(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        try:
            _, config, secret_keys = load(path)
        except ConfigError as exc:
            exc.declared_before_error = []  # type: ignore[attr-defined]  # the file was never run
            raise
        run_program(ROOT, "test", config=config, secret_keys=secret_keys, project=PROJECT)
    return err.value


class TestCorpus:
    def test_the_corpus_holds_at_least_forty_configs_each_with_a_description_and_an_expectation(self):
        assert len(FILES) >= 40
        for path in FILES:
            text = path.read_text()
            assert text.startswith("# "), path.name
            doc = yaml.safe_load(text)
            assert set(doc) == {"expect", "config"}, path.name
            assert doc["expect"]["key"] and doc["expect"]["message"], path.name
            # Keys are namespaced like the CLI writes them (a misspelt namespace is one of the mistakes).
            assert all(re.match(r"^[A-Za-z0-9_.-]+:[A-Za-z]", key) for key in doc["config"]), path.name

    @pytest.mark.parametrize(
        "name",
        [
            "executor-wrong-type",
            "misspelled-component",
            "misspelled-top-level-key",
            "unknown-nested-key",
            "unknown-executor",
            "celery-kubernetes-executor-on-airflow-3",
            "git-sync-without-repository",
            "ssh-without-key",
            "host-path-logs-in-production",
            "host-path-dags-in-production",
            "negative-replicas",
            "invalid-namespace-name",
            "invalid-cpu-quantity",
            "invalid-memory-quantity",
            "non-semver-chart-version",
            "two-teams-one-namespace",
            "spark-job-namespace-is-airflows",
            "monitoring-unknown-mode",
            "logs-nfs-without-server",
            "connections-not-secret",
            "fernet-generation-zero",
            "spread-unknown-policy",
            "pool-without-slots",
        ],
    )
    def test_the_corpus_covers_the_mistakes_users_make(self, name):
        assert (CORPUS / f"{name}.yaml").exists()


class TestEveryBadConfig:
    @pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
    def test_fails_before_any_resource_is_declared_naming_the_key_and_the_fix(self, path):
        doc = yaml.safe_load(path.read_text())
        err = rejection(path)
        assert err.declared_before_error == []  # type: ignore[attr-defined]
        message = str(err)
        assert f"config key '{doc['expect']['key']}'" in message
        for fragment in doc["expect"]["message"]:
            assert fragment in message, f"{path.name}: {fragment!r} not in {message!r}"
        assert err.allowed.strip()

    @pytest.mark.parametrize("path", WITH_SECRETS, ids=lambda p: p.stem)
    def test_a_secret_value_is_never_echoed_in_the_error(self, path):
        message = str(rejection(path))
        texts = secret_texts(yaml.safe_load(path.read_text()))
        assert texts, f"{path.name}: no secret text long enough to look for"
        for text in texts:
            assert text not in message

    def test_the_files_with_secrets_are_the_ones_whose_config_holds_a_secure_value(self):
        said = {p for p in FILES if "`secure:` values are plain text" in p.read_text()}
        assert said == set(WITH_SECRETS)
        assert len(WITH_SECRETS) >= 20


class TestWalker:
    def test_a_good_config_in_the_same_shape_deploys(self, tmp_path):
        bad = yaml.safe_load((CORPUS / "negative-replicas.yaml").read_text())
        bad["config"][f"{PROJECT}:airflow"]["scheduler"]["replicas"] = 2
        path = tmp_path / "good.yaml"
        path.write_text(yaml.safe_dump(bad))
        _, config, secret_keys = load(path)
        config = {**config, "kubernetes:context": "test-cluster"}  # a production stack names its cluster
        run = run_program(ROOT, "test", config=config, secret_keys=secret_keys, project=PROJECT)
        assert any(r.type.endswith("helm.sh/v3:Release") for r in run.resources)

    def test_secure_values_reach_the_program_as_secrets(self):
        _, config, secret_keys = load(CORPUS / "ssh-key-not-a-key.yaml")
        assert secret_keys == {f"{PROJECT}:gitSshKey"}
        assert config[f"{PROJECT}:gitSshKey"] == "hunter2"
