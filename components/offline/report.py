"""Reading a preview like `pulumi preview`: a tree, change marks against the last preview, diffs.

The previous preview of a stack is kept in `build/preview/<stack>/state.json`: every
resource the program declared (URN, type, parent, inputs with secrets masked) and every
object each Release rendered. The next preview compares with it:

- a Pulumi resource is created, deleted, updated (inputs changed) or replaced: for
  Kubernetes resources when its name, namespace or an immutable field changes, for
  `random` resources when any input changes (the provider replaces them);
- an object a Release renders is created, deleted or updated with the Release; a change to
  a field Kubernetes keeps immutable is marked replace, with what Helm will do about it.

Rows are in the engine's order: the order the program declares resources, each child
under its parent, and the objects of a Release in Helm's install order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
STATE_VERSION = 1
REDACTED = "[secret]"

CREATE, UPDATE, REPLACE, DELETE, SAME = "create", "update", "replace", "delete", "same"
SYMBOL = {CREATE: "+", UPDATE: "~", REPLACE: "+-", DELETE: "-", SAME: " "}

# Fields the API server refuses to change: a new object is needed (Pulumi replaces it).
IMMUTABLE: dict[str, tuple[tuple[str, ...], ...]] = {
    "Job": (("spec", "template"), ("spec", "selector"), ("spec", "completions")),
    "Deployment": (("spec", "selector"),),
    "DaemonSet": (("spec", "selector"),),
    "ReplicaSet": (("spec", "selector"),),
    "StatefulSet": (
        ("spec", "selector"),
        ("spec", "serviceName"),
        ("spec", "volumeClaimTemplates"),
        ("spec", "podManagementPolicy"),
    ),
    "PersistentVolumeClaim": (
        ("spec", "accessModes"),
        ("spec", "storageClassName"),
        ("spec", "volumeName"),
        ("spec", "selector"),
        ("spec", "volumeMode"),
    ),
    "PersistentVolume": (("spec",),),
    "StorageClass": (("provisioner",), ("parameters",), ("reclaimPolicy",), ("volumeBindingMode",)),
    "RoleBinding": (("roleRef",),),
    "ClusterRoleBinding": (("roleRef",),),
    "Service": (("spec", "clusterIP"),),
}


def object_key(obj: dict[str, Any]) -> str:
    """group/Kind/namespace/name: what makes two rendered objects the same object."""
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    meta = obj.get("metadata") or {}
    return f"{group}/{obj.get('kind')}/{meta.get('namespace') or ''}/{meta.get('name')}"


def mask_secret_object(obj: dict[str, Any]) -> dict[str, Any]:
    """A Secret's data and stringData values shown as [secret]."""
    if obj.get("kind") != "Secret":
        return obj
    out = dict(obj)
    for key in ("data", "stringData"):
        if isinstance(out.get(key), dict):
            out[key] = {k: REDACTED for k in out[key]}
    return out


# --------------------------------------------------------------------------- diffs


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any


_MISSING = object()


def diff(old: Any, new: Any, path: str = "") -> list[Change]:
    """Leaf changes between two JSON-like values (lists compared by index)."""
    if old is new or (type(old) is type(new) and old == new):  # most of a preview is unchanged
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[Change] = []
        for key in list(old) + [k for k in new if k not in old]:
            sub = f"{path}.{key}" if path else str(key)
            out += diff(old.get(key, _MISSING), new.get(key, _MISSING), sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and old and new:
        out = []
        for i in range(max(len(old), len(new))):
            out += diff(old[i] if i < len(old) else _MISSING, new[i] if i < len(new) else _MISSING, f"{path}[{i}]")
        return out
    if old == new:
        return []
    return [Change(path or ".", None if old is _MISSING else old, None if new is _MISSING else new)]


def _under(path: str, prefix: tuple[str, ...]) -> bool:
    dotted = ".".join(prefix)
    return path == dotted or path.startswith(dotted + ".") or path.startswith(dotted + "[")


def immutable_changes(kind: str, changes: list[Change]) -> list[str]:
    prefixes = IMMUTABLE.get(kind, ())
    return [c.path for c in changes if any(_under(c.path, p) for p in prefixes)]


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    """One line of the tree: a Pulumi resource or an object a Release renders."""

    depth: int
    type: str
    name: str
    op: str
    changes: list[Change] = field(default_factory=list)
    note: str = ""
    problems: int = 0


@dataclass
class Node:
    urn: str
    type: str
    name: str
    parent: str
    inputs: Any
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # rendered objects of a Release
    object_order: list[str] = field(default_factory=list)

    def to_state(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "inputs": self.inputs,
            "objects": [self.objects[k] for k in self.object_order],
        }

    @classmethod
    def from_state(cls, raw: dict[str, Any]) -> Node:
        objects = {object_key(o): o for o in raw.get("objects") or []}
        return cls(
            raw["urn"], raw["type"], raw["name"], raw.get("parent", ""), raw.get("inputs"), objects, list(objects)
        )


def load_state(folder: Path) -> dict[str, Any] | None:
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return state if state.get("version") == STATE_VERSION else None


def write_state(folder: Path, stack: str, nodes: list[Node], outputs: dict[str, Any]) -> None:
    state = {"version": STATE_VERSION, "stack": stack, "resources": [n.to_state() for n in nodes], "outputs": outputs}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STATE_FILE).write_text(json.dumps(state, separators=(",", ":"), default=str) + "\n")


def _resource_op(node: Node, before: Node | None) -> tuple[str, list[Change], str]:
    if before is None:
        return CREATE, [], ""
    changes = diff(before.inputs, node.inputs)
    if before.type != node.type:
        return REPLACE, changes, f"type {before.type} -> {node.type}"
    if not changes:
        return SAME, [], ""
    if node.type.startswith("random:"):
        return REPLACE, changes, "random resources are replaced when an input changes"
    if node.type.startswith("kubernetes:"):
        renamed = [c.path for c in changes if c.path in ("metadata.name", "metadata.namespace", "name", "namespace")]
        if renamed:
            return REPLACE, changes, f"{', '.join(renamed)} changed"
        kind = node.type.rsplit(":", 1)[-1]
        if (
            isinstance(node.inputs, dict)
            and node.inputs.get("immutable")
            and any(c.path.startswith(("data", "stringData")) for c in changes)
        ):
            return REPLACE, changes, "immutable: true"
        fixed = immutable_changes(kind, changes)
        if fixed:
            return REPLACE, changes, f"immutable field {fixed[0]}"
    return UPDATE, changes, ""


def _object_op(obj: dict[str, Any] | None, before: dict[str, Any] | None) -> tuple[str, list[Change], str]:
    if before is None:
        return CREATE, [], ""
    if obj is None:
        return DELETE, [], ""
    changes = diff(before, obj)
    if not changes:
        return SAME, [], ""
    fixed = immutable_changes(str(obj.get("kind")), changes)
    if fixed:
        note = f"immutable field {fixed[0]}: Helm cannot patch it"
        if obj.get("kind") == "Job":
            note += "; give the Job a new name or let the finished one go first"
        return REPLACE, changes, note
    return UPDATE, changes, ""


def object_label(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('apiVersion')}/{obj.get('kind')}", f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def rows(
    stack_type: str,
    stack_name: str,
    nodes: list[Node],
    previous: dict[str, Any] | None,
    problems_of: Callable[[str], int] = lambda name: 0,
) -> list[Row]:
    """The tree, in engine order, with each row's change against `previous`."""
    before = {n.urn: n for n in (Node.from_state(r) for r in (previous or {}).get("resources") or [])}
    children: dict[str, list[Node]] = {}
    urns = {n.urn for n in nodes}
    for n in nodes:
        children.setdefault(n.parent if n.parent in urns else "", []).append(n)
    # Deleted resources are listed under their old parent, after the live ones.
    for urn, old in before.items():
        if urn not in urns:
            children.setdefault(old.parent if old.parent in urns else "", []).append(old)

    live = {n.urn for n in nodes}
    stack_op = CREATE if previous is None else SAME
    out = [Row(0, stack_type, stack_name, stack_op)]

    def walk(parent: str, depth: int) -> Iterator[Row]:
        for node in children.get(parent, []):
            if node.urn not in live:
                yield Row(depth, node.type, node.name, DELETE)
                yield from _deleted_subtree(node.urn, depth + 1)
                continue
            op, changes, note = _resource_op(node, before.get(node.urn))
            yield Row(depth, node.type, node.name, op, changes, note, problems_of(node.name))
            if node.object_order or (before.get(node.urn) and before[node.urn].object_order):
                yield from _object_rows(node, before.get(node.urn), depth + 1)
            yield from walk(node.urn, depth + 1)

    def _deleted_subtree(urn: str, depth: int) -> Iterator[Row]:
        for node in children.get(urn, []):
            if node.urn not in live:
                yield Row(depth, node.type, node.name, DELETE)
                yield from _deleted_subtree(node.urn, depth + 1)

    out += list(walk("", 1))
    return out


def _object_rows(node: Node, before: Node | None, depth: int) -> Iterator[Row]:
    old = before.objects if before else {}
    # A release that did not exist: everything it renders is created.
    for key in node.object_order:
        obj = node.objects[key]
        op, changes, note = _object_op(obj, old.get(key)) if before else (CREATE, [], "")
        kind, name = object_label(obj)
        yield Row(depth, kind, name, op, changes, note)
    for key in before.object_order if before else []:
        if key not in node.objects:
            kind, name = object_label(old[key])
            yield Row(depth, kind, name, DELETE)


def counts(all_rows: list[Row]) -> dict[str, int]:
    found: dict[str, int] = {}
    for r in all_rows:
        found[r.op] = found.get(r.op, 0) + 1
    return found


# --------------------------------------------------------------------------- text


def _short(value: Any, limit: int = 100) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_tree(all_rows: list[Row], *, show_diff: bool = False, show_same: bool = True) -> str:
    """The rows as `pulumi preview` prints them: mark, type, name, plan."""
    shown = [r for r in all_rows if show_same or r.op != SAME or r.depth == 0]
    prefixes = _tree_prefixes([r.depth for r in shown])
    type_width = min(max(len(p + r.type) for p, r in zip(prefixes, shown, strict=True)), 72)
    name_width = min(max(len(r.name) for r in shown), 60)
    lines = [f"     {'Type':<{type_width}}  {'Name':<{name_width}}  Plan"]
    for prefix, r in zip(prefixes, shown, strict=True):
        plan = "" if r.op == SAME else r.op
        if r.problems:
            plan += f"{' ' if plan else ''}[{r.problems} problem{'s' if r.problems > 1 else ''}]"
        if r.note and r.op != SAME:
            plan += f" ({r.note})"
        label = prefix + r.type
        lines.append(f" {SYMBOL[r.op]:<3} {label:<{type_width}}  {r.name:<{name_width}}  {plan}".rstrip())
        if show_diff and r.changes:
            pad = " " * (5 + len(prefix) + 3)
            for c in r.changes:
                if c.old is None:
                    lines.append(f"{pad}+ {c.path}: {_short(c.new)}")
                elif c.new is None:
                    lines.append(f"{pad}- {c.path}: {_short(c.old)}")
                else:
                    lines.append(f"{pad}~ {c.path}: {_short(c.old)} => {_short(c.new)}")
    return "\n".join(lines)


def _tree_prefixes(depths: list[int]) -> list[str]:
    """Box-drawing prefixes like `pulumi preview`'s (├─ / └─ / │)."""
    out = []
    for i, depth in enumerate(depths):
        if depth == 0:
            out.append("")
            continue
        parts = []
        for level in range(1, depth + 1):
            # Is there a later row at `level` before the tree climbs above it?
            later = False
            for d in depths[i + 1 :]:
                if d < level:
                    break
                if d == level:
                    later = True
                    break
            if level == depth:
                parts.append("├─ " if later else "└─ ")
            else:
                parts.append("│  " if later else "   ")
        out.append("".join(parts))
    return out


def summary_line(all_rows: list[Row]) -> str:
    found = counts(all_rows)
    words = {CREATE: "to create", UPDATE: "to update", REPLACE: "to replace", DELETE: "to delete", SAME: "unchanged"}
    parts = [f"{SYMBOL[op].strip() or ''} {found[op]} {words[op]}".strip() for op in words if found.get(op)]
    return "Resources:\n    " + "\n    ".join(parts)


def outputs_text(outputs: dict[str, Any], secret: set[str]) -> str:
    if not outputs:
        return "Outputs: none"
    width = max(len(k) for k in outputs)
    lines = ["Outputs:"]
    for key in sorted(outputs):
        value = REDACTED if key in secret else _short(outputs[key], 200)
        lines.append(f"    {key:<{width}}: {value}")
    return "\n".join(lines)
