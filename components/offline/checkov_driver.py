"""checkov's Kubernetes scan, run in checkov's own virtualenv (this file imports nothing of the project).

A request is one JSON line:

    {"files": [...], "baseline": "<checkov baseline file>", "output": "<report path>"}

and is answered by scanning the files with checkov's Kubernetes runner and every one of its
Kubernetes checks. Findings the baseline lists are moved to skipped with checkov's own
Baseline class (as `checkov --baseline FILE --output-baseline-as-skipped` does); passed checks
are counted before that (the CLI keeps only those the baseline names). The report written is
compact: the summary, failed and skipped findings, no passed checks and no code blocks.

Two ways to run it:

- `checkov_driver.py`: started at the beginning of a preview, it imports checkov while the
  preview runs the program and renders, prints "ready", reads one request on stdin, scans and
  exits (an empty line: nothing to scan).
- `checkov_driver.py --serve SOCKET --idle SECONDS`: the scanner that stays. It imports
  checkov once, prints "ready" (or "taken" when a live scanner already listens on SOCKET),
  and answers each connection in a forked child, so every scan starts from the same freshly
  imported checkov. It exits after SECONDS without a connection, or when SOCKET is no longer
  its own.

Import time is most of a scan. Two things checkov does are done faster here, with the same
result (tests/offline/test_checkov_scanner.py compares the reports): its YAML reader (line
numbers on every mapping) runs on libyaml instead of pure Python, in this process instead of a
pool of forked ones; and `checkov.terraform`'s package initialiser, which registers every
Terraform check, is not run (the Kubernetes runner imports two of its modules, not its checks).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.util
import json
import os
import select
import signal
import socket
import sys
import time
import types
from typing import Any

os.environ.setdefault("BC_SKIP_MAPPING", "TRUE")
os.environ.setdefault("CKV_SKIP_PACKAGE_UPDATE_CHECK", "true")
os.environ.setdefault("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")


def _skip_terraform_checks() -> None:
    """`checkov.terraform` as a bare package: its submodules import as usual, its __init__ (which
    imports and registers all Terraform checks) does not run. Only when nothing imported it yet."""
    spec = importlib.util.find_spec("checkov")
    if "checkov.terraform" in sys.modules or spec is None or spec.origin is None:
        return
    package = types.ModuleType("checkov.terraform")
    package.__path__ = [os.path.join(os.path.dirname(spec.origin), "terraform")]
    package.__package__ = "checkov.terraform"
    sys.modules["checkov.terraform"] = package


if os.environ.get("AIRFLOW_K8S_CHECKOV_PLAIN") != "1":  # the comparison test runs checkov as shipped
    _skip_terraform_checks()

import yaml  # noqa: E402
from checkov.common.output.baseline import Baseline  # noqa: E402
from checkov.kubernetes import kubernetes_utils  # noqa: E402
from checkov.kubernetes.parser import k8_yaml  # noqa: E402
from checkov.kubernetes.runner import Runner  # noqa: E402
from checkov.runner_filter import RunnerFilter  # noqa: E402

_CLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_CLoader):  # type: ignore[misc]
    """checkov's SafeLineLoader (k8_yaml.py) on libyaml: the same marks, the same mappings."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        mapping["__startline__"] = node.start_mark.line + 1
        mapping["__endline__"] = node.end_mark.line + 1
        return mapping


def _files_definitions(files: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """kubernetes_utils.get_files_definitions, file after file in this process."""
    definitions: dict[str, Any] = {}
    definitions_raw: dict[str, Any] = {}
    for path in files:
        result = kubernetes_utils._parse_file(path)
        if result and result[1]:
            definitions[result[0]], definitions_raw[result[0]] = result[1]
    return definitions, definitions_raw


if os.environ.get("AIRFLOW_K8S_CHECKOV_PLAIN") != "1":
    k8_yaml.SafeLineLoader = _LineLoader
    kubernetes_utils.get_files_definitions = _files_definitions


def _record(check: Any) -> dict[str, Any]:
    out = {
        "check_id": check.check_id,
        "check_name": check.check_name,
        "resource": check.resource,
        "file_path": check.file_path,
        "guideline": check.guideline,
    }
    comment = (check.check_result or {}).get("suppress_comment")
    if comment:
        out["suppress_comment"] = comment
    return out


def scan(request: dict[str, Any]) -> None:
    report = Runner().run(
        root_folder=None,
        files=request["files"],
        runner_filter=RunnerFilter(framework=["kubernetes"], download_external_modules=False),
    )
    passed = len(report.passed_checks)
    if request.get("baseline"):
        baseline = Baseline(output_skipped=True)
        baseline.from_json(request["baseline"])
        baseline.compare_and_reduce_reports([report])
    import checkov.version

    compact = {
        "check_type": "kubernetes",
        "checkov_version": checkov.version.version,
        "summary": {
            "passed": passed,
            "failed": len(report.failed_checks),
            "skipped": len(report.skipped_checks),
            "resource_count": (report.resources and len(report.resources)) or 0,
        },
        "results": {
            "failed_checks": [_record(c) for c in report.failed_checks],
            "skipped_checks": [_record(c) for c in report.skipped_checks],
        },
    }
    with open(request["output"], "w") as handle:
        json.dump(compact, handle)


def once() -> int:
    print("ready", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the preview reused an earlier scan
    scan(json.loads(line))
    return 0


# --------------------------------------------------------------------------- the scanner that stays


def _answer(conn: socket.socket) -> int:
    """In the forked child: one request, one answer line."""
    with conn, conn.makefile("rwb") as stream:
        line = stream.readline()
        if not line.strip():
            return 0  # the preview did not need the scan after all
        try:
            scan(json.loads(line))
            answer: dict[str, Any] = {"ok": True, "server": os.getppid()}  # which scanner answered
        except Exception as exc:  # reported to the preview, which says what failed
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[-2000:]}
        try:
            stream.write((json.dumps(answer) + "\n").encode())
            stream.flush()
        except OSError:
            return 1
    return 0


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _listen(path: str) -> socket.socket | None:
    """Bind `path`, unless a live scanner already listens there (None)."""
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return None  # taken: that scanner answers
        except OSError:
            pass
        finally:
            probe.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        os.chmod(path, 0o600)
        server.listen(16)
        return server


def serve(path: str, idle: float) -> int:
    server = _listen(path)
    if server is None:
        print("taken", flush=True)
        return 0
    mine = _inode(path)
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    children: set[int] = set()
    last = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            for pid in list(children):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    children.discard(pid)
            if children:
                last = time.monotonic()
            if time.monotonic() - last > idle or _inode(path) != mine:
                return 0
            ready, _, _ = select.select([server], [], [], 1.0)
            if not ready:
                continue
            try:
                conn, _ = server.accept()
            except OSError as exc:
                if exc.errno in (errno.EINTR, errno.EAGAIN):
                    continue
                raise
            last = time.monotonic()
            pid = os.fork()
            if pid == 0:
                server.close()
                code = 1
                try:
                    code = _answer(conn)
                finally:
                    os._exit(code)
            conn.close()
            children.add(pid)
    finally:
        server.close()
        if _inode(path) == mine:
            with contextlib.suppress(OSError):
                os.unlink(path)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "--serve":
        idle = float(argv[3]) if len(argv) >= 4 and argv[2] == "--idle" else 900.0
        return serve(argv[1], idle)
    return once()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
