"""End-to-end timings with the real Pulumi engine (README, "End-to-end run", Measured).

Runs the `pulumi` (dev), `platform` and `upgrade` scenarios once (`python -m e2e`) and prints:
`pulumi up` of dev and of the whole platform until every workload is Available, an `up` with
no changes, and each upgrade step; then the whole e2e run from the tools cache and, with
`--fresh`, from a fresh machine (the toolchains unpacked from ../shared/tools into an empty
folder first). Each run is one sample: the machine is shared, so the numbers vary by tens of
percent; run it twice before comparing.

    ./run.sh bench-e2e            # the scenario steps, and the unpacking on its own
    ./run.sh bench-e2e --whole    # also the whole e2e run from the cache, and from fresh
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEP = re.compile(r"^<== (?P<name>.+): (?P<result>ok|FAILED after) \(?(?P<seconds>[0-9.]+)s\)?$")

# (label, scenario step name prefix): what the README's table reports.
WANTED = (
    ("dev: pulumi up until every workload is Available", "[dev] pulumi up: "),
    ("dev: pulumi up with no changes", "[dev] pulumi up again: no changes"),
    ("whole platform: pulumi up (first)", "[platform] pulumi up (first)"),
    ("whole platform: until every workload is Available", "[platform] check: workloads Available"),
    ("whole platform: pulumi up with no changes", "[platform] pulumi up again: no changes"),
    ("upgrade 3.2.0 -> 3.2.1", "[upgrade] upgrade to apache/airflow:3.2.1:"),
    ("second image change (3.2.1-python3.12)", "[upgrade] upgrade to apache/airflow:3.2.1-python3.12"),
    ("executor KubernetesExecutor -> CeleryExecutor", "[upgrade] executor"),
)


def e2e(args: list[str], env: dict[str, str]) -> tuple[float, dict[str, tuple[str, float]], int]:
    """Run `python -m e2e ARGS`; (wall seconds, step -> (result, seconds), exit code)."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "e2e", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    took = time.monotonic() - start
    steps = {}
    for line in proc.stdout.splitlines():
        m = STEP.match(line.strip())
        if m:
            steps[m["name"]] = (m["result"].split()[0], float(m["seconds"]))
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        print(f"`python -m e2e {' '.join(args)}` exited {proc.returncode}:\n{tail}", file=sys.stderr)
    return took, steps, proc.returncode


def unpack_seconds(into: Path) -> float:
    start = time.monotonic()
    subprocess.run(
        ["bash", str(ROOT.parent / "shared" / "tools" / "install.sh"), str(into)],
        check=True,
        capture_output=True,
    )
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--whole", action="store_true", help="also time whole e2e runs (about 15 minutes each)")
    args = parser.parse_args()
    env = dict(os.environ)
    rows: list[tuple[str, str]] = []

    took, steps, code = e2e(["--scenario", "pulumi", "--scenario", "platform", "--scenario", "upgrade"], env)
    for label, prefix in WANTED:
        found = [(r, s) for name, (r, s) in steps.items() if name.startswith(prefix)]
        rows.append((label, f"{found[0][1]:.1f} s" if found and found[0][0] == "ok" else "FAILED or not run"))
    rows.append(("the three scenarios, wall clock", f"{took:.0f} s (exit {code})"))

    with tempfile.TemporaryDirectory(prefix="airflow-k8s-tools-") as fresh:
        rows.append(("unpacking ../shared/tools into an empty folder", f"{unpack_seconds(Path(fresh)):.1f} s"))
        if args.whole:
            took, _, code = e2e([], env)
            rows.append(("whole e2e run, tools from the cache", f"{took:.0f} s (exit {code})"))
            path = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if "airflow-k8s-tools" not in p)
            took, _, code = e2e([], {**env, "PATH": path, "AIRFLOW_K8S_TOOLS_CACHE": str(Path(fresh) / "second")})
            rows.append(("whole e2e run from fresh (tools unpacked first)", f"{took:.0f} s (exit {code})"))

    width = max(len(label) for label, _ in rows)
    print(f"{'measure':<{width}}  time")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
