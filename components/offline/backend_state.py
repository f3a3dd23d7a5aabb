"""The deployed state of a stack from the Pulumi backend the user is logged into.

With no `--baseline-state FILE`, the preview asks the backend the user is logged into for the
stack's deployed state (`pulumi stack export`), and compares with that (docs/preview.md,
"Baseline"). It asks only when the user is logged in: `$PULUMI_BACKEND_URL` is set, or Pulumi's
credentials file (`$PULUMI_HOME/credentials.json`, default `~/.pulumi/credentials.json`) names a
current backend; otherwise nothing is run and nothing is contacted. A stack the backend does not
have (never deployed), a `pulumi` that is not installed or a backend that does not answer within
a minute is one line, and the preview compares with the last successful preview instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

EXPORT_TIMEOUT = 60.0
"""Seconds `pulumi stack export` may take before the preview gives up on the backend."""

EXPORT_FILE = "backend-state.json"
"""Where the export is written, inside the stack's preview folder (kept: it is what was compared with)."""


def logged_in_backend(env: Mapping[str, str] | None = None) -> str | None:
    """The backend URL the user is logged into, or None."""
    env = os.environ if env is None else env
    if env.get("PULUMI_BACKEND_URL"):
        return env["PULUMI_BACKEND_URL"]
    home = Path(env["PULUMI_HOME"]) if env.get("PULUMI_HOME") else Path(env.get("HOME", "~")).expanduser() / ".pulumi"
    try:
        credentials = json.loads((home / "credentials.json").read_text())
    except (OSError, ValueError):
        return None
    current = credentials.get("current") if isinstance(credentials, dict) else None
    return current if isinstance(current, str) and current else None


def export_from_backend(
    root: Path,
    stack: str,
    folder: Path,
    echo: Callable[[str], None],
    env: Mapping[str, str] | None = None,
    timeout: float = EXPORT_TIMEOUT,
) -> Path | None:
    """`pulumi stack export` of `stack` into `folder`, when the user is logged into a backend that
    has it; None (with one line saying why, when a backend was asked) otherwise."""
    env = dict(os.environ if env is None else env)
    backend = logged_in_backend(env)
    if backend is None:
        return None
    pulumi = shutil.which("pulumi", path=env.get("PATH"))
    fallback = "comparing with the last successful preview instead"
    if pulumi is None:
        echo(f"    baseline: logged into {backend}, but no `pulumi` on PATH to export stack '{stack}'; {fallback}")
        return None
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / EXPORT_FILE
    target.unlink(missing_ok=True)
    command = [pulumi, "stack", "export", "--stack", stack, "--cwd", str(root), "--file", str(target)]
    echo(f"    baseline: pulumi stack export --stack {stack} (backend {backend})")
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        echo(f"    baseline: the backend {backend} did not answer within {timeout:.0f} s; {fallback}")
        return None
    if done.returncode != 0 or not target.is_file():
        reason = (done.stderr.strip().splitlines() or ["no export written"])[-1]
        echo(f"    baseline: no deployed state of stack '{stack}' in {backend} ({reason}); {fallback}")
        return None
    return target
