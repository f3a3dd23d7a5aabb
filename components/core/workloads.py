"""Where a workload keeps its pod: one table for every kind that runs pods, read by the guarantees
on rendered objects, the offline reference and reachability checks, and the end-to-end checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# kind -> (API group, path of the pod template inside the object; a Pod is its own template).
POD_TEMPLATE_PATHS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Pod": ("", ()),
    "ReplicationController": ("", ("spec", "template")),
    "Deployment": ("apps", ("spec", "template")),
    "StatefulSet": ("apps", ("spec", "template")),
    "DaemonSet": ("apps", ("spec", "template")),
    "ReplicaSet": ("apps", ("spec", "template")),
    "Job": ("batch", ("spec", "template")),
    "CronJob": ("batch", ("spec", "jobTemplate", "spec", "template")),
}


def pod_template_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod template of a workload (its `metadata` and `spec`; a Pod itself), or None for an object
    that runs no pods. An object that names its apiVersion must be of the kind's own API group (a
    custom resource called `Deployment` is not one)."""
    entry = POD_TEMPLATE_PATHS.get(str(obj.get("kind")))
    if entry is None:
        return None
    group, path = entry
    api_version = obj.get("apiVersion")
    if isinstance(api_version, str) and (api_version.rpartition("/")[0] if "/" in api_version else "") != group:
        return None
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else None


def pod_spec_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec of a workload, or None for an object that runs no pods."""
    template = pod_template_of(obj)
    spec = template.get("spec") if template is not None else None
    return spec if isinstance(spec, Mapping) else None
