"""Read `Pulumi.<stack>.yaml` the way the Pulumi CLI does, and refuse what it would get wrong.

The Pulumi CLI (Go, yaml.v3) and PyYAML disagree on plain YAML: `yes`/`on` are strings to
the CLI and booleans to PyYAML, `0755` is 493 to both but `1_000` only to the CLI, `1.0`
reaches a program as "1", a date as "2024-01-01 00:00:00 +0000 UTC", and a key written twice
is an error for the CLI (`mapping key "mode" already defined`) while PyYAML silently keeps
the last one. The offline preview and the corpus walker (tests/test_bad_configs.py) read
stack files with this module, so what they check is what `pulumi up` would run with
(tests/test_stack_file.py compares it with `pulumi config --json` on the same files).

Stricter than the CLI, on purpose: a key given both with and without the project prefix
(`logs` and `airflow-k8s:logs`, which the CLI merges silently) is refused like any duplicate.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from typing import Any

import yaml

from ..core.reader import MAX_DEPTH, MAX_TEXT, ConfigError, bounded

_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_OCTAL_OLD = re.compile(r"^[-+]?0[0-7_]+$")
_OCTAL = re.compile(r"^[-+]?0o[0-7_]+$")
_HEX = re.compile(r"^[-+]?0x[0-9a-fA-F_]+$")
_BINARY = re.compile(r"^[-+]?0b[01_]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$")
_SPECIAL_FLOAT = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NULL = ("", "~", "null", "Null", "NULL")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_TIMESTAMP = re.compile(
    r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(\.[0-9]*)?"
    r"(([ \t]*)Z|[-+][0-9]{1,2}(:[0-9]{2})?)?$"
)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Plain scalars resolved as yaml.v3 resolves them into Go's interface{}; duplicate keys refused."""

    parents: dict[int, list[str]]

    def path_of(self, node: yaml.Node) -> list[str]:
        """The keys leading to a mapping node (for the message of a duplicate)."""
        return list(self.parents.get(id(node), []))


PLAIN = "tag:airflow-k8s,2026:plain"


def _scalar(loader: _Loader, node: yaml.ScalarNode) -> Any:
    """A plain scalar is resolved like yaml.v3 does; a quoted one, or one tagged !!str, is text."""
    if node.tag == PLAIN or (node.tag != "tag:yaml.org,2002:str" and node.style is None):
        return _plain(node.value)
    return node.value


def _plain(text: str) -> Any:
    if text in _NULL:
        return None
    if text in _BOOL:
        return _BOOL[text]
    plain = text.replace("_", "")
    try:
        if _INT.match(text):
            whole = int(plain)
            # Beyond int64/uint64, yaml.v3 reads a float.
            return whole if -(2**63) <= whole < 2**64 else float(whole)
        if _OCTAL.match(text):
            return int(plain.replace("0o", ""), 8)
        if _OCTAL_OLD.match(text):
            return int(plain, 8)
        if _HEX.match(text):
            return int(plain, 16)
        if _BINARY.match(text):
            return int(plain.replace("0b", ""), 2)
    except ValueError:
        return text
    if text.lower() in _SPECIAL_FLOAT:
        return _SPECIAL_FLOAT[text.lower()]
    if _FLOAT.match(text) and any(c.isdigit() for c in text):
        number = float(plain)
        return text if math.isinf(number) else number
    if _DATE.match(text):
        try:
            return datetime.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=datetime.UTC)
        except ValueError:
            return text
    if _TIMESTAMP.match(text):
        try:
            stamp = datetime.datetime.fromisoformat(text.replace(" ", "T", 1).replace("z", "Z"))
        except ValueError:
            return text
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=datetime.UTC)
    return text


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    lines: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = _text(key)
        if key in out:
            parents = loader.path_of(node)
            parts = [*(parents[1:] if parents[:1] == ["config"] else parents), key]
            if len(parts) > 1 and ":" in parts[0]:
                # Inside a config object, keys are named as every other message names them (airflow.dags.mode).
                parts[0] = parts[0].split(":", 1)[1]
            path = ".".join(parts)
            raise ConfigError(
                path,
                "[value not shown]",
                f"the key appears twice in this mapping (line {lines[key]} and line {key_node.start_mark.line + 1}); "
                "the Pulumi CLI refuses the file (mapping key already defined) and other YAML readers keep only "
                "the last one.",
                "keep one of them.",
            )
        lines[key] = key_node.start_mark.line + 1
        loader.parents[id(value_node)] = [*loader.path_of(node), key]
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_Loader.add_constructor("tag:yaml.org,2002:map", _mapping)
for _tag in ("str", "int", "float", "bool", "null", "timestamp"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _scalar)
# Plain scalars are resolved by _plain, not by PyYAML's YAML 1.1 rules.
_Loader.yaml_implicit_resolvers = {}
_Loader.add_implicit_resolver(PLAIN, re.compile(r".*", re.DOTALL), None)
_Loader.add_constructor(PLAIN, _scalar)


# A stack file nests its values two levels down (`config:`, then the key).
_FILE_DEPTH = MAX_DEPTH + 2


def load(text: str) -> Any:
    """A YAML document as the Pulumi CLI reads it (Go values: ints, floats, bools, strings, times).

    Bounded before it is built: a file over MAX_TEXT characters, or nested deeper than a config
    value may be (read event by event, which takes no recursion), is refused with where it is;
    what aliases expand to is bounded like any config value."""
    if len(text) > MAX_TEXT:
        raise ConfigError(
            "<stack file>",
            "[not shown]",
            f"larger than any stack file needs ({len(text)} characters, at most {MAX_TEXT}).",
            "keep large data out of the stack config (in the DAG repository, or an object store).",
        )
    try:
        _depth_within(text)
        loader = _Loader(text)
    except yaml.YAMLError as exc:
        raise _not_yaml(exc) from None
    loader.parents = {}
    try:
        doc = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise _not_yaml(exc) from None
    except RecursionError:  # aliases that refer to themselves
        raise ConfigError("<stack file>", "[not shown]", "an alias refers to the value that holds it.") from None
    finally:
        loader.dispose()
    return doc


def _not_yaml(exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}" if mark is not None else "the file"
    return ConfigError("<stack file>", "[not shown]", f"not valid YAML at {where}: {getattr(exc, 'problem', exc)}.")


def _depth_within(text: str) -> None:
    """Read the YAML events, stopping at the first collection nested deeper than _FILE_DEPTH,
    which is refused naming the config key that holds it."""
    parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    # One frame per open collection: [the key or index being read, expecting a mapping key].
    frames: list[list[Any]] = []

    def value_done() -> None:
        if frames:
            frame = frames[-1]
            if isinstance(frame[0], int):
                frame[0] += 1
            else:
                frame[1] = True

    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, yaml.CollectionStartEvent):
                if len(frames) >= _FILE_DEPTH:
                    raise _too_deep_at(frames, event.start_mark.line + 1 if event.start_mark else 0)
                frames.append([0, False] if isinstance(event, yaml.SequenceStartEvent) else ["", True])
            elif isinstance(event, yaml.CollectionEndEvent):
                frames.pop()
                value_done()
            elif isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
                if frames and frames[-1][1] and not isinstance(frames[-1][0], int):
                    frames[-1] = [getattr(event, "value", "*"), False]
                else:
                    value_done()
    finally:
        parser.dispose()


def _too_deep_at(frames: list[list[Any]], line: int) -> ConfigError:
    inside = frames[1:] if frames and frames[0][0] == "config" else frames
    parts = [f"[{f[0]}]" if isinstance(f[0], int) else f".{f[0]}" for f in inside]
    if parts and ":" in parts[0]:
        parts[0] = parts[0].split(":", 1)[1]  # airflow-k8s:airflow -> airflow
    key = "".join(parts).lstrip(".")
    if len(parts) > 6:  # name where it starts: 'airflow.extraValues.a[0][0]...'
        key = "".join(parts[:5]).lstrip(".") + "..."
    return ConfigError(
        key or "<stack file>",
        "[not shown]",
        f"nested deeper than {MAX_DEPTH} levels of objects and lists (line {line}); no setting needs that many.",
        "flatten the value (the configuration reference shows the shape of each key).",
    )


def _go_float(number: float) -> str:
    """How Go's strconv/encoding formats a float64 ('g'-like: 1 for 1.0, 1e+22 for 10**22)."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number == int(number) and abs(number) < 1e21:
        return str(int(number))
    text = repr(number)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        digits = exponent.lstrip("+-").lstrip("0") or "0"
        return f"{mantissa.removesuffix('.0')}e{sign}{digits.zfill(2)}"
    return text


def _text(value: Any) -> str:
    """A top-level config value as the CLI hands it to a program."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, datetime.datetime):
        return _go_time(value)
    return str(value)


def _go_time(stamp: datetime.datetime) -> str:
    offset = stamp.utcoffset() or datetime.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    zone = "UTC" if minutes == 0 else ""
    sign = "+" if minutes >= 0 else "-"
    text = stamp.strftime("%Y-%m-%d %H:%M:%S")
    if stamp.microsecond:
        text += f".{stamp.microsecond:06d}".rstrip("0")
    return f"{text} {sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d} {zone}".rstrip()


def _json_ready(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no infinity or NaN: the Pulumi CLI cannot hand this value to a program.
        raise ConfigError(key, value, "expected a finite number (JSON, in which Pulumi passes objects, has no .inf).")
    if isinstance(value, float) and value == int(value) and abs(value) < 1e21:
        return int(value)
    if isinstance(value, datetime.datetime):
        return _go_time(value)
    return value


def config_values(raw: Any, project: str) -> tuple[dict[str, Any], set[str]]:
    """`config:` of a stack file -> ({full key: value as the program gets it, or {"secure": ...}}, secret keys).

    Objects and lists become JSON text, scalars text, as `pulumi config --json` shows them.
    """
    if raw is None:
        return {}, set()
    if not isinstance(raw, dict):
        raise ConfigError("config", "[not shown]", "expected a mapping of config keys.")
    out: dict[str, Any] = {}
    secrets: set[str] = set()
    written: dict[str, str] = {}
    for key, value in raw.items():
        full = key if ":" in key else f"{project}:{key}"
        if full in out:
            raise ConfigError(
                full,
                "[value not shown]",
                f"the key is given twice, as {written[full]!r} and as {key!r}; the Pulumi CLI would keep one of them "
                "without a word.",
                "keep one of them.",
            )
        written[full] = key
        # Aliases are references: what they expand to is bounded like any config value.
        secure = isinstance(value, dict) and set(value) == {"secure"}
        bounded(full.split(":", 1)[1] if full.startswith(f"{project}:") else full, value, secret=secure)
        if isinstance(value, dict) and set(value) == {"secure"}:
            out[full] = value
            secrets.add(full)
        elif isinstance(value, dict | list):
            name = full.split(":", 1)[1] if full.startswith(f"{project}:") else full
            out[full] = json.dumps(_json_ready(value, name), sort_keys=True, separators=(",", ":"))
        else:
            out[full] = _text(value)
    return out, secrets


def read(text: str, project: str) -> tuple[dict[str, Any], set[str]]:
    """A stack file's text -> config_values of its `config:` block."""
    doc = load(text) or {}
    if not isinstance(doc, dict):
        raise ConfigError("<stack file>", "[not shown]", "expected a mapping with a `config:` block.")
    return config_values(doc.get("config"), project)
