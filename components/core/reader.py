"""A small strict reader for structured stack configuration.

Every accessor names the full config key in its error, shows the bad value and
says what is allowed. Unknown keys are errors (with a "did you mean" hint), so a
typo in a stack file can never be silently ignored.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING: Any = object()

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]+)?$")
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
)


# Decimal suffixes k..E are powers of 1000, binary ones Ki..Ei powers of 1024.
_SUFFIX = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    **{suffix: Decimal(10) ** (3 * i) for i, suffix in enumerate("kMGTPE", 1)},
    **{f"{suffix}i": Decimal(2) ** (10 * i) for i, suffix in enumerate("KMGTPE", 1)},
}


def quantity_value(text: str) -> Decimal:
    """The numeric value of a Kubernetes quantity ("500m" -> 0.5, "1Gi" -> 1073741824)."""
    match = re.fullmatch(QUANTITY.pattern, text, re.ASCII)
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number = match.group(1)
    suffix = match.group(3) or ""
    if suffix.startswith("e"):
        return Decimal(number) * (Decimal(10) ** int(suffix[1:]))
    return Decimal(number) * _SUFFIX[suffix]


def quantity(value: Any) -> Decimal | None:
    """The value of a Kubernetes quantity as chart values hold it (a string, or a bare number), or
    None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str) and QUANTITY.match(value):
        return quantity_value(value)
    return None


def matches(pattern: re.Pattern[str], value: Any) -> bool:
    r"""Does the whole of `value` match `pattern`, read in ASCII? Every pattern check of a config value
    goes through here: `re.match` with `$` takes a trailing newline ('airflow\n' would pass as a
    namespace) and `\d` takes any script's digits (ARABIC-INDIC DIGIT THREE would pass as 3); the
    cluster and the tools behind it take neither."""
    if not isinstance(value, str):
        return False
    return re.fullmatch(pattern.pattern, value, (pattern.flags & ~re.UNICODE) | re.ASCII) is not None


# Bounds on any config value, checked before it is parsed: a stack file, a Pulumi config value
# or a component argument nested deeper, larger or longer than this is refused with the key named,
# so no input can exhaust the stack (RecursionError) or the memory of a walk over it.
MAX_DEPTH = 32
MAX_ITEMS = 50_000
MAX_TEXT = 4 * 1024 * 1024  # characters, all texts of one value together


# Texts of this stack's secret config values (and their parts), never to appear in a message.
_SECRET_TEXTS: list[str] = []
_SPLIT = re.compile(r"[\s/:@#?&=,;%\"'{}\[\]]+")
_PASSWORD = re.compile(r"://[^:/@\s]*:(.+)@[^@]*$", re.DOTALL)
_PLACEHOLDER = re.compile(r"(:<[^>]*>|:password|:\[[a-z]+\])$")
_HTTP_USER = re.compile(r"(?i)\b(https?://)([^/\s@?#:]+)@")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s@?#]*:[^/\s@]*)@")


def register_secrets(values: Iterable[Any]) -> None:
    """Remember the stack's secret values: every ConfigError message is scrubbed of them, of each
    string inside them (JSON secrets), of the password inside a URL and of its parts, and of each
    line of a key."""
    texts: set[str] = set()
    # Walked without recursion, and no further than any value the parsers accept (`bounded`).
    pending: list[tuple[Any, int]] = [(value, 0) for value in values]
    walked = 0
    while pending and walked < MAX_ITEMS:
        value, depth = pending.pop()
        walked += 1
        if isinstance(value, dict | list) and depth < MAX_DEPTH:
            pending.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
        elif isinstance(value, str) and len(value) <= MAX_TEXT:
            if len(value) >= 6:
                texts.add(value)
            try:
                decoded = json.loads(value)
            except (ValueError, RecursionError):
                decoded = None
            if isinstance(decoded, dict | list):
                pending.append((decoded, depth + 1))
            password = _PASSWORD.search(value)
            if password:
                raw = password.group(1)
                # The whole password from 3 characters; its parts (around '/', '#', '@', ...) from 4,
                # so a short common word inside a password does not blank out every message.
                texts.update(t for t in (raw, urllib_unquote(raw)) if len(t) >= 3)
                texts.update(t for t in _SPLIT.split(raw) if len(t) >= 4)
            for line in value.splitlines():
                if len(line.strip()) >= 8 and "-----" not in line:
                    texts.add(line.strip())

    _SECRET_TEXTS[:] = sorted(texts, key=len, reverse=True)


def urllib_unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def scrub(message: str) -> str:
    """The message without any registered secret text or password inside a URL."""
    message = _USERINFO.sub(
        lambda m: m.group(0) if _PLACEHOLDER.search(m.group(2)) else f"{m.group(1)}[credentials]@", message
    )
    # Over HTTP(S) a user name alone is where tokens go (https://<token>@github.com/...).
    message = _HTTP_USER.sub(lambda m: f"{m.group(1)}[credentials]@", message)
    for text in _SECRET_TEXTS:
        if text in message:
            message = message.replace(text, "[secret]")
    return message


class ConfigError(ValueError):
    """Raised for any invalid stack configuration, before a resource is declared.

    The message never carries a secret: it is scrubbed of every value registered with
    `register_secrets` (the stack's secret keys) and of passwords inside URLs."""

    def __init__(
        self, key: str, value: Any, allowed: str, fix: str | None = None, *, caller_fix: str | None = None
    ) -> None:
        """`fix` is worded for a stack file; `caller_fix`, when the fix reads differently for a
        program that passes the same settings as component arguments (see `text`)."""
        self.key = key
        self.value = value
        self.allowed = scrub(allowed)
        self.fix = fix
        self.caller_fix = caller_fix
        super().__init__(self.text(key))

    def text(self, key: str, *, caller: bool = False) -> str:
        """The message for a stack file ("config key '<key>'"), or for a program that called a
        component (`caller`: "argument '<key>'", and no fix that speaks of the stack file or of
        `pulumi config`: such a fix is left out unless a `caller_fix` says it another way)."""
        return f"{'argument' if caller else 'config key'} '{key}': {self.detail(caller=caller)}"

    def detail(self, *, caller: bool = False) -> str:
        """What is wrong and how to fix it, without the key (see `text`)."""
        shown = "<unset>" if self.value is _MISSING else _show(self.value)
        message = f"{shown} is not valid; {self.allowed}"
        fix = self.fix
        if caller:
            fix = self.caller_fix or (None if fix and _STACK_FILE_WORDING.search(fix) else fix)
        if fix:
            message += f" Fix: {fix}"
        return scrub(message)


#: A fix that only a stack file's author can follow.
_STACK_FILE_WORDING = re.compile(r"stack file|pulumi config|Pulumi\.<stack>", re.IGNORECASE)


def _show(value: Any) -> str:
    """A short text of a bad value: JSON where it is JSON-like, else its repr; never an exception
    (the value may be anything a caller passed)."""
    if isinstance(value, str):
        text = repr(value[:200])
    else:
        try:
            text = json.dumps(value, sort_keys=True, default=repr)
        except (TypeError, ValueError, RecursionError):
            text = f"<{type(value).__name__}>"
    return text if len(text) <= 120 else text[:117] + "..."


_JSON_LEAVES = (str, int, float, bool, type(None))


def bounded(key: str, value: Any, *, secret: bool = False, plain: bool = False) -> Any:
    """`value` itself, once it is shown to be within MAX_DEPTH levels of objects and lists,
    MAX_ITEMS entries and MAX_TEXT characters, with text keys only (and, with `plain`, nothing
    but text, numbers, booleans and null inside). Walked without recursion; a secret value's
    inner keys are never named."""
    items = chars = 0
    stack: list[tuple[Any, str, int]] = [(value, key, 0)]
    while stack:
        item, path, depth = stack.pop()
        items += 1
        where = key if secret else path
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, Mapping | list | tuple):
            if depth >= MAX_DEPTH:
                raise _too_deep(where)
            if isinstance(item, Mapping):
                for name, inner in item.items():
                    if not isinstance(name, str):
                        raise ConfigError(where, "[not shown]", f"keys must be text, not {type_name(name)}.")
                    chars += len(name)
                    stack.append((inner, f"{path}.{name}", depth + 1))
            else:
                stack.extend((inner, f"{path}[{i}]", depth + 1) for i, inner in enumerate(item))
        elif plain and not isinstance(item, _JSON_LEAVES):
            raise ConfigError(
                where,
                "[not shown]",
                f"expected text, a number, true/false, a list or an object, got a {type(item).__name__}.",
            )
        if items > MAX_ITEMS or chars > MAX_TEXT:
            raise _too_large(key)
    return value


_SEGMENT = re.compile(r"\[\d+\]|\.?[^.\[]+")


def _too_deep(key: str) -> ConfigError:
    parts = _SEGMENT.findall(key)
    if len(parts) > 6:  # name where it starts: 'airflow.extraValues.a[0][0]...'
        key = "".join(parts[:5]) + "..."
    return ConfigError(
        key,
        "[not shown]",
        f"nested deeper than {MAX_DEPTH} levels of objects and lists; no setting needs that many.",
        "flatten the value (the configuration reference shows the shape of each key).",
    )


def _too_large(key: str) -> ConfigError:
    return ConfigError(
        key,
        "[not shown]",
        f"larger than any setting needs (at most {MAX_ITEMS} entries and {MAX_TEXT // (1024 * 1024)} MiB of text "
        "in one value).",
        "keep large data out of the stack config (in the DAG repository, or an object store).",
    )


def json_value(key: str, text: str, *, secret: bool = False) -> Any:
    """`text` parsed as JSON, within the bounds of `bounded`. Text that is not JSON raises
    json.JSONDecodeError (each caller says what it expected); too deep or large a ConfigError."""
    if len(text) > MAX_TEXT:
        raise _too_large(key)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise _too_deep(key) from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise json.JSONDecodeError(str(exc), text, 0) from None
    return bounded(key, value, secret=secret)


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"


class ConfigTypeError(ConfigError):
    """The value is not of the JSON type the key takes (a list for a string, a word for a boolean)."""


# --------------------------------------------------------------------------- what the keys take
#
# While `recording()` is on, every key a Node reads is recorded with the JSON Schema of what its
# accessor accepts, under its shape: the key path with list items as `[]` and the entries of an
# object whose keys the user names (pools, task images) as `*` ("teams[].name",
# "airflow.pools.*.slots"). The stack file's schema is built from this record
# (components/offline/stack_schema.py): the parsers are the one registry of keys and their types.

_ITEM = re.compile(r"\[\d+\]")


@dataclass
class Shapes:
    """What a recording saw: per shape, the schemas its accessors accept; the objects that refuse
    keys they did not read (`finish()`)."""

    accepts: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # shape -> {json: schema}
    closed: set[str] = field(default_factory=set)

    def add(self, shape: str, schema: dict[str, Any]) -> None:
        self.accepts.setdefault(shape, {})[json.dumps(schema, sort_keys=True)] = schema


_recording: list[Shapes] = []


@contextmanager
def recording() -> Iterator[Shapes]:
    """Record what every Node reads while inside (see `Shapes`)."""
    shapes = Shapes()
    _recording.append(shapes)
    try:
        yield shapes
    finally:
        _recording.remove(shapes)


def _record(shape: str, schema: dict[str, Any]) -> None:
    for shapes in _recording:
        shapes.add(shape, schema)


_BOOLEAN: dict[str, Any] = {"anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["true", "false"]}]}
_OBJECT: dict[str, Any] = {"type": "object"}


def _integer(low: int | None, high: int | None) -> dict[str, Any]:
    number: dict[str, Any] = {"type": "integer"}
    if low is not None:
        number["minimum"] = low
    if high is not None:
        number["maximum"] = high
    return {"anyOf": [number, {"type": "string", "pattern": "^-?[0-9]+$"}]}


class Node:
    """A mapping in stack config, read key by key; `finish()` rejects leftovers."""

    # Every key path any Node was asked for (the docs' configuration reference is tested against it).
    asked: set[str] = set()

    def __init__(self, data: Any, path: str, *, shape: str | None = None, named_by_user: bool = False) -> None:
        """`shape`: the key's shape (see `recording`) when `path` names an entry the user named
        (`airflow.pools.default` is `airflow.pools.*`); list items are found by themselves.
        `named_by_user`: this object's keys are names the user chooses (task image roles)."""
        self.shape = shape or _ITEM.sub("[]", path)
        self.named_by_user = named_by_user
        _record(self.shape, _OBJECT)
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigTypeError(path, data, f"expected an object (a YAML mapping), got {type_name(data)}.")
        self.data: Mapping[str, Any] = data
        self.path = path
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}"

    def shape_of(self, name: str) -> str:
        return f"{self.shape}.{'*' if self.named_by_user else name}"

    def has(self, name: str) -> bool:
        return name in self.data

    def only_mode_settings(self, mode: str, sections: Iterable[str]) -> None:
        """Refuse the settings object of a mode other than the selected one (`<path>.mode`)."""
        for other in sections:
            if other != mode and self.has(other):
                raise ConfigError(
                    self.key(other),
                    self.data[other],
                    f"only the settings of the selected mode are allowed ({self.key('mode')} is {mode!r}).",
                    f"remove '{self.key(other)}' or set {self.key('mode')} to {other!r}.",
                )

    def raw(self, name: str, default: Any = _MISSING, *, accepts: dict[str, Any] | None = None) -> Any:
        """The value of `name` (or `default`); `accepts`: the JSON Schema of what the caller then
        accepts, for the record (see `recording`; any value when not given)."""
        self.seen.add(name)
        Node.asked.add(self.key(name))
        _record(self.shape_of(name), {} if accepts is None else accepts)
        if name in self.data and self.data[name] is not None:
            return self.data[name]
        if default is _MISSING:
            raise ConfigError(self.key(name), _MISSING, "this key is required.")
        return default

    def string(
        self,
        name: str,
        default: Any = _MISSING,
        *,
        choices: Iterable[str] | None = None,
        pattern: re.Pattern[str] | None = None,
        describe: str = "",
    ) -> Any:
        options = list(choices) if choices is not None else None
        value = self.raw(name, default, accepts={"type": "string", **({"enum": options} if options else {})})
        if value is None or (value is default and default is not _MISSING):
            return value
        if not isinstance(value, str):
            raise ConfigTypeError(self.key(name), value, f"expected a string, got {type_name(value)}.")
        if options is not None and value not in options:
            raise ConfigError(self.key(name), value, f"allowed: {', '.join(options)}.")
        if pattern is not None and not matches(pattern, value):
            raise ConfigError(self.key(name), value, describe or f"must match {pattern.pattern}.")
        return value

    def boolean(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default, accepts=_BOOLEAN)
        if isinstance(value, str) and value in ("true", "false"):
            return value == "true"
        if value is not default and not isinstance(value, bool):
            raise ConfigTypeError(self.key(name), value, "expected true or false.")
        return value

    def integer(self, name: str, default: Any = _MISSING, *, low: int | None = None, high: int | None = None) -> Any:
        value = self.raw(name, default, accepts=_integer(low, high))
        if value is None or (value is default and default is not _MISSING):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            value = int(value)
        rng = _range_text(low, high)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigTypeError(self.key(name), value, f"expected a whole number{rng}.")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(self.key(name), value, f"expected a whole number{rng}.")
        return value

    def quantity(self, name: str, default: Any = _MISSING, *, what: str = "a Kubernetes quantity") -> Any:
        quantity = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": QUANTITY.pattern}]}
        value = self.raw(name, default, accepts=quantity)
        if value is None or (value is default and default is not _MISSING):
            return value
        number = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        if number and matches(QUANTITY, str(value)):
            return str(value)
        if not matches(QUANTITY, value):
            raise ConfigError(self.key(name), value, f"expected {what} such as 500m, 1, 512Mi or 10Gi.")
        return value

    def string_list(self, name: str, default: Any = _MISSING, *, item: Callable[[str, str], str] | None = None) -> Any:
        value = self.raw(name, default, accepts={"type": "array", "items": {"type": "string"}})
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigTypeError(self.key(name), value, "expected a list of strings.")
        if item is not None:
            return [item(f"{self.key(name)}[{i}]", v) for i, v in enumerate(value)]
        return list(value)

    def nodes(self, name: str, describe: str) -> list[Node]:
        """A list of objects, one Node per item (`<key>[<i>]`); anything but a list is an error."""
        raw = self.raw(name, [], accepts={"type": "array"})
        if not isinstance(raw, list):
            raise ConfigTypeError(self.key(name), raw, f"expected a list of {describe}.")
        _record(self.shape_of(name) + "[]", _OBJECT)  # the items' keys, even of an empty list
        return [Node(item, f"{self.key(name)}[{i}]", shape=self.shape_of(name) + "[]") for i, item in enumerate(raw)]

    def mapping(self, name: str) -> Node:
        self.seen.add(name)
        Node.asked.add(self.key(name))
        return Node(self.data.get(name), self.key(name), shape=self.shape_of(name))

    def plain_object(self, name: str, *, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """An object whose keys the user names; `values`: the JSON Schema of its values, for the
        record (any, when not given)."""
        accepts = {"type": "object", **({"additionalProperties": values} if values is not None else {})}
        value = self.raw(name, {}, accepts=accepts)
        if not isinstance(value, Mapping):
            raise ConfigTypeError(self.key(name), value, f"expected an object, got {type_name(value)}.")
        return dict(value)

    def entries(self, name: str) -> list[tuple[str, Node]]:
        """An object of user-named entries, each an object read as a Node of its own (its key
        `<path>.<name>.<entry>`, its shape `<shape>.<name>.*`)."""
        raw = self.plain_object(name)
        shape = self.shape_of(name) + ".*"
        _record(shape, _OBJECT)  # the entries' keys, even of an empty object
        return [(str(entry), Node(value, f"{self.key(name)}.{entry}", shape=shape)) for entry, value in raw.items()]

    def finish(self) -> None:
        for shapes in _recording:
            shapes.closed.add(self.shape)
        unknown = sorted(k for k in self.data if k not in self.seen)
        if unknown:
            name = unknown[0]
            known = sorted(self.seen)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                self.key(name),
                self.data[name],
                f"unknown key.{hint} Known keys here: {', '.join(known)}.",
                f"rename or remove '{self.key(name)}' in the stack file.",
                caller_fix=f"rename or remove '{self.key(name)}'.",
            )


def _range_text(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" of at least {low}"
    if high is not None:
        return f" of at most {high}"
    return ""


def dns_label(key: str, value: Any, *, max_len: int = 63) -> str:
    """Validate a Kubernetes DNS-1123 label (namespace, release and object names)."""
    if not matches(DNS1123_LABEL, value) or len(value) > max_len:
        raise ConfigError(
            key,
            value,
            f"expected a DNS-1123 label: lowercase letters, digits and '-', starting and ending "
            f"with a letter or digit, at most {max_len} characters.",
        )
    return str(value)


def semver(key: str, value: Any) -> str:
    if not matches(SEMVER, value):
        raise ConfigError(key, value, "expected a semantic version such as 1.21.0.")
    return str(value)


def version_tuple(version: str) -> tuple[int, int, int]:
    match = SEMVER.match(version)
    if not match:
        raise ValueError(version)
    return int(match.group(1)), int(match.group(2)), int(match.group(3))
