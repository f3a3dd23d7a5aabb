"""Step 1: ruff's Airflow rules, with ruff's own fix where it has one.

The whole AIR family is selected with `--preview` (in ruff 0.17 several Airflow rules,
among them AIR304 and AIR321, are preview rules) and `--isolated`, so a ruff
configuration near the DAGs cannot switch rules off. Levels follow what a rule means
for Airflow 3: AIR301-AIR304 name code that no longer imports or runs (ERROR), AIR311,
AIR312 and AIR321 code that still works but is deprecated (WARNING), the others are
advice (INFO).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .findings import Finding, Level

RUFF_ARGS = ("check", "--isolated", "--preview", "--select", "AIR", "--output-format", "json", "--exit-zero")

BREAKING = ("AIR301", "AIR302", "AIR303", "AIR304")
DEPRECATED = ("AIR311", "AIR312", "AIR321")

# Fixes for findings ruff reports without one (matched against ruff's message).
KNOWN_FIXES: tuple[tuple[str, str], ...] = (
    ("days_ago", "use a fixed start date, e.g. pendulum.datetime(2025, 1, 1, tz='UTC')"),
    (
        "airflow.contrib",
        "import it from the provider package that replaced airflow.contrib (for Kubernetes: "
        "airflow.providers.cncf.kubernetes.operators.pod, .secret)",
    ),
    ("provide_context", "remove provide_context: Airflow passes the context to the callable's **kwargs"),
    ("execution_date", "use logical_date (or data_interval_start)"),
)


def level_of(code: str) -> Level:
    if code in BREAKING:
        return "ERROR"
    if code in DEPRECATED:
        return "WARNING"
    return "INFO"


def fix_of(result: dict[str, Any]) -> str:
    fix = result.get("fix") or {}
    message = str(fix.get("message") or "").rstrip(".")
    applicability = fix.get("applicability")
    if message and fix.get("edits") and applicability == "safe":
        return f"{message} (ruff check --fix applies it)"
    if message and fix.get("edits") and applicability == "unsafe":
        return f"{message} (ruff check --fix --unsafe-fixes applies it; review the change)"
    if message:
        return message
    text = str(result.get("message", ""))
    for needle, advice in KNOWN_FIXES:
        if needle in text:
            return advice
    return f"see {result.get('url') or 'the ruff rule ' + str(result.get('code'))}"


def findings_of(results: list[dict[str, Any]]) -> list[Finding]:
    out = []
    for r in results:
        code = str(r.get("code") or "")
        message = str(r.get("message", "")).rstrip(";").rstrip(".")
        out.append(
            Finding(
                file=str(Path(r["filename"]).resolve()),
                line=int(r["location"]["row"]),
                level=level_of(code),
                step=f"ruff {code}",
                message=message,
                fix=fix_of(r),
            )
        )
    return out


def run(folder: Path, ruff: tuple[str, ...] = (sys.executable, "-m", "ruff")) -> list[Finding]:
    """ruff's Airflow rules over `folder`."""
    proc = subprocess.run([*ruff, *RUFF_ARGS, str(folder)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ruff failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return findings_of(json.loads(proc.stdout or "[]"))
