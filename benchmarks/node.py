"""The real node's numbers (issues "A real node" and "DAGs run for real"): `./run.sh up` split
into its phases, the images, the dev stack's memory, DAG runs on the KubernetesExecutor and on
the LocalExecutor, a task pod's overhead, and the floor: the same Airflow processes started
without a cluster. Needs root, like `./run.sh up`; one node per machine (none may be running).

    ./run.sh bench-node            # up from the warm image cache, DAG runs, the floor (~15 min)
    ./run.sh bench-node --cold     # also up from an empty image cache: every image built (+ ~15 min)
    ./run.sh bench-node --runs 3   # DAG runs per DAG and executor (default 2; medians printed)

The node's state goes to a temporary folder ($AIRFLOW_K8S_NODE_STATE is set for the runs) and is
purged at the end; the UI is forwarded on a free port. Each ratio is on a line of its own,
`ratio <what>: <x>x`. One sample of a shared machine: numbers vary by tens of percent.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PHASE = re.compile(r"^<== (?P<name>[^:]+): (?P<seconds>[0-9.]+)s")
PHASES = ("node", "images", "pulumi up", "Airflow answering")
DAGS = ("example_one_task", "example_etl")
# The floor's steps (e2e/node/image_check.py): what a node's `up` amounts to for Airflow.
FLOOR_STEPS = (
    "PostgreSQL: empty volume initialised, pg_isready passes",
    "airflow db migrate (the migration Job)",
    "airflow api-server answers /api/v2/monitor/health",
)
NAMESPACE = "airflow"
RELEASE = "airflow"


# --- the number crunching (tests/test_bench_node.py) ------------------------------------------------


def phase_times(output: str) -> dict[str, float]:
    """`<== name: 12.3s (...)` lines of `./run.sh up` -> name -> seconds."""
    found = {}
    for line in output.splitlines():
        match = PHASE.match(line.strip())
        if match:
            found[match["name"]] = float(match["seconds"])
    return found


def parse_time(text: str | None) -> datetime | None:
    """An Airflow or Kubernetes timestamp (ISO 8601, `Z` or an offset) as an aware datetime."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def seconds_between(start: str | None, end: str | None) -> float | None:
    a, b = parse_time(start), parse_time(end)
    return None if a is None or b is None else (b - a).total_seconds()


def run_timings(run: dict[str, Any], tasks: list[dict[str, Any]]) -> dict[str, float | None]:
    """From a DAG run and its task instances as the REST API returns them: trigger (the run's
    `queued_at`) to the first task Running (its `start_date`), and to the run's end."""
    starts = sorted(t["start_date"] for t in tasks if t.get("start_date"))
    return {
        "to_running": seconds_between(run.get("queued_at"), starts[0] if starts else None),
        "to_finished": seconds_between(run.get("queued_at"), run.get("end_date")),
    }


def _container_times(pod: dict[str, Any]) -> tuple[str | None, str | None]:
    """(started, finished) of the pod's first container, from whichever state holds them."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if not statuses:
        return None, None
    state = statuses[0].get("state") or {}
    if "terminated" in state:
        return state["terminated"].get("startedAt"), state["terminated"].get("finishedAt")
    if "running" in state:
        return state["running"].get("startedAt"), None
    return None, None


def pod_overhead(pod: dict[str, Any], task: dict[str, Any]) -> dict[str, float | None]:
    """A KubernetesExecutor task pod's overhead around its task (Kubernetes' timestamps are whole
    seconds): start (pod created to container started), Airflow's import (container started to the
    task's `start_date`), exit (the task's `end_date` to the container finished)."""
    started, finished = _container_times(pod)
    created = (pod.get("metadata") or {}).get("creationTimestamp")
    return {
        "start": seconds_between(created, started),
        "import": seconds_between(started, task.get("start_date")),
        "run": seconds_between(task.get("start_date"), task.get("end_date")),
        "exit": seconds_between(task.get("end_date"), finished),
    }


def summary_memory(summary: dict[str, Any], namespace: str) -> dict[str, int]:
    """Pod name -> working set bytes in `namespace`, from the kubelet's /stats/summary."""
    out = {}
    for pod in summary.get("pods") or []:
        ref = pod.get("podRef") or {}
        if ref.get("namespace") != namespace:
            continue
        memory = pod.get("memory") or {}
        value = memory.get("workingSetBytes")
        if value is None:
            value = sum(int((c.get("memory") or {}).get("workingSetBytes") or 0) for c in pod.get("containers") or [])
        out[str(ref.get("name"))] = int(value)
    return out


def working_set(usage: int, stat: str) -> int:
    """cgroup v1 memory: usage_in_bytes less the inactive file cache (what the kubelet evicts on)."""
    fields = dict(line.split() for line in stat.splitlines() if len(line.split()) == 2)
    inactive = int(fields.get("total_inactive_file", fields.get("inactive_file", 0)))
    return max(usage - inactive, 0)


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio_line(what: str, value: float | None, floor: float | None) -> str:
    """`ratio <what>: <x>x`, or why there is none."""
    if value is None or not floor:
        return f"ratio {what}: n/a (not measured)"
    return f"ratio {what}: {value / floor:.1f}x"


def fmt(value: float | None, unit: str = "s") -> str:
    return "n/a" if value is None else f"{value:.1f} {unit}"


# --- the measurements (root, a real node) -----------------------------------------------------------


def say(line: str = "") -> None:
    print(line, flush=True)


def local(command: list[str], env: dict[str, str], log: Path) -> tuple[float, str, int]:
    """`python -m e2e.node.local COMMAND` (what `./run.sh up|down` runs); its output goes to `log`."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "e2e.node.local", *command], cwd=ROOT, env=env, capture_output=True, text=True
    )
    took = time.monotonic() - started
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        say(f"`{' '.join(command)}` exited {proc.returncode} after {took:.0f}s:\n{tail}")
    return took, proc.stdout, proc.returncode


def up_row(label: str, took: float, output: str) -> str:
    phases = phase_times(output)
    parts = ", ".join(f"{name} {fmt(phases.get(name))}" for name in PHASES)
    return f"{label}: {took:.1f} s ({parts}){load()}"


def load() -> str:
    """The machine's load average now: the numbers of a shared machine mean little without it."""
    one, five, _ = os.getloadavg()
    return f" [load average {one:.1f}, {five:.1f} over 5 min]"


def image_rows(cache: Path | None) -> list[str]:
    """Each image's build seconds (as recorded when it was built) and size, from the cache."""
    import json

    from e2e.node import config, images

    refs = sorted(images.stack_images("dev") | images.dag_images() | {config.PAUSE_IMAGE, config.COREDNS_IMAGE})
    refs = [r for r in refs if not images.unbuildable([r])]
    rows, total_s, total_b = [], 0.0, 0
    for ref, archive in images.cached(refs, cache).items():
        if archive is None:
            rows.append(f"  {ref:58} not cached")
            continue
        meta = json.loads(archive.with_suffix(".json").read_text())
        total_s, total_b = total_s + meta["seconds"], total_b + meta["bytes"]
        rows.append(f"  {ref:58} built in {meta['seconds']:6.1f} s  {meta['bytes'] / 2**20:7.1f} MiB")
    rows.append(f"  {'(all)':58} built in {total_s:6.1f} s  {total_b / 2**20:7.1f} MiB")
    return rows


def stack_memory(kube: Any) -> dict[str, int]:
    """The dev stack's pods' memory: the kubelet's summary (cAdvisor, the pods' cgroups), else
    the pods' cgroups read directly."""
    node = kube.list("v1", "Node")[0]["metadata"]["name"]
    try:
        found = summary_memory(kube.get(f"/api/v1/nodes/{node}/proxy/stats/summary"), NAMESPACE)
        if found:
            return found
    except Exception as exc:  # the summary API may be off; the cgroups are there
        say(f"    (no kubelet summary: {str(exc)[:160]}; reading the pods' cgroups)")
    out = {}
    for pod in kube.list("v1", "Pod", NAMESPACE):
        uid = pod["metadata"]["uid"]
        for folder in Path("/sys/fs/cgroup/memory").rglob(f"pod{uid}"):
            usage = int((folder / "memory.usage_in_bytes").read_text())
            out[pod["metadata"]["name"]] = working_set(usage, (folder / "memory.stat").read_text())
            break
    return out


class DagRunner:
    """Trigger a DAG through the REST API and time it; watch its task pods meanwhile."""

    def __init__(self, api: Any, kube: Any) -> None:
        self.api, self.kube = api, kube

    def run(self, dag_id: str, timeout: float = 600) -> dict[str, Any]:
        import urllib.parse

        from e2e.kube import wait_for

        def parsed() -> str | None:
            try:
                self.api.dag(dag_id)
            except Exception as exc:
                return str(exc)
            return None

        wait_for(f"{dag_id} parsed", parsed, timeout=300, interval=2)
        self.api.unpause(dag_id)
        run_id = self.api.trigger(dag_id)
        pods: dict[str, dict[str, Any]] = {}

        def watch() -> None:
            for pod in self.kube.list("v1", "Pod", NAMESPACE):
                labels = pod["metadata"].get("labels") or {}
                if labels.get("dag_id") == dag_id and labels.get("kubernetes_executor") == "True":
                    pods[str(labels.get("task_id"))] = pod  # the latest status seen

        deadline = time.monotonic() + timeout
        state = "queued"
        while time.monotonic() < deadline:
            watch()
            state = self.api.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                break
            time.sleep(0.25)
        for _ in range(8):  # the last pod's end, if the executor has not deleted it yet
            watch()
            if all(_container_times(p)[1] for p in pods.values()):
                break
            time.sleep(0.25)
        run = self.api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")
        tasks = self.api.task_instances(dag_id, run_id)
        overheads = [pod_overhead(pods[t["task_id"]], t) for t in tasks if t["task_id"] in pods]
        return {"state": state, **run_timings(run, tasks), "overheads": overheads}


def dag_rows(runner: DagRunner, executor: str, runs: int) -> dict[str, dict[str, float | None]]:
    result = {}
    for dag_id in DAGS:
        samples = [runner.run(dag_id) for _ in range(runs)]
        states = [s["state"] for s in samples]
        result[dag_id] = {
            "to_running": median(s["to_running"] for s in samples),
            "to_finished": median(s["to_finished"] for s in samples),
        }
        say(
            f"  {executor:18} {dag_id:18} trigger to first task Running {fmt(result[dag_id]['to_running'])}, "
            f"to run finished {fmt(result[dag_id]['to_finished'])} (median of {runs}; {', '.join(states)}){load()}"
        )
        if dag_id == "example_one_task" and executor == "KubernetesExecutor":
            overheads = [o for s in samples for o in s["overheads"]]
            parts = ", ".join(f"{k} {fmt(median(o[k] for o in overheads))}" for k in ("start", "import", "run", "exit"))
            say(f"  task pod overhead ({dag_id}, median of {len(overheads)} pods; whole seconds): {parts}")
    return result


def connect(folder: Path, port: int) -> tuple[Any, Any]:
    from e2e.node.airflow_api import AirflowApi
    from e2e.node.airflow_steps import admin_login
    from e2e.node.local import node_kube

    kube = node_kube(folder)
    api = AirflowApi(f"http://127.0.0.1:{port}")
    api.log_in(*admin_login(kube, RELEASE, NAMESPACE))
    return api, kube


def to_local_executor(folder: Path, port: int) -> float:
    """`pulumi up` of dev with `executor: LocalExecutor` on the running node; seconds until
    Airflow answers again."""
    from e2e.node import local
    from e2e.node.airflow_api import AirflowApi
    from e2e.node.airflow_steps import wait_answering

    started = time.monotonic()
    found, _ = local.find_tools(lambda line: None)
    cfg, _ = local.node_config(local.read_stack("dev"), folder / "cluster" / "kubeconfig", local.charts_folder())
    cfg["airflow-k8s:airflow"]["executor"] = "LocalExecutor"
    local.deploy(folder, "dev", cfg, found, local.node_kube(folder))
    wait_answering(AirflowApi(f"http://127.0.0.1:{port}"), 600)
    return time.monotonic() - started


def floor() -> dict[str, float]:
    from e2e.node.image_check import check

    timings: dict[str, float] = {}
    if check("apache/airflow:3.2.0", echo=lambda line: None, timings=timings) != 0:
        say("  the floor's check failed: python -m e2e.node.images check apache/airflow:3.2.0 says why")
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="also `up` from an empty image cache (~15 min more)")
    parser.add_argument("--runs", type=int, default=2, help="runs per DAG and executor (default 2)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        say("bench-node: needs root, like ./run.sh up")
        return 1
    from e2e.node.host import free_port

    work = Path(tempfile.mkdtemp(prefix="airflow-k8s-bench-node-", dir="/var/tmp"))
    port = free_port()
    env = {**os.environ, "AIRFLOW_K8S_NODE_STATE": str(work / "state"), "AIRFLOW_K8S_UI_PORT": str(port)}
    say(f"bench-node: state in {work}, logs there; UI forwarded on 127.0.0.1:{port}")
    lines: list[str] = []
    ratios: list[str] = []
    exit_code = 0
    warm_up: float | None = None
    try:
        took, out, code = local(["up"], env, work / "up-warm.log")
        lines.append(up_row("./run.sh up, warm image cache", took, out))
        say(lines[-1])
        warm_up = took if code == 0 else None
        if code != 0:
            raise RuntimeError(f"./run.sh up exited {code} (its log: {work / 'up-warm.log'})")
        os.environ.update(env)  # the in-process steps below find the same state folder
        api, kube = connect(work / "state", port)
        memory = stack_memory(kube)
        say(f"dev stack memory (working set of {len(memory)} pods): {sum(memory.values()) / 2**20:.0f} MiB")
        for name, value in sorted(memory.items(), key=lambda kv: -kv[1]):
            say(f"  {name:58} {value / 2**20:7.1f} MiB")
        say("DAG runs (trigger through the REST API; Airflow's own timestamps):")
        ke = dag_rows(DagRunner(api, kube), "KubernetesExecutor", args.runs)
        switch = to_local_executor(work / "state", port)
        say(f"  pulumi up to the LocalExecutor until Airflow answers: {switch:.1f} s")
        api, kube = connect(work / "state", port)
        le = dag_rows(DagRunner(api, kube), "LocalExecutor", args.runs)
        for dag_id in DAGS:
            for key, what in (("to_running", "trigger to first task Running"), ("to_finished", "trigger to run end")):
                ratios.append(
                    ratio_line(
                        f"{dag_id} {what}, KubernetesExecutor to LocalExecutor", ke[dag_id][key], le[dag_id][key]
                    )
                )
    except Exception as exc:
        say(f"bench-node: FAILED: {type(exc).__name__}: {exc}")
        exit_code = 1
    finally:
        took, _, _ = local(["down", "--purge"], env, work / "down.log")
        say(f"./run.sh down --purge: {took:.1f} s")

    say("images (the cache's archives; build seconds as recorded when each was built):")
    for row in image_rows(None):
        say(row)

    cold_up = None
    if args.cold:
        empty = work / "empty-image-cache"
        empty.mkdir()
        cold_env = {**env, "AIRFLOW_K8S_IMAGES_CACHE": str(empty)}
        took, out, code = local(["up"], cold_env, work / "up-cold.log")
        lines.append(up_row("./run.sh up, empty image cache (a fresh machine)", took, out))
        say(lines[-1])
        cold_up = took if code == 0 else None
        local(["down", "--purge"], cold_env, work / "down-cold.log")
        say("images built from nothing:")
        for row in image_rows(empty):
            say(row)

    say("floor: PostgreSQL and Airflow from the same images as plain processes (no cluster):")
    steps = floor()
    for name in FLOOR_STEPS:
        say(f"  {name}: {fmt(steps.get(name))}")
    floor_total = sum(steps[s] for s in FLOOR_STEPS) if all(s in steps for s in FLOOR_STEPS) else None
    say(f"  floor total: {fmt(floor_total)}{load()}")
    ratios.insert(0, ratio_line("up from a warm image cache to the floor", warm_up, floor_total))
    if args.cold:
        ratios.insert(1, ratio_line("up from an empty image cache to the floor", cold_up, floor_total))
    for line in ratios:
        say(line)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
