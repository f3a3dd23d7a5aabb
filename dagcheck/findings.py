"""One finding per line, a summary at the end, and the exit code."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Level = Literal["ERROR", "WARNING", "INFO"]
LEVELS: tuple[Level, ...] = ("ERROR", "WARNING", "INFO")


@dataclass(frozen=True, order=True)
class Finding:
    """What breaks where, and how to fix it. `step` is `ruff AIR301`, `import` or `platform`."""

    file: str
    line: int
    level: Level
    step: str
    message: str
    fix: str

    def render(self, base: Path | None = None) -> str:
        return f"{shown_path(self.file, base)}:{self.line}: {self.level} [{self.step}] {self.message} — {self.fix}"


def shown_path(path: str, base: Path | None) -> str:
    """The path relative to `base` (the working directory) when it lies below it."""
    base = base or Path.cwd()
    try:
        return os.path.relpath(path, base) if Path(path).resolve().is_relative_to(base.resolve()) else path
    except ValueError:
        return path


def ordered(findings: Iterable[Finding]) -> list[Finding]:
    """By file and line; at one place errors first."""
    return sorted(set(findings), key=lambda f: (f.file, f.line, LEVELS.index(f.level), f.step, f.message))


def summary(findings: Iterable[Finding], files: int, dags: int, stack: str) -> str:
    counts = Counter(f.level for f in findings)
    verdict = "FAILED" if counts["ERROR"] else "OK"
    return (
        f"dags-check {verdict}: {counts['ERROR']} error(s), {counts['WARNING']} warning(s), {counts['INFO']} note(s) "
        f"in {files} file(s), {dags} DAG(s) loaded, against stack {stack!r}"
    )


def exit_code(findings: Iterable[Finding], strict: bool = False) -> int:
    levels = {f.level for f in findings}
    return 1 if "ERROR" in levels or (strict and "WARNING" in levels) else 0
