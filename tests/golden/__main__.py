"""`python -m tests.golden [--update] [--allow-removal] [--stack dev|prod]`: check the dev and
prod programs against tests/golden/<stack>.json, or regenerate those files."""

from __future__ import annotations

import argparse
import sys

from tests.golden import STACKS, compare, golden_path, load, run_stack_program, updated, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden", description=__doc__)
    parser.add_argument("--update", action="store_true", help="rewrite tests/golden/<stack>.json from the program")
    parser.add_argument(
        "--allow-removal", action="store_true", help="with --update: accept resources that vanish with no alias"
    )
    parser.add_argument("--stack", action="append", choices=STACKS, help="only this stack (repeatable)")
    args = parser.parse_args(argv)
    status = 0
    for stack in args.stack or STACKS:
        run = run_stack_program(stack)
        golden = load(stack) if golden_path(stack).exists() else None
        if args.update:
            try:
                data = updated(golden, run, stack, allow_removal=args.allow_removal)
            except ValueError as exc:
                print(exc, file=sys.stderr)
                status = 1
                continue
            write(stack, data)
            print(f"{golden_path(stack)}: {len(data['resources'])} resources, {len(data['random'])} random")
        elif golden is None:
            print(f"no {golden_path(stack)}; run with --update", file=sys.stderr)
            status = 1
        else:
            diff = compare(golden, run, stack)
            print(diff.report() if not diff.empty else f"{stack}: matches {golden_path(stack).name}")
            status = status or (0 if diff.empty else 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
