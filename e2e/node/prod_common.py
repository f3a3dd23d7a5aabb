"""What node-prod's failure and rollout parts (issue 25, scenario 6: e2e/node/prod_*.py) share:
a run of `example_sleep` (e2e/node/dags/) triggered with its length, the times the REST API and
the pods report, the restart counts of Airflow's own containers, and a part's step title.

The decisions (which pods, which restarts, which times) are plain functions of the API's
answers, tested offline (tests/test_node_prod_failures.py).
"""

from __future__ import annotations

import time
import urllib.parse
from datetime import datetime
from typing import Any

from ..harness import StepError
from ..kube import wait_for
from .airflow_api import AirflowApiError
from .parts import NodeRun

SCENARIO = "node-prod"
SLEEP_DAG = "example_sleep"
NAP, AFTER = "nap", "after"
# Airflow's own long-running components: a restart of one of their containers is Airflow restarting.
AIRFLOW_COMPONENTS = ("scheduler", "api-server", "worker", "triggerer", "dag-processor")
RUN_TIMEOUT = 300


def title(part: str, text: str) -> str:
    return f"[{SCENARIO}:{part}] {text}"


def parse_time(text: Any) -> datetime | None:
    """An API timestamp (`2026-12-07T14:55:03.123456Z`, `...+00:00`), None for none."""
    if not text:
        return None
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def ready_since(pod: dict[str, Any]) -> datetime | None:
    """When the pod last became Ready (its Ready condition's lastTransitionTime), None if not Ready."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return parse_time(condition.get("lastTransitionTime"))
    return None


def serving(pods: list[dict[str, Any]], components: tuple[str, ...]) -> list[dict[str, Any]]:
    """The pods of `components` (label `component`) that are not being deleted and are not a Job's."""
    out = []
    for pod in pods:
        meta = pod["metadata"]
        owners = [o.get("kind") for o in meta.get("ownerReferences") or []]
        if meta.get("deletionTimestamp") or "Job" in owners:
            continue
        if (meta.get("labels") or {}).get("component") in components:
            out.append(pod)
    return out


def airflow_containers(pods: list[dict[str, Any]]) -> dict[str, tuple[str, int]]:
    """`pod/container` -> (the pod's uid, restarts) for Airflow's own pods (AIRFLOW_COMPONENTS)."""
    counts = {}
    for pod in serving(pods, AIRFLOW_COMPONENTS):
        status = pod.get("status") or {}
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            key = f"{pod['metadata']['name']}/{cs['name']}"
            counts[key] = (str(pod["metadata"].get("uid")), int(cs.get("restartCount") or 0))
    return counts


def restarted(before: dict[str, tuple[str, int]], after: dict[str, tuple[str, int]]) -> list[str]:
    """What changed between two `airflow_containers`: a container restarted, a pod replaced
    (another uid under its name, or gone), a pod that was not there."""
    changes = []
    for key, (uid, count) in sorted(before.items()):
        if key not in after:
            changes.append(f"{key} gone")
        elif after[key][0] != uid:
            changes.append(f"{key} replaced (a new pod)")
        elif after[key][1] != count:
            changes.append(f"{key} restarted ({count} -> {after[key][1]})")
    changes += [f"{key} new" for key in sorted(set(after) - set(before))]
    return changes


def restarted_containers(changes: list[str]) -> list[tuple[str, str]]:
    """(pod, container) of each `restarted` entry that `restarted()` gave (not those replaced or gone)."""
    found = []
    for change in changes:
        key, _, what = change.partition(" ")
        if what.startswith("restarted") and "/" in key:
            pod, _, container = key.partition("/")
            found.append((pod, container))
    return found


def previous_logs(r: NodeRun, changes: list[str], lines: int = 25) -> None:
    """The last `lines` of each restarted container's previous run (why it exited), printed."""
    for pod, container in restarted_containers(changes):
        path = f"/api/v1/namespaces/{r.namespace}/pods/{pod}/log?container={container}&previous=true&tailLines={lines}"
        try:
            text = str(r.kube.request("GET", path) or "")
        except Exception as exc:  # the pod may be gone meanwhile
            text = f"(not readable: {exc})"
        r.echo(f"    {pod}/{container}, its previous run's last lines:")
        for line in text.splitlines()[-lines:]:
            r.echo(f"    | {line[:300]}")


def seconds_after(start: datetime | None, moment: datetime | None) -> str:
    if start is None or moment is None:
        return "?"
    return f"{(moment - start).total_seconds():+.1f}s"


def quoted(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")


def wait_parsed(r: NodeRun, dag_id: str) -> None:
    def parsed() -> str | None:
        try:
            return None if dag_id in r.api.dag_ids() else f"{dag_id} not parsed yet"
        except AirflowApiError as exc:
            return str(exc)

    wait_for(f"{dag_id} parsed", parsed, timeout=300, interval=2)


def trigger_sleep(r: NodeRun, seconds: int) -> str:
    """A run of SLEEP_DAG whose `nap` sleeps `seconds`; its run id."""
    wait_parsed(r, SLEEP_DAG)
    r.api.unpause(SLEEP_DAG)
    body = {"logical_date": None, "conf": {"seconds": seconds}}
    run = r.api.request("POST", f"/api/v2/dags/{SLEEP_DAG}/dagRuns", body)
    run_id = str(run["dag_run_id"])
    r.echo(f"    triggered {SLEEP_DAG} (nap {seconds}s): run {run_id}")
    return run_id


def dag_run(r: NodeRun, dag_id: str, run_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = r.api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted(run_id)}")
    return answer


def wait_task_state(r: NodeRun, dag_id: str, run_id: str, task_id: str, state: str) -> dict[str, Any]:
    """Wait until the task instance is in `state`; it, as the API gives it."""
    found: dict[str, Any] = {}

    def there() -> str | None:
        nonlocal found
        try:
            tasks = r.api.task_instances(dag_id, run_id)
        except AirflowApiError as exc:
            return str(exc)
        found = next((t for t in tasks if t["task_id"] == task_id), {})
        return None if found.get("state") == state else f"{task_id} {found.get('state')}"

    wait_for(f"{dag_id}.{task_id} {state}", there, timeout=RUN_TIMEOUT, interval=0.5)
    return found


def wait_run_end(
    r: NodeRun, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run once it has ended (success or failed) and its task instances; a run that is not
    a success fails the step, with each task's state and try."""
    run: dict[str, Any] = {}

    def ended() -> str | None:
        nonlocal run
        try:
            run = dag_run(r, dag_id, run_id)
        except (AirflowApiError, OSError) as exc:  # the api-server may be catching up
            return str(exc)
        return None if run.get("state") in ("success", "failed") else f"run {run.get('state')}"

    wait_for(f"run {run_id} of {dag_id}", ended, timeout=timeout, interval=1)
    tasks = r.api.task_instances(dag_id, run_id)
    shown = ", ".join(f"{t['task_id']}={t['state']} (try {t.get('try_number')}, {t.get('hostname')})" for t in tasks)
    r.echo(f"    {dag_id}: run {run.get('state')}: {shown}")
    if run.get("state") != "success":
        raise StepError(f"the run {run_id} of {dag_id} ended {run.get('state')}")
    return run, tasks


def task_times(tasks: list[dict[str, Any]], start: datetime | None) -> str:
    """Each task's queued, start and end time, in seconds after `start`."""
    out = []
    for t in tasks:
        times = ", ".join(
            f"{what} {seconds_after(start, parse_time(t.get(key)))}"
            for what, key in (("queued", "queued_when"), ("started", "start_date"), ("ended", "end_date"))
        )
        out.append(f"{t['task_id']} try {t.get('try_number')}: {times}")
    return "; ".join(out)


def airflow_restarts(r: NodeRun) -> dict[str, tuple[str, int]]:
    return airflow_containers(r.kube.list("v1", "Pod", r.namespace))


def healthy(answer: dict[str, Any]) -> list[str]:
    """The components `/api/v2/monitor/health` does not call healthy (empty: all are)."""
    return sorted(k for k, v in answer.items() if isinstance(v, dict) and v.get("status") not in ("healthy", None))


def wait_healthy(r: NodeRun, timeout: float = 180) -> float:
    """Wait until the health endpoint calls every component healthy; the seconds it took."""
    started = time.monotonic()

    def ok() -> str | None:
        try:
            bad = healthy(r.api.health())
        except Exception as exc:  # the api-server or its forwarder catching up
            return str(exc)
        return f"not healthy: {', '.join(bad)}" if bad else None

    wait_for("every component healthy (/api/v2/monitor/health)", ok, timeout=timeout, interval=1)
    return time.monotonic() - started


def new_run_seconds(r: NodeRun, dag_id: str) -> float:
    """`dag_id` unpaused and triggered once more; the seconds from its trigger to its end (as
    wait_run_end judges it)."""
    triggered = time.monotonic()
    r.api.unpause(dag_id)
    wait_run_end(r, dag_id, r.api.trigger(dag_id))
    return time.monotonic() - triggered
