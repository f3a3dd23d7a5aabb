"""Offline preview of the prod stack vs. only rendering the same charts with the same values.

Prints both times (median of several runs, after one warm-up) and their ratio. The target
is at most 1.5x: validation must cost little next to Helm's own rendering. The checkov
scan is a separate process over the written files and is timed on its own line.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.offline.preview import RELEASE_TYPE, preview  # noqa: E402
from components.offline.program import run_program, unwrap  # noqa: E402
from components.offline.render import find_chart, render  # noqa: E402

RUNS = 5


def render_only(jobs: list[tuple[Path, dict[str, Any], str, str]]) -> float:
    start = time.perf_counter()
    for archive, values, name, namespace in jobs:
        render(archive, values, name, namespace)
    return time.perf_counter() - start


def preview_once(out: Path, checkov: bool = False) -> float:
    start = time.perf_counter()
    result = preview(ROOT, "prod", out, run_checkov=checkov)
    elapsed = time.perf_counter() - start
    if result.problems:
        raise SystemExit(f"the prod preview has problems: {result.problems[:3]}")
    return elapsed


def main() -> None:
    run = run_program(ROOT, "prod")
    jobs = []
    for res in run.resources:
        if res.type == RELEASE_TYPE:
            inputs = unwrap(res.inputs)
            jobs.append(
                (
                    find_chart(ROOT, inputs["chart"], inputs.get("version")),
                    inputs["values"],
                    inputs["name"],
                    inputs["namespace"],
                )
            )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        render_only(jobs)
        preview_once(out)
        renders = [render_only(jobs) for _ in range(RUNS)]
        previews = [preview_once(out) for _ in range(RUNS)]
        with_checkov = preview_once(out, checkov=True)
    r, p = statistics.median(renders), statistics.median(previews)
    print(f"charts rendered: {len(jobs)} release(s), median of {RUNS} runs")
    print(f"render only (schema check + helm render):      {r:.3f} s")
    print(f"offline preview (program + render + validate): {p:.3f} s")
    print(f"ratio preview / render:                        {p / r:.2f}x (target <= 1.50x)")
    print(f"offline preview with the checkov scan:         {with_checkov:.3f} s")


if __name__ == "__main__":
    main()
