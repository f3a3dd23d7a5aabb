"""Build times and sizes of the real node's images (e2e/node/images.py): cold, then cached.

Cold is a new, empty image cache and new, empty Go module and build caches (so Debian's
base, every package, wheel and Go module is fetched and built); cached is the same build
again. Needs root, like every image build. Prints one line per image and the totals:

    .venv/bin/python benchmarks/node_images.py                  # the dev stack's images + pause + CoreDNS
    .venv/bin/python benchmarks/node_images.py --stack prod     # the prod stack's (those that can be built)
    .venv/bin/python benchmarks/node_images.py busybox:1.37.0   # or the references named
    .venv/bin/python benchmarks/node_images.py --keep DIR       # keep the cold cache in DIR
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from e2e.node import images  # noqa: E402

NODE = ["registry.k8s.io/pause:3.6", "registry.k8s.io/coredns/coredns:v1.14.7"]


def _writable(function: Callable[[str], object], path: str, _: object) -> None:
    """Retry a removal after making the folder writable (the Go module cache is read-only)."""
    parent = os.path.dirname(path)
    os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR)
    function(path)


def measure(refs: list[str], cache: Path) -> dict[str, dict[str, float]]:
    """Seconds and bytes per reference, cold then cached."""
    os.environ["GOMODCACHE"] = str(cache / "gomodcache")
    os.environ["GOCACHE"] = str(cache / "gocache")
    started = time.monotonic()
    archives = images.build(refs, cache)
    cold_total = time.monotonic() - started
    result: dict[str, dict[str, float]] = {}
    for ref, archive in archives.items():
        meta = json.loads(archive.with_suffix(".json").read_text())
        result[ref] = {"cold": meta["seconds"], "bytes": meta["bytes"]}
    for ref in refs:
        started = time.monotonic()
        images.build([ref], cache, echo=lambda _: None)
        result[ref]["cached"] = time.monotonic() - started
    result["(all)"] = {
        "cold": cold_total,
        "cached": sum(r["cached"] for r in result.values()),
        "bytes": sum(r["bytes"] for r in result.values()),
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("refs", nargs="*")
    parser.add_argument("--keep", type=Path, help="build the cold cache here and keep it")
    parser.add_argument("--stack", default="dev", help="without references: this stack's images (default dev)")
    args = parser.parse_args()
    refs = args.refs or NODE + sorted(
        ref
        for ref in images.stack_images(args.stack) | images.dag_images()
        if not images.unbuildable([ref])  # some of monitoring's and prod's: see docs/images.md
    )
    cache = args.keep or Path(tempfile.mkdtemp(prefix="node-images-bench-"))
    try:
        result = measure(refs, cache)
    finally:
        if args.keep is None:
            shutil.rmtree(cache, onerror=_writable)
    print(f"{'image':60} {'cold s':>8} {'cached s':>9} {'size MB':>8}")
    for ref, row in result.items():
        print(f"{ref:60} {row['cold']:8.1f} {row['cached']:9.2f} {row['bytes'] / 1e6:8.1f}")
    total = result["(all)"]
    print(f"ratio cached/cold: {total['cached'] / total['cold']:.4f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
