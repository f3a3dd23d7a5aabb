"""Render chart archives with `helm template` (Helm v3.20, the Helm that deploys); where archives are
found is `chart_archives`."""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .chart_archives import ChartNotFoundError, all_archives, chart_dirs, find_chart
from .helm import Capabilities, helm_binary

# Where archives are found lives in chart_archives; these names stay importable from here.
__all__ = ["ChartNotFoundError", "all_archives", "chart_dirs", "find_chart"]

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


@dataclass(frozen=True)
class Rendered:
    template: str
    obj: dict[str, Any]


class HelmValuesError(ValueError):
    """The values fail the chart's values.schema.json (as Helm v3 checks it)."""


class HelmRenderError(RuntimeError):
    """`helm template` failed for another reason (a template's `fail`, a bad chart, ...)."""


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


def _is_crd_file(template: str) -> bool:
    parts = template.split("/")
    return len(parts) >= 3 and parts[-2] == "crds" and "templates" not in parts


def _chart_files(path: str) -> dict[str, bytes]:
    """Every file of a chart archive or folder, by its path inside the archive ("<chart>/...")."""
    if Path(path).is_dir():
        base = Path(path)
        return {
            f"{base.name}/{p.relative_to(base).as_posix()}": p.read_bytes()
            for p in sorted(base.rglob("*"))
            if p.is_file()
        }
    files: dict[str, bytes] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                files[member.name] = handle.read()
    return files


@functools.lru_cache(maxsize=16)
def _archive(path: str, mtime: float) -> tuple[str, str, dict[str, Any] | None, tuple[dict[str, Any], ...]]:
    """(chart name, version, values.schema.json, CRDs under every crds/ folder) of a chart."""
    files = _chart_files(path)
    top = next(iter(files)).split("/")[0]
    meta = yaml.safe_load(files[f"{top}/Chart.yaml"])
    schema_file = f"{top}/values.schema.json"
    schema = json.loads(files[schema_file]) if schema_file in files else None
    crds: list[dict[str, Any]] = []
    for name in sorted(files):
        if _is_crd_file(name) and name.endswith((".yaml", ".yml")):
            docs = load_all(files[name].decode())
            crds.extend(d for d in docs if d and d.get("kind") == "CustomResourceDefinition")
    return str(meta["name"]), str(meta["version"]), schema, tuple(crds)


def chart_files(path: Path) -> dict[str, bytes]:
    """Every file of a chart archive (or folder) by its path inside it, e.g. "airflow/files/x.yml"."""
    return _chart_files(str(path))


def chart_info(path: Path) -> tuple[str, str, dict[str, Any] | None, tuple[dict[str, Any], ...]]:
    resolved = path.resolve()
    return _archive(str(resolved), resolved.stat().st_mtime)


def check_values(path: Path, values: dict[str, Any]) -> None:
    """Strictness at the top level, where the Airflow chart's schema allows unknown keys and Helm
    would silently ignore a misspelt section (Helm itself checks the rest of values.schema.json)."""
    name, version, schema, _ = chart_info(path)
    unknown = unknown_top_level_keys(schema, values)
    if unknown and schema:
        known = list(schema["properties"])
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise UnknownValuesError(
            f"unknown chart value key {', '.join(hints)}: not in {name} {version}'s values.schema.json"
        )


_SOURCE = re.compile(r"^---\s*\n# Source: (.+)$", re.MULTILINE)


@functools.lru_cache(maxsize=64)
def _parse_crd_text(text: str) -> tuple[dict[str, Any], ...]:
    return tuple(d for d in load_all(text) if d)


@dataclass(frozen=True)
class ChartRender:
    """One `helm template`: the objects of the chart's templates (hooks included, in Helm's
    install order) and the CRDs Helm installs first from the crds/ folders of the chart and its
    enabled subcharts."""

    objects: list[Rendered]
    crds: list[dict[str, Any]]


def split_manifests(output: str) -> list[tuple[str, str]]:
    """`helm template` output as (template path, YAML text) in Helm's order."""
    marks = list(_SOURCE.finditer(output))
    return [
        (m.group(1).strip(), output[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(output)])
        for i, m in enumerate(marks)
    ]


def render_chart(
    path: Path, values: dict[str, Any], name: str, namespace: str, capabilities: Capabilities | None = None
) -> ChartRender:
    """`helm template` with Helm v3.20 (the provider's Helm) and the target cluster's capabilities.

    Helm checks the values against the chart's values.schema.json (HelmValuesError); the top
    level is checked strictly first (UnknownValuesError)."""
    check_values(path, values)
    caps = capabilities or Capabilities.for_cluster()
    command = [
        helm_binary(),
        "template",
        name,
        str(path),
        "--namespace",
        namespace,
        "--include-crds",
        "--values",
        "-",
        *caps.helm_args(),
    ]
    env = {**os.environ, "HELM_NAMESPACE": namespace}
    done = subprocess.run(command, input=json.dumps(values), capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        message = done.stderr.strip().removeprefix("Error: ")
        message = message.split("\n\nUse --debug flag")[0]
        if "don't meet the specifications of the schema" in message:
            raise HelmValuesError(message)
        raise HelmRenderError(message)
    objects: list[Rendered] = []
    crds: list[dict[str, Any]] = []
    for template, text in split_manifests(done.stdout):
        if template.endswith("NOTES.txt"):
            continue
        if _is_crd_file(template):
            crds.extend(d for d in _parse_crd_text(text) if d.get("kind") == "CustomResourceDefinition")
            continue
        for doc in load_all(text):
            if not doc:
                continue
            docs = doc["items"] if str(doc.get("kind", "")).endswith("List") and "items" in doc else [doc]
            for obj in docs:
                set_namespace(obj, namespace)
                objects.append(Rendered(template, obj))
    return ChartRender(objects, crds)


def render(
    path: Path, values: dict[str, Any], name: str, namespace: str, capabilities: Capabilities | None = None
) -> list[Rendered]:
    """The objects `helm template` renders from the chart's templates (see `render_chart`)."""
    return render_chart(path, values, name, namespace, capabilities).objects


def crds_of(path: Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions a chart ships under crds/ (its subcharts' included), and
    those it ships as templates under templates/crds/ (KEDA does), rendered with the chart's
    defaults: what a cluster that installed that chart has, for custom resources of a stack
    that uses it without installing it."""
    resolved = path.resolve()
    return list(_crds(str(resolved), resolved.stat().st_mtime))


@functools.lru_cache(maxsize=16)
def _crds(path: str, mtime: float) -> tuple[dict[str, Any], ...]:
    found = list(chart_info(Path(path))[3])
    name = chart_info(Path(path))[0]
    if any("/templates/crds/" in f"/{f}" for f in _chart_files(path)):
        rendered = render_chart(Path(path), {}, name, name)
        found.extend(r.obj for r in rendered.objects if r.obj.get("kind") == "CustomResourceDefinition")
    return tuple(found)
