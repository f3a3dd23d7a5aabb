"""checkov's Kubernetes policies over a folder of YAML files."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from .model import _as_dict, _as_list

# --------------------------------------------------------------------------- checkov


def _checkov_command() -> list[str]:
    """How to start checkov: $AIRFLOW_K8S_CHECKOV (an executable, e.g. in a virtualenv of its own),
    else this interpreter's checkov module, else the script next to it, else ``checkov`` on PATH."""
    configured = os.environ.get("AIRFLOW_K8S_CHECKOV")
    if configured:
        return [configured]
    if importlib.util.find_spec("checkov") is not None:
        return [sys.executable, "-m", "checkov.main"]
    script = pathlib.Path(sys.executable).with_name("checkov")
    if script.exists():
        return [str(script)]
    found = shutil.which("checkov")
    if found:
        return [found]
    raise RuntimeError("checkov is not installed (pip install checkov)")


def _checkov_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BC_", "PRISMA_", "CKV_API", "CHECKOV_API")) and key not in ("PROXY_URL",)
    }
    env.update(
        {
            "BC_SKIP_MAPPING": "TRUE",
            "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
            "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
            "CKV_GITHUB_CONFIG_FETCH_DATA": "false",
            "CKV_GITLAB_CONFIG_FETCH_DATA": "false",
            "BC_ENABLE_PERSIST_GRAPHS": "false",
            "CHECKOV_NO_OUTPUT": "false",
        }
    )
    return env


def _checkov_reports(payload: Any) -> Iterator[dict[str, Any]]:
    if isinstance(payload, list):
        for entry in payload:
            if isinstance(entry, dict):
                yield entry
    elif isinstance(payload, dict):
        yield payload


def run_checkov(directory: pathlib.Path, output_json: pathlib.Path) -> tuple[int, int, list[dict[str, Any]]]:
    """Run checkov's Kubernetes policies on the YAML files in ``directory``, offline.

    Writes checkov's raw JSON report to ``output_json`` and returns
    ``(passed, failed, [{check_id, check_name, resource, file}, ...])``.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"not a directory: {directory}")
    command = [
        *_checkov_command(),
        "--directory",
        str(directory),
        "--framework",
        "kubernetes",
        "--output",
        "json",
        "--soft-fail",
        "--skip-download",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=_checkov_env(), check=False)
    try:
        payload = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        tail = (result.stderr or result.stdout)[-2000:]
        raise RuntimeError(f"checkov exited {result.returncode} without a JSON report: {tail}") from exc
    output_json = pathlib.Path(output_json)
    output_json.parent.mkdir(parents=True, exist_ok=True)
    output_json.write_text(result.stdout)

    passed = failed = 0
    summaries: list[dict[str, Any]] = []
    for report in _checkov_reports(payload):
        summary = _as_dict(report.get("summary"))
        if "results" not in report and not summary and ("passed" in report or "failed" in report):
            summary = report  # an empty scan prints only the summary
        passed += int(summary.get("passed", 0) or 0)
        failed += int(summary.get("failed", 0) or 0)
        for check in _as_list(_as_dict(report.get("results")).get("failed_checks")):
            check = _as_dict(check)
            summaries.append(
                {
                    "check_id": check.get("check_id"),
                    "check_name": check.get("check_name"),
                    "resource": check.get("resource"),
                    "file": str(check.get("file_path", "")).lstrip("/"),
                }
            )
    return passed, failed, summaries
