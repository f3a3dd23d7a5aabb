"""`python -m dagcheck [FOLDER] [--stack NAME]`: will these DAGs run on the Airflow this stack deploys?

Prints one finding per line (`file:line: LEVEL [step] what breaks — fix`) and a summary;
exits 1 on any ERROR (with --strict also on a WARNING), 2 when it cannot run at all (a
stack config error, no Airflow virtualenv).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from components.core.reader import ConfigError
from components.offline.program import load_stack_config
from components.platform.config import StackConfig, parse_stack

from . import dagbag_step, platform, ruff_step
from .findings import Finding, exit_code, ordered, summary

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AIRFLOW_PYTHON = ROOT / ".venv-dags" / "bin" / "python"


def _short(project: str, config: dict[str, Any], secret_keys: set[str]) -> tuple[dict[str, Any], set[str]]:
    prefix = f"{project}:"
    values = {k[len(prefix) :]: v for k, v in config.items() if k.startswith(prefix)}
    return values, {k[len(prefix) :] for k in secret_keys if k.startswith(prefix)}


def _stand_ins(values: dict[str, Any], origin: dict[str, str], project: str) -> dict[str, Any]:
    """Shapes for secret keys whose values cannot be decrypted here (none of them matter to the checks)."""
    placeholder = {k.split(":", 1)[1] for k, v in origin.items() if v == "placeholder"}
    out = dict(values)
    if "teamSecrets" in placeholder:
        teams = values.get("teams", "[]")
        teams = json.loads(teams) if isinstance(teams, str) else teams
        out["teamSecrets"] = json.dumps(
            {t["name"]: {s: {} for s in t.get("secrets", [])} for t in teams or [] if isinstance(t, dict)}
        )
    for key in ("connections", "variables"):
        if key in placeholder:
            out[key] = "{}"
    if "previousFernetKeys" in placeholder:
        del out["previousFernetKeys"]
    return out


def load_stack(stack: str, stack_file: Path | None) -> StackConfig:
    """The stack's config, parsed by the components' own parser (secure values stand in)."""
    project, config, secret_keys, origin = load_stack_config(ROOT, stack, stack_file=stack_file)
    values, secrets = _short(project, config, secret_keys)
    return parse_stack(_stand_ins(values, origin, project), secrets)


def dagbag_env(stack: StackConfig) -> dict[str, str]:
    """What the chart and AirflowRelease give the dag-processor: its namespace, the stack's Variables."""
    env = {"AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE": stack.airflow.namespace}
    for name, value in platform.delivered_variables(stack).items():
        env[f"AIRFLOW_VAR_{name.upper()}"] = value
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./run.sh dags-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default=str(ROOT / "dags"), help="the DAG folder (bundle root)")
    parser.add_argument("--stack", default="dev", help="the stack whose config the checks use (default: dev)")
    parser.add_argument("--stack-file", type=Path, help="read the stack config from this file instead")
    parser.add_argument(
        "--airflow-python",
        default=os.environ.get("AIRFLOW_K8S_DAGS_PYTHON", str(DEFAULT_AIRFLOW_PYTHON)),
        help="the Python of the Airflow virtualenv (default: .venv-dags/bin/python)",
    )
    parser.add_argument("--strict", action="store_true", help="exit non-zero on warnings too")
    args = parser.parse_args(argv)

    folder = Path(args.folder).resolve()
    if not folder.is_dir():
        print(f"dags-check: no such folder: {args.folder}", file=sys.stderr)
        return 2
    if not Path(args.airflow_python).exists():
        print(
            f"dags-check: no Airflow virtualenv at {args.airflow_python}; `./run.sh dags-check` creates it",
            file=sys.stderr,
        )
        return 2
    try:
        stack = load_stack(args.stack, args.stack_file)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"dags-check: the stack config of {args.stack!r} is not valid: {exc}", file=sys.stderr)
        return 2

    try:
        findings: list[Finding] = ruff_step.run(folder)
        loaded = dagbag_step.run(folder, args.airflow_python, dagbag_env(stack))
    except RuntimeError as exc:  # ruff or the Airflow virtualenv itself failed: nothing was checked
        print(f"dags-check: {exc}", file=sys.stderr)
        return 2
    findings += loaded.findings
    findings += platform.check(stack, args.stack, loaded.tasks)

    for finding in ordered(findings):
        print(finding.render())
    files = sum(1 for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
    dags = sum(len(ids) for ids in loaded.dags.values())
    print(summary(findings, files, dags, args.stack))
    return exit_code(findings, strict=args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
