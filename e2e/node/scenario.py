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
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import tools
from ..fidelity import predicted_objects
from ..harness import ROOT, STACK, StepError, copy_project, write_stack_config
from ..kube import Kube, wait_for
from ..scenarios import Deployment, Harness, deploy_project, dev_config
from . import (
    cleanup,
    config,
    early,
    host,
    images,
    kube_router,
    part_comeback,
    part_enforce,
    part_failures,
    part_git,
    part_keys,
    part_upgrade,
    predicted,
    screenshots,
)
from .airflow_steps import (
    STABLE_SECONDS,
    airflow_api,
    dag_folder,
    evidence,
    logs_folder,
    read_logs,
    run_dags,
    stays_ready,
    wait_ready,
)
from .host import Node
from .parts import NodeRun, Part, selected, set_secrets, stack_for

NAME = "node"
# Dev without `spark` and `monitoring`: the Spark operator's and kube-prometheus-stack's images
# are not built yet (e2e.node.images).
KEYS = ("airflow", "logs", "cluster", "maintenance")
DAG = screenshots.DAG  # the one the UI is shown and checked with
MISSING_IMAGE = "docker.io/library/airflow-k8s-never-imported:0"
PROBE_IMAGE = "busybox:1.37.0"
PULL_FAILS_WITHIN = 20.0  # seconds from the pod's creation to the kubelet's "connection refused"


def node_stack_config(harness: Harness, folder: Path) -> dict[str, Any]:
    """Pulumi.dev.yaml's airflow, logs, cluster and maintenance keys, charts from the local
    repository, the DAGs (dag_folder, a copy in the node's folder: the stack refuses a hostPath
    below /root or /home, where a checkout may be) and the logs in the node's folder."""
    cfg = dev_config(harness, KEYS)
    dags = folder / "dags"
    if not dags.exists():
        dag_folder(dags)
    cfg["airflow-k8s:airflow"]["dags"]["hostPath"]["path"] = str(dags)
    cfg["airflow-k8s:logs"]["hostPath"]["path"] = str(logs_folder(folder))
    return cfg


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


# The parts after the first run, in the order they run (e2e.node.parts).
PARTS: tuple[Part, ...] = (
    part_failures.PART,
    part_keys.PART,
    part_upgrade.PART,
    part_enforce.PART,
    part_comeback.PART,  # it destroys the stack and brings it back
    part_git.PART,  # last: it leaves the stack on the git DAG bundle, whose server stops with it
)
# Parts built and tested offline that have not yet passed on a real node: run only when named
# (AIRFLOW_K8S_NODE_PARTS), not in CI; docs/e2e.md says what each still has to show.
TRIAL_PARTS: tuple[Part, ...] = ()


def node_here(h: Harness, name: str, what: str) -> tuple[Node, dict[str, Path]] | None:
    """The node of scenario `name` (its folder `h.work / name`) and the binaries it runs; None
    when a real node cannot run here: `what` is then reported skipped, or failed with
    AIRFLOW_K8S_E2E=required."""
    folder = h.work / name
    folder.mkdir(parents=True, exist_ok=True)
    binaries = dict(h.found)
    for tool in tools.NODE_TOOLS:
        if tool not in binaries:
            resolved = tools.resolve(tool, tools.default_cache())
            if resolved.path is not None:
                binaries[tool] = resolved.path
    node = Node(folder, binaries, purpose="e2e", echo=h.steps.echo)
    problems = node.preflight()
    if not problems:
        return node, binaries
    why = "; ".join(problems)
    if os.environ.get("AIRFLOW_K8S_E2E") == "required":
        with h.steps.step(f"[{name}] a real node can run here", setup=True):
            raise StepError(f"a real node cannot run here: {why}")
    h.steps.skipped(f"[{name}] {what}", f"a real node cannot run here: {why}")
    return None


def start_early(h: Harness) -> Callable[[], list[str]]:
    """Called when the run begins, before its first scenario: this scenario's images and, when
    the `enforce` part will run, kube-router start building in the background (e2e.node.early),
    so that the scenarios before this one overlap their cold minutes. Returns what stops them."""
    try:
        parts = selected(PARTS, trial=TRIAL_PARTS)
        folder = h.work / "node-early"
        project = copy_project(folder / "images-project")
        write_stack_config(project, with_kube_minor(stack_for(parts, node_stack_config(h, folder))))
        extra = [ref for part in parts for ref in part.images]
        early.start("images", folder, __name__, [str(project), str(h.charts_dir), *extra])
        if part_enforce.PART in parts:
            early.start("kube-router", folder, kube_router.__name__)
    except (StepError, OSError) as exc:  # the scenario's own steps name it, or build themselves
        h.steps.echo(f"    the node's builds did not start early: {exc}")
    return early.stop


def scenario_node(h: Harness) -> None:
    steps = h.steps
    folder = h.work / NAME
    here = node_here(h, NAME, "the dev stack on a real node")
    if here is None:
        return
    node, binaries = here
    parts = selected(PARTS, trial=TRIAL_PARTS)
    config_ = stack_for(parts, node_stack_config(h, folder))

    with steps.step(f"[{NAME}] the machine holds nothing of a node (whatever ran before left it clean)"):
        machine_clean(folder, "before the node starts")

    with steps.step(
        f"[{NAME}] images: every image the stack, the example DAGs and the parts name, built or from the cache",
        setup=True,
    ):
        early.wait("images", steps.echo)
        project = copy_project(folder / "images-project")
        write_stack_config(project, with_kube_minor(config_))
        extra = [ref for part in parts for ref in part.images]
        archives = build_images(project, STACK, h.charts_dir, steps.echo, extra)

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
            d.pulumi.stall_seconds = config.UP_STALL_SECONDS
            set_secrets(parts, d)
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
        run = NodeRun(h, node, plane, kube, d, api, namespace, folder, config_, runs)
        for part in parts:
            steps.echo(f"--- [{NAME}:{part.name}]")
            part.run(run)

    with steps.step(f"[{NAME}] teardown: nothing of the node is left on the machine"):
        problems = plane.stop()
        if problems:
            raise StepError("the node's teardown: " + "; ".join(problems))
        machine_clean(folder, "after the teardown")


def build_images(
    project: Path, stack: str, charts: Path, echo: Callable[[str], None], extra: Sequence[str] = ()
) -> dict[str, Path]:
    """The archives of every image the node needs: the stack's (from the offline preview of the
    stack in `project`), the example DAGs' task images, pause, CoreDNS and the probe's, and the
    parts' (`extra`). An image the stack, the node or a part needs that nobody can build fails
    here, named, before anything is made."""
    stack_refs = stack_images(project, stack, charts)
    node_refs = [config.PAUSE_IMAGE, config.COREDNS_IMAGE, PROBE_IMAGE, *extra]
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


NODE_SCENARIOS = {NAME: scenario_node}


if __name__ == "__main__":  # the build e2e.node.early starts: python -m e2e.node.scenario PROJECT CHARTS [REF ...]
    build_images(Path(sys.argv[1]), STACK, Path(sys.argv[2]), print, sys.argv[3:])
