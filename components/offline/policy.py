"""The policy scan of the offline preview: checkov over the written files, with accepted findings.

What the project accepts is `security/checkov-allowlist.yaml`: per check, the objects it
accepts (shell-style patterns on "<source>:<Kind>.<namespace>.<name>", where the source is
the preview file's name without .yaml) and why, optionally limited to some `stacks`. For a
scan, the entries are expanded over the objects actually written and handed to checkov as
its own baseline file (`--baseline ... --output-baseline-as-skipped`): checkov reports the
accepted findings as skipped ("accepted") and everything else as failed ("new"). A new
finding fails the preview.

The scan is keyed by content: the bytes of every scanned file, the baseline and the checkov
pin. A preview whose rendered objects did not change reuses the last report
(`build/preview/.checkov-cache/`). The report written is compact: failed and accepted
findings with checkov's ids, names and guidelines, and its summary; no passed checks or
code blocks.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .checks import checkov

ALLOWLIST = Path("security") / "checkov-allowlist.yaml"
BASELINE_COMMENT = "baseline-skipped"  # what checkov writes for a finding the baseline accepts
CACHE_DIR = ".checkov-cache"


@dataclass(frozen=True)
class Finding:
    check_id: str
    check_name: str
    source: str  # the preview file's name without .yaml
    resource: str  # Kind.namespace.name, as checkov names it
    guideline: str = ""

    @property
    def key(self) -> str:
        return f"{self.source}:{self.resource}"


@dataclass
class PolicyResult:
    passed: int
    new: list[Finding]
    accepted: list[Finding]
    stale: list[str] = field(default_factory=list)  # allow-list patterns that matched no finding
    cached: bool = False
    report: str = "checkov.json"

    def summary(self) -> dict[str, Any]:
        return {
            "ran": True,
            "passed": self.passed,
            "failed": len(self.new) + len(self.accepted),
            "new": len(self.new),
            "accepted": len(self.accepted),
            "cached": self.cached,
            "report": self.report,
            "newFindings": [f"{f.check_id} {f.key}" for f in self.new],
            "staleAllowListEntries": self.stale,
            "acceptedByCheck": _count(f.check_id for f in self.accepted),
        }


def _count(ids: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def resource_id(obj: dict[str, Any]) -> str:
    """checkov's name of a Kubernetes object: Kind.namespace.name (namespace "default" if none)."""
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}.{meta.get('namespace') or 'default'}.{meta.get('name')}"


def allow_list(root: Path, stack: str) -> list[dict[str, Any]]:
    """The allow-list entries that apply to `stack` (entries without `stacks` apply to all)."""
    path = root / ALLOWLIST
    if not path.is_file():
        return []
    entries = (yaml.safe_load(path.read_text()) or {}).get("entries") or []
    return [e for e in entries if not e.get("stacks") or stack in e["stacks"]]


def baseline_for(entries: list[dict[str, Any]], files: dict[str, list[str]]) -> dict[str, Any]:
    """checkov's baseline format, the allow-list expanded over the objects of each scanned file
    (`files`: source -> resource ids)."""
    failed = []
    for source, resources in sorted(files.items()):
        findings = []
        for rid in resources:
            ids = sorted(
                {
                    e["check"]
                    for e in entries
                    if any(fnmatch.fnmatchcase(f"{source}:{rid}", p) for p in e.get("resources") or [])
                }
            )
            if ids:
                findings.append({"resource": rid, "check_ids": ids})
        if findings:
            failed.append({"file": f"/{source}.yaml", "findings": findings})
    return {"failed_checks": failed}


def _findings(records: list[Any]) -> list[Finding]:
    found = []
    for check in records:
        if not isinstance(check, dict):
            continue
        found.append(
            Finding(
                check_id=str(check.get("check_id")),
                check_name=str(check.get("check_name") or ""),
                source=Path(str(check.get("file_path", ""))).stem,
                resource=str(check.get("resource")),
                guideline=str(check.get("guideline") or ""),
            )
        )
    return sorted(found, key=lambda f: (f.source, f.resource, f.check_id))


def checkov_pin(root: Path) -> str:
    pin = root / "requirements-checkov.txt"
    return pin.read_text() if pin.is_file() else ""


def checkov_python(root: Path) -> str:
    """The interpreter of checkov's virtualenv: next to $AIRFLOW_K8S_CHECKOV, else this one if it
    has checkov, else the project's .venv-checkov (what run.sh creates)."""
    configured = os.environ.get("AIRFLOW_K8S_CHECKOV")
    if configured:
        candidate = Path(configured).with_name("python")
        if candidate.exists():
            return str(candidate)
    if importlib.util.find_spec("checkov") is not None:
        return sys.executable
    for project in (root, Path(__file__).resolve().parents[2]):
        local = project / ".venv-checkov" / "bin" / "python"
        if local.exists():
            return str(local)
    raise RuntimeError(
        "checkov is not installed: ./run.sh creates .venv-checkov with it; or set AIRFLOW_K8S_CHECKOV to a checkov "
        "executable inside its virtualenv (or pass --no-checkov)"
    )


DRIVER = Path(__file__).with_name("checkov_driver.py")


def inputs_fingerprint(root: Path, stack: str, options: str) -> str:
    """What the rendered files of a stack are made from: the project's program, stack and
    component files, the chart archives, the allow-list, the checkov pin, the secure-value
    environment and the preview's options. Unchanged, the last scan will most likely be reused."""
    digest = hashlib.sha256(options.encode())
    paths = [root / "Pulumi.yaml", root / f"Pulumi.{stack}.yaml", root / "__main__.py", root / ALLOWLIST]
    paths += [root / "requirements-checkov.txt", *sorted((root / "components").rglob("*.py"))]
    from .render import chart_dirs

    for directory in chart_dirs(root):
        paths += sorted(directory.glob("*.tgz"))
    for path in paths:
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    for key in sorted(os.environ):
        if key.startswith("AIRFLOW_K8S_SECRET_"):
            digest.update(f"{key}={os.environ[key]}\0".encode())
    return digest.hexdigest()


INPUTS_FILE = "checkov.inputs.json"


SERVER_ENV = "AIRFLOW_K8S_CHECKOV_SERVER"  # "off": a checkov process per preview, none that stays
IDLE_ENV = "AIRFLOW_K8S_CHECKOV_IDLE"  # seconds the scanner stays without a scan (default 900)
DEFAULT_IDLE = 900


def server_enabled() -> bool:
    return os.environ.get(SERVER_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def socket_dir() -> Path:
    """A folder only this user can use: $XDG_RUNTIME_DIR/airflow-k8s, else one in the temp folder."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime and Path(runtime).is_dir() else Path(tempfile.gettempdir())
    folder = base / f"airflow-k8s-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise RuntimeError(f"{folder} is not this user's alone; remove it, or set {SERVER_ENV}=off")
    return folder


def socket_path(python: str) -> Path:
    """One scanner per checkov interpreter and driver version (a changed driver starts a new one)."""
    key = hashlib.sha256(f"{python}\0{DRIVER.read_bytes().hex()}".encode()).hexdigest()[:16]
    path = socket_dir() / f"checkov-{key}.sock"
    if len(str(path)) > 100:  # the limit of a Unix socket's path (108 bytes with the terminator)
        raise RuntimeError(f"{path} is too long a path for a socket")
    return path


class Scanner:
    """checkov in a process of its own, started at the beginning of a preview so that its (slow)
    import overlaps the preview's own work; not started when the stack's inputs did not change
    since its last scan, whose report will most likely be reused (started late if not).

    By default that process stays afterwards (`checkov_driver.py --serve`, one per checkov
    virtualenv, for AIRFLOW_K8S_CHECKOV_IDLE seconds after its last scan, 900 by default): the
    next preview's scan starts at once instead of after checkov's import. With
    AIRFLOW_K8S_CHECKOV_SERVER=off every preview starts and ends its own."""

    def __init__(self, root: Path, stack: str, target: Path, cache_dir: Path, options: str | None) -> None:
        """`options`: the preview's options, None when the program's inputs are not the stack's files."""
        self.root = root
        self.stack = stack
        self.target = target
        self.cache_dir = cache_dir
        self.fingerprint = inputs_fingerprint(root, stack, options) if options is not None else ""
        self.process: subprocess.Popen[str] | None = None  # the one-shot driver, or a server starting
        self.connection: socket.socket | None = None  # to the scanner that stays
        self.socket: Path | None = None
        self.server_pid: int | None = None  # the scanner that stays which answered this preview's scan
        self.started = False
        self.alone = False  # True once the scanner that stays failed us: one checkov for this preview
        if not self.likely_reused():
            self.start()

    def likely_reused(self) -> bool:
        try:
            last = json.loads((self.target / INPUTS_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return bool(
            self.fingerprint
            and last.get("inputs") == self.fingerprint
            and (self.cache_dir / f"{last.get('key')}.json").is_file()
        )

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        python = checkov_python(self.root)
        if server_enabled() and not self.alone:
            try:
                self.socket = socket_path(python)
                self.connection = self._connect()
                if self.connection is None:
                    idle = os.environ.get(IDLE_ENV, str(DEFAULT_IDLE))
                    self.process = subprocess.Popen(
                        [python, str(DRIVER), "--serve", str(self.socket), "--idle", idle],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=open(f"{self.socket}.log", "ab"),  # noqa: SIM115 - the server's own
                        text=True,
                        env=checkov._checkov_env(),
                        start_new_session=True,  # it outlives this preview, and its process group
                        close_fds=True,
                    )
                return
            except (OSError, RuntimeError):
                self.socket = None  # no place for a socket: one checkov for this preview
        self.process = subprocess.Popen(
            [python, str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=checkov._checkov_env(),
        )

    def _connect(self) -> socket.socket | None:
        assert self.socket is not None
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(self.socket))
        except OSError:
            conn.close()
            return None
        return conn

    def close(self) -> None:
        """Let go of checkov if its scan was not needed (a scanner that stays, stays)."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        if self.process is not None and self.socket is None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
        elif self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()  # a starting server goes on without us

    def run(self, files: list[Path], baseline: Path, output: Path) -> Any:
        self.start()
        request = json.dumps({"files": [str(f) for f in files], "baseline": str(baseline), "output": str(output)})
        if self.socket is not None:
            answer = self._run_on_server(request, output)
            if answer is not None:
                return answer
            self.socket = None  # the scanner that stays could not be reached: one of our own
            self.alone = True
            self.started = False
            self.process = None
            self.start()
        assert self.process is not None
        out, err = self.process.communicate(request + "\n")
        if self.process.returncode != 0 or not output.is_file():
            raise RuntimeError(f"checkov exited {self.process.returncode} without a report: {(err or out)[-2000:]}")
        return json.loads(output.read_text())

    def _run_on_server(self, request: str, output: Path) -> Any:
        """The scan on the scanner that stays; None if it cannot be reached (the caller scans itself)."""
        if self.connection is None and self.process is not None:
            assert self.process.stdout is not None
            self.process.stdout.readline()  # "ready" once checkov is imported, or "taken" by another
            self.process.stdout.close()
            self.connection = self._connect()
        if self.connection is None:
            return None
        with self.connection, self.connection.makefile("rwb") as stream:
            try:
                stream.write((request + "\n").encode())
                stream.flush()
                line = stream.readline()
            except OSError:
                line = b""
        self.connection = None
        if not line:
            return None
        answer = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(f"checkov failed: {answer.get('error')}")
        self.server_pid = int(answer.get("server") or 0) or None
        return json.loads(output.read_text())

    def scan(self, files: dict[str, list[str]], content_digest: str) -> PolicyResult:
        """Scan the target's resources/ and releases/ files (or reuse the scan of the same content)."""
        stack, target, cache_dir = self.stack, self.target, self.cache_dir
        entries = allow_list(self.root, stack)
        baseline = baseline_for(entries, files)
        baseline_text = json.dumps(baseline, indent=1, sort_keys=True)
        key = hashlib.sha256("\0".join([content_digest, baseline_text, checkov_pin(self.root)]).encode()).hexdigest()
        cached_file = cache_dir / f"{key[:32]}.json"
        (target / INPUTS_FILE).write_text(json.dumps({"inputs": self.fingerprint, "key": key[:32]}) + "\n")
        report_path = target / "checkov.json"
        cached = cached_file.is_file()
        if cached:
            self.close()
            compact = json.loads(cached_file.read_text())
        else:
            baseline_path = target / "checkov.baseline"
            baseline_path.write_text(baseline_text + "\n")
            scanned = sorted((target / "resources").glob("*.yaml")) + sorted((target / "releases").glob("*.yaml"))
            compact = self.run(scanned, baseline_path, report_path)
            cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=cache_dir, delete=False, suffix=".tmp") as tmp:
                json.dump(compact, tmp)
            Path(tmp.name).replace(cached_file)
        report_path.write_text(json.dumps(compact, indent=1) + "\n")
        results = compact["results"]
        new = _findings(results["failed_checks"])
        accepted = _findings([c for c in results["skipped_checks"] if c.get("suppress_comment") == BASELINE_COMMENT])
        object_keys = [f"{source}:{rid}" for source, rids in files.items() for rid in rids]
        stale = [  # patterns on objects of this stack that no longer fail their check
            f"{e['check']} {pattern}"
            for e in entries
            for pattern in e.get("resources") or []
            if any(fnmatch.fnmatchcase(key, pattern) for key in object_keys)
            and not any(e["check"] == f.check_id and fnmatch.fnmatchcase(f.key, pattern) for f in accepted)
        ]
        return PolicyResult(int(compact["summary"]["passed"]), new, accepted, stale, cached, report_path.name)


__all__ = ["Finding", "PolicyResult", "Scanner", "allow_list", "asdict", "baseline_for", "resource_id"]
