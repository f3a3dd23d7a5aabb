"""The committed resource inventory of the dev and prod stacks, and how a change is checked
against it (tests/test_stability.py).

A Pulumi resource is identified by its URN: stack, project, the types of its ancestors, its
type and its name. Renaming a resource, or moving it under another parent, changes its URN,
and Pulumi then *replaces* it: for a `random` resource that is a new key or password (every
encrypted connection unreadable, every session signed with the old key invalid); for a
Kubernetes object with a fixed name, a create followed by a delete of the same object.
Unless the new resource carries an alias naming its old URN.

`tests/golden/<stack>.json` holds, per stack: every resource's URN (engine URNs: the root
stack's type is not part of them, every other ancestor's is), the inputs of every `random`
resource, and `retired`: old URNs that a rename left behind, each with the resource whose
alias still covers it.

Regenerate after a deliberate change (refused while any vanished URN lacks an alias):

    python -m tests.golden --update                  # dev and prod
    python -m tests.golden --update --allow-removal  # also accept resources that are really gone
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.offline.program import ProgramRun, Registered, run_program, unwrap

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
STACKS = ("dev", "prod")
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"
UPDATE_COMMAND = "python -m tests.golden --update"


# ---------------------------------------------------------------------------
# URNs as the engine computes them


def make_urn(stack: str, project: str, parent_qualified_type: str | None, type_: str, name: str) -> str:
    qualified = f"{parent_qualified_type}${type_}" if parent_qualified_type else type_
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


def urn_parts(urn: str) -> tuple[str, str, str, str]:
    """(stack, project, qualified type, name) of a URN."""
    body = urn[len("urn:pulumi:") :]
    stack, project, qualified, name = body.split("::", 3)
    return stack, project, qualified, name


def qualified_type(urn: str) -> str:
    return urn_parts(urn)[2]


def _is_root(urn: str) -> bool:
    return not urn or qualified_type(urn) == ROOT_STACK_TYPE


class Urns:
    """Engine URNs and alias URNs of one program run (the mocks' URNs keep only the immediate
    parent's type and include the root stack's, so they are recomputed here)."""

    def __init__(self, run: ProgramRun) -> None:
        self.run = run
        self.by_mock = {r.urn: r for r in run.resources}
        self._real: dict[str, str] = {}
        self._aliases: dict[str, list[str]] = {}

    def real(self, mock_urn: str) -> str:
        if mock_urn in self._real:
            return self._real[mock_urn]
        res = self.by_mock.get(mock_urn)
        if res is None:  # a URN we never saw registered (the root stack, or an alias target)
            return mock_urn
        self._real[mock_urn] = make_urn(
            self.run.stack, self.run.project, self._parent_type(res.parent), res.type, res.name
        )
        return self._real[mock_urn]

    def _parent_type(self, parent_mock_urn: str) -> str | None:
        """The qualified type a child's URN starts with: none under the root stack."""
        if parent_mock_urn not in self.by_mock and _is_root(parent_mock_urn):
            return None
        return qualified_type(self.real(parent_mock_urn))

    def _collapse(self, res: Registered, spec: dict[str, Any]) -> str:
        """An alias spec as a URN (the engine's collapseAliasToUrn): unset fields are the resource's."""
        if "urn" in spec:
            return str(spec["urn"])
        parent_type = None if spec["noParent"] else self._parent_type(spec["parentUrn"] or res.parent)
        return make_urn(
            spec["stack"] or self.run.stack,
            spec["project"] or self.run.project,
            parent_type,
            spec["type"] or res.type,
            spec["name"] or res.name,
        )

    def aliases(self, mock_urn: str) -> list[str]:
        """Every URN the engine treats as this resource's old identity (its own aliases, and
        those inherited from its parent's aliases, as the engine's generateAliases does)."""
        if mock_urn in self._aliases:
            return self._aliases[mock_urn]
        res = self.by_mock[mock_urn]
        own = [self._collapse(res, spec) for spec in res.alias_specs]
        out = list(dict.fromkeys(own))
        if res.parent in self.by_mock:
            parent_name = self.by_mock[res.parent].name
            for parent_alias in self.aliases(res.parent):
                for type_, name in [
                    (res.type, res.name),
                    *[(urn_parts(a)[2].split("$")[-1], urn_parts(a)[3]) for a in own],
                ]:
                    alias_name = (
                        parent_alias.split("::")[-1] + name[len(parent_name) :]
                        if name.startswith(parent_name)
                        else name
                    )
                    stack, project, parent_qualified, _ = urn_parts(parent_alias)
                    urn = make_urn(stack, project, parent_qualified, type_, alias_name)
                    if urn not in out:
                        out.append(urn)
        self._aliases[mock_urn] = out
        return out


# ---------------------------------------------------------------------------
# Inventories


def _plain(value: Any) -> Any:
    """Inputs as JSON would keep them: integral floats (the RPC layer's numbers) as ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def inventory(run: ProgramRun) -> dict[str, Any]:
    """URNs and random inputs of a program run."""
    urns = Urns(run)
    resources = sorted(urns.real(r.urn) for r in run.resources)
    random_inputs = {urns.real(r.urn): _plain(unwrap(r.inputs)) for r in run.resources if r.type.startswith("random:")}
    return {"resources": resources, "random": dict(sorted(random_inputs.items()))}


def alias_index(run: ProgramRun) -> dict[str, str]:
    """Old URN -> the current resource whose aliases cover it."""
    urns = Urns(run)
    out: dict[str, str] = {}
    for res in run.resources:
        for alias in urns.aliases(res.urn):
            out.setdefault(alias, urns.real(res.urn))
    return out


def run_stack_program(stack: str) -> ProgramRun:
    return run_program(ROOT, stack)


def golden_path(stack: str) -> Path:
    return GOLDEN / f"{stack}.json"


def load(stack: str) -> dict[str, Any]:
    return dict(json.loads(golden_path(stack).read_text()))


@dataclass
class Difference:
    """How a run differs from its golden inventory."""

    stack: str
    vanished: list[str] = field(default_factory=list)  # in the golden, gone now, no alias covers it
    covered: dict[str, str] = field(default_factory=dict)  # in the golden, gone now, covered: old -> new
    appeared: list[str] = field(default_factory=list)  # new URNs (not in the golden)
    random_changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # URN -> (golden, now)
    retired_uncovered: list[str] = field(default_factory=list)  # retired URNs no alias covers any more

    @property
    def empty(self) -> bool:
        return not (self.vanished or self.covered or self.appeared or self.random_changed or self.retired_uncovered)

    def report(self) -> str:
        lines = [f"stack {self.stack!r} no longer matches tests/golden/{self.stack}.json:"]
        if self.vanished:
            lines.append(
                "  VANISHED (Pulumi would delete these, or replace them under a new URN; add an alias "
                "(pulumi.Alias(name=..., parent=...)) to the resource that took their place):"
            )
            lines += [f"    - {u}" for u in self.vanished]
        if self.covered:
            lines.append("  renamed with an alias (fine; record it in the inventory):")
            lines += [f"    - {old}\n      -> {new}" for old, new in self.covered.items()]
        if self.appeared:
            lines.append("  APPEARED (new URNs):")
            lines += [f"    + {u}" for u in self.appeared]
        for urn, (before, now) in self.random_changed.items():
            lines.append(f"  RANDOM INPUTS CHANGED (Pulumi would re-generate this value): {urn}: {before} -> {now}")
        if self.retired_uncovered:
            lines.append("  ALIAS REMOVED for renamed resources (stacks not yet updated would replace them):")
            lines += [f"    - {u}" for u in self.retired_uncovered]
        lines.append(
            f"If the change is deliberate and every vanished URN is covered by an alias: {UPDATE_COMMAND} "
            "(add --allow-removal for resources that are really gone), and commit tests/golden/."
        )
        return "\n".join(lines)


def compare(golden: dict[str, Any], run: ProgramRun, stack: str) -> Difference:
    now = inventory(run)
    covering = alias_index(run)
    current = set(now["resources"])
    before = set(golden["resources"])
    diff = Difference(stack)
    for urn in sorted(before - current):
        if urn in covering:
            diff.covered[urn] = covering[urn]
        else:
            diff.vanished.append(urn)
    diff.appeared = sorted(current - before)
    for urn, inputs in golden["random"].items():
        if urn in now["random"] and now["random"][urn] != inputs:
            diff.random_changed[urn] = (inputs, now["random"][urn])
    diff.retired_uncovered = sorted(u for u in golden.get("retired", {}) if u not in covering)
    return diff


def updated(golden: dict[str, Any] | None, run: ProgramRun, stack: str, *, allow_removal: bool) -> dict[str, Any]:
    """The new golden inventory, or ValueError naming the URNs that would vanish without an alias."""
    now = inventory(run)
    retired: dict[str, str] = {}
    if golden is not None:
        diff = compare(golden, run, stack)
        if diff.vanished and not allow_removal:
            raise ValueError(
                f"refusing to update tests/golden/{stack}.json: these resources would vanish with no alias "
                "covering them (a rename or reparent replaces them on every stack):\n"
                + "\n".join(f"  - {u}" for u in diff.vanished)
                + "\nAdd aliases, or pass --allow-removal if they are really gone."
            )
        covering = alias_index(run)
        retired = {u: covering[u] for u in golden.get("retired", {}) if u in covering}
        retired.update(diff.covered)
    return {
        "stack": stack,
        "resources": now["resources"],
        "random": now["random"],
        "retired": dict(sorted(retired.items())),
    }


def write(stack: str, data: dict[str, Any]) -> None:
    golden_path(stack).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
