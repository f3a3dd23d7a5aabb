"""Scenario `node`: the dev stack on a real node with the real engine, and Airflow used the way a
user uses it.

Steps: every image the stack's pods and the example DAGs name is built (or taken from the cache)
and imported; the node starts (its own address, the control plane on it, containerd, kubelet,
kube-proxy, CoreDNS); a pod with an image nobody imported fails within seconds with
"connection refused" (nothing is fetched); a pod's connection to the machine's default gateway is
dropped at the host (its DROP rule counts it) and a name outside the cluster does not resolve;
`pulumi up` of dev (monitoring and Spark off: their images are not built yet); every pod Ready
by its own probes and no container restarting for a minute; then through the REST API, reached
on 127.0.0.1 through a forwarder to the api-server Service: log in with the generated admin
password, unpause and trigger `example_etl`, see the KubernetesExecutor's task pods run and the
run succeed, and read each task's log back (and find its file on the logs volume's folder); then
the UI in headless Chromium, logged in with the same token: the DAG list shows the DAG, the run's
page shows it a success, the task's page shows its output in the log, each page's screenshot
kept (e2e.node.screenshots; the run's `--screenshots` folder, docs/images with `./run.sh
screenshots`).

A failing step prints each pod that is not Ready with its events and the last lines of each of
its containers' logs.
"""

from __future__ import annotations

import ast
import base64
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from components.airflow.config.secret_names import SecretNames

from .. import tools
from ..fidelity import predicted_objects
from ..harness import ROOT, STACK, StepError, copy_project, write_stack_config
from ..kube import Kube, wait_for
from ..scenarios import Deployment, Harness, deploy_project, dev_config
from . import cleanup, config, host, images, predicted, screenshots
from .airflow_api import AirflowApi, AirflowApiError
from .host import Node, pod_report

NAME = "node"
# Dev without `spark` and `monitoring`: the Spark operator's and kube-prometheus-stack's images
# are not built yet (e2e.node.images).
KEYS = ("airflow", "logs", "cluster", "maintenance")
DAG = screenshots.DAG  # the one the UI is shown and checked with
# Every example DAG the dev stack runs, and how each task of a run ends (example_pod_pass_fail's
# failing_task fails by design); spark_pi needs the Spark operator, left out of this stack.
OUTCOMES = {
    "example_etl": {"extract": "success"},
    "example_one_task": {"hello": "success"},
    "example_task_image": {"hello": "success"},
    "example_pod_pass_fail": {"run_this_first": "success", "passing_task": "success", "failing_task": "failed"},
}
NOT_RUN = {"spark_pi": "the Spark operator is left out of the stack (its images are not built yet)"}
MISSING_IMAGE = "docker.io/library/airflow-k8s-never-imported:0"
PROBE_IMAGE = "busybox:1.37.0"
PULL_FAILS_WITHIN = 20.0  # seconds from the pod's creation to the kubelet's "connection refused"
STABLE_SECONDS = 60
READY_TIMEOUT = 600
RUN_TIMEOUT = 600
UP_STALL_SECONDS = 420  # the migration Job holds every Airflow pod back for minutes on 2 cores


def node_stack_config(harness: Harness, folder: Path) -> dict[str, Any]:
    """Pulumi.dev.yaml's airflow, logs, cluster and maintenance keys, charts from the local
    repository, the DAGs from this checkout's dags/ (a link in the node's folder: the stack refuses
    a hostPath below /root or /home, where a checkout may be) and the logs in the node's folder."""
    cfg = dev_config(harness, KEYS)
    dags = folder / "dags"
    if not dags.exists():
        dags.symlink_to(ROOT / "dags", target_is_directory=True)
    cfg["airflow-k8s:airflow"]["dags"]["hostPath"]["path"] = str(dags)
    cfg["airflow-k8s:logs"]["hostPath"]["path"] = str(logs_folder(folder))
    return cfg


def logs_folder(folder: Path) -> Path:
    return folder / "volumes" / "airflow-logs"


def stack_images(project: Path, stack: str, charts: Path) -> list[str]:
    """Every image the stack's pods name, from the offline preview (the KubernetesExecutor's pod
    template included); `charts`: the chart archives."""
    from components.offline.preview import preview

    previous = os.environ.get("AIRFLOW_K8S_CHARTS")
    os.environ["AIRFLOW_K8S_CHARTS"] = str(charts)
    try:
        with tempfile.TemporaryDirectory(prefix="node-images-") as out:
            result = preview(project, stack, Path(out), run_checkov=False)
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_K8S_CHARTS", None)
        else:
            os.environ["AIRFLOW_K8S_CHARTS"] = previous
    return host.images_in([o for source in result.sources for o in source.objects])


def dag_images(conventions: Path = ROOT / "dags" / "k8s_conventions.py") -> list[str]:
    """The task images the example DAGs default to (`*_IMAGE = "..."` in dags/k8s_conventions.py)."""
    found = []
    for node in ast.parse(conventions.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            and any(isinstance(t, ast.Name) and t.id.endswith("_IMAGE") for t in node.targets)
        ):
            found.append(node.value.value)
    return found


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
        conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
        if conds.get("Ready") != "True":
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


def drop_count(chain: str, interface: str) -> int:
    """Packets the node's outside-interface DROP rule has counted (mangle table)."""
    out = host.sh("iptables", "-w", "-t", "mangle", "-L", chain, "-v", "-x", "-n")
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 7 and fields[2] == "DROP" and fields[6] == interface:
            return int(fields[0])
    raise StepError(f"no DROP rule for {interface} in the mangle chain {chain}:\n{out}")


def default_gateway() -> str:
    out = subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"\bvia (\S+)", out)
    return match.group(1) if match else ""


# --- the scenario ----------------------------------------------------------------------------------


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


def scenario_node(h: Harness) -> None:
    steps = h.steps
    folder = h.work / NAME
    folder.mkdir(parents=True, exist_ok=True)
    required = os.environ.get("AIRFLOW_K8S_E2E") == "required"
    binaries = dict(h.found)
    for name in tools.NODE_TOOLS:
        if name not in binaries:
            resolved = tools.resolve(name, tools.default_cache())
            if resolved.path is not None:
                binaries[name] = resolved.path
    config_ = node_stack_config(h, folder)
    node = Node(folder, binaries, purpose="e2e", echo=steps.echo)
    problems = node.preflight()
    if problems:
        why = "; ".join(problems)
        if required:
            with steps.step(f"[{NAME}] a real node can run here", setup=True):
                raise StepError(f"a real node cannot run here: {why}")
        steps.skipped(f"[{NAME}] the dev stack on a real node", f"a real node cannot run here: {why}")
        return

    with steps.step(f"[{NAME}] the machine holds nothing of a node (whatever ran before left it clean)"):
        machine_clean(folder, "before the node starts")

    with steps.step(
        f"[{NAME}] images: every image the stack and the example DAGs name, built or from the cache", setup=True
    ):
        project = copy_project(folder / "images-project")
        write_stack_config(project, with_kube_minor(config_))
        archives = build_images(project, STACK, h.charts_dir, steps.echo)

    title = "node up: address, control plane on it, containerd (images imported), kubelet, kube-proxy, CoreDNS"
    with steps.step(f"[{NAME}] {title}", setup=True):
        plane, kube = host.bring_up(node, binaries, archives)
        h.planes.append(plane)  # stopped here at the end, and by the harness on a failure

    namespace = str(config_["airflow-k8s:airflow"].get("namespace", "airflow"))
    with evidence(kube, steps.echo, ("default", "kube-system", namespace)):
        with steps.step(f"[{NAME}] an image nobody imported fails within seconds: connection refused, nothing fetched"):
            missing_image_fails(kube, steps.echo)
        with steps.step(f"[{NAME}] a pod cannot reach outside: its connection is dropped at the host, counted"):
            egress_dropped(node, kube, steps.echo)
        with steps.step(f"[{NAME}] copy the project; stack init", setup=True):
            d = deploy_project(h, NAME, plane, kube, config_)
            d.pulumi.stall_seconds = UP_STALL_SECONDS
        with steps.step(f"[{NAME}] pulumi up of dev (monitoring and Spark off)", setup=True):
            d.up()
        with steps.step(f"[{NAME}] every pod Ready by its own probes"):
            wait_ready(d, namespace)
        with steps.step(f"[{NAME}] no container restarts for {STABLE_SECONDS}s"):
            stays_ready(d, namespace)
        with steps.step(f"[{NAME}] the offline preview's pods against the pods that run"):
            preview_against_pods(d)
        with steps.step(f"[{NAME}] REST API on 127.0.0.1 (forwarder to the api-server Service): log in as admin"):
            api = airflow_api(d, node, namespace)
        title = (
            "every example DAG: unpause, trigger; task pods run on the KubernetesExecutor; each run ends as designed"
        )
        with steps.step(f"[{NAME}] {title}"):
            runs = run_dags(d, api, namespace)
        with steps.step(f"[{NAME}] every task's log through the API, and its file on the logs volume"):
            for dag_id, (run_id, tasks) in runs.items():
                read_logs(d, api, dag_id, run_id, tasks, folder)
        title = f"the UI in headless Chromium: the DAG list, {DAG}'s run a success, its task's log; screenshots"
        with steps.step(f"[{NAME}] {title}"):
            run_id, tasks = runs[DAG]
            screenshots.of_run(api, run_id, tasks, folder / "screenshots", h.screenshots, d.echo)

    with steps.step(f"[{NAME}] teardown: nothing of the node is left on the machine"):
        problems = plane.stop()
        if problems:
            raise StepError("the node's teardown: " + "; ".join(problems))
        machine_clean(folder, "after the teardown")


def build_images(project: Path, stack: str, charts: Path, echo: Callable[[str], None]) -> dict[str, Path]:
    """The archives of every image the node needs: the stack's (from the offline preview of the
    stack in `project`), the example DAGs' task images, pause, CoreDNS and the probe's. An image
    the stack or the node needs that nobody can build fails here, named, before anything is made."""
    stack_refs = stack_images(project, stack, charts)
    node_refs = [config.PAUSE_IMAGE, config.COREDNS_IMAGE, PROBE_IMAGE]
    refs = list(dict.fromkeys([*stack_refs, *dag_images(), *node_refs]))
    echo(f"    stack images: {', '.join(stack_refs)}")
    missing = images.unbuildable(refs)
    needed = [r for r in missing if r in stack_refs or r in node_refs]
    if needed:
        raise StepError("images nobody can build, needed by the stack or the node:\n" + images.explain(needed))
    if missing:
        echo(f"    not built (the DAGs that use them fail): {images.explain(missing)}")
    started = time.monotonic()
    archives: dict[str, Path] = images.build(
        [r for r in refs if r not in missing], echo=lambda line: echo(f"    {line}")
    )
    size = sum(p.stat().st_size for p in archives.values()) / 2**30
    echo(f"    {len(archives)} archives, {size:.2f} GiB, {time.monotonic() - started:.1f}s")
    return archives


def with_kube_minor(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config as the cluster will see it (cluster.kubernetesVersion: the pinned Kubernetes)."""
    minor = ".".join(tools.KUBERNETES_VERSION.lstrip("v").split(".")[:2])
    return {**cfg, "airflow-k8s:cluster": {**cfg.get("airflow-k8s:cluster", {}), "kubernetesVersion": minor}}


def _pod(name: str, image: str, command: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "probe", "image": image, "imagePullPolicy": "IfNotPresent"}
    if command:
        container["command"] = command
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"airflow-k8s-e2e": "probe"}},
        "spec": {"restartPolicy": "Never", "containers": [container], "terminationGracePeriodSeconds": 1},
    }


def missing_image_fails(kube: Kube, echo: Callable[[str], None]) -> None:
    """The kubelet asks containerd, containerd asks the one registry there is (127.0.0.1:9), which
    refuses: ErrImagePull within seconds."""
    started = time.monotonic()
    kube.create(_pod("probe-missing-image", MISSING_IMAGE))
    message = ""

    def refused() -> str | None:
        nonlocal message
        for event in kube.list("v1", "Event", "default"):
            if (event.get("involvedObject") or {}).get("name") != "probe-missing-image":
                continue
            text = str(event.get("message", ""))
            if event.get("reason") == "Failed" and "pull" in text.lower():
                message = text
                return None
        return "no pull failure yet"

    wait_for("the pull failure", refused, timeout=60, interval=0.5)
    took = time.monotonic() - started
    kube.delete("v1", "Pod", "probe-missing-image", "default")
    print_line = f"    after {took:.1f}s: ...{message[-240:]}"
    if "connection refused" not in message or "127.0.0.1:9" not in message:
        raise StepError(f"the pull failed, but not at the refusing registry 127.0.0.1:9:\n{print_line}")
    if took > PULL_FAILS_WITHIN:
        raise StepError(f"the pull took {took:.1f}s to fail (at most {PULL_FAILS_WITHIN:.0f}s):\n{print_line}")
    echo(print_line)


def egress_dropped(node: Node, kube: Kube, echo: Callable[[str], None]) -> None:
    """One bounded probe from a pod: a TCP connection to the machine's default gateway (3 s), which
    the node's DROP rule for the outside interface stops at the host; and DNS: the cluster's names
    resolve, a name outside it does not (CoreDNS has no forwarder)."""
    gateway = default_gateway()
    interface = node.layout.outside_interface
    dns = "nslookup kubernetes.default.svc.cluster.local; echo dns-in=$?; nslookup example.com; echo dns-out=$?"
    probe = f"nc -w 3 {gateway} 80 </dev/null; echo egress=$?" if gateway and interface else "echo egress=skipped"
    before = drop_count(config.EGRESS_CHAIN, interface) if gateway and interface else 0
    kube.create(_pod("probe-egress", PROBE_IMAGE, ["sh", "-c", f"{dns}; {probe}"]))

    def finished() -> str | None:
        pod = kube.read("v1", "Pod", "probe-egress", "default") or {}
        phase = (pod.get("status") or {}).get("phase")
        return None if phase in ("Succeeded", "Failed") else f"phase {phase}"

    wait_for("the probe pod", finished, timeout=120, interval=1)
    log = str(kube.request("GET", "/api/v1/namespaces/default/pods/probe-egress/log") or "")
    kube.delete("v1", "Pod", "probe-egress", "default")
    echo("\n".join(f"    | {line}" for line in log.splitlines()))
    results = dict(re.findall(r"^(dns-in|dns-out|egress)=(\S+)$", log, re.M))
    if results.get("dns-in") != "0":
        raise StepError("kubernetes.default.svc.cluster.local did not resolve in a pod")
    if results.get("dns-out") in (None, "0"):
        raise StepError("example.com resolved in a pod: a name outside the cluster must not")
    if results.get("egress") == "skipped":
        echo("    the machine has no default route: nothing outside to probe")
        return
    if results.get("egress") in (None, "0"):
        raise StepError(f"the pod's connection to {gateway}:80 did not fail")
    dropped = drop_count(config.EGRESS_CHAIN, interface) - before
    if dropped < 1:
        raise StepError(f"the connection to {gateway} failed, but the DROP rule for {interface} counted nothing")
    echo(f"    {gateway}:80 from a pod: dropped at the host ({dropped} packets on the rule for {interface})")


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


def machine_clean(folder: Path, when: str) -> None:
    """Nothing of a node on the machine (processes, mounts, network namespaces, interfaces,
    iptables chains, cgroups, CNI results, the record): a second run starts as clean as the first."""
    left = cleanup.leftovers(cleanup.read_machine(host.RECORD), folder, cleanup.ancestors())
    if left:
        raise StepError(f"{when}, the machine still holds of a node: " + ", ".join(left[:40]))


def preview_against_pods(d: Deployment) -> None:
    """Scenario 7: every pod of a Deployment or StatefulSet the offline preview predicts is
    Running and Ready, and no pod the preview did not predict runs (but those a DAG starts)."""
    objects = predicted_objects(d.project, d.stack, charts=d.harness.charts_dir)
    kinds = (*predicted.SERVING, *predicted.RUN_TO_END)
    namespaces = sorted({str(o["metadata"].get("namespace")) for o in objects if o.get("kind") in kinds})
    pods: list[dict[str, Any]] = []
    owners: dict[str, list[dict[str, Any]]] = {"ReplicaSet": [], "Job": []}
    for ns in namespaces:
        pods += d.kube.list("v1", "Pod", ns)
        owners["ReplicaSet"] += d.kube.list("apps/v1", "ReplicaSet", ns)
        owners["Job"] += d.kube.list("batch/v1", "Job", ns)
    missing, unexpected, counts = predicted.compare_pods(objects, pods, owners)
    workloads = sorted(f"{o['kind']} {o['metadata']['name']}" for o in objects if o.get("kind") in predicted.SERVING)
    d.echo(f"predicted: {', '.join(workloads)}")
    d.echo(f"pods in {', '.join(namespaces)}: {counts['workload']} of predicted workloads, {counts['job']} of Jobs")
    if missing or unexpected:
        raise StepError("the preview and the pods differ:\n  " + "\n  ".join(missing + unexpected))


def expected_run_state(outcome: dict[str, str]) -> str:
    return "success" if all(state == "success" for state in outcome.values()) else "failed"


def wait_dags_parsed(api: AirflowApi) -> None:
    """Every example DAG parsed, and none this scenario does not know (a new example names its
    outcome in OUTCOMES, or why it cannot run here in NOT_RUN)."""
    known = set(OUTCOMES) | set(NOT_RUN)
    found: set[str] = set()

    def parsed() -> str | None:
        nonlocal found
        found = set(api.dag_ids())
        missing = set(OUTCOMES) - found
        return f"not parsed yet: {', '.join(sorted(missing))}" if missing else None

    wait_for("the example DAGs parsed by the dag-processor", parsed, timeout=300, interval=3)
    unknown = found - known
    if unknown:
        raise StepError(f"DAGs this scenario does not know (add each to OUTCOMES or NOT_RUN): {sorted(unknown)}")


def run_dags(d: Deployment, api: AirflowApi, namespace: str) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Trigger every example DAG at once; each run ends as OUTCOMES says, its tasks run in
    KubernetesExecutor pods."""
    wait_dags_parsed(api)
    for dag_id, why in NOT_RUN.items():
        d.echo(f"not run: {dag_id} ({why})")
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


NODE_SCENARIOS = {NAME: scenario_node}
