"""Built-in kinds against the Kubernetes OpenAPI schemas bundled with kubernetes-validate (strict)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from importlib import resources
from importlib.abc import Traversable
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from .model import (
    _CLUSTER_SCOPED,
    BUILTIN_GROUPS,
    Item,
    Problem,
    _as_dict,
    _as_list,
    _describe,
    _ident,
    _split_api_version,
)

jsonschema_rs: Any
try:  # the fast path: a compiled validator answers "valid?"; jsonschema explains what is not
    import jsonschema_rs
except ImportError:  # pragma: no cover - jsonschema alone gives the same answers, slower
    jsonschema_rs = None

FAST_PATH = jsonschema_rs is not None

# --------------------------------------------------------------------------- built-in schemas


_SCHEMA_DIR_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)-local-strict$")


def _schema_root() -> Traversable:
    return resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")


@functools.cache
def _strict_schema_dirs() -> dict[tuple[int, int, int], str]:
    found: dict[tuple[int, int, int], str] = {}
    for entry in _schema_root().iterdir():
        match = _SCHEMA_DIR_RE.match(entry.name)
        if match:
            found[(int(match[1]), int(match[2]), int(match[3]))] = entry.name
    return found


@functools.cache
def _schema_dir_for(kube_version: str) -> str:
    """The bundled strict schema directory closest to ``kube_version`` ("1.31", "v1.31.4").

    Same minor if shipped; else the newest older minor; else (older than everything
    shipped) the oldest one.
    """
    match = re.match(r"^v?(\d+)\.(\d+)", kube_version.strip())
    if not match:
        raise ValueError(f"not a Kubernetes version: {kube_version!r}")
    wanted = (int(match[1]), int(match[2]))
    dirs = _strict_schema_dirs()
    if not dirs:
        raise RuntimeError("kubernetes-validate ships no strict schemas")
    versions = sorted(dirs)
    same = [v for v in versions if v[:2] == wanted]
    older = [v for v in versions if v[:2] < wanted]
    chosen = same[-1] if same else older[-1] if older else versions[0]
    return dirs[chosen]


@functools.cache
def _definitions(schema_dir: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(_schema_root().joinpath(schema_dir, "_definitions.json").read_text())
    return loaded


@functools.cache
def _schema_registry(schema_dir: str) -> Registry[Any]:
    contents = _definitions(schema_dir)
    resource: Resource[Any] = Resource.from_contents(contents)
    return resource @ Registry()


@functools.cache
def _builtin_validator(schema_dir: str, group: str, version: str, kind: str) -> jsonschema.Draft202012Validator | None:
    prefix = group.split(".")[0]
    filename = f"{kind.lower()}-{prefix}-{version}.json" if group else f"{kind.lower()}-{version}.json"
    path = _schema_root().joinpath(schema_dir, filename)
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    gvks = _as_list(schema.get("x-kubernetes-group-version-kind"))
    if not any(
        _as_dict(gvk).get("group", "") == group and gvk.get("version") == version and gvk.get("kind") == kind
        for gvk in gvks
    ):
        return None
    return jsonschema.Draft202012Validator(schema, registry=_schema_registry(schema_dir))


@functools.cache
def _fast_registry(schema_dir: str) -> Any:
    contents = _definitions(schema_dir)
    return jsonschema_rs.Registry([(contents["$id"], contents)])


@functools.cache
def _fast_validator(schema_dir: str, group: str, version: str, kind: str) -> Any:
    """The same schema compiled by jsonschema-rs (formats not asserted, as jsonschema does by
    default), or None without it. Only ever trusted to say "valid"."""
    validator = _builtin_validator(schema_dir, group, version, kind)
    if jsonschema_rs is None or validator is None:
        return None
    definitions = _definitions(schema_dir)
    # The schema files refer to "/api/_definitions.json"; they resolve against the same host.
    schema = {**_as_dict(validator.schema), "$id": f"{definitions['$id'].rsplit('/', 1)[0]}/{kind.lower()}.json"}
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=False, registry=_fast_registry(schema_dir))


def _sorted_errors(errors: Iterable[ValidationError]) -> list[ValidationError]:
    """Errors ordered by path; a wrong type hides the other complaints about the same field."""
    ordered = sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])
    mistyped = {tuple(e.absolute_path) for e in ordered if e.validator == "type"}
    return [e for e in ordered if e.validator == "type" or tuple(e.absolute_path) not in mistyped]


def schema_problems(items: list[Item], kube_version: str = "1.31") -> list[Problem]:
    """Validate built-in kinds against the strict Kubernetes schemas of ``kube_version``.

    Custom resources (API group not built into Kubernetes) are left to
    :func:`crd_problems`. A built-in group/kind whose API version the chosen
    Kubernetes version does not serve (removed or misspelled) is a problem.
    """
    schema_dir = _schema_dir_for(kube_version)
    served = schema_dir.removeprefix("v").split("-")[0].rsplit(".", 1)[0]
    problems: list[Problem] = []
    for item in items:
        obj = item.obj
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        ident = _ident(obj, None)
        if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
            problems.append(Problem("schema", item.source, ident, f"{ident} has no apiVersion and kind"))
            continue
        group, version = _split_api_version(api_version)
        if group not in BUILTIN_GROUPS:
            continue
        ident = _ident(obj, (group, kind) not in _CLUSTER_SCOPED)
        validator = _builtin_validator(schema_dir, group, version, kind)
        if validator is None:
            problems.append(
                Problem(
                    "schema",
                    item.source,
                    ident,
                    f"{ident} uses apiVersion {api_version} kind {kind}, which Kubernetes {served} does not serve "
                    "(no built-in schema: removed, not yet served, or misspelled)",
                )
            )
            continue
        fast = _fast_validator(schema_dir, group, version, kind)
        if fast is not None and fast.is_valid(obj):
            continue
        for error in _sorted_errors(validator.iter_errors(obj)):
            for text in _describe(error):
                problems.append(Problem("schema", item.source, ident, f"{ident} {text}"))
    return problems
