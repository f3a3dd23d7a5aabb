"""`python -m e2e`: find (or build) the binaries, then run the scenarios with the real Pulumi
engine, each against its own local control plane on 127.0.0.1.

Scenarios (default: all of them, then every Pulumi.<stack>.yaml of the repository):
pulumi (the dev stack), platform, upgrade, comeback, identity, tenants, stop; `--stack NAME`
runs the stack scenario on Pulumi.NAME.yaml only. `manifests` needs no Pulumi engine.

Exit codes: 0 passed; 1 a step failed (or a tool is missing and AIRFLOW_K8S_E2E=required);
3 the cluster steps passed but the Pulumi steps could not run (scenario auto without a Pulumi
binary: the manifests scenario ran instead); 4 a tool is missing, nothing ran (skipped); 5 another
run holds this machine (e2e/runlock.py), nothing ran.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from . import runlock, tools
from .run import ALL, PULUMI_SCENARIOS, TRIAL_SCENARIOS, Options, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e", description=__doc__)
    parser.add_argument(
        "--cache",
        type=Path,
        default=tools.default_cache(),
        help="where built binaries are kept and reused (default: $AIRFLOW_K8S_E2E_CACHE or ~/.cache/airflow-k8s-e2e)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=(ALL, "auto", "manifests", *PULUMI_SCENARIOS, *TRIAL_SCENARIOS),
        help="a scenario to run (repeatable; default: all). manifests: the offline-rendered objects applied "
        "with server-side apply, no Pulumi engine; auto: pulumi when its binaries can be had, else manifests"
        + (f"; on trial, run only when named: {', '.join(TRIAL_SCENARIOS)}" if TRIAL_SCENARIOS else ""),
    )
    parser.add_argument(
        "--stack",
        action="append",
        default=[],
        metavar="NAME",
        help="run the stack scenario on Pulumi.NAME.yaml (repeatable): preview, up, up again, destroy",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=float(os.environ.get("AIRFLOW_K8S_E2E_DEADLINE", "0")),
        help="seconds; scenarios that would start after it are reported as not run (default: "
        "$AIRFLOW_K8S_E2E_DEADLINE, else none)",
    )
    parser.add_argument(
        "--chart-source",
        choices=("repository", "path"),
        default="repository",
        help="serve the charts as a local Helm repository over http on 127.0.0.1 (default), "
        "or hand the component the archive's path",
    )
    parser.add_argument(
        "--charts", type=Path, default=None, help="folder of chart archives (default: ../shared/charts)"
    )
    parser.add_argument(
        "--screenshots",
        type=Path,
        default=tools.default_cache() / "screenshots",
        metavar="DIR",
        help="where the node scenario keeps its screenshots of the Airflow UI (default: screenshots/ in the "
        "cache; docs/images refreshes the docs' pictures)",
    )
    parser.add_argument("--build-only", action="store_true", help="only find or build the binaries")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, state)")
    args = parser.parse_args(argv)
    opts = Options(
        cache=args.cache.expanduser(),
        scenarios=tuple(args.scenario or [ALL]),
        stacks=tuple(args.stack),
        deadline=args.deadline,
        chart_source=args.chart_source,
        keep=args.keep,
        build_only=args.build_only,
        screenshots=args.screenshots.expanduser().resolve(),
    )
    if args.charts is not None:
        opts.charts = args.charts.resolve()
    # A terminated run still stops its processes and removes its files (run's `finally`).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        with runlock.machine_run():
            return run(opts, echo=lambda line: print(line, flush=True))
    except runlock.BusyError as exc:
        print(f"e2e: {exc}", flush=True)
        return runlock.BUSY


if __name__ == "__main__":
    sys.exit(main())
