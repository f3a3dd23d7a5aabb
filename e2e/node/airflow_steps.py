"""The node scenario's Airflow steps, shared by the scenario and its parts (e2e.node.parts):
pods Ready and staying Ready, the REST API reached through a forwarder and logged in with the
generated admin password, the example DAGs triggered and their runs ending as designed, each
task's log read through the API and found on the logs volume; and, on a failure, each pod that
is not Ready with its events and its containers' last log lines (`evidence`)."""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from components.airflow.config.secret_names import SecretNames

from ..harness import ROOT, StepError
from ..kube import Kube, wait_for
from ..scenarios import Deployment
from . import host
from .airflow_api import AirflowApi, AirflowApiError
from .host import Node, is_ready, pod_report

# Every example DAG the dev stack runs, and how each task of a run ends (example_pod_pass_fail's
# failing_task fails by design); spark_pi needs the Spark operator, left out of this stack.
OUTCOMES = {
    "example_etl": {"extract": "success"},
    "example_one_task": {"hello": "success"},
    "example_task_image": {"hello": "success"},
    "example_pod_pass_fail": {"run_this_first": "success", "passing_task": "success", "failing_task": "failed"},
}
NOT_RUN = {
    "spark_pi": "the Spark operator is left out of the stack (its images are not built yet)",
    "example_keys": "it reads the Variable and the Connection the `keys` part stores (e2e/node/part_keys.py)",
    "example_sleep": "node-prod's failure parts run it on a Celery worker (e2e/node/prod_scheduler.py, prod_redis.py)",
}
# Example DAGs a part of the scenario runs itself (e2e.node.parts), not the first run: the part's name.
PART_DAGS = {"example_memory_limit": "failures", "example_team_pod": "enforce"}

# DAGs only the node scenario's parts run (they need what a part adds to the stack, a team).
NODE_DAGS = ROOT / "e2e" / "node" / "dags"


def dag_folder(target: Path) -> Path:
    """This checkout's dags/ and the parts' own DAGs (NODE_DAGS), copied into `target`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source in (ROOT / "dags", NODE_DAGS):
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=ignore)
    return target


STABLE_SECONDS = 60
READY_TIMEOUT = 600
RUN_TIMEOUT = 600


def logs_folder(folder: Path) -> Path:
    return folder / "volumes" / "airflow-logs"


def not_ready(pods: list[dict[str, Any]]) -> list[str]:
    """Pods that should serve and are not Ready. A Job's pods (the chart's Jobs, a CronJob's run
    that starts meanwhile) do not serve: they run to an end, and a failed one is named apart
    (`failed_job_pods`)."""
    out = []
    for pod in pods:
        status = pod.get("status") or {}
        phase = status.get("phase")
        owners = [o.get("kind") for o in (pod.get("metadata") or {}).get("ownerReferences") or []]
        if "Job" in owners:
            continue
        if not is_ready(pod):
            out.append(f"{pod['metadata']['name']} ({phase})")
    return out


def restart_counts(pods: list[dict[str, Any]]) -> dict[str, int]:
    """`pod/container` -> restarts, for the pods that serve (not a Job's)."""
    counts = {}
    for pod in pods:
        owners = [o.get("kind") for o in (pod.get("metadata") or {}).get("ownerReferences") or []]
        if "Job" in owners:
            continue
        status = pod.get("status") or {}
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            counts[f"{pod['metadata']['name']}/{cs['name']}"] = int(cs.get("restartCount") or 0)
    return counts


def failed_job_pods(pods: list[dict[str, Any]]) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in pods
        if (p.get("status") or {}).get("phase") == "Failed"
        and "Job" in [o.get("kind") for o in p["metadata"].get("ownerReferences") or []]
    ]


@contextmanager
def evidence(kube: Kube | None, echo: Callable[[str], None], namespaces: tuple[str, ...]) -> Iterator[None]:
    """On failure: each pod that is not Ready, its events and its containers' last log lines."""
    try:
        yield
    except BaseException:
        if kube is not None:
            for ns in namespaces:
                try:
                    report = pod_report(kube, ns)
                except Exception as exc:  # the cluster may be what failed
                    report = f"(could not read the pods of {ns}: {exc})"
                if report:
                    echo(report)
        raise


def wait_ready(d: Deployment, namespace: str) -> None:
    def ready() -> str | None:
        pods = d.kube.list("v1", "Pod", namespace)
        if not pods:
            return "no pods"
        waiting = not_ready(pods)
        return f"not Ready: {', '.join(waiting)}" if waiting else None

    wait_for(f"every pod in {namespace} Ready", ready, timeout=READY_TIMEOUT, interval=3)
    pods = d.kube.list("v1", "Pod", namespace)
    d.echo(f"{len(pods)} pods: " + ", ".join(sorted(p["metadata"]["name"] for p in pods)))
    failed = failed_job_pods(pods)
    if failed:
        d.echo(f"FINDING: failed attempts of Jobs that went on to complete: {', '.join(failed)}")
        d.echo(pod_report(d.kube, namespace).replace("\n", "\n    ") if failed else "")


def stays_ready(d: Deployment, namespace: str) -> None:
    before = restart_counts(d.kube.list("v1", "Pod", namespace))
    restarted_before = {k: v for k, v in before.items() if v}
    if restarted_before:
        d.echo(f"FINDING: restarted while starting: {restarted_before}")
    deadline = time.monotonic() + STABLE_SECONDS
    while time.monotonic() < deadline:
        pods = d.kube.list("v1", "Pod", namespace)
        now = restart_counts(pods)
        changed = {k: (before.get(k), v) for k, v in now.items() if v != before.get(k, 0)}
        waiting = not_ready(pods)
        if changed or waiting:
            raise StepError(f"within {STABLE_SECONDS}s: restarts {changed or 'none'}; not Ready: {waiting or 'none'}")
        time.sleep(5)
    d.echo(f"{len(before)} containers, none restarted, every pod Ready for {STABLE_SECONDS}s")
    failed = failed_job_pods(d.kube.list("v1", "Pod", namespace))
    if failed:  # a CronJob's run meanwhile: a defect of its own, named, not a restart of what serves
        d.echo(f"FINDING: Job pods that failed: {', '.join(failed)}")


def api_target(kube: Kube, release: str, namespace: str) -> str:
    """`<ClusterIP>:<port>` of the api-server Service (kube-proxy takes it to a pod)."""
    service = kube.read("v1", "Service", f"{release}-api-server", namespace)
    if service is None:
        raise StepError(f"no Service {release}-api-server in {namespace}")
    return f"{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"


def admin_login(kube: Kube, release: str, namespace: str) -> tuple[str, str]:
    """The generated admin login (the Secret the stack made for the chart's create-user Job)."""
    name = SecretNames(release).admin
    secret = kube.read("v1", "Secret", name, namespace)
    if secret is None:
        raise StepError(f"no admin Secret {name} in {namespace}")
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return data["username"], data["password"]


def wait_answering(api: AirflowApi, timeout: float) -> None:
    def answers() -> str | None:
        try:
            api.health()
        except Exception as exc:
            return str(exc)
        return None

    wait_for(f"Airflow answering at {api.base_url}", answers, timeout=timeout, interval=1)


def airflow_api(d: Deployment, node: Node, namespace: str) -> AirflowApi:
    release = str(d.airflow.get("releaseName", "airflow"))
    local = host.free_port()
    node.start_forwarder(local, api_target(d.kube, release, namespace))
    api = AirflowApi(f"http://127.0.0.1:{local}")
    wait_answering(api, 120)
    user, password = admin_login(d.kube, release, namespace)
    api.log_in(user, password)
    d.echo(f"logged in as {user} at {api.base_url} (JWT from POST /auth/token)")
    return api


def expected_run_state(outcome: dict[str, str]) -> str:
    return "success" if all(state == "success" for state in outcome.values()) else "failed"


def wait_dags_parsed(api: AirflowApi) -> None:
    """Every example DAG parsed, and none this scenario does not know (a new example names its
    outcome in OUTCOMES, the part that runs it in PART_DAGS, or why it cannot run here in NOT_RUN)."""
    known = set(OUTCOMES) | set(PART_DAGS) | set(NOT_RUN)
    found: set[str] = set()

    def parsed() -> str | None:
        nonlocal found
        found = set(api.dag_ids())
        missing = (set(OUTCOMES) | set(PART_DAGS)) - found
        return f"not parsed yet: {', '.join(sorted(missing))}" if missing else None

    wait_for("the example DAGs parsed by the dag-processor", parsed, timeout=300, interval=3)
    unknown = found - known
    if unknown:
        raise StepError(
            f"DAGs this scenario does not know (add each to OUTCOMES, PART_DAGS or NOT_RUN): {sorted(unknown)}"
        )


def run_dags(d: Deployment, api: AirflowApi, namespace: str) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Trigger every example DAG at once; each run ends as OUTCOMES says, its tasks run in
    KubernetesExecutor pods."""
    wait_dags_parsed(api)
    for dag_id, why in NOT_RUN.items():
        d.echo(f"not run: {dag_id} ({why})")
    for dag_id, part in PART_DAGS.items():
        d.echo(f"run by the part {part}: {dag_id}")
    started = time.monotonic()
    run_ids = {}
    for dag_id in OUTCOMES:
        api.unpause(dag_id)
        run_ids[dag_id] = api.trigger(dag_id)
        d.echo(f"triggered {dag_id}: run {run_ids[dag_id]}")
    seen: dict[str, str] = {}

    def watch_pods() -> None:
        for pod in d.kube.list("v1", "Pod", namespace):
            labels = pod["metadata"].get("labels") or {}
            if labels.get("dag_id") in OUTCOMES:
                kind = "executor" if labels.get("kubernetes_executor") == "True" else "operator"
                phase = (pod.get("status") or {}).get("phase", "?")
                key = f"{labels['dag_id']}: {kind} pod {pod['metadata']['name']} (task {labels.get('task_id')})"
                if seen.get(key) != phase:
                    d.echo(f"{key}: {phase} at {time.monotonic() - started:.1f}s")
                seen[key] = phase

    runs, wrong = {}, []
    for dag_id, run_id in run_ids.items():
        left = max(RUN_TIMEOUT - (time.monotonic() - started), 30)
        state = api.wait_run(dag_id, run_id, left, on_poll=watch_pods)
        tasks = api.task_instances(dag_id, run_id)
        states = {t["task_id"]: t["state"] for t in tasks}
        d.echo(
            f"{dag_id}: run {state} after {time.monotonic() - started:.1f}s: "
            + ", ".join(f"{k}={v}" for k, v in states.items())
        )
        if state != expected_run_state(OUTCOMES[dag_id]) or states != OUTCOMES[dag_id]:
            wrong.append(dag_id)
            show_logs(d, api, dag_id, run_id, tasks)
        if not any(k.startswith(f"{dag_id}: executor pod") for k in seen):
            wrong.append(f"{dag_id} (no KubernetesExecutor task pod was seen)")
        runs[dag_id] = (run_id, tasks)
    if wrong:
        raise StepError(f"runs that did not end as designed ({OUTCOMES}): {', '.join(wrong)}")
    return runs


def show_logs(d: Deployment, api: AirflowApi, dag_id: str, run_id: str, tasks: list[dict[str, Any]]) -> None:
    for task in tasks:
        try:
            text = api.task_log(dag_id, run_id, task["task_id"], int(task.get("try_number") or 1))
        except AirflowApiError as exc:
            text = f"(no log: {exc})"
        d.echo(f"log of {dag_id}.{task['task_id']} ({task['state']}), last lines:")
        for line in text.splitlines()[-25:]:
            d.echo(f"  | {line[:300]}")


def read_logs(
    d: Deployment, api: AirflowApi, dag_id: str, run_id: str, tasks: list[dict[str, Any]], folder: Path
) -> None:
    logs = logs_folder(folder)
    for task in tasks:
        if task.get("operator") == "EmptyOperator":  # Airflow 3 marks it done without running it
            d.echo(f"{dag_id}.{task['task_id']}: an EmptyOperator, not executed, so no log")
            continue
        tries = int(task.get("try_number") or 1)
        text = api.task_log(dag_id, run_id, task["task_id"], tries)
        if not text.strip():
            raise StepError(f"the log of {dag_id}.{task['task_id']} (try {tries}) is empty")
        d.echo(f"log of {dag_id}.{task['task_id']} ({task['state']}, try {tries}), last lines:")
        for line in text.splitlines()[-4:]:
            d.echo(f"  | {line[:200]}")
        files = [
            p
            for p in logs.glob(f"dag_id={dag_id}/run_id=*/task_id={task['task_id']}/attempt={tries}.log")
            if run_id in str(p)
        ]
        if not files:
            raise StepError(f"no file for {dag_id}.{task['task_id']} try {tries} under {logs}")
        d.echo(f"file on the logs volume: {files[0].relative_to(folder)} ({files[0].stat().st_size} bytes)")
