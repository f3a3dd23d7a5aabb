"""What a stack's config asks of the cluster it runs on, read before the cluster starts.

Node names: a hostPath volume pinned to a node (`logs.hostPath.node`,
`airflow.dags.hostPath.node`) is a PersistentVolume with node affinity on
`kubernetes.io/hostname`; a pod pinned by `nodeSelector`, `nodeAffinity` or `nodeName`
anywhere in the config (component settings, extraValues, task pods) only schedules on a
node of that name. The e2e cluster makes nodes of those names, or such a stack waits
forever (the hostPath logs permissions Job first).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

HOSTNAME_LABEL = "kubernetes.io/hostname"


def _walk(value: Any, key: str = "") -> Iterator[str]:
    if isinstance(value, list):
        for item in value:
            yield from _walk(item, key)
        return
    if not isinstance(value, dict):
        return
    if key == "hostPath" and isinstance(value.get("node"), str):
        yield value["node"]  # logs.hostPath.node, airflow.dags.hostPath.node
    if key == "nodeSelector" and isinstance(value.get(HOSTNAME_LABEL), str):
        yield value[HOSTNAME_LABEL]
    if value.get("key") == HOSTNAME_LABEL and value.get("operator") == "In":
        yield from (v for v in value.get("values") or [] if isinstance(v, str))  # node affinity terms
    if isinstance(value.get("nodeName"), str):
        yield value["nodeName"]
    for child_key, child in value.items():
        yield from _walk(child, str(child_key))


def pinned_node_names(config: dict[str, Any]) -> list[str]:
    """Node names the stack's config pins, in the order they appear, each once. `config` is
    a stack file's `config` mapping (or the whole stack file)."""
    return [name for name in dict.fromkeys(_walk(config)) if name]
