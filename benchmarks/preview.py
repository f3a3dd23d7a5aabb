"""Offline preview of the prod stack vs. only rendering the same charts with the same values.

Rendering is `helm template` (Helm v3.20, the provider's Helm) of the prod stack's three
releases with the stack's capabilities, side by side as the preview does it. Against it,
in the same run (medians of several runs after a warm-up):

- the preview without the policy scan (program under mocks, render, files, validation);
  goal: at most 1.5x rendering;
- the preview with the checkov scan, the way a user re-runs it: the scan of unchanged
  files is reused (content-keyed); goal: at most 3x rendering;
- the preview with a fresh checkov scan (cache emptied: every object scanned again), on the
  checkov scanner that stays between previews (policy.Scanner): the scan of a changed stack;
  goal: at most 3x rendering too;
- the same with that scanner off (AIRFLOW_K8S_CHECKOV_SERVER=off: checkov imported afresh, as
  in a first preview), printed for reference;
- what Kubernetes' own validation adds (components/offline/dry_run.py): the preview with the
  server-side dry run on the local API server that stays between previews, and that server's
  first start (certificates kept), once;
- what Airflow's own checks add (components/offline/airflow_checks.py: Airflow imported in
  .venv-dags while the charts render).

The lines before the last two run with neither (`--no-dry-run`, AIRFLOW_K8S_AIRFLOW_CHECKS=off), so
that they stay comparable with earlier runs.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.offline import airflow_checks, dry_run, local_apiserver, policy  # noqa: E402
from components.offline.helm import Capabilities  # noqa: E402
from components.offline.preview import RELEASE_TYPE, preview, stack_capabilities  # noqa: E402
from components.offline.program import run_program, unwrap  # noqa: E402
from components.offline.render import find_chart, render_chart  # noqa: E402

RUNS = 5
PREVIEW_GOAL = 1.5
SCAN_GOAL = 3.0


def render_only(jobs: list[tuple[Path, dict[str, Any], str, str]], caps: Capabilities) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(2, len(jobs))) as pool:
        list(pool.map(lambda job: render_chart(job[0], job[1], job[2], job[3], caps), jobs))
    return time.perf_counter() - start


def preview_once(out: Path, checkov: bool = False, server: bool = False, judge: bool = False) -> float:
    os.environ[airflow_checks.MODE_ENV] = "on" if judge else "off"
    target = dry_run.Target("local" if server else "off")
    start = time.perf_counter()
    result = preview(ROOT, "prod", out, run_checkov=checkov, dry_run=target)
    elapsed = time.perf_counter() - start
    if result.problems:
        raise SystemExit(f"the prod preview has problems: {result.problems[:3]}")
    return elapsed


def main() -> None:
    run = run_program(ROOT, "prod")
    caps = stack_capabilities(ROOT, run, None)
    jobs = []
    for res in run.resources:
        if res.type == RELEASE_TYPE:
            inputs = unwrap(res.inputs)
            archive = find_chart(ROOT, inputs["chart"], inputs.get("version"))
            jobs.append((archive, inputs["values"], inputs["name"], inputs["namespace"]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        render_only(jobs, caps)
        preview_once(out)
        shutil.rmtree(out / policy.CACHE_DIR, ignore_errors=True)
        preview_once(out, checkov=True)  # starts the scanner that stays
        version = local_apiserver.emulated(caps.kube_version)[0]
        local_apiserver.stop_local(version)
        started = time.perf_counter()
        local_apiserver.local_server(ROOT, version)
        first_start = time.perf_counter() - started
        preview_once(out, server=True)  # creates the CRDs, namespaces and ServiceAccounts once
        renders, previews, scanned, fresh, cold, served, judged = [], [], [], [], [], [], []
        for _ in range(RUNS):  # interleaved, so that the machine's load weighs on all alike
            renders.append(render_only(jobs, caps.upgrade()))
            previews.append(preview_once(out))
            served.append(preview_once(out, server=True))
            judged.append(preview_once(out, judge=True))
            shutil.rmtree(out / policy.CACHE_DIR, ignore_errors=True)
            fresh.append(preview_once(out, checkov=True))
            scanned.append(preview_once(out, checkov=True))  # same files: the scan is reused
            shutil.rmtree(out / policy.CACHE_DIR, ignore_errors=True)
            os.environ[policy.SERVER_ENV] = "off"
            try:
                cold.append(preview_once(out, checkov=True))
            finally:
                os.environ.pop(policy.SERVER_ENV)
    r, p = statistics.median(renders), statistics.median(previews)
    s, f, c = statistics.median(scanned), statistics.median(fresh), statistics.median(cold)
    print(f"prod stack: {len(jobs)} chart releases, Kubernetes {caps.kube_version}, median of {RUNS} runs")
    print(f"render only (helm template, side by side):          {r:.3f} s")
    print(f"offline preview, no policy scan:                     {p:.3f} s")
    print(f"offline preview + checkov (unchanged files, reused): {s:.3f} s")
    print(f"offline preview + checkov (fresh scan):              {f:.3f} s")
    print(f"offline preview + checkov (fresh scan, scanner off): {c:.3f} s")
    print(f"ratio preview / render:            {p / r:.2f}x (goal <= {PREVIEW_GOAL:.2f}x)")
    print(f"ratio preview + scan / render:     {s / r:.2f}x (goal <= {SCAN_GOAL:.2f}x)")
    print(f"ratio preview + fresh scan / render: {f / r:.2f}x (goal <= {SCAN_GOAL:.2f}x)")
    print(f"ratio preview + fresh scan, scanner off / render: {c / r:.2f}x (for reference: a first preview)")
    d, a = statistics.median(served), statistics.median(judged)
    print(f"offline preview + server-side dry run (running server): {d:.3f} s (+{d - p:.3f} s)")
    print(f"the local API server's first start (once, then reused):  {first_start:.3f} s")
    print(f"offline preview + Airflow's own checks:                 {a:.3f} s (+{a - p:.3f} s)")


if __name__ == "__main__":
    main()
