"""Part `failures` of the node scenario (issue scenario 6): Airflow on the real node survives what
production throws at it, and says why when a task fails.

- The scheduler pod deleted while a task runs: a new one starts and the run completes.
- The PostgreSQL pod deleted: it comes back with the same data (a Variable written before, the
  first run's runs), and Airflow answers again.
- The kubelet stopped for 30 s (the node's own kubelet process, started again the same way): a run
  triggered just before succeeds, the node and every pod are Ready again.
- A task that outgrows its pod's memory limit (dags/example_memory_limit.py): the kernel kills
  it, the task fails, is retried once as its settings say and fails again, and the log of each
  try (through the REST API) says it ran out of memory.
"""

from __future__ import annotations

import time
import urllib.parse
import uuid
from typing import Any

from ..harness import StepError
from ..kube import wait_for
from .airflow_api import AirflowApiError
from .airflow_steps import show_logs, wait_answering, wait_ready
from .host import is_ready
from .parts import NodeRun, Part

NAME = "failures"
KUBELET_DOWN_SECONDS = 30
RUN_TIMEOUT = 300
BACK_TIMEOUT = 300
OOM_DAG = "example_memory_limit"
OOM_TASK = "outgrow"
OOM_TRIES = 2  # retries=1 in the DAG
# What Airflow's supervisor writes into the task's log when the kernel kills the task's process.
OOM_LOG = "Likely out of memory error (OOM)"
# A task killed by a signal with retries left stays `running` until the scheduler's heartbeat
# timeout fails it (Airflow 3.2's task SDK does not send its up_for_retry; docs/e2e.md): 300 s by
# default, lowered for the node's stack so that the retry is seen within the part's budget.
HEARTBEAT_TIMEOUT = 60


def with_heartbeat_timeout(cfg: dict[str, Any]) -> dict[str, Any]:
    """The node's stack with `[scheduler] task_instance_heartbeat_timeout` at HEARTBEAT_TIMEOUT."""
    airflow = dict(cfg["airflow-k8s:airflow"])
    extra = dict(airflow.get("extraValues") or {})
    config = dict(extra.get("config") or {})
    config["scheduler"] = {**(config.get("scheduler") or {}), "task_instance_heartbeat_timeout": HEARTBEAT_TIMEOUT}
    airflow["extraValues"] = {**extra, "config": config}
    return {**cfg, "airflow-k8s:airflow": airflow}


def title(text: str) -> str:
    return f"[node:{NAME}] {text}"


def run(r: NodeRun) -> None:
    steps = r.h.steps
    with steps.step(title("the scheduler pod deleted while a task runs: a new one starts, the run completes")):
        scheduler_deleted(r)
    with steps.step(title("the PostgreSQL pod deleted: it comes back with the same data, Airflow answers")):
        postgres_deleted(r)
    with steps.step(title(f"the kubelet stopped for {KUBELET_DOWN_SECONDS}s: a run succeeds, node and pods Ready")):
        kubelet_stopped(r)
    title_oom = "a task over its pod's memory limit: killed, fails, retries once; each try's log says out of memory"
    with steps.step(title(title_oom)):
        memory_limit(r)


# --- helpers -----------------------------------------------------------------------------------------


def pods(r: NodeRun, match: dict[str, str]) -> list[dict[str, Any]]:
    """The pods in Airflow's namespace whose labels include `match`, not being deleted."""
    found = []
    for pod in r.kube.list("v1", "Pod", r.namespace):
        labels = pod["metadata"].get("labels") or {}
        if all(labels.get(k) == v for k, v in match.items()) and not pod["metadata"].get("deletionTimestamp"):
            found.append(pod)
    return found


def replaced(r: NodeRun, match: dict[str, str], old: set[str], what: str) -> str:
    """Wait for a Ready pod of `match` that is none of `old` (uids); its name."""
    name = ""

    def back() -> str | None:
        nonlocal name
        new = [p for p in pods(r, match) if p["metadata"]["uid"] not in old]
        if not new:
            return f"no new {what} pod yet"
        name = new[0]["metadata"]["name"]
        return None if is_ready(new[0]) else f"{name} not Ready"

    wait_for(f"a new {what} pod Ready", back, timeout=BACK_TIMEOUT, interval=1)
    return name


def delete_pods(r: NodeRun, found: list[dict[str, Any]], what: str) -> set[str]:
    if not found:
        raise StepError(f"no {what} pod in {r.namespace}")
    for pod in found:
        r.kube.delete("v1", "Pod", pod["metadata"]["name"], r.namespace)
        r.echo(f"deleted pod {pod['metadata']['name']} ({what})")
    return {p["metadata"]["uid"] for p in found}


def trigger(r: NodeRun, dag_id: str) -> str:
    r.api.unpause(dag_id)
    run_id = r.api.trigger(dag_id)
    r.echo(f"triggered {dag_id}: run {run_id}")
    return run_id


def wait_run(r: NodeRun, dag_id: str, run_id: str, expected: str) -> list[dict[str, Any]]:
    started = time.monotonic()
    state = ""

    def finished() -> str | None:
        nonlocal state
        try:
            state = r.api.run_state(dag_id, run_id)
        except AirflowApiError as exc:  # the api-server itself may be catching up
            return str(exc)
        return None if state in ("success", "failed") else f"run {state}"

    wait_for(f"run {run_id} of {dag_id}", finished, timeout=RUN_TIMEOUT, interval=2)
    tasks = r.api.task_instances(dag_id, run_id)
    r.echo(
        f"{dag_id}: run {state} after {time.monotonic() - started:.1f}s: "
        + ", ".join(f"{t['task_id']}={t['state']} (try {t.get('try_number')})" for t in tasks)
    )
    if state != expected:
        show_logs(r.d, r.api, dag_id, run_id, tasks)
        raise StepError(f"run {run_id} of {dag_id} ended {state}, not {expected}")
    return tasks


def wait_task_running(r: NodeRun, dag_id: str, run_id: str) -> str:
    task_id = ""

    def running() -> str | None:
        nonlocal task_id
        try:
            tasks = r.api.task_instances(dag_id, run_id)
        except AirflowApiError as exc:
            return str(exc)
        now = [t["task_id"] for t in tasks if t["state"] == "running"]
        if now:
            task_id = now[0]
            return None
        return "tasks: " + ", ".join(f"{t['task_id']}={t['state']}" for t in tasks)

    wait_for(f"a task of {dag_id} running", running, timeout=RUN_TIMEOUT, interval=1)
    return task_id


def airflow_back(r: NodeRun) -> None:
    """The api-server answers and the first run's runs are listed again."""
    wait_answering(r.api, BACK_TIMEOUT)

    def listed() -> str | None:
        try:
            r.api.dag_ids()
        except AirflowApiError as exc:
            return str(exc)
        return None

    wait_for("the DAG list through the REST API", listed, timeout=BACK_TIMEOUT, interval=2)


# --- the steps ---------------------------------------------------------------------------------------


def scheduler_deleted(r: NodeRun) -> None:
    dag_id = "example_etl"
    run_id = trigger(r, dag_id)
    task_id = wait_task_running(r, dag_id, run_id)
    r.echo(f"{dag_id}.{task_id} running")
    old = delete_pods(r, pods(r, {"component": "scheduler"}), "scheduler")
    started = time.monotonic()
    name = replaced(r, {"component": "scheduler"}, old, "scheduler")
    r.echo(f"new scheduler {name} Ready after {time.monotonic() - started:.1f}s")
    wait_run(r, dag_id, run_id, "success")


def postgres_pods(r: NodeRun) -> tuple[dict[str, str], list[dict[str, Any]]]:
    for match in ({"app.kubernetes.io/name": "postgresql"}, {"app": "postgresql"}):
        found = pods(r, match)
        if found:
            return match, found
    raise StepError(f"no PostgreSQL pod in {r.namespace} (label app.kubernetes.io/name=postgresql)")


def postgres_deleted(r: NodeRun) -> None:
    key, value = "failures_postgres_kept", uuid.uuid4().hex
    r.api.request("POST", "/api/v2/variables", {"key": key, "value": value})
    before = {dag_id: run_id for dag_id, (run_id, _) in r.runs.items()}
    r.echo(f"Variable {key}={value}; the first run's runs: {len(before)}")
    match, found = postgres_pods(r)
    old = delete_pods(r, found, "PostgreSQL")
    started = time.monotonic()
    name = replaced(r, match, old, "PostgreSQL")
    r.echo(f"new PostgreSQL pod {name} Ready after {time.monotonic() - started:.1f}s")
    airflow_back(r)
    got = r.api.request("GET", f"/api/v2/variables/{key}")
    if got.get("value") != value:
        raise StepError(f"Variable {key} is {got.get('value')!r} after PostgreSQL came back, not {value!r}")
    missing = []
    for dag_id, run_id in before.items():
        try:
            r.api.run_state(dag_id, run_id)
        except AirflowApiError as exc:
            missing.append(f"{dag_id} {run_id}: {exc}")
    if missing:
        raise StepError("runs lost with the PostgreSQL pod:\n  " + "\n  ".join(missing))
    r.echo(f"Variable {key} and the first run's {len(before)} runs still there, Airflow answering")
    r.api.request("DELETE", f"/api/v2/variables/{urllib.parse.quote(key)}")
    wait_ready(r.d, r.namespace)


def kubelet_stopped(r: NodeRun) -> None:
    dag_id = "example_one_task"
    run_id = trigger(r, dag_id)
    r.node.stop_kubelet()
    r.echo(f"kubelet stopped; down for {KUBELET_DOWN_SECONDS}s")
    time.sleep(KUBELET_DOWN_SECONDS)  # the outage itself: a duration, not a condition
    started = time.monotonic()
    r.node.restart_kubelet()
    r.echo(f"kubelet started again; node Ready after {time.monotonic() - started:.1f}s")
    wait_run(r, dag_id, run_id, "success")
    wait_ready(r.d, r.namespace)
    r.echo(f"every pod in {r.namespace} Ready {time.monotonic() - started:.1f}s after the kubelet came back")


def oom_pods(r: NodeRun, run_id: str) -> list[dict[str, Any]]:
    found = []
    for pod in pods(r, {"dag_id": OOM_DAG, "task_id": OOM_TASK}):
        annotations = pod["metadata"].get("annotations") or {}
        if annotations.get("run_id") == run_id:
            found.append(pod)
    return found


def terminated(pod: dict[str, Any]) -> dict[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == "base":
            state, last = cs.get("state") or {}, cs.get("lastState") or {}
            return dict(state.get("terminated") or last.get("terminated") or {})
    return {}


def watch_tries(r: NodeRun, run_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Follow the task until the run has ended: its task instances, and each change of the task's
    (try, state) with the seconds since the trigger."""
    started, seen, changes = time.monotonic(), None, []
    tasks: list[dict[str, Any]] = []

    def ended() -> str | None:
        nonlocal seen, tasks
        try:
            state = r.api.run_state(OOM_DAG, run_id)
            tasks = r.api.task_instances(OOM_DAG, run_id)
        except AirflowApiError as exc:
            return str(exc)
        now = [(t.get("try_number"), t["state"]) for t in tasks if t["task_id"] == OOM_TASK]
        if now and now[0] != seen:
            seen = now[0]
            changes.append(f"try {seen[0]} {seen[1]} at {time.monotonic() - started:.0f}s")
        return None if state in ("success", "failed") else f"run {state}, task {seen}"

    wait_for(f"the run of {OOM_DAG}", ended, timeout=RUN_TIMEOUT, interval=2)
    return tasks, changes


def memory_limit(r: NodeRun) -> None:
    run_id = trigger(r, OOM_DAG)
    tasks, changes = watch_tries(r, run_id)
    r.echo(f"{OOM_DAG}.{OOM_TASK}: " + ", ".join(changes))
    task = next((t for t in tasks if t["task_id"] == OOM_TASK), None)
    if task is None or task["state"] != "failed" or int(task.get("try_number") or 0) != OOM_TRIES:
        show_logs(r.d, r.api, OOM_DAG, run_id, tasks)
        raise StepError(f"{OOM_DAG}.{OOM_TASK}: expected failed after {OOM_TRIES} tries (retries=1), got {task}")
    # The executor deletes a pod that exits 0 (Airflow's supervisor survives when the kernel kills
    # only the task's process); a pod the kernel killed whole stays, OOMKilled with exit code 137.
    ends = {str((p["metadata"].get("annotations") or {}).get("try_number")): terminated(p) for p in oom_pods(r, run_id)}
    missing = []
    for tries in range(1, OOM_TRIES + 1):
        text = r.api.task_log(OOM_DAG, run_id, OOM_TASK, tries)
        end = ends.get(str(tries), {})
        said = [line for line in text.splitlines() if OOM_LOG in line]
        r.echo(f"try {tries}: pod {end.get('reason', 'gone')} {end.get('exitCode', '')}; its log, last lines:")
        for line in text.splitlines()[-3:]:
            r.echo(f"  | {line[:240]}")
        if said:
            continue
        if end.get("reason") == "OOMKilled" and end.get("exitCode") == 137:
            # The container killed whole: Airflow's supervisor with it, so nothing could write the
            # reason into the log; the scheduler's note in the event log names no reason either.
            r.echo(f"FINDING: try {tries}'s pod was OOMKilled (exit code 137), and its task log does not say so")
            continue
        missing.append(f"try {tries}")
    if missing:
        raise StepError(f"no out-of-memory reason in the task log of {', '.join(missing)} ({OOM_LOG!r})")
    r.echo(f"each try's task log (REST API) says: {OOM_LOG}")


PART = Part(NAME, run, stack=with_heartbeat_timeout)
