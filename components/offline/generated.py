"""Files generated from the code and shipped in the repository (the stack schema, the architecture
diagram): written by a command, or checked against what the code makes now."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def write_or_check(target: Path, text: str, *, what: str, command: str, check: bool) -> int:
    """Write `text` to `target`, or with `check` say whether `target` already holds it: exit code 0
    when it does (or was written), 1 when it is stale. `what` names the file in the messages, and
    `command` is what regenerates it."""
    if check:
        if not target.is_file() or target.read_text() != text:
            print(f"{what} is stale: run `{command}`", file=sys.stderr)
            return 1
        print(f"{what} is up to date")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {what}")
    return 0


def command_line(
    argv: list[str] | None,
    *,
    prog: str,
    what: str,
    command: str,
    root: Path,
    make: Callable[[Path], tuple[Path, str]],
    also: Callable[[Path], tuple[Path, str]] | None = None,
) -> int:
    """`prog [--check] [--root DIR]`: `make(root)` gives the file and its text, written or checked;
    `also(root)` a second file the same command writes."""
    parser = argparse.ArgumentParser(prog=prog, description=f"Write {what} from the code ({command}).")
    parser.add_argument("--check", action="store_true", help=f"fail (exit 1) when {what} is stale")
    parser.add_argument("--root", type=Path, default=root, help="the project (default: this checkout)")
    args = parser.parse_args(argv)
    results = []
    for made in (make, also):
        if made is not None:
            target, text = made(args.root)
            shown = what if made is make else str(target.relative_to(args.root))
            results.append(write_or_check(target, text, what=shown, command=command, check=args.check))
    return max(results)
