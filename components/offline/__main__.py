"""`python -m components.offline --stack dev`: the offline preview of a stack."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._reader import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.offline",
        description="Render and validate every Kubernetes object a stack deploys, without a cluster.",
    )
    parser.add_argument("--stack", default="dev", help="stack name: reads Pulumi.<stack>.yaml (default: dev)")
    parser.add_argument("--out", default="build/preview", help="output folder (default: build/preview)")
    parser.add_argument("--root", default=".", help="the Pulumi project folder (default: .)")
    parser.add_argument(
        "--kube-version",
        default=None,
        help="Kubernetes version to validate against (default: cluster.kubernetesVersion or 1.31)",
    )
    parser.add_argument("--no-checkov", action="store_true", help="skip the checkov scan")
    args = parser.parse_args(argv)

    from .preview import preview, table

    root = Path(args.root)
    print(f"Offline preview of stack '{args.stack}' (project at {root.resolve().name}/)", flush=True)
    try:
        result = preview(
            root,
            args.stack,
            Path(args.out),
            kube_version=args.kube_version,
            run_checkov=not args.no_checkov,
            echo=lambda line: print(line, flush=True),
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print()
    print(table(result))
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
