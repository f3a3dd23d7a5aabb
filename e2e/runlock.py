"""One end-to-end run per machine at a time.

Two runs side by side break each other without saying so: one unpacks the shared tools while
the other runs them, both want the one real node, the node's address and its ports. So every
command that runs scenarios or changes the node (`python -m e2e`, `./run.sh up` and `down`)
holds an exclusive flock on one file for as long as it runs, with its pid, command line and
start time written in it. A second one refuses at once, in one line naming the first, instead of
waiting or breaking it. The lock goes with the process that holds it (killed included); the file
stays, empty, and is reused.

The file: $AIRFLOW_K8S_E2E_LOCK, else /run/lock/airflow-k8s-e2e.lock (a folder every user can
write on Debian and most distributions), else run.lock in the e2e build cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

MACHINE_LOCK = Path("/run/lock/airflow-k8s-e2e.lock")
BUSY = 5  # the exit code of a command refused because another run holds the machine


class BusyError(RuntimeError):
    """Another run holds the lock; the message names it, in one line."""


def lock_path() -> Path:
    explicit = os.environ.get("AIRFLOW_K8S_E2E_LOCK")
    if explicit:
        return Path(explicit).expanduser()
    if MACHINE_LOCK.parent.is_dir() and os.access(MACHINE_LOCK.parent, os.W_OK):
        return MACHINE_LOCK
    from .tools import default_cache

    return default_cache() / "run.lock"


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode(errors="replace").strip()
    return text.splitlines()[0] if text else "a process that has not written its name yet"


@contextlib.contextmanager
def machine_run(what: str | None = None, path: Path | None = None) -> Iterator[Path]:
    """Hold the machine's e2e lock while the block runs; raise BusyError naming the holder if another
    process holds it. `what`: the command, for the refusal the next one prints."""
    path = path or lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # not inherited by child processes (PEP 446)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(
                f"another end-to-end run holds this machine: {_holder(fd)} (lock {path}); "
                "wait for it to end, or stop it with kill -INT on its pid"
            ) from None
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)  # the next user may be another account (the file outlives us)
        command = what or shlex.join([Path(sys.executable).name, *sys.argv])
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, `{command}`, since {started}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock
