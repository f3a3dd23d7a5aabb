"""The offline preview: every object a stack deploys, rendered and validated, with no cluster.

Steps: run the program under recording mocks; turn each Pulumi-declared Kubernetes
resource into its manifest; render each `helm.v3.Release` from the local chart archive
(values checked against the chart's values.schema.json first); then validate
everything together (Kubernetes schemas, CRD schemas, references across objects) and
scan it with checkov.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import checks
from .checks import ClusterFacts, Item, Problem
from .program import ProgramRun, Registered, is_secret, run_program, secret_paths, unwrap
from .render import (
    CLUSTER_SCOPED,
    ChartNotFoundError,
    UnknownValuesError,
    all_archives,
    crds_of,
    find_chart,
    load_all,
    render,
    set_namespace,
)

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
REDACTED = "[secret]"


@dataclass
class Source:
    """One Pulumi resource or chart release, and the objects it yields."""

    name: str
    kind: str  # "resource" or "release"
    pulumi_type: str
    objects: list[dict[str, Any]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(o.get("kind", "?") for o in self.objects).items()))


@dataclass
class PreviewResult:
    stack: str
    run: ProgramRun
    sources: list[Source]
    problems: list[Problem]
    checkov: dict[str, Any]
    timings: dict[str, float]
    out_dir: Path

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [o for s in self.sources for o in s.objects]

    def problems_of(self, source: str) -> list[Problem]:
        return [p for p in self.problems if p.source == source]


def api_version_kind(token: str, inputs: dict[str, Any]) -> tuple[str, str] | None:
    """`kubernetes:apps/v1:Deployment` -> ("apps/v1", "Deployment"); None for non-Kubernetes types."""
    if not token.startswith("kubernetes:") or token == RELEASE_TYPE:
        return None
    if "apiVersion" in inputs and "kind" in inputs:
        return str(inputs["apiVersion"]), str(inputs["kind"])
    _, module, kind = token.split(":")
    group, _, version = module.rpartition("/")
    return (version if group == "core" else f"{group}/{version}"), kind


def redact(value: Any) -> Any:
    """Replace every secret leaf by a marker, keeping keys (references are checked by key)."""
    if is_secret(value):
        return _mask(unwrap(value))
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return REDACTED


def _drop_nulls(value: Any) -> Any:
    """Nulls dropped, and whole numbers as integers: Pulumi's RPC carries every number as a double
    (50000 arrives as 50000.0); the provider sends whole ones to Kubernetes as integers."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def manifest_of(res: Registered, *, reveal: bool = False) -> dict[str, Any] | None:
    """The Kubernetes object a Pulumi resource declares (None for other resources); secret
    values masked unless `reveal` (the end-to-end run applies the real ones)."""
    av = api_version_kind(res.type, res.inputs)
    if av is None:
        return None
    obj = _drop_nulls(unwrap(res.inputs) if reveal else redact(res.inputs))
    obj["apiVersion"], obj["kind"] = av
    set_namespace(obj, "default")  # the provider's default namespace, as pulumi-kubernetes does
    return dict(
        sorted(
            obj.items(),
            key=lambda kv: (
                ("apiVersion", "kind", "metadata").index(kv[0]) if kv[0] in ("apiVersion", "kind", "metadata") else 3
            ),
        )
    )


class Progress:
    def __init__(self, echo: Callable[[str], None] | None) -> None:
        self.echo = echo
        self.timings: dict[str, float] = {}

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        if self.echo:
            self.echo(f"... {name}")
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.timings[name] = round(time.perf_counter() - start, 3)


def release_problems(res: Registered) -> list[Problem]:
    """No secret value may travel in a Release's inputs: the chart gets Secret names only."""
    return [
        Problem(
            rule="release-secret",
            source=res.name,
            object=f"Release/{res.inputs.get('name', res.name)}",
            message=f"Release input '{path}' carries a secret value; hand the chart a Secret name instead",
        )
        for path in secret_paths(res.inputs)
    ]


def render_release(root: Path, res: Registered) -> tuple[Source, list[Problem], list[dict[str, Any]]]:
    inputs = unwrap(res.inputs)
    name = inputs.get("name") or res.name
    namespace = inputs.get("namespace") or "default"
    chart = inputs["chart"]
    version = inputs.get("version")
    source = Source(
        name=res.name,
        kind="release",
        pulumi_type=res.type,
        detail={
            "release": name,
            "namespace": namespace,
            "chart": chart,
            "version": version,
            "repository": (inputs.get("repositoryOpts") or {}).get("repo"),
        },
    )
    try:
        archive = find_chart(root, chart, version)
    except ChartNotFoundError as exc:
        return source, [Problem("chart", res.name, f"Release/{name}", str(exc))], []
    source.detail["archive"] = archive.name
    try:
        rendered = render(archive, inputs.get("values") or {}, name, namespace)
    except Exception as exc:  # helm_python raises HelmValuesError / HelmRenderError
        kind = "values-schema" if "Values" in type(exc).__name__ else "render"
        if isinstance(exc, UnknownValuesError):
            return source, [Problem(kind, res.name, f"Release/{name}", str(exc))], []
        return source, [Problem(kind, res.name, f"Release/{name}", f"{type(exc).__name__}: {exc}".strip())], []
    source.objects = [r.obj for r in rendered]
    source.detail["templates"] = sorted({r.template for r in rendered})
    source.detail["hooks"] = sum(
        1 for r in rendered if "helm.sh/hook" in (r.obj.get("metadata", {}).get("annotations") or {})
    )
    chart_crds = crds_of(archive)
    if not inputs.get("skipCrds"):  # what Helm installs from the chart's crds/ folder
        source.detail["crds"] = sorted(str(c["metadata"]["name"]) for c in chart_crds)
    return source, [], chart_crds


POD_TEMPLATE_KEY = "pod_template_file.yaml"


def embedded_pod_templates(release: Source) -> list[Source]:
    """Pod templates a chart ships inside ConfigMaps (the Airflow chart's KubernetesExecutor
    template): every task pod is created from them, so they are validated like any Pod."""
    found = []
    for obj in release.objects:
        data = obj.get("data") or {}
        if obj.get("kind") != "ConfigMap" or POD_TEMPLATE_KEY not in data:
            continue
        namespace = obj["metadata"].get("namespace", "default")
        pods = [d for d in load_all(data[POD_TEMPLATE_KEY]) if d]
        for pod in pods:
            set_namespace(pod, namespace)
        found.append(
            Source(
                name=f"{release.name}.pod-template",
                kind="embedded",
                pulumi_type=release.pulumi_type,
                objects=pods,
                detail={"configMap": obj["metadata"]["name"], "key": POD_TEMPLATE_KEY},
            )
        )
    return found


def write_yaml(path: Path, objects: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump_all(objects, Dumper=dumper, sort_keys=False, default_flow_style=False))


def facts_of(run: ProgramRun) -> ClusterFacts:
    cluster = run.config_object("cluster")
    return ClusterFacts(
        storage_classes=frozenset(cluster.get("storageClasses", [])),
        persistent_volume_claims=frozenset(cluster.get("persistentVolumeClaims", [])),
        ingress_classes=frozenset(cluster.get("ingressClasses", [])),
        namespaces=frozenset(cluster.get("namespaces", [])),
        pod_labels=frozenset(cluster.get("pods", [])),
        secrets=frozenset(cluster.get("secrets", [])),
    )


def kube_version_of(run: ProgramRun, override: str | None) -> str:
    return override or str(run.config_object("cluster").get("kubernetesVersion", "1.31"))


def crds_for(root: Path, items: list[Item], rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CRDs for the custom resources present: those the stack renders or its charts ship, and,
    for kinds whose operator is not part of this stack, those of every local chart archive."""
    found = list(rendered)
    known = {(c["spec"]["group"], c["spec"]["names"]["kind"]) for c in found}
    builtin = checks.BUILTIN_GROUPS
    missing = {
        (str(i.obj.get("apiVersion", "")).rpartition("/")[0], str(i.obj.get("kind")))
        for i in items
        if "/" in str(i.obj.get("apiVersion", "")) and str(i.obj["apiVersion"]).rpartition("/")[0] not in builtin
    } - known
    if missing:
        for archive in all_archives(root):
            found.extend(crds_of(archive))
    return found


def preview(
    root: Path,
    stack: str,
    out: Path,
    *,
    kube_version: str | None = None,
    run_checkov: bool = True,
    echo: Callable[[str], None] | None = None,
    program_run: ProgramRun | None = None,
) -> PreviewResult:
    """Preview `stack`; `program_run` supplies an already recorded run (tests) instead of the stack files."""
    progress = Progress(echo)
    run: ProgramRun = program_run or progress.step(
        f"running the {stack} program under Pulumi mocks", lambda: run_program(root, stack)
    )
    if echo:
        for key, origin in sorted(run.placeholders.items()):
            echo(f"    secure value {key}: {origin}")

    sources: list[Source] = []
    problems: list[Problem] = []
    crds: list[dict[str, Any]] = []

    def render_all() -> None:
        for res in run.resources:
            if res.type == RELEASE_TYPE:
                source, probs, chart_crds = render_release(root, res)
                problems.extend(release_problems(res))
                problems.extend(probs)
                crds.extend(chart_crds)
                sources.append(source)
                sources.extend(embedded_pod_templates(source))
            else:
                obj = manifest_of(res)
                if obj is not None:
                    sources.append(
                        Source(
                            res.name,
                            "resource",
                            res.type,
                            [obj],
                            {"retainOnDelete": res.retain_on_delete, "protect": res.protect},
                        )
                    )

    progress.step("rendering chart releases with the Helm SDK", render_all)
    sources.sort(key=lambda s: (s.kind != "resource", s.pulumi_type, s.name))

    items = [Item(s.name, o) for s in sources for o in s.objects]
    version = kube_version_of(run, kube_version)
    problems.extend(
        progress.step(
            f"validating {len(items)} objects against Kubernetes {version} (strict)",
            lambda: checks.schema_problems(items, version),
        )
    )
    crd_list = crds_for(
        root, items, crds + [o for o in (i.obj for i in items) if o.get("kind") == "CustomResourceDefinition"]
    )
    problems.extend(
        progress.step("validating custom resources against their CRDs", lambda: checks.crd_problems(items, crd_list))
    )
    problems.extend(
        progress.step("checking references across objects", lambda: checks.reference_problems(items, facts_of(run)))
    )

    target = out / stack
    if target.exists():
        shutil.rmtree(target)
    for s in sources:
        folder = "resources" if s.kind == "resource" else "releases"
        write_yaml(target / folder / f"{s.name}.yaml", s.objects)

    checkov_summary: dict[str, Any] = {"ran": False}
    if run_checkov:

        def scan() -> tuple[int, int, list[dict[str, Any]]]:
            return checks.run_checkov(target, target / "checkov.json")

        passed, failed, failures = progress.step("scanning with checkov", scan)
        checkov_summary = {"ran": True, "passed": passed, "failed": failed, "report": "checkov.json"}
        checkov_summary["failed_by_check"] = dict(Counter(f["check_id"] for f in failures).most_common())

    result = PreviewResult(stack, run, sources, problems, checkov_summary, progress.timings, target)
    (target / "summary.json").write_text(json.dumps(summary(result), indent=2, sort_keys=False) + "\n")
    return result


def summary(result: PreviewResult) -> dict[str, Any]:
    objects = result.objects
    return {
        "stack": result.stack,
        "project": result.run.project,
        "secureValues": result.run.placeholders,
        "objects": len(objects),
        "objectsByKind": dict(sorted(Counter(o.get("kind", "?") for o in objects).items())),
        "sources": [
            {
                "name": s.name,
                "type": s.pulumi_type,
                "objectsByKind": s.by_kind(),
                "problems": len(result.problems_of(s.name)),
                **s.detail,
            }
            for s in result.sources
        ],
        "problems": [asdict(p) for p in result.problems],
        "checkov": result.checkov,
        "outputs": {k: ("[secret]" if k in result.run.secret_outputs else v) for k, v in result.run.outputs.items()},
        "timings": result.timings,
    }


def table(result: PreviewResult) -> str:
    rows = [("SOURCE", "TYPE", "OBJECTS BY KIND", "PROBLEMS")]
    for s in result.sources:
        kinds = ", ".join(f"{k} {n}" for k, n in s.by_kind().items()) or "-"
        if s.kind == "release":
            label = s.detail.get("chart", "") + (f" {s.detail['version']}" if s.detail.get("version") else "")
        elif s.kind == "embedded":
            label = f"in ConfigMap {s.detail['configMap']}"
        else:
            label = s.pulumi_type.split(":")[-1]
        rows.append((s.name, label, kinds, str(len(result.problems_of(s.name)))))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for r in rows:
        kinds = r[2]
        lines.append(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {kinds:<{min(width[2], 70)}}  {r[3]}")
    lines.append("")
    lines.append(f"{len(result.objects)} objects from {len(result.sources)} sources; {len(result.problems)} problems.")
    if result.checkov.get("ran"):
        report = result.out_dir / "checkov.json"
        lines.append(f"checkov: {result.checkov['passed']} passed, {result.checkov['failed']} failed checks ({report})")
    for p in result.problems:
        lines.append(f"PROBLEM [{p.rule}] {p.source}: {p.object}: {p.message}")
    lines.append(f"Written to {result.out_dir}")
    return "\n".join(lines)


__all__ = ["CLUSTER_SCOPED", "PreviewResult", "Source", "preview", "summary", "table"]
