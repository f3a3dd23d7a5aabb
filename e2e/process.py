"""Run a command in bounded time, as one process group that is stopped as a whole.

`pulumi up` starts a language host, which starts the program, and the engine starts one
process per provider plugin. A stuck or interrupted run must not leave any of them
behind, and it must not wait out a Release's 15-minute timeout when the cluster already
shows why nothing will happen: `stall()` names that reason (a pending claim and its last
event), and once it has named one for `stall_seconds` the whole group is stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO

POLL_SECONDS = 5.0  # how often stall() is asked, at most
GRACE_SECONDS = 10.0  # between SIGTERM and SIGKILL
READER_JOIN_SECONDS = 10.0


class Stuck(RuntimeError):  # noqa: N818 (the name the harness uses)
    """The command made no progress (stall reason held for too long) or ran out of time; its
    process group has been stopped."""


def group_alive(pgid: int) -> bool:
    """True while a process of the group runs. Zombies do not count: once killed, a child
    reparented to an init that reaps slowly cannot do anything any more."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():  # no procfs: ask the kernel (zombies count)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def kill_group(popen: subprocess.Popen[str], grace: float | None = None) -> bool:
    """SIGTERM to the whole process group of `popen` (started with start_new_session), then
    SIGKILL to whatever is left after `grace` seconds. Returns True when SIGKILL was needed."""
    grace = GRACE_SECONDS if grace is None else grace
    pgid = popen.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    if _wait_group(popen, grace):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    _wait_group(popen, grace)
    return True


def _wait_group(popen: subprocess.Popen[str], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        popen.poll()  # reap the leader, or it stays in the group as a zombie
        if not group_alive(popen.pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _pump(stream: IO[str], sink: list[str], log: IO[str], lock: threading.Lock) -> None:
    for line in stream:
        sink.append(line)
        with lock:
            log.write(line)
            log.flush()
    stream.close()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While the command runs, SIGTERM to this harness unwinds the stack (so the group gets
    stopped) instead of ending the interpreter on the spot. A handler already installed by
    the harness is still called; an ignored SIGTERM stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        yield
        return

    def on_term(signum: int, frame: FrameType | None) -> None:
        if callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_bounded(
    cmd: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log: Path,
    timeout: float,
    stall: Callable[[], str | None] | None = None,
    stall_seconds: float = 180,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in its own process group, its output streamed into `log` and returned.

    Raises Stuck (after stopping the whole group) when `stall()` has returned a reason
    continuously for `stall_seconds`, or when `timeout` seconds have passed. Any exception
    in this process while it runs (KeyboardInterrupt, SIGTERM) also stops the group."""
    log.parent.mkdir(parents=True, exist_ok=True)
    interval = min(POLL_SECONDS, max(0.05, stall_seconds / 5), max(0.05, timeout / 5))
    out: list[str] = []
    err: list[str] = []
    lock = threading.Lock()
    with log.open("w") as sink, _sigterm_raises():
        sink.write(f"$ {' '.join(cmd)}\n")
        sink.flush()
        popen = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:  # from here on, whatever interrupts this process stops the group first
            assert popen.stdout is not None and popen.stderr is not None
            readers = [
                threading.Thread(target=_pump, args=(popen.stdout, out, sink, lock), daemon=True),
                threading.Thread(target=_pump, args=(popen.stderr, err, sink, lock), daemon=True),
            ]
            for reader in readers:
                reader.start()
            problem = _watch(popen, timeout, stall, stall_seconds, interval)
            if problem is not None:
                needed_kill = kill_group(popen)
                with lock:
                    sink.write(f"\n--- stopped: {problem}{' (SIGKILL needed)' if needed_kill else ''} ---\n")
            elif group_alive(popen.pid):
                kill_group(popen)  # the command is done; what it left running in its group is not
            for reader in readers:
                reader.join(READER_JOIN_SECONDS)
        except BaseException:
            kill_group(popen)
            raise
    if problem is not None:
        raise Stuck(f"`{' '.join([Path(cmd[0]).name, *cmd[1:3]])}` {problem} (log: {log})")
    return subprocess.CompletedProcess(cmd, popen.returncode, "".join(out), "".join(err))


def _watch(
    popen: subprocess.Popen[str],
    timeout: float,
    stall: Callable[[], str | None] | None,
    stall_seconds: float,
    interval: float,
) -> str | None:
    """Wait for `popen`; the reason to stop it, or None when it ended by itself."""
    start = time.monotonic()
    stalled_since: float | None = None
    reason: str | None = None
    while True:
        left = timeout - (time.monotonic() - start)
        try:
            popen.wait(timeout=max(0.0, min(interval, left)))
            return None
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if stall is not None:
            try:
                reason = stall()
            except Exception:  # the cluster not answering is no proof of a stall
                reason = None
            if reason is None:
                stalled_since = None
            else:
                stalled_since = now if stalled_since is None else stalled_since
                if now - stalled_since >= stall_seconds:
                    return f"made no progress for {now - stalled_since:.0f}s: {reason}"
        if now - start >= timeout:
            pending = f"; still pending: {reason}" if reason else ""
            return f"did not finish within its timeout of {timeout:.0f}s{pending}"
