"""The JSON Schema of a stack file (`Pulumi.<stack>.yaml`), built from the config parsers themselves.

Each key is read by an accessor of `components.core.reader.Node` that knows what it accepts;
under `reader.recording` every key read is written down with that. `explore` has the parsers
read the example stacks (the project's stack files and `schemas/examples/*.yaml`, secure values
as placeholders) and variations of them (every other choice, both booleans, a key the parser
then requires) until nothing new is read; `build` turns what they read into the schema. The
top-level keys come from their registry (components/platform/keys.py); descriptions from the
configuration reference (docs/configuration.md, "Checked while you type", says the rest).

`python -m components.offline.stack_schema` (`./run.sh schema`) writes `schemas/stack.schema.json`
and the table of top-level keys in docs/configuration.md; `--check` fails when either is stale
(tests/test_stack_schema.py).
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.reader import ConfigError, Shapes, recording, register_secrets
from ..platform import stack_file
from ..platform.config import PROJECT, read_stack
from ..platform.keys import STACK_KEYS, reference_table
from .generated import command_line
from .program import placeholder_for

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = Path("schemas") / "stack.schema.json"
EXAMPLES = Path("schemas") / "examples"
REFERENCE = Path("docs") / "configuration.md"
#: Where editors find the schema: the modeline of a stack file points here.
SCHEMA_URL = "./schemas/stack.schema.json"
MAX_RUNS = 2000  # parser runs; the exploration ends long before (about 300 today)

_ITEM = re.compile(r"\[\d+\]")
_REQUIRED = "this key is required."


@dataclass
class Stack:
    """A stack's config as the parser takes it: short key -> value; which keys are secure."""

    values: dict[str, Any]
    secret_keys: frozenset[str]


# --------------------------------------------------------------------------- the examples


def example_stacks(root: Path = ROOT) -> list[Stack]:
    """The project's stack files and the examples, secure values replaced by placeholders."""
    files = sorted(root.glob("Pulumi.*.yaml")) + sorted((root / EXAMPLES).glob("*.yaml"))
    stacks = []
    for path in files:
        doc = stack_file.load(path.read_text()) or {}
        ours = {}
        for key, value in (doc.get("config") or {}).items():
            namespace, _, name = str(key).rpartition(":")
            if namespace in ("", PROJECT):
                ours[name] = value
        secrets = {k for k, v in ours.items() if isinstance(v, dict) and set(v) == {"secure"}}
        values = {k: placeholder_for(k, ours) if k in secrets else v for k, v in ours.items()}
        stacks.append(Stack(values, frozenset(secrets)))
    return stacks


# --------------------------------------------------------------------------- reading them


def _parse(stack: Stack) -> tuple[Shapes, ConfigError | None]:
    with recording() as shapes:
        try:
            read_stack(stack.values, set(stack.secret_keys))
            error = None
        except ConfigError as exc:
            error = exc
    return shapes, error


def _merge(into: Shapes, shapes: Shapes) -> None:
    for shape, accepts in shapes.accepts.items():
        into.accepts.setdefault(shape, {}).update(accepts)
    into.closed |= shapes.closed


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, f"{path}[]")


def _alternatives(accepts: dict[str, dict[str, Any]]) -> list[Any]:
    """The values worth trying at a key: each choice, both booleans."""
    out: list[Any] = []
    for schema in accepts.values():
        if "enum" in schema:
            out.extend(schema["enum"])
        if schema.get("anyOf") and schema["anyOf"][0] == {"type": "boolean"}:
            out.extend([True, False])
    return out


def _with(stack: Stack, path: str, value: Any) -> Stack | None:
    """`stack` with `path` (dots, no list items) set to `value`; None where a value is in the way."""
    top, *rest = path.split(".")
    values = copy.deepcopy(stack.values)
    if top in stack.secret_keys:
        return None
    if not rest:
        values[top] = value
        return Stack(values, stack.secret_keys)
    holder = values.setdefault(top, {})
    if isinstance(holder, str):
        holder = values[top] = json.loads(holder)
    for part in rest[:-1]:
        if not isinstance(holder, dict):
            return None
        holder = holder.setdefault(part, {})
        if holder is None:
            return None
    if not isinstance(holder, dict):
        return None
    holder[rest[-1]] = value
    return Stack(values, stack.secret_keys)


def explore(stacks: list[Stack]) -> Shapes:
    """What the parsers read from the stacks and their variations (see the module's docstring)."""
    total = Shapes()
    given: dict[str, Any] = {}  # shape -> a value an example gives it
    for stack in stacks:
        for key, value in stack.values.items():
            for path, item in _walk(value, key):
                given.setdefault(path, item)
    tried: set[str] = set()
    queue = deque(stacks)
    runs = 0
    try:
        while queue and runs < MAX_RUNS:
            stack = queue.popleft()
            runs += 1
            shapes, error = _parse(stack)
            _merge(total, shapes)
            for shape, accepts in shapes.accepts.items():
                if "[]" in shape or "*" in shape:
                    continue
                for value in _alternatives(accepts):
                    mark = f"{shape}={json.dumps(value)}"
                    varied = None if mark in tried else _with(stack, shape, value)
                    tried.add(mark)
                    if varied is not None:
                        queue.append(varied)
            if error is not None and error.allowed == _REQUIRED and "[" not in error.key:
                shape = error.key.removeprefix(f"{PROJECT}:")
                mark = f"{shape} filled"
                if shape in given and mark not in tried:
                    tried.add(mark)
                    filled = _with(stack, shape, given[shape])
                    if filled is not None:
                        queue.appendleft(filled)
    finally:
        register_secrets([])
    return total


# --------------------------------------------------------------------------- the schema


def _descriptions(root: Path) -> dict[str, str]:
    """Shape (list items and user-named entries left out) -> its meaning in the reference."""
    out: dict[str, str] = {}
    for line in (root / REFERENCE).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        meaning = cells[-1].replace("`", "").replace("*", "")
        for key in re.findall(r"`([^`]+)`", cells[0]):
            out.setdefault(_plain_key(re.sub(r"<[^>]+>", "*", key)), meaning)
    return out


def _plain_key(shape: str) -> str:
    return shape.replace("[]", "")


def _describe(shape: str, descriptions: dict[str, str]) -> str | None:
    if shape.endswith("[]"):
        return None  # a list's item: the list's description says it
    plain = _plain_key(shape)
    found = descriptions.get(plain)
    if found is None and plain.startswith("airflow.") and plain.count(".") >= 2:
        found = descriptions.get("*." + plain.split(".", 2)[2])  # `<component>.replicas`
    return found


def _accepted(shape: str, shapes: Shapes) -> dict[str, Any] | None:
    """What the accessors at `shape` accept: one schema, any of several, or None when none read it."""
    accepts = list(shapes.accepts.get(shape, {}).values())
    objects = [a for a in accepts if a == {"type": "object"}]
    others = [a for a in accepts if a not in objects]
    if not accepts:
        return None
    if {} in others:
        return {}
    if objects and not others:
        return {"type": "object"}
    if len(others) == 1 and not objects:
        return dict(others[0])
    return {"anyOf": others + objects}


def _tree(shapes: Shapes) -> dict[str, Any]:
    """shape -> its children's last segments, '' for the root of each top-level key."""
    children: dict[str, set[str]] = {}
    for shape in shapes.accepts:
        parent, segment = _split(shape)
        while parent is not None:
            children.setdefault(parent, set()).add(segment)
            shape = parent
            parent, segment = _split(shape)
    return children


def _split(shape: str) -> tuple[str | None, str]:
    if shape.endswith("[]"):
        return shape[:-2], "[]"
    if "." not in shape:
        return None, shape
    parent, _, last = shape.rpartition(".")
    return parent, last


def _schema_of(shape: str, shapes: Shapes, children: dict[str, Any], descriptions: dict[str, str]) -> dict[str, Any]:
    schema = _accepted(shape, shapes)
    below = children.get(shape, set())
    if schema is None:
        schema = {"type": "array"} if below == {"[]"} else {"type": "object"}
    if below - {"[]"} and schema.get("type") == "object" and "additionalProperties" not in schema:
        named = below - {"[]", "*"}
        if named:
            schema["properties"] = {
                name: _schema_of(f"{shape}.{name}", shapes, children, descriptions) for name in sorted(named)
            }
        if "*" in below:
            schema["additionalProperties"] = _schema_of(f"{shape}.*", shapes, children, descriptions)
        elif shape in shapes.closed:
            schema["additionalProperties"] = False
    elif shape in shapes.closed and schema.get("type") == "object" and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    if "[]" in below and schema.get("type") == "array":
        item = _schema_of(f"{shape}[]", shapes, children, descriptions)
        given = schema.get("items")
        if given is None or given == {"type": "object"}:
            schema["items"] = item
        elif {"type": "object"} in given.get("anyOf", []):  # objects, or something else (a name)
            schema["items"] = {"anyOf": [item if a == {"type": "object"} else a for a in given["anyOf"]]}
    description = _describe(shape, descriptions)
    if description:
        schema = {"description": description, **schema}
    return schema


_SECURE = {
    "type": "object",
    "properties": {"secure": {"type": "string", "description": "Set with `pulumi config set --secret`."}},
    "required": ["secure"],
    "additionalProperties": False,
}


def build(shapes: Shapes, root: Path = ROOT) -> dict[str, Any]:
    """The stack file's schema from what the parsers read (`explore`)."""
    descriptions = _descriptions(root)
    children = _tree(shapes)
    definitions: dict[str, Any] = {}
    for entry in STACK_KEYS:
        key = entry.name
        description = entry.doc.replace("`", "")
        if entry.kind == "secret":
            schema: dict[str, Any] = {"$ref": "#/definitions/secure"}
        elif entry.kind == "confirm":
            schema = {"type": "string"}
        else:
            plain = _schema_of(key, shapes, children, descriptions)
            plain.pop("description", None)
            if entry.kind == "either":  # plain, or set with --secret
                plain = {"if": {"required": ["secure"]}, "then": {"$ref": "#/definitions/secure"}, "else": plain}
            # `pulumi config set <key> '<JSON>'` keeps the JSON as text. if/then/else, not anyOf: an
            # editor then points at the key inside that is wrong.
            text = {"pattern": r"^\s*[\[{]", "description": "The same as JSON text."}
            schema = {"if": {"type": "string"}, "then": text, "else": plain}
        definitions[key] = {"description": description, **schema}
    definitions["secure"] = _SECURE
    properties: dict[str, Any] = {}
    for key in (entry.name for entry in STACK_KEYS):
        properties[f"{PROJECT}:{key}"] = {"$ref": f"#/definitions/{key}"}
        properties[key] = {"$ref": f"#/definitions/{key}"}
    names = sorted(properties)
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"Pulumi.<stack>.yaml of the {PROJECT} project",
        "description": (
            "Generated from the config parsers by `python -m components.offline.stack_schema`; do not edit. "
            "Keys of other namespaces (kubernetes:, pulumi:, ...) are free."
        ),
        "type": "object",
        "properties": {
            "config": {
                "type": "object",
                "properties": properties,
                "propertyNames": {
                    "anyOf": [{"enum": names}, {"pattern": f"^(?!{re.escape(PROJECT)}:)[^:]+:."}],
                    "description": f"A key of this project (`{PROJECT}:<key>`), or of another namespace.",
                },
            }
        },
        "definitions": definitions,
    }


def generate(root: Path = ROOT) -> str:
    schema = build(explore(example_stacks(root)), root)
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


_TABLE_START = "<!-- top-level keys: written by ./run.sh schema from components/platform/keys.py; do not edit -->\n"
_TABLE_END = "<!-- end of the top-level keys -->\n"


def reference_with_table(root: Path = ROOT) -> str:
    """docs/configuration.md with its table of top-level keys as the registry makes it."""
    text = (root / REFERENCE).read_text()
    head, _, rest = text.partition(_TABLE_START)
    _, _, tail = rest.partition(_TABLE_END)
    return f"{head}{_TABLE_START}{reference_table()}{_TABLE_END}{tail}"


def main(argv: list[str] | None = None) -> int:
    return command_line(
        argv,
        prog="python -m components.offline.stack_schema",
        what=str(SCHEMA_FILE),
        command="./run.sh schema",
        root=ROOT,
        make=lambda root: (root / SCHEMA_FILE, generate(root)),
        also=lambda root: (root / REFERENCE, reference_with_table(root)),
    )


if __name__ == "__main__":
    sys.exit(main())
