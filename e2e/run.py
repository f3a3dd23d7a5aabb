# Longer than 600 lines: the end-to-end run's steps and its two scenarios, in the order they run.
"""The end-to-end run: tools, control plane, chart repository, then the scenario.

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
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import checks, process, tools
from .charts import ChartRepository
from .cluster import KWOK_STAGES, ControlPlane, tail
from .kube import ApiError, Kube, wait_for

ROOT = Path(__file__).resolve().parent.parent
STACK = "e2e"
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "requirements.txt")
PROJECT_DIRS = ("components",)
WAIT_SECONDS = 300
PULUMI_TIMEOUT = 900  # no single pulumi command of a scenario may take longer
STALL_SECONDS = 120  # the same objects pending this long during `up`: stuck, stopped, named
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class StepError(RuntimeError):
    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


@dataclass
class Steps:
    """Prints each step with its duration; remembers the results for the summary.

    A step is a check (of cluster state: it fails on a wrong outcome, not only on a command
    that fails) unless it is marked `setup` (tools, control planes, project copies, stack
    init, stand-ins, a plain `up` or `destroy` whose outcome the next step checks, cleanup).
    The summary's `e2e: N passed` counts checks only; setup and tooling steps are counted
    apart, so a run that checked nothing cannot look like one that checked much."""

    echo: Callable[[str], None] = print
    results: list[tuple[str, str, float]] = field(default_factory=list)
    setup_steps: set[int] = field(default_factory=set)  # indexes into results

    @contextmanager
    def step(self, name: str, *, setup: bool = False) -> Iterator[None]:
        self.echo(f"==> {name}")
        start = time.monotonic()
        try:
            yield
        except BaseException:
            took = time.monotonic() - start
            self.record(name, "FAILED", took, setup=setup)
            self.echo(f"<== {name}: FAILED after {took:.1f}s")
            raise
        took = time.monotonic() - start
        self.record(name, "ok", took, setup=setup)
        self.echo(f"<== {name}: ok ({took:.1f}s)")

    def record(self, name: str, result: str, took: float, *, setup: bool = False) -> None:
        if setup:
            self.setup_steps.add(len(self.results))
        self.results.append((name, result, took))

    def skipped(self, name: str, why: str, *, setup: bool = False) -> None:
        self.record(name, "NOT RUN", 0.0, setup=setup)
        self.echo(f"==> {name}: NOT RUN ({why})")

    def counts(self, *, setup: bool) -> tuple[int, int, int]:
        """(ok, failed, not run) of the checks, or of the setup and tooling steps."""
        mine = [r for i, (_, r, _) in enumerate(self.results) if (i in self.setup_steps) == setup]
        ok, failed = mine.count("ok"), mine.count("FAILED")
        return ok, failed, len(mine) - ok - failed

    def summary(self) -> str:
        width = max((len(n) for n, _, _ in self.results), default=10)
        lines = [f"{'STEP':<{width}}  {'KIND':<5}  RESULT   SECONDS"]
        lines += [
            f"{n:<{width}}  {'setup' if i in self.setup_steps else 'check':<5}  {r:<7}  {s:7.1f}"
            for i, (n, r, s) in enumerate(self.results)
        ]
        lines.append(f"{'total':<{width}}  {'':<5}  {'':<7}  {sum(s for _, _, s in self.results):7.1f}")
        ok, failed, skipped = self.counts(setup=False)
        set_ok, set_failed, set_skipped = self.counts(setup=True)
        lines.append(
            f"e2e: {ok} passed, {failed} failed, {skipped} skipped (checks of cluster state); "
            f"setup and tooling steps apart: {set_ok} ok, {set_failed} failed, {set_skipped} not run"
        )
        return "\n".join(lines)


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


def check_replica_change(kube: Kube, namespace: str, before: dict[str, str]) -> None:
    """After scheduler replicas 1 -> 2: the release is healthy, two schedulers are available and
    no Secret changed (`before`: the Secrets' fingerprints ahead of the change)."""
    check_cluster(kube, namespace)
    scheduler = [d for d in kube.list("apps/v1", "Deployment", namespace) if "scheduler" in d["metadata"]["name"]]
    if not scheduler or scheduler[0]["status"].get("availableReplicas") != 2:
        raise StepError("the scheduler Deployment does not have 2 available replicas")
    changed = checks.changed_secrets(before, checks.secret_fingerprints(checks.live_secrets(kube, namespace)))
    if changed:
        raise StepError("Secrets changed by a replica change:\n" + "\n".join(changed))


def kwok_stage_files(cache: Path) -> list[Path]:
    """kwok's default stages, from the pinned kwok module (downloaded by the Go client)."""
    try:
        folder = tools.module_dir("sigs.k8s.io/kwok", tools.KWOK_VERSION, cache, "kwok's default stages")
    except tools.ToolError as exc:
        raise StepError(str(exc)) from None
    return [folder / rel for rel in KWOK_STAGES]


# --- the project copy and its stack ------------------------------------------------------


def copy_project(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, dest / name)
    for name in PROJECT_DIRS:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    project = yaml.safe_load((dest / "Pulumi.yaml").read_text())
    # The Python this harness runs under has requirements.txt installed: the language host
    # uses it as the program's virtualenv instead of creating one.
    project.setdefault("runtime", {"name": "python"})
    if isinstance(project["runtime"], str):
        project["runtime"] = {"name": project["runtime"]}
    project["runtime"].setdefault("options", {})["virtualenv"] = sys.prefix
    (dest / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    return dest


# Keys of Pulumi.dev.yaml the e2e stack keeps. Left out: `spark` and `monitoring`, whose
# charts register admission webhooks. The API server calls a webhook at its Service's
# address; under kwok no container answers there, and this harness never lets the API
# server send traffic to any address but 127.0.0.1.
E2E_KEYS = ("airflow-k8s:airflow", "airflow-k8s:logs", "airflow-k8s:cluster")


def e2e_config(chart: dict[str, str], kube_minor: str) -> dict[str, Any]:
    """The dev stack's config (see E2E_KEYS), with the chart from the local repository (or path)."""
    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    config: dict[str, Any] = {k: json.loads(json.dumps(v)) for k, v in dev.items() if k in E2E_KEYS}
    airflow = config["airflow-k8s:airflow"]
    airflow["chart"] = chart
    cluster = config.setdefault("airflow-k8s:cluster", {})
    cluster["kubernetesVersion"] = kube_minor
    return config


def set_replicas(config: dict[str, Any], component: str, replicas: int) -> None:
    config["airflow-k8s:airflow"].setdefault(component, {})["replicas"] = replicas


def write_stack_config(project: Path, config: dict[str, Any]) -> None:
    path = project / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(path.read_text()) if path.exists() else {}
    doc = doc or {}
    doc["config"] = config
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


# --- the Pulumi engine ------------------------------------------------------------------


@dataclass
class Pulumi:
    """The pulumi CLI for one project copy: every command bounded in time, as one process
    group (language host, program and provider plugins stopped with it), its output in a log."""

    binary: Path
    project: Path
    env: dict[str, str]
    logs: Path
    counter: int = 0
    last_log: Path | None = None
    # What is pending in the cluster (e2e.stuck): a stuck `up` stops once it names the same
    # objects for STALL_SECONDS instead of waiting out a Release's 15-minute timeout.
    stall: Callable[[], Callable[[], str | None]] | None = None
    stall_seconds: float = STALL_SECONDS  # real pods (a real node) start slower than kwok's

    def run(self, *args: str, check: bool = True, timeout: float = PULUMI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        self.counter += 1
        log = self.logs / f"pulumi-{self.counter:02d}-{args[0]}.log"
        cmd = [str(self.binary), "--non-interactive", *args]
        self.last_log = log
        watch = self.stall() if self.stall is not None and args[0] in ("up", "destroy", "refresh") else None
        try:
            proc = process.run_bounded(
                cmd,
                cwd=self.project,
                env=self.env,
                log=log,
                timeout=timeout,
                stall=watch,
                stall_seconds=self.stall_seconds,
            )
        except process.Stuck as exc:
            raise StepError(f"`pulumi {' '.join(args)}` stopped: {exc}", log) from None
        if check and proc.returncode != 0:
            raise StepError(f"`pulumi {' '.join(args)}` exited {proc.returncode}", log)
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)

    def summary(self, proc: subprocess.CompletedProcess[str]) -> str:
        """The last `Resources:` block Pulumi prints (preview, up, destroy), on one line."""
        lines = proc.stdout.splitlines()
        starts = [i for i, line in enumerate(lines) if line.strip() == "Resources:"]
        if not starts:
            return ""
        block = []
        for line in lines[starts[-1] + 1 :]:  # the block ends at the first blank line
            if not line.strip():
                break
            block.append(line.strip())
        return "; ".join(block)


def pulumi_env(work: Path, found: dict[str, Path], kubeconfig: Path) -> dict[str, str]:
    env = dict(os.environ)
    bin_dirs = sorted({str(p.parent) for p in found.values()})
    env.update(
        {
            "PATH": os.pathsep.join([*bin_dirs, os.path.dirname(sys.executable), env.get("PATH", "")]),
            "PULUMI_HOME": str(work / "pulumi-home"),
            "PULUMI_BACKEND_URL": f"file://{work / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": secrets.token_urlsafe(24),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
            "KUBECONFIG": str(kubeconfig),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    (work / "state").mkdir(parents=True, exist_ok=True)
    return env


def install_plugins(pulumi: Pulumi, found: dict[str, Path]) -> None:
    """The pinned providers into PULUMI_HOME from their binaries; the engine then uses those,
    not the copies on PATH (which it would prefer, with a warning per plugin)."""
    for kind, version in (("kubernetes", tools.PULUMI_KUBERNETES_VERSION), ("random", tools.PULUMI_RANDOM_VERSION)):
        binary = found[f"pulumi-resource-{kind}"]
        pulumi.run("plugin", "install", "resource", kind, version.lstrip("v"), "--file", str(binary))
    pulumi.env["PULUMI_IGNORE_AMBIENT_PLUGINS"] = "true"


def user_namespaces(kube: Kube) -> list[str]:
    return sorted(
        n["metadata"]["name"] for n in kube.list("v1", "Namespace") if n["metadata"]["name"] not in SYSTEM_NAMESPACES
    )


def check_cluster(kube: Kube, namespace: str, timeout: float = WAIT_SECONDS) -> None:
    """Every Deployment Available, StatefulSet ready, Job (the migration Job) complete, and
    every Secret a workload references present with the referenced key."""

    def ready() -> str | None:
        workloads = checks.live_workloads(kube, namespace)
        if not any(w["kind"] in ("Deployment", "StatefulSet") for w in workloads):
            return "no workloads yet"
        # The chart's Jobs may be gone already: they are deleted as soon as they finish.
        problems = checks.workload_problems(workloads)
        return "; ".join(problems) or None

    wait_for(f"workloads in namespace {namespace}", ready, timeout=timeout, interval=2)
    check_secrets(kube, namespace)


def check_namespaces(kube: Kube, namespaces: list[str], timeout: float = WAIT_SECONDS) -> None:
    """check_cluster's workload and Secret checks for namespaces without a migration Job."""

    def ready() -> str | None:
        problems = [p for ns in namespaces for p in checks.workload_problems(checks.live_workloads(kube, ns))]
        return "; ".join(problems) or None

    wait_for(f"workloads in {', '.join(namespaces)}", ready, timeout=timeout, interval=2)
    for namespace in namespaces:
        check_secrets(kube, namespace)


def check_secrets(kube: Kube, namespace: str) -> None:
    missing = checks.missing_secrets(checks.live_workloads(kube, namespace), checks.live_secrets(kube, namespace))
    if missing:
        raise StepError(f"Secrets referenced but missing in {namespace}:\n" + "\n".join(missing))


def describe_workloads(kube: Kube, namespace: str) -> str:
    rows = []
    for w in checks.live_workloads(kube, namespace):
        status = w.get("status") or {}
        if w["kind"] in ("Deployment", "StatefulSet"):
            ready = status.get("availableReplicas", status.get("readyReplicas", 0))
            rows.append(f"{w['kind']}/{w['metadata']['name']} {ready}/{(w.get('spec') or {}).get('replicas', 1)}")
        elif w["kind"] == "DaemonSet":
            rows.append(f"DaemonSet/{w['metadata']['name']} {status.get('numberAvailable', 0)}")
        elif w["kind"] == "Job":
            rows.append(f"Job/{w['metadata']['name']} succeeded={status.get('succeeded', 0)}")
    return ", ".join(sorted(rows))


def verify_retention(
    kube: Kube,
    retained: set[tuple[str, str, str, str]],
    deleted: set[tuple[str, str, str, str]],
    namespace: str,
    steps: Steps,
) -> None:
    problems = []
    for api_version, kind, ns, name in sorted(retained):
        if kube.read(api_version, kind, name, ns or None) is None:
            problems.append(f"retained {kind}/{name} is gone")
        else:
            steps.echo(f"    retained: {kind} {ns + '/' if ns else ''}{name}")
    for api_version, kind, ns, name in sorted(deleted):
        obj = kube.read(api_version, kind, name, ns or None)
        if obj is not None and not obj["metadata"].get("deletionTimestamp"):
            problems.append(f"{kind}/{name} was not deleted")

    def workloads_gone() -> str | None:
        left = [f"{w['kind']}/{w['metadata']['name']}" for w in checks.live_workloads(kube, namespace)]
        return f"still present: {', '.join(left)}" if left else None

    wait_for("chart workloads deleted", workloads_gone, timeout=WAIT_SECONDS, interval=2)

    def pods_gone() -> str | None:
        left = [p["metadata"]["name"] for p in kube.list("v1", "Pod", namespace)]
        return f"pods still present: {', '.join(left)}" if left else None

    wait_for("their pods deleted (garbage collector, kwok)", pods_gone, timeout=WAIT_SECONDS, interval=2)
    claims = [c["metadata"]["name"] for c in kube.list("v1", "PersistentVolumeClaim", namespace)]
    steps.echo(f"    claims left in {namespace} (StatefulSet data is never deleted with the StatefulSet): {claims}")
    if problems:
        raise StepError("\n".join(problems))


def kube_minor(kube: Kube) -> str:
    version = kube.get("/version")
    return f"{version['major']}.{str(version['minor']).rstrip('+')}"


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
)


def repository_stacks() -> list[str]:
    return sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))


def run(opts: Options, echo: Callable[[str], None] = print) -> int:
    steps = Steps(echo)
    work = Path(tempfile.mkdtemp(prefix="airflow-k8s-e2e-"))
    planes: list[ControlPlane] = []
    repo: ChartRepository | None = None
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
        from .node.scenario import NODE_SCENARIOS
        from .scenarios import SCENARIOS, Harness, scenario_stack

        every = {**SCENARIOS, **HOUSE_SCENARIOS, **NODE_SCENARIOS}

        harness = Harness(steps, found, work, stages, chart_of, opts.charts, planes, screenshots=opts.screenshots)
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
