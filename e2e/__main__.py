"""`python -m e2e`: build or find the binaries, start a local control plane, run the stack.

Exit codes: 0 passed; 1 a step failed; 3 the cluster steps passed but the Pulumi steps
could not run (a Pulumi binary is missing; the manifests scenario ran instead).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from . import tools
from .run import Options, run


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
        choices=("auto", "pulumi", "manifests"),
        default="auto",
        help="pulumi: the real Pulumi CLI and providers; manifests: the offline-rendered objects "
        "applied with server-side apply; auto: pulumi when its binaries can be had (default)",
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
    parser.add_argument("--build-only", action="store_true", help="only find or build the binaries")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, state)")
    args = parser.parse_args(argv)
    opts = Options(
        cache=args.cache.expanduser(),
        scenario=args.scenario,
        chart_source=args.chart_source,
        keep=args.keep,
        build_only=args.build_only,
    )
    if args.charts is not None:
        opts.charts = args.charts.resolve()
    # A terminated run still stops its processes and removes its files (run's `finally`).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return run(opts, echo=lambda line: print(line, flush=True))


if __name__ == "__main__":
    sys.exit(main())
