"""The end-to-end harness: what every scenario is built from.

Steps and their summary, the project copy and its stack file, the Pulumi CLI (`Pulumi`: preview,
up, destroy with a stall watch), its environment and plugins, and the checks on a live cluster
that several scenarios share. The scenarios (e2e/scenarios.py, e2e/house.py, e2e.node) and the
dispatcher (e2e/run.py) import from here; nothing here imports them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.core.names import SYSTEM_NAMESPACES

from . import checks, process, tools
from .kube import Kube, wait_for

ROOT = Path(__file__).resolve().parent.parent
STACK = "e2e"
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "requirements.txt")
PROJECT_DIRS = ("components",)
WAIT_SECONDS = 300
PULUMI_TIMEOUT = 900  # no single pulumi command of a scenario may take longer
STALL_SECONDS = 120  # the same objects pending this long during `up`: stuck, stopped, named


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
