"""Step 2: load the folder with Airflow's DagBag in the Airflow virtualenv, as the dag-processor does.

`load.py` runs there (it needs Airflow, which the project's own virtualenv cannot hold)
and hands back import errors and the facts of every Kubernetes task as JSON. An import
error becomes one ERROR at the line the traceback names in the DAG file, with the fix
for the breaking changes tutorials trip over.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .findings import Finding

LOADER = Path(__file__).resolve().parent / "load.py"

# (part of the error, the fix), first match wins.
IMPORT_FIXES: tuple[tuple[str, str], ...] = (
    ("airflow.contrib", "import from the provider package: airflow.contrib is gone since Airflow 2"),
    (
        "operators.kubernetes_pod'",
        "import KubernetesPodOperator from airflow.providers.cncf.kubernetes.operators.pod (the provider renamed the "
        "module)",
    ),
    (
        "'airflow.kubernetes'",
        "import Secret from airflow.providers.cncf.kubernetes.secret (and k8s models from kubernetes.client)",
    ),
    (
        "'airflow.operators.",
        "import the operator from airflow.providers.standard.operators (bash, python, empty, ...): Airflow 3 moved "
        "the core operators to the standard provider",
    ),
    ("'airflow.sensors.", "import the sensor from airflow.providers.standard.sensors"),
    ("schedule_interval", "rename schedule_interval to schedule"),
    ("provide_context", "remove provide_context: Airflow passes the context to the callable's **kwargs"),
    ("is_delete_operator_pod", "use on_finish_action='delete_pod' (or 'keep_pod')"),
    ("execution_date", "use logical_date (or data_interval_start): Airflow 3 removed execution_date"),
    ("days_ago", "use a fixed start date, e.g. pendulum.datetime(2025, 1, 1, tz='UTC')"),
)


@dataclass
class Loaded:
    """What the DagBag load found."""

    findings: list[Finding] = field(default_factory=list)
    dags: dict[str, list[str]] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(default_factory=list)


def _line_in(traceback: str, file: str) -> int:
    """The last line of `file` in the traceback (where the DAG file itself failed), else 1."""
    lines = [int(m.group(1)) for m in re.finditer(rf'File "{re.escape(file)}", line (\d+)', traceback)]
    return lines[-1] if lines else 1


def _last_line(traceback: str) -> str:
    lines = [line.strip() for line in traceback.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "import failed"


def import_findings(errors: Mapping[str, str]) -> list[Finding]:
    out = []
    for file, traceback in errors.items():
        what = _last_line(traceback)
        fix = next((advice for needle, advice in IMPORT_FIXES if needle in what), None)
        out.append(
            Finding(
                file=file,
                line=_line_in(traceback, file),
                level="ERROR",
                step="import",
                message=f"the dag-processor cannot import this file: {what}",
                fix=fix or "fix the error above; the traceback: `python <file>` in the Airflow virtualenv",
            )
        )
    return out


def run(folder: Path, python: str, env: Mapping[str, str]) -> Loaded:
    """Load `folder` with `python` (the Airflow virtualenv's), `env` added to the environment."""
    with tempfile.TemporaryDirectory(prefix="dags-check-") as tmp:
        output = Path(tmp) / "dagbag.json"
        proc = subprocess.run(
            [python, "-I", str(LOADER), str(folder.resolve()), str(output)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **env},
        )
        if proc.returncode != 0 or not output.exists():
            raise RuntimeError(f"the DagBag load failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        data = json.loads(output.read_text())
    return Loaded(findings=import_findings(data["import_errors"]), dags=data["dags"], tasks=data["tasks"])
