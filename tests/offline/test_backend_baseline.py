"""The preview's default baseline: the stack's deployed state in the Pulumi backend the user is
logged into (`pulumi stack export`), asked only when logged in; else the last successful preview."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from components.offline.__main__ import main
from components.offline.backend_state import EXPORT_FILE, export_from_backend, logged_in_backend
from components.offline.program import run_program
from tests.helpers import ROOT
from tests.offline.test_deployed_state import export_of


def fake_pulumi(folder: Path, export: dict[str, Any] | None, *, exit_code: int = 0, stderr: str = "") -> Path:
    """A `pulumi` that records its arguments and writes `export` where --file says."""
    folder.mkdir(parents=True, exist_ok=True)
    calls = folder / "calls"
    payload = folder / "export.json"
    if export is not None:
        payload.write_text(json.dumps(export))
    script = folder / "pulumi"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import shutil, sys\n"
        f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"if {exit_code}:\n"
        f"    sys.stderr.write({stderr!r} + '\\n'); sys.exit({exit_code})\n"
        "out = sys.argv[sys.argv.index('--file') + 1]\n"
        f"shutil.copy({str(payload)!r}, out)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def calls(folder: Path) -> list[str]:
    path = folder / "calls"
    return path.read_text().splitlines() if path.exists() else []


def env_with(bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


class TestWhoIsLoggedIn:
    def test_the_backend_url_in_the_environment_is_the_backend(self, tmp_path):
        assert (
            logged_in_backend({"PULUMI_BACKEND_URL": "file:///srv/state", "HOME": str(tmp_path)}) == "file:///srv/state"
        )

    def test_the_current_backend_of_the_credentials_file_is_the_backend(self, tmp_path):
        (tmp_path / "credentials.json").write_text(
            json.dumps({"current": "https://api.pulumi.com", "accessTokens": {}})
        )
        assert logged_in_backend({"PULUMI_HOME": str(tmp_path)}) == "https://api.pulumi.com"

    def test_no_credentials_file_or_no_current_backend_is_not_logged_in(self, tmp_path):
        assert logged_in_backend({"HOME": str(tmp_path)}) is None
        (tmp_path / ".pulumi").mkdir()
        (tmp_path / ".pulumi" / "credentials.json").write_text(json.dumps({"current": ""}))
        assert logged_in_backend({"HOME": str(tmp_path)}) is None
        (tmp_path / ".pulumi" / "credentials.json").write_text("not json")
        assert logged_in_backend({"HOME": str(tmp_path)}) is None


class TestTheExport:
    def test_not_logged_in_runs_nothing(self, tmp_path):
        bin_dir = fake_pulumi(tmp_path / "bin", {"deployment": {"resources": []}})
        said: list[str] = []
        env = env_with(bin_dir, HOME=str(tmp_path))
        assert export_from_backend(ROOT, "dev", tmp_path / "out", said.append, env) is None
        assert calls(bin_dir) == [] and said == []

    def test_logged_in_exports_the_stack_from_the_project_folder(self, tmp_path):
        bin_dir = fake_pulumi(tmp_path / "bin", {"deployment": {"resources": []}})
        said: list[str] = []
        env = env_with(bin_dir, PULUMI_BACKEND_URL="file:///srv/state")
        path = export_from_backend(ROOT, "prod", tmp_path / "out", said.append, env)
        assert path is not None and path == tmp_path / "out" / EXPORT_FILE
        assert json.loads(path.read_text()) == {"deployment": {"resources": []}}
        assert calls(bin_dir) == [f"stack export --stack prod --cwd {ROOT} --file {path}"]
        assert said == ["    baseline: pulumi stack export --stack prod (backend file:///srv/state)"]

    def test_a_stack_the_backend_does_not_have_is_one_line_and_no_baseline(self, tmp_path):
        bin_dir = fake_pulumi(tmp_path / "bin", None, exit_code=255, stderr="error: no stack named 'dev' found")
        said: list[str] = []
        env = env_with(bin_dir, PULUMI_BACKEND_URL="file:///srv/state")
        assert export_from_backend(ROOT, "dev", tmp_path / "out", said.append, env) is None
        assert said[-1] == (
            "    baseline: no deployed state of stack 'dev' in file:///srv/state (error: no stack named 'dev' found); "
            "comparing with the last successful preview instead"
        )

    def test_a_backend_that_does_not_answer_in_time_is_one_line_and_no_baseline(self, tmp_path):
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "pulumi").write_text("#!/bin/sh\nsleep 30\n")
        (bin_dir / "pulumi").chmod(0o755)
        said: list[str] = []
        env = env_with(bin_dir, PULUMI_BACKEND_URL="https://backend.invalid")
        assert export_from_backend(ROOT, "dev", tmp_path / "out", said.append, env, timeout=0.5) is None
        assert said[-1].endswith("did not answer within 0 s; comparing with the last successful preview instead")


class TestThePreviewCommand:
    @pytest.fixture
    def logged_in(self, tmp_path, monkeypatch):
        export = export_of(run_program(ROOT, "dev"))
        bin_dir = fake_pulumi(tmp_path / "bin", export)
        for key, value in env_with(bin_dir, PULUMI_BACKEND_URL="file:///srv/state").items():
            monkeypatch.setenv(key, value)
        return bin_dir

    def test_logged_in_the_preview_compares_with_the_deployed_state(self, logged_in, tmp_path, capsys):
        out = tmp_path / "out"
        code = main(["dev", "--no-checkov", "--no-dry-run", "--out", str(out)])
        printed = capsys.readouterr().out
        assert code == 0, printed
        assert calls(logged_in) == [f"stack export --stack dev --cwd . --file {out / 'dev' / EXPORT_FILE}"]
        assert f"Compared with the deployed state in {out / 'dev' / EXPORT_FILE} (a stack export of stack " in printed
        assert "0 to create" not in printed and "to create" not in printed

    def test_no_backend_keeps_the_last_successful_preview_and_asks_nothing(self, logged_in, tmp_path, capsys):
        code = main(["dev", "--no-checkov", "--no-dry-run", "--no-backend", "--out", str(tmp_path / "out")])
        printed = capsys.readouterr().out
        assert code == 0, printed
        assert calls(logged_in) == []
        assert "Compared with the deployed state" not in printed
