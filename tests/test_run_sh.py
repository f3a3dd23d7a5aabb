"""run.sh sets itself up quietly: one line per virtualenv on a first run (the installer's output only
when it fails), nothing on the next. Tried with a stand-in `uv` that prints what the real one
prints for ~170 packages, in a copy of run.sh beside its requirement files."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGES = [f" + package-{i}==1.0.{i}" for i in range(170)]

# A stand-in for uv: `uv venv ... DIR` makes DIR/bin/python (a script that says it ran), `uv pip
# install` prints one line per package, as uv does; UV_FAILS makes the install fail.
FAKE_UV = """#!/bin/sh
if [ "$1" = venv ]; then
  for last; do :; done
  mkdir -p "$last/bin"
  printf '#!/bin/sh\\necho "the job ran: $*"\\n' > "$last/bin/python"
  chmod +x "$last/bin/python"
  exit 0
fi
echo "Resolved 170 packages in 1.2s"
PACKAGE_LINES
if [ -n "$UV_FAILS" ]; then echo "error: no matching distribution for package-170" >&2; exit 1; fi
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy2(ROOT / "run.sh", project / "run.sh")
    for name in ("requirements.txt", "requirements-test.txt", "requirements-checkov.txt"):
        shutil.copy2(ROOT / name, project / name)
    tools = tmp_path / "bin"
    tools.mkdir()
    uv = tools / "uv"
    uv.write_text(FAKE_UV.replace("PACKAGE_LINES", "\n".join(f"echo '{line}'" for line in PACKAGES)))
    uv.chmod(uv.stat().st_mode | stat.S_IXUSR)
    return project


def run_sh(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{project.parent / 'bin'}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["bash", str(project / "run.sh"), *args],
        cwd=project,
        env={**os.environ, "PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestFirstRun:
    def test_setting_up_a_virtualenv_is_one_line_and_no_package_names(self, checkout: Path) -> None:
        done = run_sh(checkout, "schema", "--check")
        assert done.returncode == 0, done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith("setting up .venv (project and test dependencies), once ... done in ")
        assert "package-" not in done.stderr + done.stdout
        assert done.stdout == "the job ran: -m components.offline.stack_schema --check\n"

    def test_the_next_run_sets_nothing_up_and_says_nothing(self, checkout: Path) -> None:
        run_sh(checkout, "schema")
        again = run_sh(checkout, "schema")
        assert again.returncode == 0
        assert again.stderr == ""

    def test_a_failed_install_shows_the_installers_output_and_its_exit_code(self, checkout: Path) -> None:
        failed = run_sh(checkout, "schema", UV_FAILS="1")
        assert failed.returncode == 1
        lines = failed.stderr.splitlines()
        assert lines[0] == "setting up .venv (project and test dependencies), once ... FAILED (exit 1); its output:"
        assert "error: no matching distribution for package-170" in lines
        assert PACKAGES[0] in lines
        assert failed.stdout == ""
