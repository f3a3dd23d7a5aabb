"""YAML text of rendered objects, as `yaml.dump_all(..., Dumper=CSafeDumper, sort_keys=False,
default_flow_style=False)` writes it, in a fraction of the time.

PyYAML's representer spends most of a dump deciding, per value, how to represent it and
whether to anchor it; Kubernetes objects are plain trees of mappings, lists, strings,
integers, booleans and nulls. Those are turned into nodes directly here (anything else goes
through PyYAML's own representer), and the implicit-tag check the emitter makes of every
scalar is remembered per value. A mapping or list that appears twice is written twice,
never as an anchor and alias (which no manifest reader expects).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_Dumper: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"

_RESOLVED: dict[tuple[str, tuple[bool, bool]], str] = {}
_RESOLVED_MAX = 200_000


class _TreeDumper(_Dumper):  # type: ignore[misc]
    def represent(self, data: Any) -> None:
        self.serialize(self._node(data))
        self.represented_objects: dict[Any, Any] = {}
        self.object_keeper: list[Any] = []
        self.alias_key = None

    def _node(self, data: Any) -> Node:
        kind = type(data)
        if kind is str:
            return ScalarNode(_STR, data)
        if kind is dict:
            return MappingNode(_MAP, [(self._node(k), self._node(v)) for k, v in data.items()], flow_style=False)
        if kind is list:
            return SequenceNode(_SEQ, [self._node(v) for v in data], flow_style=False)
        if kind is bool:
            return ScalarNode(_BOOL, "true" if data else "false")
        if kind is int:
            return ScalarNode(_INT, str(data))
        if data is None:
            return ScalarNode(_NULL, "null")
        node: Node = self.represent_data(data)  # floats, dates, subclasses: PyYAML's own way
        return node

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is not ScalarNode or not isinstance(value, str):
            return str(super().resolve(kind, value, implicit))
        key = (value, (bool(implicit[0]), bool(implicit[1])))
        found = _RESOLVED.get(key)
        if found is None:
            if len(_RESOLVED) >= _RESOLVED_MAX:
                _RESOLVED.clear()
            found = _RESOLVED[key] = str(super().resolve(kind, value, implicit))
        return found


def dump_all(objects: list[Any]) -> str:
    """Block-style YAML documents, keys in the objects' own order."""
    return str(yaml.dump_all(objects, Dumper=_TreeDumper, sort_keys=False, default_flow_style=False))


def dump(value: Any) -> str:
    """One block-style YAML document, keys in the value's own order."""
    return str(yaml.dump(value, Dumper=_TreeDumper, sort_keys=False, default_flow_style=False))


__all__ = ["dump", "dump_all"]
