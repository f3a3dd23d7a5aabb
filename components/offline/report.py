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

import difflib
import functools
import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")


def key_path(path: str, key: Any) -> str:
    """`path.key`, or `path["key"]` for a key that is not a plain name (`data["airflow.cfg"]`,
    `metadata.labels["app.kubernetes.io/name"]`)."""
    text = str(key)
    if _PLAIN_KEY.match(text):
        return f"{path}.{text}" if path else text
    return f"{path}[{json.dumps(text)}]"


def diff(old: Any, new: Any, path: str = "") -> list[Change]:
    """Leaf changes between two JSON-like values (lists compared by index)."""
    if old is new or (type(old) is type(new) and old == new):  # most of a preview is unchanged
        return []
    if (old == REDACTED and _all_secret(new)) or (new == REDACTED and _all_secret(old)):
        return []  # a secret whole (as an encrypted stack export holds it) and the same secret by its keys
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[Change] = []
        for key in list(old) + [k for k in new if k not in old]:
            out += diff(old.get(key, _MISSING), new.get(key, _MISSING), key_path(path, key))
        return out
    if isinstance(old, list) and isinstance(new, list) and old and new:
        out = []
        for i in range(max(len(old), len(new))):
            out += diff(old[i] if i < len(old) else _MISSING, new[i] if i < len(new) else _MISSING, f"{path}[{i}]")
        return out
    if old == new:
        return []
    return [Change(path or ".", None if old is _MISSING else old, None if new is _MISSING else new)]


def _all_secret(value: Any) -> bool:
    """A masked secret: `[secret]`, or an object or list of nothing else."""
    if isinstance(value, dict):
        return bool(value) and all(_all_secret(v) for v in value.values())
    if isinstance(value, list):
        return bool(value) and all(_all_secret(v) for v in value)
    return bool(value == REDACTED)


def _under(path: str, prefix: tuple[str, ...]) -> bool:
    dotted = functools.reduce(key_path, prefix, "")
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


@dataclass(frozen=True)
class Baseline:
    """What a preview's change marks compare with: `state` (None: nothing, everything is created)
    and a sentence that says which it is."""

    state: dict[str, Any] | None
    description: str
    kind: str  # "preview" (the last successful preview of the stack), "state" (a stack export) or "none"
    path: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "description": self.description}


def last_successful(folder: Path, stack: str) -> Baseline:
    """The state of the last preview of `stack` that found no problem (a failed one never is)."""
    state = load_state(folder)
    path = folder / STATE_FILE
    if state is None:
        return Baseline(
            None,
            f"none: no successful preview of stack '{stack}' yet ({path}), so everything shows as to create",
            "none",
            str(path),
        )
    when = f", {state['writtenAt']}" if state.get("writtenAt") else ""
    return Baseline(state, f"the last successful preview of stack '{stack}' ({path}{when})", "preview", str(path))


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
    state = {
        "version": STATE_VERSION,
        "stack": stack,
        "writtenAt": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "resources": [n.to_state() for n in nodes],
        "outputs": outputs,
    }
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


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


def terminal_width() -> int:
    """The width lines are wrapped at: the terminal's ($COLUMNS), at least 80; 120 when not a terminal."""
    return max(80, shutil.get_terminal_size((120, 24)).columns)


def wrap(first: str, text: str, indent: str, width: int) -> list[str]:
    """`first + text` in lines of at most `width` characters, continuation lines under `indent`,
    broken after a space where there is one in the second half of a line; nothing is left out
    (the lines' texts, indents taken off, join back into `text`)."""
    lines: list[str] = []
    lead, rest = first, text
    while True:
        room = max(20, width - len(lead))
        if len(rest) <= room:
            lines.append(lead + rest)
            return lines
        cut = rest.rfind(" ", room // 2, room) + 1 or room
        lines.append(lead + rest[:cut])
        lead, rest = indent, rest[cut:]


def _multiline(value: Any) -> bool:
    return isinstance(value, str) and "\n" in value.strip("\n")


_SECTION = re.compile(r"^\s*\[[^\]]+\]\s*$")


def line_diff(old: str, new: str) -> tuple[list[str], int]:
    """The changed lines of a multi-line string: each changed part under the line it starts at
    (and the `[section]` it is in, for INI files such as airflow.cfg), then `- old` / `+ new`.
    Returns those lines and how many lines changed."""
    before, after = old.splitlines(), new.splitlines()
    out: list[str] = []
    changed = 0
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        section = next((line.strip() for line in reversed(after[:j1]) if _SECTION.match(line)), "")
        out.append(f"@@ line {j1 + 1}{' in ' + section if section else ''}")
        out += [f"- {line}" for line in before[i1:i2]]
        out += [f"+ {line}" for line in after[j1:j2]]
        changed += max(i2 - i1, j2 - j1)
    return out, changed


def change_lines(change: Change, pad: str, width: int) -> list[str]:
    """One changed field as the diff prints it: `~ path: old => new` (wrapped, never cut), or for
    a multi-line string (a config file in a ConfigMap) only its changed lines."""
    old, new, path = change.old, change.new, change.path
    if _multiline(old) or _multiline(new):
        before = old if isinstance(old, str) else ("" if old is None else _json(old))
        after = new if isinstance(new, str) else ("" if new is None else _json(new))
        lines, count = line_diff(before, after)
        mark = "+" if old is None else "-" if new is None else "~"
        total = len(after.splitlines()) if new is not None else len(before.splitlines())
        out = [f"{pad}{mark} {path}: {count} of {total} lines {'changed' if mark == '~' else 'in all'}"]
        for line in lines:
            out += wrap(f"{pad}    ", line, f"{pad}      ", width)
        return out
    if old is None:
        return wrap(f"{pad}+ {path}: ", _json(new), f"{pad}    ", width)
    if new is None:
        return wrap(f"{pad}- {path}: ", _json(old), f"{pad}    ", width)
    text = f"{_json(old)} => {_json(new)}"
    return wrap(f"{pad}~ {path}: ", text, f"{pad}    ", width)


def shown_rows(all_rows: list[Row], show_same: bool) -> list[Row]:
    """Every row, or (the default) the changed ones with the rows above them, for where they sit."""
    if show_same:
        return list(all_rows)
    keep: set[int] = {0} if all_rows else set()
    above: list[int] = []  # the index of the last row seen at each depth
    for i, r in enumerate(all_rows):
        del above[r.depth :]
        above.append(i)
        if r.op != SAME or r.problems:
            keep.update(above)
    return [r for i, r in enumerate(all_rows) if i in keep]


def render_tree(
    all_rows: list[Row], *, show_diff: bool = False, show_same: bool = False, width: int | None = None
) -> str:
    """The rows as `pulumi preview` prints them: mark, type, name, plan; unchanged rows only where
    a changed one sits under them, unless `show_same`."""
    width = width or terminal_width()
    shown = shown_rows(all_rows, show_same)
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
                lines += change_lines(c, pad, width)
    return "\n".join(lines)


def unchanged_note(all_rows: list[Row], show_same: bool) -> str:
    hidden = len(all_rows) - len(shown_rows(all_rows, show_same))
    return f"{hidden} unchanged not shown (--show-sames lists them)" if hidden else ""


def diff_summary(all_rows: list[Row]) -> list[dict[str, Any]]:
    """The changed rows for a machine: op, type, name, note and each changed field (multi-line
    strings also as their changed lines)."""
    out = []
    for r in all_rows:
        if r.op == SAME:
            continue
        changes = []
        for c in r.changes:
            entry: dict[str, Any] = {"path": c.path, "old": c.old, "new": c.new}
            if _multiline(c.old) or _multiline(c.new):
                entry["lines"] = line_diff(
                    c.old if isinstance(c.old, str) else "", c.new if isinstance(c.new, str) else ""
                )[0]
            changes.append(entry)
        out.append({"op": r.op, "type": r.type, "name": r.name, "note": r.note, "changes": changes})
    return out


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
        value = REDACTED if key in secret else _json(outputs[key])
        lines += wrap(f"    {key:<{width}}: ", value, " " * (width + 6), terminal_width())
    return "\n".join(lines)
