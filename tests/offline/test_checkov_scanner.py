"""The checkov scanner: the same report as checkov as shipped, and one process that stays between previews."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from components.offline import policy
from components.offline.checks import checkov

ROOT = Path(__file__).resolve().parents[2]


def _python() -> str:
    try:
        return policy.checkov_python(ROOT)
    except RuntimeError:
        pytest.skip("checkov is not installed")


def _objects(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    deployment = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: apps
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:latest
          securityContext:
            privileged: true
"""
    rbac = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: reader
rules:
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get", "list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: reader
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects:
  - {kind: ServiceAccount, name: web, namespace: apps}
"""
    (folder / "deployment.yaml").write_text(deployment)
    (folder / "rbac.yaml").write_text(rbac)
    return sorted(folder.glob("*.yaml"))


def _driver(python: str, request: dict[str, Any], plain: bool) -> dict[str, Any]:
    env = {**checkov._checkov_env(), "AIRFLOW_K8S_CHECKOV_PLAIN": "1" if plain else "0"}
    done = subprocess.run(
        [python, str(policy.DRIVER)],
        input=json.dumps(request) + "\n",
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report: dict[str, Any] = json.loads(Path(request["output"]).read_text())
    return report


class TestTheFastReader:
    def test_the_report_is_the_one_checkov_as_shipped_writes(self, tmp_path: Path) -> None:
        python = _python()
        files = [str(f) for f in _objects(tmp_path / "objects")]
        fast = _driver(python, {"files": files, "output": str(tmp_path / "fast.json")}, plain=False)
        plain = _driver(python, {"files": files, "output": str(tmp_path / "plain.json")}, plain=True)
        assert fast == plain
        failed = {c["check_id"] for c in fast["results"]["failed_checks"]}
        assert {"CKV_K8S_16", "CKV_K8S_14", "CKV2_K8S_5"} <= failed, failed  # privileged, :latest, a graph check
        assert fast["summary"]["passed"] > 20


class TestTheScannerThatStays:
    def test_a_second_preview_scans_on_the_scanner_the_first_one_started(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _python()
        runtime = tempfile.mkdtemp(prefix="ak")  # short: a socket's path
        monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
        monkeypatch.setenv(policy.SERVER_ENV, "on")
        monkeypatch.setenv(policy.IDLE_ENV, "60")
        files = _objects(tmp_path / "objects")
        started = 0
        answered = []
        try:
            for i in range(2):
                scanner = policy.Scanner(ROOT, "t", tmp_path, tmp_path / "cache", None)
                if i == 0:  # no scanner yet: the first preview starts the one that stays
                    assert scanner.process is not None and scanner.connection is None
                    started = scanner.process.pid
                else:  # the second connects to it at once and starts nothing
                    assert scanner.process is None and scanner.connection is not None
                try:
                    report = scanner.run(files, _baseline(tmp_path), tmp_path / f"report-{i}.json")
                finally:
                    scanner.close()
                assert report["summary"]["failed"] > 0
                assert scanner.socket is not None and scanner.socket.exists()
                answered.append(scanner.server_pid)
            assert answered == [started, started]
            assert scanner.socket is not None and _serving(started, scanner.socket)  # it stays for the next
        finally:
            if started:
                os.kill(started, signal.SIGTERM)
            shutil.rmtree(runtime, ignore_errors=True)  # the socket's folder: nothing left in /tmp

    def test_with_the_scanner_off_nothing_stays(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        _python()
        monkeypatch.setenv(policy.SERVER_ENV, "off")
        scanner = policy.Scanner(ROOT, "t", tmp_path, tmp_path / "cache", None)
        report = scanner.run(_objects(tmp_path / "objects"), _baseline(tmp_path), tmp_path / "report.json")
        scanner.close()
        assert scanner.socket is None
        assert scanner.process is not None and scanner.process.returncode == 0
        assert report["summary"]["failed"] > 0

    def test_a_socket_path_too_long_falls_back_to_a_checkov_of_its_own(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _python()
        deep = tmp_path / ("x" * 90)
        deep.mkdir()
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
        monkeypatch.setenv(policy.SERVER_ENV, "on")
        scanner = policy.Scanner(ROOT, "t", tmp_path, tmp_path / "cache", None)
        report = scanner.run(_objects(tmp_path / "objects"), _baseline(tmp_path), tmp_path / "report.json")
        scanner.close()
        assert scanner.socket is None
        assert report["summary"]["failed"] > 0

    def test_a_socket_folder_others_can_use_is_refused(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
        folder = tmp_path / f"airflow-k8s-{os.getuid()}"
        folder.mkdir(mode=0o777)
        folder.chmod(0o777)
        with pytest.raises(RuntimeError, match="not this user's alone"):
            policy.socket_dir()


def _baseline(folder: Path) -> Path:
    path = folder / "checkov.baseline"
    path.write_text(json.dumps({"failed_checks": []}))
    return path


def _serving(pid: int, sock: Path) -> bool:
    """Is `pid` a live scanner that stays, serving `sock`?"""
    try:
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"--serve" in cmdline and str(sock).encode() in cmdline
