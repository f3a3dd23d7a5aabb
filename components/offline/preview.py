# Longer than 600 lines: the preview's steps in the order they run (program, render, policy, checks,
# report), each a function of its own.
"""The offline preview: every object a stack deploys, rendered and validated, with no cluster.

Steps: run the program under recording mocks; turn each Pulumi-declared Kubernetes
resource into its manifest; render each `helm.v3.Release` from the local chart archive
(values checked against the chart's values.schema.json first); then validate
everything together (Kubernetes schemas, CRD schemas, references across objects) and
scan it with checkov.
"""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..airflow.values.invariants import rendered_problems
from . import airflow_checks, checks, policy, yamlout
from .chart_archives import Wanted, at_hand, resolve
from .checks import ClusterFacts, Item, Problem
from .deployed_state import DeployedState, DeployedStateError, read_export
from .dry_run import Outcome, Target, preview_dry_run
from .helm import HELM_VERSION, Capabilities, builtin_api_versions, crd_api_versions, helm_binary
from .policy import resource_id
from .program import ProgramRun, Registered, is_secret, run_program, secret_paths, unwrap
from .render import (
    CLUSTER_SCOPED,
    ChartNotFoundError,
    HelmRenderError,
    HelmValuesError,
    UnknownValuesError,
    all_archives,
    crds_of,
    find_chart,
    load_all,
    render_chart,
    set_namespace,
)
from .report import (
    Baseline,
    Node,
    Row,
    counts,
    diff_summary,
    last_successful,
    mask_secret_object,
    object_key,
    outputs_text,
    render_tree,
    rows,
    summary_line,
    unchanged_note,
    write_state,
)

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
CRD_TYPE = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"
STACK_TYPE = "pulumi:pulumi:Stack"
REDACTED = "[secret]"


@dataclass
class Source:
    """One Pulumi resource or chart release, and the objects it yields."""

    name: str
    kind: str  # "resource" or "release"
    pulumi_type: str
    objects: list[dict[str, Any]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    urn: str = ""

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
    rows: list[Row] = field(default_factory=list)
    capabilities: Capabilities | None = None
    policy: policy.PolicyResult | None = None
    baseline: Baseline | None = None
    dry_run: Outcome | None = None
    airflow: airflow_checks.Verdict | None = None

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


def redact(value: Any, masked: bool = False) -> Any:
    """Replace every secret leaf (every leaf below a secret) by a marker, keeping keys (references
    are checked by key)."""
    if not masked and is_secret(value):
        return redact(unwrap(value), masked=True)
    if isinstance(value, dict):
        return {k: redact(v, masked) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, masked) for v in value]
    return REDACTED if masked else value


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


def _sorted_keys(value: Any) -> Any:
    """Keys in a stable order: the wire format hands an object's keys over in no fixed order."""
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


_HEAD_KEYS = ("apiVersion", "kind", "metadata")  # a manifest's first keys, in this order


def manifest_of(res: Registered, *, reveal: bool = False) -> dict[str, Any] | None:
    """The Kubernetes object a Pulumi resource declares (None for other resources); secret
    values masked unless `reveal` (the end-to-end run applies the real ones)."""
    av = api_version_kind(res.type, res.inputs)
    if av is None:
        return None
    obj = _sorted_keys(_drop_nulls(unwrap(res.inputs) if reveal else redact(res.inputs)))
    obj["apiVersion"], obj["kind"] = av
    set_namespace(obj, "default")  # the provider's default namespace, as pulumi-kubernetes does
    return dict(sorted(obj.items(), key=lambda kv: _HEAD_KEYS.index(kv[0]) if kv[0] in _HEAD_KEYS else 3))


class Progress:
    def __init__(self, echo: Callable[[str], None] | None) -> None:
        self.echo = echo
        self.timings: dict[str, float] = {}

    def step(self, key: str, message: str, fn: Callable[[], Any]) -> Any:
        """Run one step, print `message`, time it under `key`."""
        if self.echo:
            self.echo(f"... {message}")
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.timings[key] = round(time.perf_counter() - start, 3)


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


def wanted_chart(res: Registered) -> Wanted:
    """The chart a Release installs: name, version and repository (repositoryOpts.repo)."""
    inputs = unwrap(res.inputs)
    repository = (inputs.get("repositoryOpts") or {}).get("repo")
    version = inputs.get("version")
    return Wanted(str(inputs["chart"]), str(version) if version else None, str(repository) if repository else None)


def release_identity(inputs: dict[str, Any], res: Registered) -> tuple[str, str]:
    return str(inputs.get("name") or res.name), str(inputs.get("namespace") or "default")


def render_release(
    root: Path, res: Registered, capabilities: Capabilities | None = None
) -> tuple[Source, list[Problem], list[dict[str, Any]]]:
    """Render one Release with `helm template` (Helm v3.20) and the target cluster's capabilities."""
    inputs = unwrap(res.inputs)
    name, namespace = release_identity(inputs, res)
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
        urn=res.urn,
    )
    try:
        archive = find_chart(root, chart, version)
    except ChartNotFoundError as exc:
        return source, [Problem("chart", res.name, f"Release/{name}", str(exc))], []
    source.detail["archive"] = archive.name
    caps = capabilities or Capabilities.for_cluster()
    source.detail["isUpgrade"] = caps.is_upgrade
    try:
        rendered = render_chart(archive, inputs.get("values") or {}, name, namespace, caps)
    except (UnknownValuesError, HelmValuesError, HelmRenderError) as exc:
        rule = "render" if isinstance(exc, HelmRenderError) else "values-schema"
        return source, [Problem(rule, res.name, f"Release/{name}", str(exc))], []
    source.objects = [r.obj for r in rendered.objects]
    source.detail["templates"] = sorted({r.template for r in rendered.objects})
    source.detail["hooks"] = sum(
        1 for r in rendered.objects if "helm.sh/hook" in (r.obj.get("metadata", {}).get("annotations") or {})
    )
    if not inputs.get("skipCrds"):  # what Helm installs from the crds/ folders
        source.detail["crds"] = sorted(str(c["metadata"]["name"]) for c in rendered.crds)
    return source, [], rendered.crds


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
                urn=release.urn,
            )
        )
    return found


def write_yaml(path: Path, objects: list[dict[str, Any]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yamlout.dump_all(objects)
    path.write_text(text)
    return text


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


def declared_api_versions(run: ProgramRun) -> set[str]:
    """`cluster.apiVersions`: APIs the cluster serves beyond Kubernetes' own (CRDs installed by others)."""
    return {str(v) for v in run.config_object("cluster").get("apiVersions", [])}


def stack_capabilities(
    root: Path, run: ProgramRun, kube_version: str | None, extra: set[str] | None = None
) -> Capabilities:
    """The target cluster as the provider's Helm will see it once the stack's CRDs are in: Kubernetes'
    built-in APIs for the version, the CRDs the stack installs (chart crds/ folders, CRDs declared as
    Pulumi resources) and those `cluster.apiVersions` declares."""
    apis = declared_api_versions(run) | (extra or set())
    for res in run.resources:
        if res.type == RELEASE_TYPE:
            inputs = unwrap(res.inputs)
            if inputs.get("skipCrds"):
                continue
            try:
                archive = find_chart(root, inputs["chart"], inputs.get("version"))
            except ChartNotFoundError:
                continue
            apis |= crd_api_versions(crds_of(archive))
        elif res.type == CRD_TYPE:
            apis |= crd_api_versions([unwrap(res.inputs)])
    return Capabilities.for_cluster(kube_version_of(run, kube_version), apis)


def existing_releases(previous: dict[str, Any] | None) -> set[str]:
    """namespace/name of every Release of the previous preview of the stack."""
    found = set()
    for res in (previous or {}).get("resources") or []:
        if res.get("type") == RELEASE_TYPE and isinstance(res.get("inputs"), dict):
            found.add(f"{res['inputs'].get('namespace') or 'default'}/{res['inputs'].get('name') or res['name']}")
    return found


def _render_one(
    root: Path, res: Registered, capabilities: Capabilities, upgrades: set[str] | bool
) -> tuple[Source, list[Problem], list[dict[str, Any]]]:
    name, namespace = release_identity(unwrap(res.inputs), res)
    is_upgrade = upgrades if isinstance(upgrades, bool) else f"{namespace}/{name}" in upgrades
    return render_release(root, res, capabilities.upgrade(is_upgrade))


def _archive_size(root: Path, res: Registered) -> int:
    inputs = unwrap(res.inputs)
    try:
        return find_chart(root, inputs["chart"], inputs.get("version")).stat().st_size
    except (ChartNotFoundError, KeyError, OSError):
        return 0


def render_releases(
    root: Path,
    releases: list[Registered],
    capabilities: Capabilities,
    upgrades: set[str] | bool,
    meanwhile: Callable[[], None] | None = None,
    on_done: Callable[[Registered, tuple[Source, list[Problem], list[dict[str, Any]]]], None] | None = None,
) -> list[tuple[Source, list[Problem], list[dict[str, Any]]]]:
    """Render every Release at once (one `helm template` process each, side by side, the biggest
    chart first). The Python side waits on Helm, so it does its own work meanwhile: `meanwhile()`
    once the renders are started, then `on_done(release, result)` for each render as it finishes."""
    if releases:
        helm_binary()  # found (or fetched) once, before the side-by-side renders
    results: dict[int, tuple[Source, list[Problem], list[dict[str, Any]]]] = {}
    order = sorted(releases, key=lambda r: -_archive_size(root, r))
    with ThreadPoolExecutor(max_workers=max(1, len(releases))) as pool:
        futures = {pool.submit(_render_one, root, res, capabilities, upgrades): res for res in order}
        if meanwhile is not None:
            meanwhile()
        for future in as_completed(futures):
            res = futures[future]
            results[id(res)] = future.result()
            if on_done is not None:
                on_done(res, results[id(res)])
    return [results[id(res)] for res in releases]


class PreviewFiles:
    """resources/, releases/ and values/ of a preview, each file written as soon as its objects are
    known; `digest()` is that of the scanned files (resources/ and releases/)."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.texts: dict[str, str] = {}
        for folder in ("resources", "releases", "values"):
            if (target / folder).exists():
                shutil.rmtree(target / folder)

    def write(self, source: Source) -> None:
        folder = "resources" if source.kind == "resource" else "releases"
        self.texts[f"{folder}/{source.name}"] = write_yaml(
            self.target / folder / f"{source.name}.yaml", [mask_secret_object(o) for o in source.objects]
        )

    def write_values(self, run: ProgramRun) -> None:
        """What `pulumi preview` shows of a Release: the values handed to Helm."""
        for res in run.resources:
            if res.type == RELEASE_TYPE:
                values = _sorted_keys(_drop_nulls(redact(res.inputs.get("values") or {})))
                path = self.target / "values" / f"{res.name}.yaml"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(yamlout.dump(values))

    def digest(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(self.texts):  # the program registers resources in no fixed order
            digest.update(f"{name}\0{self.texts[name]}\0".encode())
        return digest.hexdigest()


def preview(
    root: Path,
    stack: str,
    out: Path,
    *,
    kube_version: str | None = None,
    run_checkov: bool = True,
    echo: Callable[[str], None] | None = None,
    program_run: ProgramRun | None = None,
    releases_exist: bool | None = None,
    api_versions: set[str] | None = None,
    baseline_state: Path | None = None,
    dry_run: Target | None = None,
) -> PreviewResult:
    """Preview `stack`; `program_run` supplies an already recorded run (tests) instead of the stack files.

    `releases_exist`: render every Release as an upgrade (True) or a first install (False);
    default: the Releases of the baseline are upgrades. `baseline_state`: a `pulumi stack export`
    of the stack to compare with (components/offline/deployed_state.py) instead of the last
    successful preview. `dry_run`: where every object is sent as a server-side dry run (default: the
    local API server, unless AIRFLOW_K8S_DRY_RUN=off)."""
    # A preview is a short batch that allocates much and frees most of it at the end: the cyclic
    # collector is held off until it is done (it would pass over the same live objects again and
    # again, about a tenth of a warm preview) and runs as usual after.
    collecting = gc.isenabled()
    gc.disable()
    progress = Progress(echo)
    options = json.dumps([program_run is not None, kube_version, sorted(api_versions or ()), releases_exist])
    started: list[policy.Scanner] = []
    judges: list[airflow_checks.Judge] = []  # the Airflow checks' process, stopped if the preview stops early

    def start_scanner() -> policy.Scanner | None:
        if run_checkov and not started:
            started.append(
                policy.Scanner(
                    root, stack, out / stack, out / policy.CACHE_DIR, options if program_run is None else None
                )
            )
        return started[0] if started else None

    try:
        # checkov's start overlaps the program's run, unless a chart may have to be fetched: a preview
        # that cannot have its charts stops before anything slow starts.
        if at_hand(root):
            start_scanner()
        return _preview(
            root,
            stack,
            out,
            progress,
            start_scanner,
            kube_version,
            echo,
            program_run,
            releases_exist,
            api_versions,
            baseline_state,
            dry_run or Target.default(),
            judges,
        )
    finally:
        for scanner in started:
            scanner.close()
        for judge in judges:
            airflow_checks.cancel(judge)
        if collecting:
            gc.enable()


def _preview(
    root: Path,
    stack: str,
    out: Path,
    progress: Progress,
    start_scanner: Callable[[], policy.Scanner | None],
    kube_version: str | None,
    echo: Callable[[str], None] | None,
    program_run: ProgramRun | None,
    releases_exist: bool | None,
    api_versions: set[str] | None,
    baseline_state: Path | None,
    dry_run: Target,
    judges: list[airflow_checks.Judge],
) -> PreviewResult:
    run: ProgramRun = program_run or progress.step(
        "program", f"running the {stack} program under Pulumi mocks", lambda: run_program(root, stack)
    )
    judge = airflow_checks.start(root)  # imports Airflow while the charts render
    judges.append(judge)
    if echo:
        for key, origin in sorted(run.placeholders.items()):
            echo(f"    secure value {key}: {origin}")

    releases = [r for r in run.resources if r.type == RELEASE_TYPE]
    deployed = read_export(baseline_state, run.resources) if baseline_state is not None else None
    charts = [wanted_chart(r) for r in releases + (deployed.releases if deployed else [])]
    if charts:
        progress.step(
            "charts",
            f"finding the chart archives of {len(charts)} release(s) (local, cached, else fetched)",
            lambda: resolve(root, charts, echo),
        )
    scanner = start_scanner()

    target = out / stack
    capabilities = stack_capabilities(root, run, kube_version, api_versions)
    if deployed is not None:
        state = deployed
        baseline = progress.step(
            "baseline",
            f"rendering the {len(state.releases)} deployed Release(s) of {state.path} with their deployed values",
            lambda: deployed_baseline(root, state, capabilities),
        )
    else:
        baseline = last_successful(target, stack)
    previous = baseline.state
    upgrades: set[str] | bool = existing_releases(previous) if releases_exist is None else releases_exist

    sources: list[Source] = []
    problems: list[Problem] = []
    crds: list[dict[str, Any]] = []

    written = PreviewFiles(target)
    declared: dict[int, Source] = {}  # the Kubernetes objects the program declares itself
    per_release: dict[int, list[Source]] = {}  # a Release and the pod templates it embeds

    def declare_resources() -> None:
        for res in run.resources:
            if res.type == RELEASE_TYPE:
                continue
            obj = manifest_of(res)
            if obj is not None:
                source = Source(
                    res.name,
                    "resource",
                    res.type,
                    [obj],
                    {"retainOnDelete": res.retain_on_delete, "protect": res.protect},
                    urn=res.urn,
                )
                declared[id(res)] = source
                written.write(source)
        written.write_values(run)

    def release_done(res: Registered, result: tuple[Source, list[Problem], list[dict[str, Any]]]) -> None:
        per_release[id(res)] = [result[0], *embedded_pod_templates(result[0])]
        for source in per_release[id(res)]:
            written.write(source)

    def render_all() -> None:
        nonlocal capabilities
        rendered = render_releases(root, releases, capabilities, upgrades, declare_resources, release_done)
        # CRDs a chart makes from its templates (not its crds/ folder) count too: render again with them.
        made = crd_api_versions(
            [o for source, _, _ in rendered for o in source.objects if o.get("kind") == "CustomResourceDefinition"]
        )
        if not made <= capabilities.api_versions:
            capabilities = Capabilities(
                capabilities.kube_version, capabilities.api_versions | made, capabilities.is_upgrade
            )
            rendered = render_releases(root, releases, capabilities, upgrades, None, release_done)
        by_name = {id(res): result for res, result in zip(releases, rendered, strict=True)}
        for res in run.resources:
            if res.type == RELEASE_TYPE:
                _, probs, chart_crds = by_name[id(res)]
                problems.extend(release_problems(res))
                problems.extend(probs)
                crds.extend(chart_crds)
                sources.extend(per_release[id(res)])
            elif id(res) in declared:
                sources.append(declared[id(res)])

    progress.step(
        "render",
        f"rendering {len(releases)} chart release(s) with helm {HELM_VERSION} as Kubernetes "
        f"{capabilities.kube_version}, writing the preview files meanwhile",
        render_all,
    )
    items = [Item(s.name, o) for s in sources for o in s.objects]

    # The files are written: checkov scans them while the other checks run.
    digest = written.digest()
    scan_box: dict[str, Any] = {}
    scan_thread: threading.Thread | None = None
    if scanner is not None:
        files = {s.name: [resource_id(o) for o in s.objects] for s in sources}
        active = scanner

        def scan_in_background() -> None:
            start = time.perf_counter()
            try:
                scan_box["result"] = active.scan(files, digest)
            except Exception as exc:  # reported in the main thread
                scan_box["error"] = exc
            scan_box["seconds"] = round(time.perf_counter() - start, 3)

        if echo:
            echo("... scanning with checkov (beside the other checks)")
        scan_thread = threading.Thread(target=scan_in_background, daemon=True)
        scan_thread.start()

    version = capabilities.kube_version
    crd_list = crds_for(
        root, items, crds + [o for o in (i.obj for i in items) if o.get("kind") == "CustomResourceDefinition"]
    )
    steps: list[tuple[str, str, Callable[[], list[Problem]]]] = [
        (
            "schema",
            f"validating {len(items)} objects against Kubernetes {version} (strict)",
            lambda: checks.schema_problems(items, version),
        ),
        ("crd", "validating custom resources against their CRDs", lambda: checks.crd_problems(items, crd_list)),
        ("references", "checking references across objects", lambda: checks.reference_problems(items, facts_of(run))),
    ]
    for key, message, check in steps:
        problems.extend(progress.step(key, message, check))
    problems.extend(
        Problem("guarantee", source, ident, message)
        for source, ident, message in progress.step(
            "guarantees",
            "checking the guarantees on rendered pods (components/airflow/values/invariants.py)",
            lambda: rendered_problems([(i.source, i.obj) for i in items]),
        )
    )

    # Kubernetes' own judgement: every object as a server-side dry run (the Secrets' real values, as applied).
    revealed = {(r.type, r.name): manifest_of(r, reveal=True) for r in run.resources if r.type != RELEASE_TYPE}
    sent = [
        Item(s.name, revealed.get((s.pulumi_type, s.name)) or o) if s.kind == "resource" else Item(s.name, o)
        for s in sources
        for o in s.objects
    ]
    outcome: Outcome = progress.step(
        "dry run",
        "sending every object to an API server as a server-side dry run",
        lambda: preview_dry_run(root, dry_run, capabilities.kube_version, sent, crd_list, run.config),
    )
    if echo and outcome.note:
        echo(f"    dry run: {outcome.note}")
    problems.extend(outcome.problems)
    verdict = progress.step(
        "airflow",
        "judging connections, schedules, pools, variables and airflow.cfg with Airflow's own code",
        lambda: airflow_checks.finish(judge, airflow_checks.request_of(run.config, run.placeholders, items)),
    )
    judges.remove(judge)
    if echo and verdict.note:
        echo(f"    Airflow checks: {verdict.note}")
    problems.extend(verdict.problems)

    checkov_summary: dict[str, Any] = {"ran": False}
    policy_result: policy.PolicyResult | None = None
    if scan_thread is not None:
        progress.step("checkov wait", "waiting for the checkov scan", scan_thread.join)
        progress.timings["checkov"] = scan_box.get("seconds", 0.0)
        if "error" in scan_box:
            raise scan_box["error"]
        policy_result = scan_box["result"]
        checkov_summary = policy_result.summary()
        for finding in policy_result.new:
            problems.append(
                Problem(
                    "checkov",
                    finding.source,
                    finding.resource,
                    f"{finding.check_id} {finding.check_name} (new finding: fix it, or accept it with a reason in "
                    f"{policy.ALLOWLIST.as_posix()})",
                )
            )

    nodes = state_nodes(run, sources)
    problem_counts = Counter(p.source for p in problems)
    tree = rows(STACK_TYPE, f"{run.project}-{stack}", nodes, previous, lambda name: problem_counts.get(name, 0))
    outputs = masked_outputs(run)
    if not problems:  # only a successful preview is the next one's baseline
        write_state(target, stack, nodes, outputs)
    result = PreviewResult(
        stack,
        run,
        sources,
        problems,
        checkov_summary,
        progress.timings,
        target,
        tree,
        capabilities,
        policy_result,
        baseline,
        outcome,
        verdict,
    )
    (target / "summary.json").write_text(json.dumps(summary(result), indent=2, sort_keys=False) + "\n")
    return result


def deployed_baseline(root: Path, deployed: DeployedState, capabilities: Capabilities) -> Baseline:
    """The baseline of a stack export: its resources, and the objects its Releases' deployed values
    render (as upgrades: they are installed) with the preview's Helm and capabilities."""
    rendered = render_releases(root, deployed.releases, capabilities, True)
    objects: dict[str, list[dict[str, Any]]] = {}
    for res, (source, problems, _) in zip(deployed.releases, rendered, strict=True):
        if problems:
            raise DeployedStateError(
                f"--baseline-state {deployed.path}: the deployed Release {res.name} does not render: "
                + "; ".join(p.message for p in problems)
            )
        objects[res.urn] = [mask_secret_object(o) for o in source.objects]
    hidden = (
        f"; encrypted in the export, rendered as [secret]: {', '.join(deployed.hidden)} (export with --show-secrets)"
        if deployed.hidden
        else ""
    )
    description = (
        f"the deployed state in {deployed.path} (a stack export of stack '{deployed.stack}': "
        f"{len(deployed.resources)} resources, {len(deployed.releases)} Helm Release(s) rendered from their deployed "
        f"values{hidden})"
    )
    return Baseline(deployed.state(objects), description, "state", str(deployed.path))


def masked_outputs(run: ProgramRun) -> dict[str, Any]:
    return {k: (REDACTED if k in run.secret_outputs else redact(v)) for k, v in run.outputs.items()}


def state_nodes(run: ProgramRun, sources: list[Source]) -> list[Node]:
    """Every declared resource (secrets masked) and, for a Release, the objects it renders."""
    by_urn = {s.urn: s for s in sources if s.kind == "release"}
    nodes = []
    for res in run.resources:
        node = Node(res.urn, res.type, res.name, res.parent, _sorted_keys(_drop_nulls(redact(res.inputs))))
        release = by_urn.get(res.urn)
        if release is not None:
            for obj in release.objects:
                key = object_key(obj)
                if key not in node.objects:
                    node.object_order.append(key)
                node.objects[key] = mask_secret_object(obj)
        nodes.append(node)
    return nodes


def summary(result: PreviewResult) -> dict[str, Any]:
    objects = result.objects
    caps = result.capabilities
    return {
        "stack": result.stack,
        "project": result.run.project,
        "secureValues": result.run.placeholders,
        "helm": HELM_VERSION,
        "capabilities": {
            "kubeVersion": caps.kube_version if caps else None,
            "apiVersions": sorted(caps.api_versions - set(builtin_api_versions(caps.kube_version))) if caps else [],
        },
        "objects": len(objects),
        "objectsByKind": dict(sorted(Counter(o.get("kind", "?") for o in objects).items())),
        "changes": counts(result.rows),
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
        "dryRun": result.dry_run.summary() if result.dry_run else {"ran": False},
        "airflowChecks": result.airflow.summary() if result.airflow else {"ran": False},
        "outputs": masked_outputs(result.run),
        "timings": result.timings,
    }


def ci_summary(result: PreviewResult) -> dict[str, Any]:
    """What `--json FILE` writes for CI: the baseline, the counts, every changed row with its
    changed fields, the problems."""
    return {
        "stack": result.stack,
        "baseline": result.baseline.to_json() if result.baseline else None,
        "changes": counts(result.rows),
        "changed": diff_summary(result.rows),
        "problems": [asdict(p) for p in result.problems],
        "checkov": {k: result.checkov.get(k) for k in ("ran", "passed", "new", "accepted", "cached")},
        "exitCode": 1 if result.problems else 0,
    }


def table(result: PreviewResult, *, show_diff: bool = False, show_same: bool = False) -> str:
    """What the command prints: the baseline, the tree with change marks (unchanged rows only where
    a changed one sits under them, unless `show_same`), outputs, problems, the policy scan."""
    lines = []
    if result.baseline is not None:
        lines += [f"Compared with {result.baseline.description}.", ""]
    lines.append(render_tree(result.rows, show_diff=show_diff, show_same=show_same))
    hidden = unchanged_note(result.rows, show_same)
    if hidden:
        lines.append(f"     ({hidden})")
    lines += ["", outputs_text(result.run.outputs, result.run.secret_outputs)]
    lines += ["", summary_line(result.rows)]
    lines.append(
        f"\n{len(result.objects)} objects from {len(result.sources)} sources; {len(result.problems)} problems."
    )
    checkov = result.checkov
    if checkov.get("ran"):
        lines.append(
            f"checkov: {checkov['passed']} passed, {checkov['new']} new findings, {checkov['accepted']} accepted "
            f"({policy.ALLOWLIST.as_posix()}){', reused the last scan of the same files' if checkov['cached'] else ''}"
            f" ({result.out_dir / 'checkov.json'})"
        )
        for stale in checkov.get("staleAllowListEntries") or []:
            lines.append(f"warning: allow-list entry matches no finding any more: {stale}")
    outcome = result.dry_run
    if outcome is not None and outcome.ran:
        lines.append(
            f"dry run: {len(outcome.problems)} refused by {outcome.server}"
            f"{f' ({outcome.note})' if outcome.note else ''}"
        )
    elif outcome is not None:
        lines.append(f"dry run: {outcome.note}")
    verdict = result.airflow
    if verdict is not None:
        ran = f"{len(verdict.problems)} findings of Airflow {verdict.airflow}'s own checks" if verdict.ran else ""
        lines.append(f"Airflow checks: {ran or verdict.note}")
    for p in result.problems:
        lines.append(f"PROBLEM [{p.rule}] {p.source}: {p.object}: {p.message}")
    lines.append(f"Written to {result.out_dir} (values handed to each Release: {result.out_dir / 'values'})")
    return "\n".join(lines)


__all__ = ["CLUSTER_SCOPED", "PreviewResult", "Source", "ci_summary", "preview", "render_release", "summary", "table"]
