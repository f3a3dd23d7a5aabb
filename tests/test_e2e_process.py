"""e2e.process: a command in bounded time, stopped as a whole process group (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from e2e import process
from e2e.kube import wait_for
from e2e.process import Stuck, run_bounded
from tests.helpers import ROOT

# A shell that starts a child which sleeps, prints both pids, then waits for the child.
SPAWNER = 'sleep 300 & echo "pids $$ $!"; wait'


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that never reaps it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pids_in(log: Path) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in (log.read_text() if log.exists() else "").splitlines():
            if line.startswith("pids "):
                return [int(p) for p in line.split()[1:]]
        time.sleep(0.05)
    raise AssertionError(f"no pids in {log}: {log.read_text()!r}")


def gone(pids: list[int], within: float = 5) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def run_spawner(tmp_path: Path, env: dict[str, str], log: Path, **limits: Any) -> None:
    run_bounded(["sh", "-c", SPAWNER], cwd=tmp_path, env=env, log=log, **limits)


def run_sh(tmp_path: Path, env: dict[str, str], script: str, **limits: Any) -> subprocess.CompletedProcess[str]:
    return run_bounded(["sh", "-c", script], cwd=tmp_path, env=env, log=tmp_path / "l.log", timeout=30, **limits)


@pytest.fixture
def env() -> dict[str, str]:
    return dict(os.environ)


class TestACommandThatFinishes:
    def test_its_output_is_returned_and_streamed_into_the_log_with_its_exit_code(self, tmp_path, env):
        log = tmp_path / "logs" / "cmd.log"
        proc = run_bounded(["sh", "-c", "echo out; echo err >&2; exit 3"], cwd=tmp_path, env=env, log=log, timeout=30)
        assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
        text = log.read_text()
        assert text.startswith("$ sh -c")
        assert "out\n" in text and "err\n" in text

    def test_it_runs_in_the_given_folder_with_the_given_environment(self, tmp_path, env):
        env["E2E_PROBE"] = "probe-value"
        proc = run_sh(tmp_path, env, 'pwd; echo "$E2E_PROBE"')
        assert proc.stdout.split() == [str(tmp_path.resolve()), "probe-value"]

    def test_a_stall_reason_that_comes_and_goes_does_not_stop_it(self, tmp_path, env):
        answers = iter(["pending", None] * 100)
        proc = run_sh(tmp_path, env, "sleep 1.2; echo done", stall=lambda: next(answers), stall_seconds=0.5)
        assert proc.stdout == "done\n"

    def test_a_stall_check_that_fails_is_no_proof_of_a_stall(self, tmp_path, env):
        def broken() -> str | None:
            raise OSError("API server not answering")

        proc = run_sh(tmp_path, env, "sleep 0.6; echo done", stall=broken, stall_seconds=0.1)
        assert proc.returncode == 0

    def test_what_it_leaves_running_in_its_group_is_stopped(self, tmp_path, env):
        log = tmp_path / "l.log"
        run_bounded(
            ["sh", "-c", 'sleep 300 >/dev/null 2>&1 & echo "pids $$ $!"'], cwd=tmp_path, env=env, log=log, timeout=30
        )
        assert gone(pids_in(log))


class TestAStuckCommand:
    def test_a_reason_held_for_stall_seconds_stops_the_shell_and_its_child_and_is_named(self, tmp_path, env):
        log = tmp_path / "l.log"
        start = time.monotonic()
        with pytest.raises(Stuck, match=r"made no progress .*PersistentVolumeClaim airflow/logs is Pending"):
            run_spawner(
                tmp_path,
                env,
                log,
                timeout=60,
                stall=lambda: "PersistentVolumeClaim airflow/logs is Pending",
                stall_seconds=0.5,
            )
        assert time.monotonic() - start < 15
        pids = pids_in(log)
        assert len(pids) == 2
        assert gone(pids)
        assert "--- stopped: made no progress" in log.read_text()

    def test_the_timeout_stops_the_whole_group_and_names_the_last_pending_reason(self, tmp_path, env):
        log = tmp_path / "l.log"
        with pytest.raises(Stuck, match=r"did not finish within its timeout of 1s; still pending: Job x"):
            run_spawner(tmp_path, env, log, timeout=1, stall=lambda: "Job x", stall_seconds=600)
        assert gone(pids_in(log))

    def test_a_group_that_ignores_sigterm_gets_sigkill(self, tmp_path, env, monkeypatch):
        monkeypatch.setattr(process, "GRACE_SECONDS", 0.5)
        log = tmp_path / "l.log"
        with pytest.raises(Stuck, match="timeout"):
            run_bounded(["sh", "-c", "trap '' TERM; " + SPAWNER], cwd=tmp_path, env=env, log=log, timeout=1)
        assert gone(pids_in(log))
        assert "SIGKILL needed" in log.read_text()


class TestAnInterruptedHarness:
    def test_keyboard_interrupt_stops_the_group_and_propagates(self, tmp_path, env):
        log = tmp_path / "l.log"
        calls = []

        def interrupt() -> str | None:
            calls.append(1)
            if len(calls) > 2:
                raise KeyboardInterrupt
            return None

        with pytest.raises(KeyboardInterrupt):
            run_spawner(tmp_path, env, log, timeout=60, stall=interrupt, stall_seconds=0.5)
        assert gone(pids_in(log))

    def test_an_interruption_before_the_output_is_read_stops_the_group_too(self, tmp_path, env, monkeypatch):
        pid_file = tmp_path / "pids"
        start = threading.Thread.start

        def interrupted_start(thread: threading.Thread) -> None:
            if getattr(thread, "_target", None) is not process._pump:
                start(thread)
                return
            wait_for("the shell's pids", lambda: None if pid_file.exists() else "not yet", timeout=10, interval=0.05)
            raise KeyboardInterrupt  # as if Ctrl-C came before the first reader started

        monkeypatch.setattr(threading.Thread, "start", interrupted_start)
        with pytest.raises(KeyboardInterrupt):
            run_bounded(
                ["sh", "-c", f'sleep 300 & echo "pids $$ $!" > {pid_file}; wait'],
                cwd=tmp_path,
                env=env,
                log=tmp_path / "l.log",
                timeout=60,
            )
        monkeypatch.undo()
        assert gone(pids_in(pid_file))

    def test_sigterm_to_the_harness_stops_the_group_before_the_harness_exits(self, tmp_path):
        log = tmp_path / "l.log"
        script = textwrap.dedent(
            f"""
            import os, sys
            from pathlib import Path
            from e2e.process import run_bounded
            run_bounded(["sh", "-c", {SPAWNER!r}], cwd=Path("."), env=dict(os.environ), log=Path({str(log)!r}),
                        timeout=120)
            """
        )
        harness = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, start_new_session=True)
        try:
            pids = pids_in(log)
            harness.send_signal(signal.SIGTERM)
            assert harness.wait(timeout=30) == 128 + signal.SIGTERM
            assert gone(pids, within=1)
        finally:
            if harness.poll() is None:
                os.killpg(harness.pid, signal.SIGKILL)
                harness.wait()
