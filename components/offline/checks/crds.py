"""Custom resources against their CRD's openAPIV3Schema, with the API server's structural rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jsonschema

from .model import (
    BUILTIN_GROUPS,
    Item,
    Problem,
    _as_dict,
    _as_list,
    _describe,
    _ident,
    _is_crd,
    _name,
    _namespace,
    _scope_from_crd,
    _split_api_version,
)
from .schemas import _sorted_errors

# --------------------------------------------------------------------------- CRD schemas


_JUNCTORS = ("allOf", "anyOf", "oneOf")


def _structural(node: Any, *, strict: bool, root: bool = False) -> Any:
    """Translate a CRD ``openAPIV3Schema`` node into JSON Schema (draft 4) for jsonschema.

    ``strict`` is False inside allOf/anyOf/oneOf/not, which in a structural
    schema only add value validations and must not forbid fields.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties") and isinstance(value, dict):
            out[key] = {name: _structural(sub, strict=strict) for name, sub in value.items()}
        elif key == "items":
            if isinstance(value, list):
                out[key] = [_structural(sub, strict=strict) for sub in value]
            else:
                out[key] = _structural(value, strict=strict)
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = _structural(value, strict=strict)
        elif key in _JUNCTORS and isinstance(value, list):
            out[key] = [_structural(sub, strict=False) for sub in value]
        elif key == "not":
            out[key] = _structural(value, strict=False)
        else:
            out[key] = value
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if node.get("x-kubernetes-int-or-string") is True:
        out["type"] = ["integer", "string"]
        any_of = out.get("anyOf")
        if isinstance(any_of, list) and all(
            isinstance(sub, dict) and set(sub) == {"type"} and sub["type"] in ("integer", "string") for sub in any_of
        ):
            del out["anyOf"]
    if node.get("x-kubernetes-embedded-resource") is True or root:
        props = dict(_as_dict(out.get("properties")))
        if props or root:
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            props["metadata"] = {"type": "object"}
            out["properties"] = props
    if node.get("nullable") is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = [*kind, "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    if strict and "properties" in out and "additionalProperties" not in node and not preserve:
        out["additionalProperties"] = False
    return out


_CRD_VALIDATORS: dict[tuple[str, str], tuple[Any, jsonschema.Draft4Validator]] = {}


def _crd_validator(crd_name: str, version: str, schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    key = (crd_name, version)
    cached = _CRD_VALIDATORS.get(key)
    if cached is not None and cached[0] is schema:
        return cached[1]
    translated = _structural(schema, strict=True, root=True)
    translated.pop("$schema", None)
    validator = jsonschema.Draft4Validator(translated)
    _CRD_VALIDATORS[key] = (schema, validator)
    return validator


def _crd_version_schema(crd: Mapping[str, Any], version: str) -> tuple[bool, dict[str, Any] | None, list[str]]:
    """(served, openAPIV3Schema or None, served version names) for ``version``."""
    spec = _as_dict(crd.get("spec"))
    versions = [_as_dict(v) for v in _as_list(spec.get("versions"))]
    served_names = [str(v.get("name")) for v in versions if v.get("served", True)]
    if not versions and isinstance(spec.get("version"), str):  # apiextensions v1beta1 single version
        served_names = [spec["version"]]
    for entry in versions:
        if entry.get("name") == version:
            schema = _as_dict(_as_dict(entry.get("schema")).get("openAPIV3Schema")) or None
            if schema is None:
                schema = _as_dict(_as_dict(spec.get("validation")).get("openAPIV3Schema")) or None
            return bool(entry.get("served", True)), schema, served_names
    if version in served_names:
        return (True, _as_dict(_as_dict(spec.get("validation")).get("openAPIV3Schema")) or None, served_names)
    return False, None, served_names


def crd_problems(items: list[Item], crds: list[dict[str, Any]]) -> list[Problem]:
    """Validate custom resources against their CRDs' ``openAPIV3Schema`` (strict).

    CRDs come from ``crds`` and from CustomResourceDefinition objects among the items.
    """
    item_crds = [item.obj for item in items if _is_crd(item.obj)]
    by_gk: dict[tuple[str, str], dict[str, Any]] = {}
    from_items: set[tuple[str, str]] = set()
    for crd in [*crds, *item_crds]:
        scope = _scope_from_crd(crd)
        if scope is not None:
            by_gk[scope[0]] = crd
    for crd in item_crds:
        scope = _scope_from_crd(crd)
        if scope is not None:
            from_items.add(scope[0])
    scopes = {gk: _scope_from_crd(crd) == (gk, True) for gk, crd in by_gk.items()}

    problems: list[Problem] = []

    def report(item: Item, ident: str, message: str) -> None:
        problems.append(Problem("crd", item.source, ident, message))

    for item in items:
        obj = item.obj
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
            continue  # reported by schema_problems
        group, version = _split_api_version(api_version)
        if group in BUILTIN_GROUPS:
            continue
        ident = _ident(obj, scopes.get((group, kind)))
        definition = by_gk.get((group, kind))
        if definition is None:
            same_group = sorted(k for g, k in by_gk if g == group)
            hint = f" (CRDs of group {group}: {', '.join(same_group)})" if same_group else ""
            report(item, ident, f"{ident}: no CRD for {kind}.{group} ({api_version}) is declared{hint}")
            continue
        crd_name = _name(definition)
        if scopes[(group, kind)] and _namespace(obj) is None and (group, kind) not in from_items:
            # (when the CRD is among the items, reference_problems reports this)
            report(item, ident, f"{ident} is namespaced (CRD {crd_name}) but has no metadata.namespace")
        served, schema, served_names = _crd_version_schema(definition, version)
        if not served:
            report(
                item,
                ident,
                f"{ident}: CRD {crd_name} does not serve version {version} "
                f"(served: {', '.join(served_names) or 'none'})",
            )
            continue
        if schema is None:
            continue
        validator = _crd_validator(crd_name, version, schema)
        try:
            errors = _sorted_errors(validator.iter_errors(obj))
        except re.error as exc:  # a Go (RE2) pattern Python's re cannot compile
            report(
                item,
                ident,
                f"{ident} could not be validated: CRD {crd_name} {version} has a pattern Python cannot "
                f"evaluate ({exc})",
            )
            continue
        for error in errors:
            for text in _describe(error):
                report(item, ident, f"{ident} {text} (CRD {crd_name} {version})")
    return problems
