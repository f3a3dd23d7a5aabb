"""`python -m components.offline [STACK]`: the offline preview of a stack."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import NoReturn

from ..core.cluster_target import API_VERSION, KUBERNETES_VERSIONS
from ..core.reader import ConfigError


class _Parser(argparse.ArgumentParser):
    """Bad input is one line on stderr and exit 2 (argparse would print its usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} ({self.prog} --help lists the options)\n")


def kube_version(value: str) -> str:
    """--kube-version: a supported Kubernetes release, `1.31`, `1.31.4` or `v1.34.4`."""
    supported = f"{KUBERNETES_VERSIONS[0]} to {KUBERNETES_VERSIONS[-1]}"
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", value.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a Kubernetes version: expected major.minor from {supported}, e.g. 1.31 or v1.34.4"
        )
    if f"{int(match[1])}.{int(match[2])}" not in KUBERNETES_VERSIONS:
        raise argparse.ArgumentTypeError(
            f"Kubernetes {value} is not supported: expected {supported} (the releases cluster.kubernetesVersion takes)"
        )
    return value.strip()


def api_versions(value: str) -> set[str]:
    """--api-versions: comma-separated `group/version` or `group/version/Kind`."""
    found = {v.strip() for v in value.split(",") if v.strip()}
    for item in sorted(found):
        if not API_VERSION.match(item):
            raise argparse.ArgumentTypeError(
                f"{item!r} is not an API version: expected 'group/version' or 'group/version/Kind', "
                "comma-separated, e.g. cert-manager.io/v1,monitoring.coreos.com/v1/ServiceMonitor"
            )
    return found


def state_file(value: str) -> Path:
    """--baseline-state: a file there is (what it holds is read with the preview)."""
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(
            f"{value}: no such file (write one with `pulumi stack export --stack <stack> --file {value}`)"
        )
    return path


def parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
        type=kube_version,
        metavar="VERSION",
        help=f"Kubernetes version of the target cluster, {KUBERNETES_VERSIONS[0]} to {KUBERNETES_VERSIONS[-1]} "
        "(default: cluster.kubernetesVersion, else 1.31)",
    )
    parser.add_argument(
        "--api-versions",
        default=set(),
        type=api_versions,
        metavar="LIST",
        help="more API versions the cluster serves, comma-separated group/version[/Kind] "
        "(as cluster.apiVersions in the stack)",
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
    parser.add_argument(
        "--diff",
        action="store_true",
        help="show the changed fields of every changed row (multi-line strings line by line, nothing cut)",
    )
    parser.add_argument(
        "--show-sames",
        action="store_true",
        help="list unchanged rows too (default: only changed rows, the rows above them, and a count)",
    )
    parser.add_argument(
        "--json",
        dest="json_file",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the changes as JSON to FILE, for CI (baseline, counts, changed rows and fields, problems)",
    )
    parser.add_argument(
        "--baseline-state",
        type=state_file,
        default=None,
        metavar="FILE",
        help="compare with what is deployed: a `pulumi stack export` of the stack, its Helm Releases rendered "
        "from their deployed values (default: the stack's state in the Pulumi backend you are logged into, "
        "else the last successful preview)",
    )
    parser.add_argument(
        "--no-backend",
        action="store_true",
        help="do not ask the Pulumi backend you are logged into for the stack's deployed state",
    )
    parser.add_argument("--no-checkov", action="store_true", help="skip the checkov scan")
    dry = parser.add_mutually_exclusive_group()
    dry.add_argument(
        "--cluster",
        nargs="?",
        const="",
        default=None,
        metavar="CONTEXT",
        help="send the server-side dry run to your own cluster: a kubeconfig context (default: the current one) "
        "instead of the local API server",
    )
    dry.add_argument("--no-dry-run", action="store_true", help="skip the server-side dry run")
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        metavar="FILE",
        help="the kubeconfig of --cluster (default: $KUBECONFIG)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if args.stack and args.stack_option and args.stack != args.stack_option:
        cli.error(f"two stacks given: {args.stack} and --stack {args.stack_option}")
    stack = args.stack or args.stack_option or "dev"

    from .deployed_state import DeployedStateError
    from .dry_run import Target
    from .helm import HelmNotFoundError
    from .preview import ci_summary, preview, table

    root = Path(args.root)
    print(f"Offline preview of stack '{stack}' (project at {root.resolve().name}/)", flush=True)
    baseline_state = args.baseline_state
    if baseline_state is None and not args.no_backend:
        from .backend_state import export_from_backend

        baseline_state = export_from_backend(root, stack, Path(args.out) / stack, lambda line: print(line, flush=True))
    try:
        result = preview(
            root,
            stack,
            Path(args.out),
            kube_version=args.kube_version,
            run_checkov=not args.no_checkov,
            echo=lambda line: print(line, flush=True),
            releases_exist=args.releases_exist,
            api_versions=args.api_versions,
            baseline_state=baseline_state,
            dry_run=(
                Target("off")
                if args.no_dry_run
                else Target("cluster", args.cluster or None, args.kubeconfig)
                if args.cluster is not None
                else None
            ),
        )
    except (ConfigError, FileNotFoundError, HelmNotFoundError, DeployedStateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print()
    print(table(result, show_diff=args.diff, show_same=args.show_sames))
    if args.json_file is not None:
        args.json_file.parent.mkdir(parents=True, exist_ok=True)
        args.json_file.write_text(json.dumps(ci_summary(result), indent=2, default=str) + "\n")
        print(f"Changes written to {args.json_file}")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
