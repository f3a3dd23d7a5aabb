"""e2e.runlock: a second end-to-end run on one machine refuses at once, naming the first."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e import runlock
from tests.helpers import ROOT

HOLD = (
    "import sys, time; from pathlib import Path; from e2e import runlock\n"
    "with runlock.machine_run('./run.sh e2e --scenario upgrade', Path(sys.argv[1])):\n"
    "    print('held', flush=True); time.sleep(120)\n"
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process holding the lock file, as a first run would."""
    lock = tmp_path / "e2e.lock"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock)], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=_env(lock)
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    try:
        yield proc, lock
    finally:
        proc.kill()
        proc.wait()


def _env(lock: Path) -> dict[str, str]:
    return {**os.environ, "AIRFLOW_K8S_E2E_LOCK": str(lock), "PYTHONPATH": str(ROOT)}


class TestOneRunAtATime:
    def test_a_second_run_is_refused_in_one_line_naming_the_first(self, holder):
        proc, lock = holder
        with pytest.raises(runlock.BusyError) as err, runlock.machine_run("second", lock):
            pytest.fail("the second run got the lock")
        message = str(err.value)
        assert "\n" not in message
        assert f"pid {proc.pid}, `./run.sh e2e --scenario upgrade`, since " in message
        assert str(lock) in message

    def test_the_lock_goes_with_its_holder_even_when_killed(self, holder):
        proc, lock = holder
        proc.kill()
        proc.wait()
        with runlock.machine_run("second", lock) as held:
            assert lock.read_text().startswith(f"pid {os.getpid()}, `second`, since ")
        assert held == lock and lock.read_text() == ""  # released: empty again, no stale name

    def test_one_process_after_another_each_gets_it(self, tmp_path):
        lock = tmp_path / "e2e.lock"
        for n in range(2):
            with runlock.machine_run(f"run {n}", lock):
                assert f"`run {n}`" in lock.read_text()

    def test_python_m_e2e_refuses_before_it_does_anything(self, holder):
        proc, lock = holder
        started = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "e2e", "--scenario", "pulumi", "--cache", str(lock.parent / "cache")],
            cwd=ROOT,
            env=_env(lock),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == runlock.BUSY, second.stdout + second.stderr
        lines = second.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith("e2e: another end-to-end run holds this machine: ")
        assert f"pid {proc.pid}" in lines[0]
        assert not (lock.parent / "cache").exists()  # no tool looked for, nothing unpacked
        assert time.monotonic() - started < 30

    @pytest.mark.parametrize("command", ["up", "down"])
    def test_run_sh_up_and_down_refuse_too_and_touch_nothing(self, holder, monkeypatch, command):
        from e2e.node import local

        proc, lock = holder
        monkeypatch.setenv("AIRFLOW_K8S_E2E_LOCK", str(lock))
        called: list[str] = []

        def record(name: str) -> Callable[..., int]:
            def call(*args: Any, **kwargs: Any) -> int:
                called.append(name)
                return 0

            return call

        monkeypatch.setattr(local, "up", record("up"))
        monkeypatch.setattr(local, "down", record("down"))
        lines: list[str] = []
        monkeypatch.setattr("builtins.print", lambda line, **kw: lines.append(line))
        assert local.main([command]) == runlock.BUSY
        assert called == []
        assert len(lines) == 1 and f"pid {proc.pid}" in lines[0] and lines[0].startswith(f"{command}: ")

    def test_run_sh_up_runs_once_the_machine_is_free(self, tmp_path, monkeypatch):
        from e2e.node import local

        monkeypatch.setenv("AIRFLOW_K8S_E2E_LOCK", str(tmp_path / "e2e.lock"))
        seen: list[str] = []

        def up(*args: Any, **kwargs: Any) -> int:
            seen.append((tmp_path / "e2e.lock").read_text())
            return 0

        monkeypatch.setattr(local, "up", up)
        assert local.main(["up"]) == 0
        assert len(seen) == 1 and seen[0].startswith(f"pid {os.getpid()}, ")


class TestWhereTheLockIs:
    def test_the_environment_names_it(self, monkeypatch, tmp_path):
        monkeypatch.setenv("AIRFLOW_K8S_E2E_LOCK", str(tmp_path / "x.lock"))
        assert runlock.lock_path() == tmp_path / "x.lock"

    def test_by_default_one_file_for_the_whole_machine_in_a_folder_every_user_can_write(self, monkeypatch, tmp_path):
        monkeypatch.delenv("AIRFLOW_K8S_E2E_LOCK", raising=False)
        monkeypatch.setattr(runlock, "MACHINE_LOCK", tmp_path / "run-lock" / "airflow-k8s-e2e.lock")
        monkeypatch.setenv("AIRFLOW_K8S_E2E_CACHE", str(tmp_path / "cache"))
        assert runlock.lock_path() == tmp_path / "cache" / "run.lock"  # no such folder: the cache's
        (tmp_path / "run-lock").mkdir()
        assert runlock.lock_path() == tmp_path / "run-lock" / "airflow-k8s-e2e.lock"
