"""The architecture diagram in docs/architecture.md, generated from the code, so it cannot go stale.

It runs the stack program (`__main__.py`) for each shipped stack under the offline preview's
recording mocks (components/offline/program.py, no cluster and no charts needed) and draws what
was declared: every ComponentResource as a box inside its parent, the resources each one owns
directly by kind with their count (a range when the stacks differ, the stack named when only one
has it), each Helm Release with its chart and version, and an arrow where a component's
resources depend on another component's. The path from the stack file to the components is
drawn from the functions that take it (`config.load`, `AirflowPlatform.from_config`).

`python -m components.offline.diagram` (`./run.sh diagram`) writes the Mermaid diagram into
docs/architecture.md between the markers; `--check` fails when it is not what the code declares
now (tests/test_diagram.py runs it).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pulumi

from ..platform import config as stack_config
from ..platform.component import AirflowPlatform
from .generated import command_line
from .program import Registered, run_program

ROOT = Path(__file__).resolve().parents[2]
DOC = Path("docs") / "architecture.md"
STACKS = ("dev", "prod")
START = "<!-- architecture diagram: written by ./run.sh diagram from the shipped stacks; do not edit -->"
END = "<!-- end of the architecture diagram -->"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


@dataclass
class Box:
    """One ComponentResource, as declared by one or more stacks."""

    key: str  # its type and name under its parents', the same in every stack
    type: str
    name: str
    parent: str  # the parent box's key, or "" at the top
    stacks: list[str] = field(default_factory=list)
    kinds: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> stack -> count
    charts: set[str] = field(default_factory=set)


@dataclass
class House:
    """What the stacks declare, box by box, and which box's resources depend on which other's."""

    stacks: list[str]
    boxes: dict[str, Box]
    uses: dict[tuple[str, str], set[str]]  # (dependent box, box depended on) -> kinds depended on


def kind(type_token: str) -> str:
    """`kubernetes:core/v1:Secret` -> Secret, `random:index/randomPassword:RandomPassword` -> RandomPassword."""
    return type_token.rsplit(":", 1)[-1]


def _keys(resources: list[Registered]) -> dict[str, str]:
    """Each resource's key: its type and name under its parents' (a URN without the stack)."""
    by_urn = {r.urn: r for r in resources}
    keys: dict[str, str] = {}

    def key_of(urn: str) -> str:
        if urn not in keys:
            res = by_urn[urn]
            above = key_of(res.parent) + "/" if res.parent in by_urn else ""
            keys[urn] = f"{above}{kind(res.type)}:{res.name}"
        return keys[urn]

    for res in resources:
        key_of(res.urn)
    return keys


def house(root: Path = ROOT, stacks: Iterable[str] = STACKS) -> House:
    boxes: dict[str, Box] = {}
    uses: dict[tuple[str, str], set[str]] = {}
    names = list(stacks)
    for stack in names:
        resources = run_program(root, stack).resources
        by_urn = {r.urn: r for r in resources}
        keys = _keys(resources)

        for res in resources:
            if res.custom:
                continue
            parent = keys[res.parent] if res.parent in by_urn else ""
            box = boxes.setdefault(keys[res.urn], Box(keys[res.urn], res.type, res.name, parent))
            box.stacks.append(stack)
        for res in resources:
            if not res.custom:
                continue
            box = boxes[_box_of(res, by_urn, keys)]
            counts = box.kinds.setdefault(kind(res.type), {})
            counts[stack] = counts.get(stack, 0) + 1
            if res.type == HELM_RELEASE:  # the chart's name and version, as the Release asks for them
                box.charts.add(f"{res.inputs.get('chart')} {res.inputs.get('version')}")
            for dep in res.dependencies:
                if dep not in by_urn:
                    continue
                used = _box_of(by_urn[dep], by_urn, keys)
                if used != box.key and not _encloses(boxes, used, box.key):
                    uses.setdefault((box.key, used), set()).add(kind(by_urn[dep].type))
    return House(names, boxes, uses)


def _box_of(res: Registered, by_urn: dict[str, Registered], keys: dict[str, str]) -> str:
    """The key of the component that declares `res` (itself, for a component)."""
    while res.custom:
        res = by_urn[res.parent]
    return keys[res.urn]


def _encloses(boxes: dict[str, Box], outer: str, inner: str) -> bool:
    while inner:
        inner = boxes[inner].parent
        if inner == outer:
            return True
    return False


def _count(counts: dict[str, int], stacks: list[str]) -> str:
    """`2`, `9-14` when the stacks differ, `1 (dev)` when only some of `stacks` (those that
    declare the box) have it."""
    values = sorted(set(counts.values()))
    text = f"{values[0]}" if len(values) == 1 else f"{values[0]}-{values[-1]}"
    if len(counts) < len(stacks):
        text += f" ({', '.join(s for s in stacks if s in counts)})"
    return text


def _only(box: Box, stacks: list[str]) -> str:
    return f" ({', '.join(box.stacks)} only)" if len(box.stacks) < len(stacks) else ""


def _ids(keys: Iterable[str]) -> dict[str, str]:
    """A short Mermaid id per box (its kind and name), numbered where two would clash."""
    ids: dict[str, str] = {}
    for key in sorted(keys):
        short = re.sub(r"[^A-Za-z0-9]", "_", key.rsplit("/", 1)[-1])
        ids[key] = short if short not in ids.values() else f"{short}_{len(ids)}"
    return ids


def mermaid(h: House) -> str:
    """The diagram, as the text of a Mermaid flowchart."""
    load = f"{stack_config.load.__module__}.{stack_config.load.__qualname__}()"
    build = f"{AirflowPlatform.__name__}.{AirflowPlatform.from_config.__name__}()"
    lines = [
        "flowchart TB",
        '  stackfile["Pulumi.#lt;stack#gt;.yaml"]',
        f'  load["{load}<br/>every key read and checked, once, before any resource"]',
        "  stackfile --> load",
    ]
    children: dict[str, list[Box]] = {}
    for box in h.boxes.values():
        children.setdefault(box.parent, []).append(box)
    tops = children.get("", [])
    ids = _ids(h.boxes)

    def contents(box: Box) -> str:
        rows = [f"helm Release: {chart}" for chart in sorted(box.charts)]
        for name in sorted(box.kinds):
            if name == "Release" and box.charts:
                continue
            rows.append(f"{name}: {_count(box.kinds[name], box.stacks)}")
        return "<br/>".join(rows)

    def draw(box: Box, indent: str) -> None:
        title = f"{kind(box.type)} '{box.name}'{_only(box, h.stacks)}"
        inner = children.get(box.key, [])
        if not inner:
            lines.append(f'{indent}{ids[box.key]}["<b>{title}</b><br/>{contents(box)}"]')
            return
        lines.append(f'{indent}subgraph {ids[box.key]}["{title}"]')
        if box.kinds:
            lines.append(f'{indent}  {ids[box.key]}_own["{contents(box)}"]')
        for child in sorted(inner, key=lambda b: b.key):
            draw(child, indent + "  ")
        lines.append(f"{indent}end")

    for box in sorted(tops, key=lambda b: b.key):
        draw(box, "  ")
        lines.append(f'  load -->|"{build}"| {ids[box.key]}')

    def resources_of(key: str) -> str:  # where a box's own resources are drawn
        return f"{ids[key]}_own" if children.get(key) and h.boxes[key].kinds else ids[key]

    for (user, used), kinds in sorted(h.uses.items()):
        lines.append(f'  {resources_of(user)} -->|"{", ".join(sorted(kinds))}"| {resources_of(used)}')
    return "\n".join(lines) + "\n"


def not_drawn(h: House) -> list[str]:
    """The package's components (its `__all__`) that no shipped stack declares."""
    from .. import __all__ as public, __name__ as package

    drawn = {kind(box.type) for box in h.boxes.values()}
    exported = (getattr(sys.modules[package], name) for name in public)
    return sorted(
        c.__name__
        for c in exported
        if isinstance(c, type) and issubclass(c, pulumi.ComponentResource) and c.__name__ not in drawn
    )


def section(h: House) -> str:
    """What goes between the markers: the diagram and the lines that say what it shows."""
    missing = not_drawn(h)
    others = f" The package's other components, which they do not declare: {', '.join(missing)}." if missing else ""
    return (
        f"{START}\n\n"
        f"What the shipped stacks ({', '.join(h.stacks)}) declare, drawn from a run of the program under the offline "
        "preview's mocks: each component with the resources it owns directly (a count range when the stacks "
        "differ), and an arrow from a component to one whose resources its own depend on, labelled with what "
        f"they depend on.{others}\n\n"
        f"```mermaid\n{mermaid(h)}```\n\n"
        f"{END}"
    )


def updated(text: str, new_section: str) -> str:
    """`text` with the part between the markers (the markers included) replaced by `new_section`."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{DOC} has no diagram markers: put {START!r} and {END!r} where the diagram goes")
    return text[:start] + new_section + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    def make(root: Path) -> tuple[Path, str]:
        target = root / DOC
        return target, updated(target.read_text(), section(house(root)))

    return command_line(
        argv,
        prog="python -m components.offline.diagram",
        what=f"the diagram in {DOC}",
        command="./run.sh diagram",
        root=ROOT,
        make=make,
    )


if __name__ == "__main__":
    sys.exit(main())
