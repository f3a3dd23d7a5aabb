"""The local API server of the preview's dry run (components/offline/dry_run.py): kube-apiserver and
etcd on 127.0.0.1, emulating the stack's Kubernetes minor, started by the first preview that needs it
in a process of its own (`python -m components.offline.local_apiserver --serve DIR`) that stops them
after `AIRFLOW_K8S_APISERVER_IDLE` seconds without a preview (default 900), reused meanwhile, like the
checkov scanner. The start code is the end-to-end harness's (components/offline/control_plane.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .control_plane import (
    LOCALHOST,
    admin_client,
    first_exited,
    free_port,
    make_certificates,
    start_apiserver,
    start_etcd,
    stop_all,
    wait_ready,
)
from .helm import tools_cache
from .kube_api import Kube, wait_for
from .policy import socket_dir

IDLE_ENV = "AIRFLOW_K8S_APISERVER_IDLE"  # seconds the local API server stays without a preview
DEFAULT_IDLE = 900
PACKAGE = Path(__file__).resolve().parents[1]  # this checkout's (or installation's) package folder
BINARY_MINOR = (1, 34)  # the kube-apiserver of ../shared/tools (v1.34.4)
OLDEST_EMULATED = (1, 31)  # what it can emulate: three minors back
START_TIMEOUT = 180


class DryRunUnavailableError(RuntimeError):
    """No API server to send the dry run to: says what was looked for."""


# --------------------------------------------------------------------------- binaries


def _bin_folders(root: Path) -> Iterator[tuple[str, Path]]:
    script = root.resolve().parent / "shared" / "tools" / "install.sh"
    if script.is_file():
        out = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
        lines = out.stdout.strip().splitlines()
        if out.returncode == 0 and lines:
            yield "../shared/tools/install.sh", Path(lines[-1])
    yield "the tools cache", tools_cache() / "bin"


def binaries(root: Path) -> dict[str, Path]:
    """kube-apiserver and etcd: from PATH when both are there, else ../shared/tools, else the tools cache."""
    on_path = {name: shutil.which(name) for name in ("kube-apiserver", "etcd")}
    if all(on_path.values()):
        return {name: Path(str(found)) for name, found in on_path.items()}
    tried = ["PATH"]
    for where, folder in _bin_folders(root):
        found = {name: folder / name for name in ("kube-apiserver", "etcd")}
        if all(p.is_file() for p in found.values()):
            return found
        tried.append(where)
    raise DryRunUnavailableError(
        f"no kube-apiserver and etcd found (looked in: {', '.join(tried)}); put them on PATH (Kubernetes "
        f"{'.'.join(map(str, BINARY_MINOR))} and etcd 3.6), or run the preview with --cluster CONTEXT or --no-dry-run"
    )


def emulated(kube_version: str) -> tuple[str, str]:
    """The minor the local API server emulates for a stack's Kubernetes version, and a note when it
    is not that version ("" when it is)."""
    major, minor = (int(p) for p in kube_version.lstrip("v").split(".")[:2])
    wanted = (major, minor)
    used = min(max(wanted, OLDEST_EMULATED), BINARY_MINOR)
    text = f"{used[0]}.{used[1]}"
    if used == wanted:
        return text, ""
    return text, f"the local API server validates as Kubernetes {text}, the closest it can emulate to {major}.{minor}"


# --------------------------------------------------------------------------- the local API server


@dataclass(frozen=True)
class Local:
    folder: Path

    @property
    def state(self) -> Path:
        return self.folder / "state.json"

    @property
    def used(self) -> Path:
        return self.folder / "used"

    @property
    def pki(self) -> Path:
        return self.folder / "pki"

    @property
    def log(self) -> Path:
        return self.folder / "serve.log"


def local_folder(version: str, package: Path = PACKAGE) -> Local:
    """The folder of the local API server of `version` started from this checkout (`package`): two
    checkouts (a CI clone beside a working copy) never share one, so a server keeps serving the
    code and CRDs of the checkout that started it, and stops with it unused."""
    key = hashlib.sha256(str(package.resolve()).encode()).hexdigest()[:12]
    folder = socket_dir() / f"apiserver-{version}-{key}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return Local(folder)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # started by this process: reap it once it exited
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(local: Local) -> Kube | None:
    try:
        state = json.loads(local.state.read_text())
    except (OSError, ValueError):
        return None
    if not _alive(int(state.get("pid", 0))):
        return None
    kube = admin_client(state["server"], local.pki)
    try:
        kube.request("GET", "/readyz", timeout=5)
    except Exception:
        return None
    return kube


def local_server(root: Path, version: str) -> Kube:
    """The local API server emulating Kubernetes `version` (major.minor): the running one, else one
    started now in a process that outlives this preview (see the module docstring)."""
    local = local_folder(version)
    with (local.folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        local.used.touch()
        kube = _running(local)
        if kube is not None:
            return kube
        found = binaries(root)
        local.state.unlink(missing_ok=True)
        with local.log.open("ab") as log:
            serving = subprocess.Popen(
                [
                    sys.executable, "-m", "components.offline.local_apiserver", "--serve", str(local.folder),
                    "--version", version, "--apiserver", str(found["kube-apiserver"]), "--etcd", str(found["etcd"]),
                ],
                cwd=PACKAGE.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

        def started() -> str | None:
            if serving.poll() is not None:
                raise DryRunUnavailableError(
                    f"the local API server did not start (exit {serving.returncode}): {_tail(local.log)}"
                )
            return None if local.state.is_file() else "starting"

        wait_for("the local API server", started, timeout=START_TIMEOUT, interval=0.1)
        kube = _running(local)
        if kube is None:
            raise DryRunUnavailableError(f"the local API server started but does not answer: {_tail(local.log)}")
        return kube


def stop_local(version: str) -> None:
    """Stop the local API server of `version`, if one runs (its serving process stops its children)."""
    local = local_folder(version)
    try:
        pid = int(json.loads(local.state.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def serve(folder: Path, version: str, apiserver: Path, etcd_binary: Path) -> int:
    """Run etcd and kube-apiserver until no preview used them for the idle time, or until SIGTERM."""
    local = Local(folder)
    idle = float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE)
    if not (local.pki / "ca.crt").is_file() or time.time() - (local.pki / "ca.crt").stat().st_mtime > 86400:
        shutil.rmtree(local.pki, ignore_errors=True)
        make_certificates(local.pki, days=2)
    shutil.rmtree(folder / "etcd", ignore_errors=True)  # a fresh store: nothing of an earlier run stays
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stopping.append(signum))
    processes = []
    try:
        etcd, etcd_port = start_etcd(folder / "logs", etcd_binary, folder / "etcd")
        processes.append(etcd)
        port = free_port()
        flags = ["--endpoint-reconciler-type=none"]
        if version != f"{BINARY_MINOR[0]}.{BINARY_MINOR[1]}":
            flags.append(f"--emulated-version=kube={version}")
        processes.append(
            start_apiserver(folder / "logs", apiserver, local.pki, etcd_port, address=LOCALHOST, port=port, extra=flags)
        )
        server = f"https://{LOCALHOST}:{port}"
        wait_ready(admin_client(server, local.pki), processes, timeout=START_TIMEOUT)
        local.state.write_text(json.dumps({"pid": os.getpid(), "server": server, "version": version}))
        while not stopping:
            dead = first_exited(processes)
            if dead:
                print(dead, flush=True)
                return 1
            if time.time() - local.used.stat().st_mtime > idle:
                return 0
            time.sleep(1)
        return 0
    finally:
        local.state.unlink(missing_ok=True)
        stop_all(processes, grace=3)
        # Nothing to keep: the next start begins with an empty store, and a checkout's folder
        # (one per checkout) holds no store once its server stopped.
        shutil.rmtree(folder / "etcd", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="the local API server of the preview's dry run")
    parser.add_argument("--serve", type=Path, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--apiserver", type=Path, required=True)
    parser.add_argument("--etcd", type=Path, required=True)
    args = parser.parse_args(argv)
    return serve(args.serve, args.version, args.apiserver, args.etcd)


if __name__ == "__main__":
    sys.exit(main())
