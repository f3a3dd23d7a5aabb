"""Builds the node scenario starts when the run begins, so that the scenarios before it overlap
their cold minutes: its images (about 6 minutes from an empty cache) and, when its `enforce` part
will run, kube-router (about 3.5). Each runs in a process of its own at the lowest CPU priority and
a low IO priority, filling the same caches the scenario's steps read; the step that needs one
waits for it first (`wait`), then finds its work cached. The run's end stops whatever still runs
(`stop`), so an interrupted run leaves no build behind. What each runs is a module's command
line (`python -m e2e.node.scenario PROJECT CHARTS ...`, `python -m e2e.node.kube_router`): this module
imports neither.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..cluster import Process, spawn, stop_all
from ..harness import ROOT

WAIT_SECONDS = 1800.0
LOW_PRIORITY = ("nice", "-n", "19", *(("ionice", "-c", "2", "-n", "7") if shutil.which("ionice") else ()))
_running: dict[str, Process] = {}


def start(name: str, logs: Path, module: str, args: Sequence[str] = ()) -> None:
    """`python -m <module> <args>` in the background as `name` (once), its log in `logs`."""
    if name not in _running:
        command = [*LOW_PRIORITY, sys.executable, "-m", module, *args]
        _running[name] = spawn(logs, f"early-{name}", command, cwd=ROOT)


def wait(name: str, echo: Callable[[str], None]) -> None:
    """Wait for the build `name` if one was started; say how it ended. A build that failed or ran
    out of time is only said: the step then builds itself, and fails there with the reason."""
    process = _running.get(name)
    if process is None:
        return
    started = time.monotonic()
    try:
        code: int | None = process.popen.wait(timeout=WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        code = None
    stop_all([_running.pop(name)])
    waited = time.monotonic() - started
    if code == 0:
        echo(f"{name}: built in the background while the run went on (waited {waited:.1f}s for it)")
    else:
        why = "ran out of time" if code is None else f"exited {code}"
        echo(f"{name}: the build in the background {why} (log: {process.log}); building here")


def stop() -> list[str]:
    """Stop every build still running; the problems met."""
    problems = stop_all(list(_running.values()))
    _running.clear()
    return problems
