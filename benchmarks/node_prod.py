"""The prod shape's numbers on the real node (issue 25, "Numbers"): the e2e scenario `node-prod`
(Celery, Redis, PgBouncer, an external TLS-only PostgreSQL; docs/e2e.md) with its parts
`timings` and `rollout` (e2e/node/prod_timings.py, prod_rollout.py), its output read for:

- `pulumi up` of the prod-shaped stack, and every pod Ready;
- trigger to success of `example_one_task` on the Celery worker that is up (median of several);
- trigger to success from zero workers, scaled to 1 at the trigger as KEDA would, and to the
  worker's Ready;
- the failed requests to `/api/v2/monitor/health` during an image rollout (the goal: 0).

Prometheus's scrape of our metrics (its series, the StatsD mapping's cost) is not measured here:
Prometheus is not built on this machine's budget (docs/images.md).

    ./run.sh bench-node-prod               # about 15 minutes; root, one node per machine
    ./run.sh bench-node-prod --runs 10     # runs on the worker that is up (default 5)

One sample of a shared machine: numbers vary by tens of percent.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = "timings,rollout"
STEP = re.compile(r"^\[node-prod[^\]]*\] (?P<title>.+?)\s+(?:check|setup)\s+(?P<result>ok|FAILED)\s+(?P<s>[0-9.]+)$")
TIMING = re.compile(r"^\s*timing (?P<name>[\w-]+): (?P<rest>.+)$")
ROLLOUT = re.compile(r"^\s*/api/v2/monitor/health during the rollout: (?P<rest>.+)$")
UP_TITLE = "pulumi up of the prod-shaped stack"


def numbers(output: str) -> list[str]:
    """The benchmark's lines, from the scenario's output (its steps' table and the parts' lines)."""
    out: list[str] = []
    for line in output.splitlines():
        step = STEP.match(line)
        if step and step["title"].startswith(UP_TITLE):
            out.append(f"node-prod `pulumi up` and every workload Available: {step['s']} s ({step['result']})")
        elif timing := TIMING.match(line):
            what = {"warm-worker": "trigger to success, worker up", "cold-worker": "from zero workers"}
            out.append(f"{what.get(timing['name'], timing['name'])}: {timing['rest']}")
        elif rollout := ROLLOUT.match(line):
            out.append(f"image rollout, GET /api/v2/monitor/health every 0.2 s: {rollout['rest']}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs on the worker that is up (default 5)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench-node-prod: needs root, like the node scenarios")
        return 1
    env = {**os.environ, "AIRFLOW_K8S_PROD_PARTS": PARTS, "AIRFLOW_K8S_TIMING_RUNS": str(args.runs)}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "e2e", "--scenario", "node-prod"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.monotonic() - started
    found = numbers(proc.stdout)
    print(f"bench-node-prod: e2e --scenario node-prod with parts {PARTS}: exit {proc.returncode} in {took:.0f} s")
    for line in found:
        print(f"  {line}")
    if proc.returncode != 0 or len(found) < 4:
        print(proc.stdout[-4000:] + proc.stderr[-2000:])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
