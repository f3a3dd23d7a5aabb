"""Stack files are read the way the Pulumi CLI reads them, and the two are proven to agree.

`components.platform.stack_file` is what the offline preview and the corpus walker use. The agreement
tests run the real CLI (`pulumi config --json`) on the same files: found on PATH, else through
`../shared/tools/install.sh`; without either they are skipped with a reason that says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from components.core.reader import ConfigError
from components.platform.stack_file import read
from tests.helpers import PROJECT, ROOT

TRICKY = """\
config:
  airflow-k8s:a: yes
  airflow-k8s:b: on
  airflow-k8s:c: 0755
  airflow-k8s:d: 1.0
  airflow-k8s:e: 2024-01-01
  airflow-k8s:f: ""
  airflow-k8s:g: {x: yes, y: 0x1F, z: 1e3, w: .5, v: 2024-01-01, u: null, t: True, s: 012, r: 1_000, q: "0755"}
  h: plain
  airflow-k8s:i: 1.5
  airflow-k8s:j: 10000000000000000000000
  airflow-k8s:k: "quoted: yes"
  airflow-k8s:m: !!str 123
  airflow-k8s:anchor: &a {p: 1, list: [1, "a", {b: 1.25}]}
  airflow-k8s:alias: *a
  airflow-k8s:neg: -0
  airflow-k8s:off: off
  airflow-k8s:tilde: ~
"""
DUPLICATE_NESTED = """\
config:
  airflow-k8s:airflow:
    dags:
      mode: gitSync
      mode: image
"""
DUPLICATE_TOP = """\
config:
  airflow-k8s:logs: {mode: a}
  airflow-k8s:logs: {mode: b}
"""


def values(text: str) -> dict[str, str]:
    raw, _ = read(text, PROJECT)
    return raw


class TestReadLikeTheCli:
    def test_plain_scalars_resolve_as_yaml_v3_does(self):
        got = values(TRICKY)
        assert got["airflow-k8s:a"] == "yes" and got["airflow-k8s:b"] == "on" and got["airflow-k8s:off"] == "off"
        assert got["airflow-k8s:c"] == "493"
        assert got["airflow-k8s:d"] == "1"
        assert got["airflow-k8s:e"] == "2024-01-01 00:00:00 +0000 UTC"
        assert got["airflow-k8s:tilde"] == ""
        assert got["airflow-k8s:j"] == "1e+22"
        assert got["airflow-k8s:m"] == "123"
        nested = json.loads(got["airflow-k8s:g"])
        assert nested == {
            "x": "yes", "y": 31, "z": 1000, "w": 0.5, "v": "2024-01-01 00:00:00 +0000 UTC",
            "u": None, "t": True, "s": 10, "r": 1000, "q": "0755",
        }  # fmt: skip

    def test_a_key_without_a_namespace_belongs_to_the_project(self):
        assert values(TRICKY)["airflow-k8s:h"] == "plain"

    def test_a_duplicated_key_is_refused_with_both_lines(self):
        with pytest.raises(ConfigError) as err:
            values(DUPLICATE_NESTED)
        assert err.value.key == "airflow.dags.mode"
        assert "line 4 and line 5" in str(err.value)

    def test_a_duplicated_top_level_key_is_refused(self):
        with pytest.raises(ConfigError) as err:
            values(DUPLICATE_TOP)
        assert err.value.key == "airflow-k8s:logs"

    def test_a_key_given_with_and_without_the_project_prefix_is_refused(self):
        with pytest.raises(ConfigError) as err:
            values("config:\n  logs: {mode: a}\n  airflow-k8s:logs: {mode: b}\n")
        assert "given twice" in str(err.value)

    def test_secure_values_stay_marked(self):
        raw, secrets = read("config:\n  airflow-k8s:gitToken:\n    secure: abc\n", PROJECT)
        assert secrets == {"airflow-k8s:gitToken"} and raw["airflow-k8s:gitToken"] == {"secure": "abc"}


# ---------------------------------------------------------------------------
# Agreement with the real CLI


def pulumi_binary() -> str | None:
    found = shutil.which("pulumi")
    if found:
        return found
    install = ROOT.parent / "shared" / "tools" / "install.sh"
    if install.exists():
        done = subprocess.run([str(install)], capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip():
            candidate = Path(done.stdout.strip().splitlines()[-1]) / "pulumi"
            if candidate.exists():
                return str(candidate)
    return None


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    binary = pulumi_binary()
    if binary is None:
        pytest.skip(
            "SKIPPED LOUDLY: no pulumi CLI on PATH and no ../shared/tools/install.sh; the agreement with "
            "`pulumi config --json` was NOT checked"
        )
    home = tmp_path_factory.mktemp("pulumi")
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{home / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "agreement-test",
        "PULUMI_SKIP_UPDATE_CHECK": "1",
        "PULUMI_HOME": str(home / "home"),
    }
    (home / "state").mkdir()
    project = home / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(f"name: {PROJECT}\nruntime: python\n")
    subprocess.run([binary, "stack", "init", "test"], cwd=project, env=env, check=True, capture_output=True)

    def run(text: str) -> tuple[int, dict[str, object] | str]:
        (project / "Pulumi.test.yaml").write_text(text)
        done = subprocess.run(
            [binary, "config", "--json", "-s", "test"], cwd=project, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            return done.returncode, done.stderr
        return 0, json.loads(done.stdout)

    return run


def _plain_files() -> list[Path]:
    files = [ROOT / "Pulumi.dev.yaml"]
    corpus = sorted((ROOT / "tests" / "bad_configs").glob("*.yaml"))
    files += [p for p in corpus if "secure:" not in p.read_text()][:25]
    return files


class TestAgreementWithThePulumiCli:
    @pytest.mark.parametrize("name", ["tricky", "nested-duplicate", "top-level-duplicate"])
    def test_the_cli_and_the_reader_agree_on_written_files(self, cli, name):
        text = {"tricky": TRICKY, "nested-duplicate": DUPLICATE_NESTED, "top-level-duplicate": DUPLICATE_TOP}[name]
        self._agree(cli, text)

    @pytest.mark.parametrize("path", _plain_files(), ids=lambda p: p.stem)
    def test_the_cli_and_the_reader_agree_on_the_stack_and_corpus_files(self, cli, path):
        self._agree(cli, path.read_text())

    @staticmethod
    def _agree(cli, text: str) -> None:
        code, shown = cli(text)
        try:
            ours = values(text)
        except ConfigError as exc:
            assert code != 0, f"the reader refused what the CLI accepts: {exc}"
            assert "already defined" in str(shown)
            return
        assert code == 0, f"the CLI refused what the reader accepts: {shown}"
        assert isinstance(shown, dict)
        assert set(shown) == set(ours)
        for key, entry in shown.items():
            assert isinstance(entry, dict)
            if "objectValue" in entry:
                assert json.loads(ours[key]) == entry["objectValue"], key
            else:
                assert ours[key] == entry["value"], key
