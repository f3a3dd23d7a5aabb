"""The end-to-end run's dispatcher: tools, control plane, chart repository, then the scenarios
(e2e/scenarios.py, e2e/house.py, e2e.node; built from e2e/harness.py, which imports none of them).

Scenario `pulumi` (the real thing): the Pulumi CLI, its Python language host and the
pinned kubernetes and random providers run the project's own program against the local
API server: preview, up, up again (no changes), a replica change (no replacement, no
Secret changed) and destroy (retained objects stay).

Scenario `manifests` (what runs when the Pulumi engine cannot be had): the program runs
under the offline preview's mocks, the chart is rendered by the Helm SDK, and every
object is applied to the same API server with server-side apply; the same workload,
Secret, idempotence, replica-change and retention checks run against the live cluster.
It proves what the API server and its controllers make of our objects; it proves
nothing about the Pulumi engine, the providers or pulumi-random's state.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import time
import traceback
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import checks, tools
from .charts import ChartRepository
from .cluster import KWOK_STAGES, ControlPlane, tail
from .harness import (
    ROOT,
    STACK,
    StepError,
    Steps,
    check_cluster,
    check_replica_change,
    copy_project,
    describe_workloads,
    e2e_config,
    kube_minor,
    set_replicas,
    user_namespaces,
    verify_retention,
    write_stack_config,
)
from .kube import ApiError, Kube


@dataclass
class Options:
    cache: Path
    # "all" (every Pulumi scenario and every stack file), "auto" (pulumi, or manifests without
    # the engine), or names from PULUMI_SCENARIOS, or "manifests".
    scenarios: tuple[str, ...] = ("all",)
    stacks: tuple[str, ...] = ()  # --stack NAME: run the stack scenario on Pulumi.NAME.yaml
    chart_source: str = "repository"  # repository | path
    keep: bool = False
    build_only: bool = False
    charts: Path = field(default_factory=lambda: ROOT.parent / "shared" / "charts")
    deadline: float = 0  # seconds; scenarios that would start later are not run (0: none)
    screenshots: Path | None = None  # the node scenario's UI screenshots are copied here too


# --- tools -----------------------------------------------------------------------------


def resolve_tools(opts: Options, steps: Steps) -> tuple[dict[str, Path], dict[str, tools.Resolved]]:
    found: dict[str, Path] = {}
    report: dict[str, tools.Resolved] = {}
    skip_pulumi = opts.scenarios == ("manifests",) and not opts.build_only
    wanted = tools.CLUSTER_TOOLS + (() if skip_pulumi else tools.PULUMI_TOOLS)
    for name in wanted:
        steps.echo(f"==> tool {name}")
        start = time.monotonic()
        r = tools.resolve(name, opts.cache)
        report[name] = r
        took = time.monotonic() - start
        if r.path is not None:
            found[name] = r.path
            steps.record(f"tool {name} ({r.origin})", "ok", took, setup=True)
            steps.echo(f"<== tool {name}: {r.origin} {r.path} ({took:.1f}s)")
        else:
            steps.record(f"tool {name}", "MISSING", took, setup=True)
            steps.echo(f"<== tool {name}: NOT AVAILABLE ({took:.1f}s)\n" + _indent(r.error, "      "))
    return found, report


def kwok_stage_files(cache: Path) -> list[Path]:
    """kwok's default stages, from the pinned kwok module (downloaded by the Go client)."""
    try:
        folder = tools.module_dir("sigs.k8s.io/kwok", tools.KWOK_VERSION, cache, "kwok's default stages")
    except tools.ToolError as exc:
        raise StepError(str(exc)) from None
    return [folder / rel for rel in KWOK_STAGES]


# --- the manifests scenario (no Pulumi engine) -----------------------------------------------

APPLY_ORDER = (
    "Namespace",
    "CustomResourceDefinition",
    "StorageClass",
    "PersistentVolume",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
)


@dataclass
class Rendered:
    objects: list[dict[str, Any]]
    retained: set[tuple[str, str, str, str]]


def render_stack(project: Path) -> Rendered:
    """Run the program under the offline preview's mocks and render its releases."""
    from components.offline.preview import RELEASE_TYPE, manifest_of
    from components.offline.program import run_program, unwrap
    from components.offline.render import find_chart, render

    run = run_program(project, STACK)
    objects: list[dict[str, Any]] = []
    retained: set[tuple[str, str, str, str]] = set()
    for res in run.resources:
        if res.type == RELEASE_TYPE:
            inputs = unwrap(res.inputs)
            chart = str(inputs["chart"])
            repo = (inputs.get("repositoryOpts") or {}).get("repo")
            if repo:  # what Helm does: the repository's index.yaml, then the archive it names
                archive = fetch_chart(str(repo), chart, inputs.get("version"), project / "charts")
            else:
                archive = Path(chart) if Path(chart).exists() else find_chart(ROOT, chart, inputs.get("version"))
            rendered = render(archive, inputs.get("values") or {}, inputs["name"], inputs["namespace"])
            objects += [r.obj for r in rendered]
            continue
        obj = manifest_of(res, reveal=True)
        if obj is None:
            continue
        objects.append(obj)
        if res.retain_on_delete:
            retained.add(identity(obj))
    return Rendered(objects, retained)


def fetch_chart(repository: str, chart: str, version: str | None, dest: Path) -> Path:
    """Download `chart` at `version` from a Helm repository (http(s) or file URL), checking its digest."""
    with urllib.request.urlopen(f"{repository.rstrip('/')}/index.yaml", timeout=30) as resp:
        entries = (yaml.safe_load(resp.read()) or {}).get("entries") or {}
    found = [e for e in entries.get(chart, []) if version is None or e.get("version") == version]
    if not found:
        raise StepError(f"chart {chart} {version or ''} is not in the repository {repository}")
    url = urllib.parse.urljoin(repository.rstrip("/") + "/", found[0]["urls"][0])
    with urllib.request.urlopen(url, timeout=60) as resp:
        data = resp.read()
    if found[0].get("digest") and hashlib.sha256(data).hexdigest() != found[0]["digest"]:
        raise StepError(f"{url}: digest does not match the repository index")
    dest.mkdir(parents=True, exist_ok=True)
    archive: Path = dest / str(url).rsplit("/", 1)[-1]
    archive.write_bytes(data)
    return archive


def identity(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"]


def apply_all(kube: Kube, objects: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], str]:
    """Server-side apply in dependency order; returns each object's resourceVersion."""
    order = {kind: i for i, kind in enumerate(APPLY_ORDER)}
    versions = {}
    for obj in sorted(objects, key=lambda o: order.get(o["kind"], len(order))):
        res = kube.resources().get((obj["apiVersion"], obj["kind"]))
        if res is not None and not res.namespaced:
            obj["metadata"].pop("namespace", None)
        try:
            live = kube.apply(obj)
        except ApiError as exc:
            raise StepError(f"the API server rejected {obj['kind']}/{obj['metadata']['name']}: {exc}") from None
        versions[identity(obj)] = live["metadata"]["resourceVersion"]
    return versions


def manifests_scenario(steps: Steps, kube: Kube, work: Path, chart: dict[str, str]) -> None:
    project = copy_project(work / "project")
    config = e2e_config(chart, kube_minor(kube))
    namespace = config["airflow-k8s:airflow"].get("namespace", "airflow")
    write_stack_config(project, config)

    with steps.step("render the e2e stack (program under mocks, chart by the Helm SDK)", setup=True):
        stack = render_stack(project)
        steps.echo(f"    {len(stack.objects)} objects, {len(stack.retained)} retained on destroy")
    with steps.step("server-side apply every object to the API server", setup=True):
        apply_all(kube, stack.objects)
    with steps.step("check: Deployments Available, migration Job complete, referenced Secrets present"):
        check_cluster(kube, namespace)
        steps.echo("    " + describe_workloads(kube, namespace))
    with steps.step("apply again: no object changed (a no-op apply keeps resourceVersion)"):
        objects = render_stack(project).objects
        live = {identity(o): kube.read(*identity(o)[:2], identity(o)[3], identity(o)[2] or None) for o in objects}
        again = apply_all(kube, objects)
        changed = [
            f"{k[1]}/{k[3]}"
            for k, version in again.items()
            if (before := live.get(k)) is None or before["metadata"]["resourceVersion"] != version
        ]
        if changed:
            raise StepError("objects changed by a second apply of the same stack: " + ", ".join(sorted(changed)))
        steps.echo(f"    {len(again)} objects applied, none changed")

    before = checks.secret_fingerprints(checks.live_secrets(kube, namespace))
    with steps.step("config change: scheduler replicas 1 -> 2 (no immutable field, no Secret changed)"):
        set_replicas(config, "scheduler", 2)
        write_stack_config(project, config)
        changed_stack = render_stack(project)
        apply_all(kube, changed_stack.objects)
        check_replica_change(kube, namespace, before)

    with steps.step("delete what the stack does not retain: retained objects stay"):
        objects = changed_stack.objects
        deleted = {identity(o) for o in objects} - changed_stack.retained
        for api_version, kind, ns, name in sorted(deleted, key=lambda i: i[1] == "Namespace"):
            kube.delete(api_version, kind, name, ns or None)
        verify_retention(kube, changed_stack.retained, set(), namespace, steps)


# --- the whole run ---------------------------------------------------------------------------

ALL = "all"
# Every scenario of a full run, in order; the stack files of the repository come after them.
# `node` runs on a real node (e2e.node), every other one on kwok's fake nodes.
PULUMI_SCENARIOS = (
    "pulumi",
    "platform",
    "upgrade",
    "comeback",
    "identity",
    "tenants",
    "stop",
    "moved",
    "examples",
    "node",
    "node-prod",  # prod's Celery shape and an external database, on a real node of its own
)
# Scenarios on trial: run only when named (`--scenario <name>`), never by `all` (CI).
TRIAL_SCENARIOS: tuple[str, ...] = ()


def repository_stacks() -> list[str]:
    return sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))


def run(opts: Options, echo: Callable[[str], None] = print) -> int:
    steps = Steps(echo)
    work = Path(tempfile.mkdtemp(prefix="airflow-k8s-e2e-"))
    planes: list[ControlPlane] = []
    repo: ChartRepository | None = None
    early: list[Callable[[], list[str]]] = []  # stops what scenarios started in the background
    code = 0
    missing_pulumi: list[str] = []
    started = time.monotonic()
    try:
        found, _ = resolve_tools(opts, steps)
        missing_cluster = [n for n in tools.CLUSTER_TOOLS if n not in found]
        missing_pulumi = [n for n in tools.PULUMI_TOOLS if n not in found]
        if opts.build_only:
            return 1 if missing_cluster or missing_pulumi else 0
        scenarios = list(opts.scenarios)
        stacks = list(opts.stacks)
        if scenarios == [ALL]:
            scenarios = [] if stacks else list(PULUMI_SCENARIOS)
            stacks = stacks or repository_stacks()
        wants_pulumi = opts.scenarios not in (("auto",), ("manifests",))
        missing = missing_cluster + (missing_pulumi if wants_pulumi else [])
        if missing:
            required = os.environ.get("AIRFLOW_K8S_E2E") == "required"
            echo(
                f"\n!!! END-TO-END RUN {'FAILED' if required else 'SKIPPED'}: not found: {', '.join(missing)} "
                "(looked on PATH, in ../shared/tools via its install.sh, in its cache, in the build cache; "
                "the reasons are above)" + ("; AIRFLOW_K8S_E2E=required makes this a failure" if required else "")
            )
            code = 1 if required else 4
            return code
        if scenarios == ["auto"]:
            scenarios = ["manifests"] if missing_pulumi else ["pulumi"]

        with steps.step(f"serve the charts from {opts.charts} on 127.0.0.1", setup=True):
            if opts.chart_source == "path":
                charts = {m.name.rsplit("-", 1)[0]: m for m in opts.charts.glob("*.tgz")}

                def chart_of(name: str) -> dict[str, str]:
                    return {"path": str(charts[name])}

                echo(f"    chart paths in {opts.charts}")
            else:
                repo = ChartRepository(opts.charts, work / "chart-repo")
                url = repo.start()

                def chart_of(name: str) -> dict[str, str]:
                    from .scenarios import CHART_VERSIONS

                    return {"repository": url, "version": CHART_VERSIONS[name]}

                echo(f"    chart repository {url} (index.yaml generated)")
        stages = kwok_stage_files(opts.cache)

        if scenarios == ["manifests"]:
            why = (
                "--scenario manifests" if opts.scenarios == ("manifests",) else "missing: " + ", ".join(missing_pulumi)
            )
            for step in ("pulumi preview", "pulumi up", "pulumi up (no changes)", "pulumi destroy"):
                steps.skipped(step, why)
            with steps.step(
                "start etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok on 127.0.0.1", setup=True
            ):
                plane = ControlPlane(work / "cluster", found, stages, echo)
                planes.append(plane)
                kube = plane.start()
            manifests_scenario(steps, kube, work, chart_of("airflow"))
            if opts.scenarios == ("auto",):
                code = 3  # the Pulumi steps did not run: not a pass
            return code

        from .house import HOUSE_SCENARIOS
        from .node.scenario import NODE_SCENARIOS, start_early
        from .node.scenario_prod import PROD_SCENARIOS
        from .scenarios import SCENARIOS, Harness, scenario_stack

        every = {**SCENARIOS, **HOUSE_SCENARIOS, **NODE_SCENARIOS, **PROD_SCENARIOS}

        harness = Harness(steps, found, work, stages, chart_of, opts.charts, planes, screenshots=opts.screenshots)
        early += [start_early(harness) for n in scenarios if n in NODE_SCENARIOS]
        jobs: list[tuple[str, Callable[[], None]]] = [(n, functools.partial(every[n], harness)) for n in scenarios]
        jobs += [(f"stack-{s}", functools.partial(scenario_stack, harness, s)) for s in stacks]
        for name, job in jobs:
            if opts.deadline and time.monotonic() - started > opts.deadline:
                steps.skipped(f"[{name}]", f"the run's time budget of {opts.deadline:.0f}s is spent")
                code = 1
                continue
            try:
                job()
            except Exception as exc:  # one scenario's failure does not stop the others
                code = 1
                report_failure(echo, exc, harness.planes)
            finally:
                for plane in harness.planes:
                    for problem in plane.stop():
                        echo(f"    {problem}")
                harness.planes.clear()
    except StepError as exc:
        code = 1
        report_failure(echo, exc, planes)
    except Exception as exc:
        code = 1
        report_failure(echo, exc, planes)
    finally:
        if code == 0 and any(result == "FAILED" for _, result, _ in steps.results):
            code = 1  # a step that failed without ending its scenario
        checked_nothing = code == 0 and not opts.build_only and steps.counts(setup=False)[0] == 0
        if checked_nothing:
            code = 1  # a run that checked nothing is not a pass
        with steps.step("stop every process and remove temporary files", setup=True):
            if repo is not None:
                repo.stop()
            for stop in early:
                for problem in stop():
                    echo(f"    {problem}")
            for plane in planes:
                for problem in plane.stop():
                    echo(f"    {problem}")
            if opts.keep:
                echo(f"    kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
        echo("")
        echo(steps.summary())
        if checked_nothing:
            echo("e2e: FAILED: no check of cluster state ran (only setup and tooling steps)")
        if code == 4:
            echo("e2e: SKIPPED (tools not found)")
        if code == 3:
            echo(
                f"\nINCOMPLETE: the Pulumi steps were not run (missing: {', '.join(missing_pulumi)}). "
                "The manifests scenario ran instead; see the build errors above."
            )
    return code


def report_failure(echo: Callable[[str], None], exc: BaseException, planes: list[ControlPlane]) -> None:
    """The failing command's error, the last lines of its log, what the cluster has pending."""
    if isinstance(exc, StepError):
        echo(f"FAILED: {exc}")
    else:
        echo(f"FAILED: {type(exc).__name__}: {exc}")
        echo(traceback.format_exc(limit=6))
    log = getattr(exc, "log", None)
    if log is not None and Path(log).is_file():
        first = Path(log).read_text(errors="replace").splitlines()[:1]
        echo(f"--- command: {first[0][2:] if first else '?'}")
        text = Path(log).read_text(errors="replace").splitlines()
        errors = [line.strip() for line in text if "error" in line.lower() and "Traceback" not in line]
        if errors:
            echo(f"--- error lines of {Path(log).name} (each cut at 600 characters) ---")
            echo("\n".join(line[:600] for line in dict.fromkeys(errors)))
        echo(f"--- last lines of {Path(log).name} ---")
        echo("\n".join(line[:600] for line in text[-25:]))
    for plane in planes:
        dead = plane.dead()
        if dead:
            echo(dead)
            for proc in plane.processes:
                echo(f"--- last lines of {proc.log.name} ---")
                echo(tail(proc.log, 8))
        if plane.kube is not None:
            try:
                from .stuck import pending_report

                report = pending_report(plane.kube, user_namespaces(plane.kube))
            except Exception as err:  # the cluster may be the thing that failed
                report = f"(could not ask the cluster: {err})"
            if report:
                echo("--- pending in the cluster ---")
                echo(report)


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())
