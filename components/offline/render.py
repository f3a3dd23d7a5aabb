"""Find chart archives locally and render them with Helm's own Go SDK (helm-python-sdk)."""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CLUSTER_SCOPED = frozenset(
    {
        "APIService",
        "CertificateSigningRequest",
        "ClusterIssuer",
        "ClusterRole",
        "ClusterRoleBinding",
        "CSIDriver",
        "CSINode",
        "CustomResourceDefinition",
        "FlowSchema",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)


_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _YamlLoader(_Loader):  # type: ignore[misc]
    """Safe loading, plus YAML 1.1's `=` "value" tag (used in Prometheus CRDs) read as a string."""


_YamlLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def load_all(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=_YamlLoader))


class ChartNotFoundError(FileNotFoundError):
    pass


def chart_dirs(root: Path) -> list[Path]:
    """Where chart archives are looked for: $AIRFLOW_K8S_CHARTS first, then ../shared/charts."""
    dirs = []
    env = os.environ.get("AIRFLOW_K8S_CHARTS")
    if env:
        dirs.append(Path(env))
    dirs.append(root.resolve().parent / "shared" / "charts")
    return dirs


def find_chart(root: Path, chart: str, version: str | None) -> Path:
    """The local archive of `chart` at `version` (or a local chart path as given)."""
    candidate = Path(chart)
    if candidate.suffix == ".tgz" or "/" in chart or candidate.is_dir():
        path = candidate if candidate.is_absolute() else root / candidate
        if path.exists():
            return path
        raise ChartNotFoundError(f"chart path {chart!r} does not exist (looked for {path})")
    wanted = f"{chart}-{version}.tgz" if version else f"{chart}-*.tgz"
    dirs = chart_dirs(root)
    for directory in dirs:
        matches = sorted(directory.glob(wanted))
        if matches:
            return matches[-1]
    raise ChartNotFoundError(
        f"chart archive {wanted} not found; looked in: {', '.join(str(d) for d in dirs)} "
        "(set AIRFLOW_K8S_CHARTS to a folder holding it)"
    )


@functools.lru_cache(maxsize=16)
def _load(path: str) -> Any:
    """A loaded chart for reading only (CRDs); never render with it (see `render`)."""
    import helm_python as helm

    return helm.Chart.load(path)


@dataclass(frozen=True)
class Rendered:
    template: str
    obj: dict[str, Any]


def parse_manifests(manifests: dict[str, str], namespace: str) -> list[Rendered]:
    """YAML documents of a render, NOTES skipped, namespaced objects given the release namespace."""
    out: list[Rendered] = []
    for template in sorted(manifests):
        if template.endswith("NOTES.txt"):
            continue
        for doc in load_all(manifests[template]):
            if not doc:
                continue
            docs = doc["items"] if doc.get("kind", "").endswith("List") and "items" in doc else [doc]
            for obj in docs:
                set_namespace(obj, namespace)
                out.append(Rendered(template, obj))
    return out


def set_namespace(obj: dict[str, Any], namespace: str) -> None:
    """What Helm and kubectl do: a namespaced object without a namespace gets the target one."""
    if obj.get("kind") in CLUSTER_SCOPED:
        return
    meta = obj.setdefault("metadata", {})
    if not meta.get("namespace"):
        meta["namespace"] = namespace


class UnknownValuesError(ValueError):
    """A top-level values key the chart's schema does not know (Helm itself would ignore it)."""


def unknown_top_level_keys(schema: dict[str, Any] | None, values: dict[str, Any]) -> list[str]:
    if not schema or "properties" not in schema:
        return []
    return sorted(k for k in values if k not in schema["properties"])


def check_values(chart: Any, values: dict[str, Any]) -> None:
    """The chart's values.schema.json, plus strictness at the top level, where the Airflow
    chart's schema allows unknown keys and Helm would silently ignore a misspelt section."""
    chart.validate_schema(values)
    schema = chart.schema
    unknown = unknown_top_level_keys(schema, values)
    if unknown:
        known = list(schema["properties"])
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise UnknownValuesError(
            f"unknown chart value key {', '.join(hints)}: not in {chart.name} {chart.version}'s values.schema.json"
        )


def render(path: Path, values: dict[str, Any], name: str, namespace: str) -> list[Rendered]:
    """Validate values against the chart's values.schema.json, then render it.

    The chart is loaded afresh for every render (about 20 ms): Helm's dependency
    processing drops disabled subcharts from the loaded chart in place, so a chart
    rendered once with `postgresql.enabled: false` would lose Postgres for good.
    """
    import helm_python as helm

    with helm.Chart.load(str(path)) as chart:
        check_values(chart, values)
        manifests = chart.render(values, name=name, namespace=namespace, is_install=True)
    return parse_manifests(manifests, namespace)


def crds_of(path: Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions a chart ships under crds/ (its subcharts' included)."""
    return list(_crds(str(path.resolve())))


@functools.lru_cache(maxsize=16)
def _crds(path: str) -> tuple[dict[str, Any], ...]:
    chart = _load(path)
    found: list[dict[str, Any]] = []
    for crd in chart.crds:
        found.extend(d for d in load_all(crd["data"]) if d and d.get("kind") == "CustomResourceDefinition")
    found.extend(_template_crds(path, chart))
    return tuple(found)


def _template_crds(path: str, chart: Any) -> list[dict[str, Any]]:
    """CRDs a chart ships as templates under templates/crds/ (KEDA does), rendered with the chart's
    defaults: what a cluster that installed that chart has, for custom resources of a stack that
    uses it without installing it."""
    templates = [t for t in _template_names(chart) if "/crds/" in f"/{t}"]
    if not templates:
        return []
    import helm_python as helm

    with helm.Chart.load(path) as fresh:
        manifests = fresh.render({}, name=fresh.name, namespace=fresh.name, is_install=True)
    docs = [d for name, text in manifests.items() if "/crds/" in name for d in load_all(text)]
    return [d for d in docs if d and d.get("kind") == "CustomResourceDefinition"]


def _template_names(chart: Any) -> list[str]:
    names = []
    for template in chart.templates:
        name = template.get("name") if isinstance(template, dict) else getattr(template, "name", template)
        names.append(str(name))
    return names


def all_archives(root: Path) -> Iterator[Path]:
    seen: set[str] = set()
    for directory in chart_dirs(root):
        for path in sorted(directory.glob("*.tgz")):
            if path.name not in seen:
                seen.add(path.name)
                yield path
