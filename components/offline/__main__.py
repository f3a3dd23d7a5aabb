"""`python -m components.offline [STACK]`: the offline preview of a stack."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.core.reader import ConfigError


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="./run.sh preview",
        description=(
            "Render every Kubernetes object a stack deploys with the Helm that deploys it (helm v3.20) and the "
            "target cluster's capabilities, validate them, scan them with checkov, and print the changes since "
            "the last preview of the stack like `pulumi preview`. No cluster, no credentials."
        ),
    )
    parser.add_argument("stack", nargs="?", default=None, help="stack name: reads Pulumi.<stack>.yaml (default: dev)")
    parser.add_argument("--stack", dest="stack_option", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="build/preview", help="output folder (default: build/preview)")
    parser.add_argument("--root", default=".", help="the Pulumi project folder (default: .)")
    parser.add_argument(
        "--kube-version",
        default=None,
        help="Kubernetes version of the target cluster (default: cluster.kubernetesVersion, else 1.31)",
    )
    parser.add_argument(
        "--api-versions",
        default="",
        help="more API versions the cluster serves, comma-separated (as cluster.apiVersions in the stack)",
    )
    upgrade = parser.add_mutually_exclusive_group()
    upgrade.add_argument(
        "--installed",
        dest="releases_exist",
        action="store_const",
        const=True,
        default=None,
        help="render every Release as an upgrade (default: the Releases of the previous preview are upgrades)",
    )
    upgrade.add_argument(
        "--fresh",
        dest="releases_exist",
        action="store_const",
        const=False,
        help="render every Release as a first install",
    )
    parser.add_argument("--diff", action="store_true", help="show the changed fields of every changed row")
    parser.add_argument("--no-checkov", action="store_true", help="skip the checkov scan")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.stack and args.stack_option and args.stack != args.stack_option:
        print(f"error: two stacks given: {args.stack} and --stack {args.stack_option}", file=sys.stderr)
        return 2
    stack = args.stack or args.stack_option or "dev"

    from components.offline.helm import HelmNotFoundError
    from components.offline.preview import preview, table

    root = Path(args.root)
    print(f"Offline preview of stack '{stack}' (project at {root.resolve().name}/)", flush=True)
    try:
        result = preview(
            root,
            stack,
            Path(args.out),
            kube_version=args.kube_version,
            run_checkov=not args.no_checkov,
            echo=lambda line: print(line, flush=True),
            releases_exist=args.releases_exist,
            api_versions={v.strip() for v in args.api_versions.split(",") if v.strip()},
        )
    except (ConfigError, FileNotFoundError, HelmNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print()
    print(table(result, show_diff=args.diff))
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
