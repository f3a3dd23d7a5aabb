"""No error message ever shows a secret: every secret key, holding marker values, through every error path.

Each secret config key gets values that carry a marker (well-formed, malformed, with the
characters that break URL parsing). They are put next to every bad config of the corpus
(tests/bad_configs/, whatever it fails on, the secret's own checks included) and next to
configs that fail on the secret itself; the stack edge must refuse each one with a
ConfigError whose text never contains the marker.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.core.reader import ConfigError
from components.platform.config import SECRET_KEYS, parse_stack
from tests.helpers import KNOWN_HOSTS, PROJECT, ROOT, stack_edge

M = "MRK7xQ"
FERNET_WITH_MARKER = M + "A" * (43 - len(M)) + "="

MARKED: dict[str, list[Any]] = {
    "databaseUrl": [
        f"postgresql://airflow:{M}@db.internal:5432/airflow?sslmode=require",
        f"postgresql://airflow:{M}/pw@db.internal:5432/airflow",
        f"postgresql://airflow:{M}#pw@db.internal:5432/airflow",
        f"postgresql://airflow:{M}?pw@db.internal:5432/airflow",
        f"postgresql://airflow:pw@{M}@db.internal:5432/airflow",
        f"postgresql://airflow:{M}@localhost:5432/airflow",
        f"mysql://airflow:{M}@db:3306/airflow",
        f"postgresql://airflow:{M}@db:5432/airflow?sslmode=bogus",
        f"{M}-not-a-url",
    ],
    "gitToken": [f"{M}-token", f"ghp_{M}0123456789"],
    "gitSshKey": [
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{M}AAAAAAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        f"{M}-not-a-key",
    ],
    "logsConnection": [
        f"aws://?aws_access_key_id=AKIA&aws_secret_access_key={M}",
        f"aws://AKIA:{M}/x#y@",
        json.dumps({"conn_type": "aws", "password": M}),
        f"{M} not a uri",
    ],
    "teamSecrets": [
        json.dumps({"data": {"warehouse": {"password": M}}}),
        json.dumps({"data": {"warehouse": {"pass word": M}}}),
        json.dumps({"nobody": {"warehouse": {"password": M}}}),
        f"{M}-not-json",
    ],
    "connections": [
        json.dumps({"warehouse": f"postgresql://etl:{M}@wh.internal:5432/dw"}),
        json.dumps({"warehouse": f"postgresql://etl:{M}@x@wh.internal:5432/dw"}),
        json.dumps({"warehouse": f"postgresql://etl:{M}#x@wh.internal:5432/dw"}),
        json.dumps({"warehouse": f"host={M}"}),
        json.dumps({"warehouse": {"conn_type": "postgres", "password": M, "port": "not-a-port"}}),
        json.dumps({"bad-id": f"postgresql://etl:{M}@wh/dw"}),
        json.dumps({"kubernetes_default": f"postgresql://etl:{M}@wh/dw"}),
        f"{M}-not-json",
    ],
    "previousFernetKeys": [FERNET_WITH_MARKER, f"{M}-not-a-key", f"{FERNET_WITH_MARKER},{M}"],
    "variables": [json.dumps({"k": M}), json.dumps({"k-bad": M}), f"{M}-not-json"],
}
assert set(SECRET_KEYS) <= set(MARKED)

# Fails last (the image tag is checked after every secret), so each secret's own checks run first.
GOOD_AIRFLOW = {
    "dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}},
    "image": {"tag": "latest"},
}
# Configs that use the secret, so its own checks (and the later ones) are reached.
USES: dict[str, dict[str, Any]] = {
    "databaseUrl": {"airflow": {**GOOD_AIRFLOW, "database": {"mode": "external"}}},
    "gitToken": {
        "airflow": {
            "dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/e/d.git", "auth": "token"}},
            "image": {"tag": "latest"},
        }
    },
    "gitSshKey": {
        "airflow": {
            "dags": {"mode": "gitSync", "gitSync": {"repo": "git@github.com:e/d.git", "knownHosts": KNOWN_HOSTS}},
            "image": {"tag": "latest"},
        }
    },
    "logsConnection": {
        "airflow": GOOD_AIRFLOW,
        "logs": {"mode": "remote", "remote": {"target": "s3", "baseLogFolder": "s3://logs/prod", "connectionId": ""}},
    },
    "teamSecrets": {"airflow": GOOD_AIRFLOW, "teams": [{"name": "data", "secrets": ["warehouse"]}]},
    "connections": {"airflow": {**GOOD_AIRFLOW, "namespace": "default"}},
    "previousFernetKeys": {"airflow": {**GOOD_AIRFLOW, "fernetKey": {"keepPrevious": False}}},
    "variables": {"airflow": {**GOOD_AIRFLOW, "image": {"tag": "latest"}}},
}

CORPUS = sorted((ROOT / "tests" / "bad_configs").glob("*.yaml"))


def _with_secret(text: str, key: str, value: str) -> str:
    """The corpus file with one more secret key (every corpus file ends with its `config:` block;
    a key the file already sets is then written twice, which is refused too)."""
    return text.rstrip("\n") + f"\n  {PROJECT}:{key}:\n    secure: {json.dumps(value)}\n"


def _refuse(values: dict[str, Any], secret_keys: set[str]) -> str:
    with pytest.raises(ConfigError) as err:
        parse_stack(values, secret_keys)
    return str(err.value)


CASES = [(key, i) for key, items in MARKED.items() for i in range(len(items))]


class TestMarkersNeverEchoed:
    @pytest.mark.parametrize(("key", "index"), CASES, ids=[f"{k}-{i}" for k, i in CASES])
    def test_a_config_that_uses_the_secret_and_fails_never_shows_it(self, key, index):
        values = {**USES[key], key: MARKED[key][index]}
        try:
            parse_stack(values, {key})
        except ConfigError as exc:
            assert M not in str(exc) and M not in str(exc.value) and M not in exc.allowed
            return
        pytest.fail(f"{key}: the config was accepted; it is built to fail")

    @pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
    def test_every_bad_config_with_every_marked_secret_is_refused_without_showing_them(self, path):
        text = path.read_text()
        checked = 0
        for key, items in MARKED.items():
            for value in items[:2]:  # one well-formed, one malformed (all of them: the test above)
                try:
                    stack_edge(_with_secret(text, key, value))
                except ConfigError as exc:
                    assert M not in str(exc), f"{path.stem} with {key}: {exc}"
                    checked += 1
                    continue
                pytest.fail(f"{path.stem} with {key}: accepted; every corpus file is built to fail")
        assert checked == 2 * len(MARKED)
