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

from . import checks, tools
from .charts import ChartRepository
from .cluster import KWOK_STAGES, ControlPlane, tail
from .kube import ApiError, Kube, wait_for

ROOT = Path(__file__).resolve().parent.parent
STACK = "e2e"
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "requirements.txt")
PROJECT_DIRS = ("components",)
WAIT_SECONDS = 300


class StepError(RuntimeError):
    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


@dataclass
class Steps:
    """Prints each step with its duration; remembers the results for the summary."""

    echo: Callable[[str], None] = print
    results: list[tuple[str, str, float]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.echo(f"==> {name}")
        start = time.monotonic()
        try:
            yield
        except BaseException:
            took = time.monotonic() - start
            self.results.append((name, "FAILED", took))
            self.echo(f"<== {name}: FAILED after {took:.1f}s")
            raise
        took = time.monotonic() - start
        self.results.append((name, "ok", took))
        self.echo(f"<== {name}: ok ({took:.1f}s)")

    def skipped(self, name: str, why: str) -> None:
        self.results.append((name, "NOT RUN", 0.0))
        self.echo(f"==> {name}: NOT RUN ({why})")

    def summary(self) -> str:
        width = max((len(n) for n, _, _ in self.results), default=10)
        lines = [f"{'STEP':<{width}}  RESULT   SECONDS"]
        lines += [f"{n:<{width}}  {r:<7}  {s:7.1f}" for n, r, s in self.results]
        lines.append(f"{'total':<{width}}  {'':<7}  {sum(s for _, _, s in self.results):7.1f}")
        count = {r: sum(1 for _, res, _ in self.results if res == r) for r in ("ok", "FAILED")}
        skipped = len(self.results) - count["ok"] - count["FAILED"]
        lines.append(f"e2e: {count['ok']} passed, {count['FAILED']} failed, {skipped} skipped")
        return "\n".join(lines)


@dataclass
class Options:
    cache: Path
    scenario: str = "auto"  # auto | pulumi | manifests
    chart_source: str = "repository"  # repository | path
    keep: bool = False
    build_only: bool = False
    charts: Path = field(default_factory=lambda: ROOT.parent / "shared" / "charts")


# --- tools -----------------------------------------------------------------------------


def resolve_tools(opts: Options, steps: Steps) -> tuple[dict[str, Path], dict[str, tools.Resolved]]:
    found: dict[str, Path] = {}
    report: dict[str, tools.Resolved] = {}
    skip_pulumi = opts.scenario == "manifests" and not opts.build_only
    wanted = tools.CLUSTER_TOOLS + (() if skip_pulumi else tools.PULUMI_TOOLS)
    for name in wanted:
        steps.echo(f"==> tool {name}")
        start = time.monotonic()
        r = tools.resolve(name, opts.cache)
        report[name] = r
        took = time.monotonic() - start
        if r.path is not None:
            found[name] = r.path
            steps.results.append((f"tool {name} ({r.origin})", "ok", took))
            steps.echo(f"<== tool {name}: {r.origin} {r.path} ({took:.1f}s)")
        else:
            steps.results.append((f"tool {name}", "MISSING", took))
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


# --- the Pulumi scenario ----------------------------------------------------------------


@dataclass
class Pulumi:
    binary: Path
    project: Path
    env: dict[str, str]
    logs: Path
    counter: int = 0
    last_log: Path | None = None

    def run(self, *args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        self.counter += 1
        log = self.logs / f"pulumi-{self.counter:02d}-{args[0]}.log"
        cmd = [str(self.binary), *args, "--non-interactive"]
        proc = subprocess.run(
            cmd, cwd=self.project, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
        self.last_log = log
        if check and proc.returncode != 0:
            raise StepError(f"`pulumi {' '.join(args)}` exited {proc.returncode}", log)
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)

    def summary(self, proc: subprocess.CompletedProcess[str]) -> str:
        """The `Resources:` block Pulumi prints at the end of preview, up and destroy."""
        lines = proc.stdout.splitlines()
        for i, line in enumerate(lines):
            if line.strip() == "Resources:":
                block = [x.strip() for x in lines[i + 1 : i + 8] if x.strip()]
                return "; ".join(x for x in block if not x.startswith("Duration"))
        return ""


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


def check_cluster(kube: Kube, namespace: str, timeout: float = WAIT_SECONDS) -> None:
    """Every Deployment Available, StatefulSet ready, Job (the migration Job) complete, and
    every Secret a workload references present with the referenced key."""

    def ready() -> str | None:
        workloads = checks.live_workloads(kube, namespace)
        if not any(w["kind"] == "Job" and "migrat" in w["metadata"]["name"] for w in workloads):
            return "no database migration Job yet"
        problems = checks.workload_problems(workloads)
        return "; ".join(problems) or None

    wait_for(f"workloads in namespace {namespace}", ready, timeout=timeout, interval=2)
    missing = checks.missing_secrets(checks.live_workloads(kube, namespace), checks.live_secrets(kube, namespace))
    if missing:
        raise StepError("Secrets referenced but missing:\n" + "\n".join(missing))


def describe_workloads(kube: Kube, namespace: str) -> str:
    rows = []
    for w in checks.live_workloads(kube, namespace):
        status = w.get("status") or {}
        if w["kind"] in ("Deployment", "StatefulSet"):
            ready = status.get("availableReplicas", status.get("readyReplicas", 0))
            rows.append(f"{w['kind']}/{w['metadata']['name']} {ready}/{(w.get('spec') or {}).get('replicas', 1)}")
        elif w["kind"] == "Job":
            rows.append(f"Job/{w['metadata']['name']} succeeded={status.get('succeeded', 0)}")
    return ", ".join(sorted(rows))


def pulumi_scenario(
    steps: Steps, kube: Kube, found: dict[str, Path], work: Path, chart: dict[str, str], kubeconfig: Path
) -> None:
    project = copy_project(work / "project")
    config = e2e_config(chart, kube_minor(kube))
    namespace = config["airflow-k8s:airflow"].get("namespace", "airflow")
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pulumi = Pulumi(found["pulumi"], project, pulumi_env(work, found, kubeconfig), logs)

    with steps.step("pulumi login (local backend) and stack init (passphrase secrets)"):
        pulumi.run("login", f"file://{work / 'state'}")
        for kind, name in (("kubernetes", "pulumi-resource-kubernetes"), ("random", "pulumi-resource-random")):
            version = {"kubernetes": tools.PULUMI_KUBERNETES_VERSION, "random": tools.PULUMI_RANDOM_VERSION}[kind]
            pulumi.run("plugin", "install", "resource", kind, version.lstrip("v"), "--file", str(found[name]))
        pulumi.run("stack", "init", STACK, "--secrets-provider", "passphrase")
        write_stack_config(project, config)

    with steps.step("pulumi preview"):
        steps.echo("    " + pulumi.summary(pulumi.run("preview", "--diff")))

    with steps.step("pulumi up --yes"):
        steps.echo("    " + pulumi.summary(pulumi.run("up", "--yes", "--skip-preview")))
    with steps.step("check: Deployments Available, migration Job complete, referenced Secrets present"):
        check_cluster(kube, namespace)
        steps.echo("    " + describe_workloads(kube, namespace))

    with steps.step("pulumi up --yes again: no changes"):
        steps.echo("    " + pulumi.summary(pulumi.run("up", "--yes", "--expect-no-changes")))

    before = checks.secret_fingerprints(checks.live_secrets(kube, namespace))
    with steps.step("config change: scheduler replicas 1 -> 2 (no replacement, no Secret changed)"):
        set_replicas(config, "scheduler", 2)
        write_stack_config(project, config)
        plan = pulumi.json("preview", "--json")
        problems = checks.plan_problems(plan, allowed_updates=("kubernetes:helm.sh/v3:Release",))
        if problems:
            raise StepError("the replica change would do more than update the Release:\n" + "\n".join(problems))
        pulumi.run("up", "--yes", "--skip-preview")
        check_replica_change(kube, namespace, before)

    with steps.step("pulumi destroy --yes: retained objects stay, protected ones reported"):
        state = checks.state_resources(pulumi.json("stack", "export"))
        retained = {i for r in state if r.get("retainOnDelete") and (i := checks.kube_identity(r))}
        protected = [r["urn"] for r in state if r.get("protect")]
        deleted = {i for r in state if not r.get("retainOnDelete") and (i := checks.kube_identity(r))}
        for urn in protected:
            steps.echo(f"    protected (pulumi destroy refuses to delete it): {urn}")
        proc = pulumi.run("destroy", "--yes", "--skip-preview", check=not protected)
        if protected and proc.returncode != 0 and "protected" not in proc.stdout + proc.stderr:
            raise StepError("pulumi destroy failed for another reason than protection", pulumi.last_log)
        verify_retention(kube, retained, deleted, namespace, steps)


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

    with steps.step("render the e2e stack (program under mocks, chart by the Helm SDK)"):
        stack = render_stack(project)
        steps.echo(f"    {len(stack.objects)} objects, {len(stack.retained)} retained on destroy")
    with steps.step("server-side apply every object to the API server"):
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


def run(opts: Options, echo: Callable[[str], None] = print) -> int:
    steps = Steps(echo)
    work = Path(tempfile.mkdtemp(prefix="airflow-k8s-e2e-"))
    plane: ControlPlane | None = None
    repo: ChartRepository | None = None
    failed_log: Path | None = None
    code = 0
    missing_pulumi: list[str] = []
    try:
        found, _ = resolve_tools(opts, steps)
        missing_cluster = [n for n in tools.CLUSTER_TOOLS if n not in found]
        missing_pulumi = [n for n in tools.PULUMI_TOOLS if n not in found]
        if opts.build_only:
            return 1 if missing_cluster or missing_pulumi else 0
        if missing_cluster:
            raise StepError(f"cannot start the control plane without: {', '.join(missing_cluster)}")
        scenario = opts.scenario
        if scenario == "auto":
            scenario = "manifests" if missing_pulumi else "pulumi"
        if scenario == "pulumi" and missing_pulumi:
            raise StepError(f"the pulumi scenario needs: {', '.join(missing_pulumi)}")

        with steps.step("start etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok on 127.0.0.1"):
            plane = ControlPlane(work / "cluster", found, kwok_stage_files(opts.cache), echo)
            kube = plane.start()
            version = kube.get("/version")["gitVersion"]
            echo(f"    API server {plane.server} ({version}); kubeconfig {plane.kubeconfig_path}")

        with steps.step(f"serve the charts from {opts.charts} on 127.0.0.1"):
            if opts.chart_source == "path":
                chart = {"path": str(opts.charts / "airflow-1.21.0.tgz")}
                echo(f"    chart path {chart['path']}")
            else:
                repo = ChartRepository(opts.charts, work / "chart-repo")
                chart = {"repository": repo.start(), "version": "1.21.0"}
                echo(f"    chart repository {chart['repository']} (index.yaml generated)")

        if scenario == "pulumi":
            pulumi_scenario(steps, kube, found, work, chart, plane.kubeconfig_path)
        else:
            why = "--scenario manifests" if opts.scenario == "manifests" else "missing: " + ", ".join(missing_pulumi)
            for step in ("pulumi preview", "pulumi up", "pulumi up (no changes)", "pulumi destroy"):
                steps.skipped(step, why)
            manifests_scenario(steps, kube, work, chart)
            if opts.scenario == "auto":
                code = 3  # the Pulumi steps did not run: not a pass
    except StepError as exc:
        code = 1
        failed_log = exc.log
        echo(f"FAILED: {exc}")
    except Exception as exc:
        code = 1
        echo(f"FAILED: {type(exc).__name__}: {exc}")
        echo(traceback.format_exc(limit=4))
    finally:
        if code == 1:
            _print_logs(echo, plane, failed_log)
        with steps.step("stop every process and remove temporary files"):
            if repo is not None:
                repo.stop()
            if plane is not None:
                for problem in plane.stop():
                    echo(f"    {problem}")
            if opts.keep:
                echo(f"    kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
        echo("")
        echo(steps.summary())
        if code == 3:
            echo(
                f"\nINCOMPLETE: the Pulumi steps were not run (missing: {', '.join(missing_pulumi)}). "
                "The manifests scenario ran instead; see the build errors above."
            )
    return code


def _print_logs(echo: Callable[[str], None], plane: ControlPlane | None, failed_log: Path | None) -> None:
    if failed_log is not None and failed_log.is_file():
        echo(f"--- last lines of {failed_log.name} ---")
        echo(tail(failed_log, 40))
    if plane is not None:
        dead = plane.dead()
        if dead:
            echo(dead)
        for proc in plane.processes:
            echo(f"--- last lines of {proc.log.name} ---")
            echo(tail(proc.log, 8))


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())
