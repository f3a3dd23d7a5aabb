"""Airflow's own validation in the preview: the stack's connections, cron schedules, pool and variable
names and the rendered `airflow.cfg`, judged by Airflow's code in the Airflow virtualenv (`.venv-dags`,
which `./run.sh preview` and `./run.sh test` set up), not by a copy of its rules here.

The judge (components/offline/airflow_judge.py) starts right after the program ran, so that importing
Airflow overlaps rendering the charts; it gets its input once the objects are rendered. Each finding
is a problem (rule `airflow`) under the stack key that holds the value. Secure values the preview
only has placeholders for (`connections` offline) are not judged.

`AIRFLOW_K8S_AIRFLOW_PYTHON` names another Airflow interpreter; `AIRFLOW_K8S_AIRFLOW_CHECKS=off`
skips the checks, `=required` makes a missing virtualenv a problem instead of a note.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checks import Item, Problem
from .dry_run import config_tree

JUDGE = Path(__file__).with_name("airflow_judge.py")
PYTHON_ENV = "AIRFLOW_K8S_AIRFLOW_PYTHON"
MODE_ENV = "AIRFLOW_K8S_AIRFLOW_CHECKS"  # "off", or "required"
TIMEOUT = 600
CONFIG_KEY = "airflow.cfg"


def _mode() -> str:
    return os.environ.get(MODE_ENV, "").strip().lower()


@dataclass
class Judge:
    process: subprocess.Popen[str] | None
    note: str  # why it does not run ("" while it does)


def start(root: Path) -> Judge:
    """Start the judge (it imports Airflow, then waits for its input)."""
    if _mode() == "off":
        return Judge(None, f"off ({MODE_ENV}=off)")
    python = Path(os.environ.get(PYTHON_ENV) or root / ".venv-dags" / "bin" / "python")
    if not python.is_file():
        return Judge(None, f"no Airflow virtualenv at {python} (./run.sh preview and ./run.sh test set up .venv-dags)")
    process = subprocess.Popen(
        [str(python), "-I", str(JUDGE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Airflow refuses a relative path in its SQLite URL: the home is absolute, whatever --root was.
        env={**os.environ, "AIRFLOW_HOME": str((root / "build" / "airflow-judge-home").resolve())},
    )
    return Judge(process, "")


def _schedules(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            child = f"{path}.{k}" if path else str(k)
            if k == "schedule" and isinstance(v, str):
                yield child, v
            else:
                yield from _schedules(v, child)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _schedules(v, f"{path}[{i}]")


def _config_options(items: list[Item], tree: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every option of the rendered airflow.cfg (one ConfigMap's), with the stack key that set it when
    a stack key did (`airflow.extraValues.config.<section>.<option>`)."""
    given = ((tree.get("airflow") or {}).get("extraValues") or {}).get("config") or {}
    for item in items:
        data = item.obj.get("data") or {}
        if item.obj.get("kind") != "ConfigMap" or CONFIG_KEY not in data:
            continue
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(str(data[CONFIG_KEY]))
        out = []
        for section in parser.sections():
            for option, value in parser.items(section):
                key = f"airflow.extraValues.config.{section}.{option}" if option in (given.get(section) or {}) else ""
                out.append({"key": key, "section": section, "option": option, "value": value})
        return out
    return []


def request_of(config: Mapping[str, str], placeholders: Mapping[str, str], items: list[Item]) -> dict[str, Any]:
    tree = config_tree(config)
    secret_stand_ins = {full.rpartition(":")[2] for full, origin in placeholders.items() if origin == "placeholder"}
    connections = {} if "connections" in secret_stand_ins else tree.get("connections") or {}
    variables = {} if "variables" in secret_stand_ins else tree.get("variables") or {}
    pools = (tree.get("airflow") or {}).get("pools") or {}
    return {
        "connections": {f"connections.{k}": v for k, v in connections.items()} if isinstance(connections, dict) else {},
        "crons": dict(_schedules(tree, "")),
        "pools": {f"airflow.pools.{name}": name for name in pools} if isinstance(pools, dict) else {},
        "variables": {f"variables.{k}": k for k in variables} if isinstance(variables, dict) else {},
        "config": _config_options(items, tree),
    }


@dataclass
class Verdict:
    ran: bool
    note: str
    airflow: str
    problems: list[Problem]

    def summary(self) -> dict[str, Any]:
        return {"ran": self.ran, "airflow": self.airflow, "note": self.note, "findings": len(self.problems)}


def finish(judge: Judge, request: dict[str, Any]) -> Verdict:
    """Hand the judge its input and read its findings."""
    if judge.process is None:
        problems = (
            [Problem("airflow", "(airflow checks)", "-", f"no Airflow checks: {judge.note}")]
            if _mode() == "required"
            else []
        )
        return Verdict(False, judge.note, "", problems)
    try:
        out, err = judge.process.communicate(json.dumps(request), timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        judge.process.kill()
        judge.process.communicate()
        return Verdict(False, "", "", [Problem("airflow", "(airflow checks)", "-", f"no answer in {TIMEOUT} s")])
    if judge.process.returncode != 0:
        last = (err.strip().splitlines() or ["(no output)"])[-1]
        return Verdict(
            False, "", "", [Problem("airflow", "(airflow checks)", "-", f"the Airflow checks failed: {last}")]
        )
    answer = json.loads(out)
    problems = [
        Problem("airflow", "(stack)", f["key"], f"stack key {f['key']}: {f['message']}") for f in answer["findings"]
    ]
    return Verdict(True, "", str(answer["airflow"]), problems)


def cancel(judge: Judge) -> None:
    """Stop a judge whose input will never come (the preview stopped early)."""
    if judge.process is not None and judge.process.poll() is None:
        judge.process.kill()
        judge.process.communicate()
