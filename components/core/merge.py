"""Merging chart values: one deep merge for every Release (typed values, then extraValues)."""

from __future__ import annotations

from typing import Any


def _copy(value: Any) -> Any:
    """A copy of the mappings and lists of a values tree (what a merge may change later);
    anything else (strings, numbers, Pulumi outputs) is shared, as it is never changed in place."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _merge_into(target: dict[str, Any], override: dict[str, Any]) -> None:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = _copy(value)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge `override` into a copy of `base`; mappings merge, everything else replaces.
    Neither argument is changed, and the result shares no mapping or list with them."""
    out: dict[str, Any] = _copy(base)
    _merge_into(out, override)
    return out
