"""The reachability matrix of part `enforce` (e2e/node/part_enforce.py): who can reach whom on
the real node, with kube-router's firewall running, against the offline preview's model.

Sources are probe pods (busybox) with the labels and service account of each Airflow component, of
a KubernetesExecutor task pod (the pod template's labels) and of a team pod; each is owned by a
ConfigMap (no ReplicaSet or StatefulSet adopts it) and never Ready (no Service sends it traffic).
Destinations are every TCP port an Airflow pod declares and something listens on (asked from the
host, which kube-router lets reach its pods), the task and team probes' own listener and CoreDNS.
Each source connects to every destination at once (busybox `nc` under `timeout`, through `kubectl
exec`); each edge is compared with `components/offline/reachability.py` on the preview's
NetworkPolicies and the live namespaces' labels.
"""

from __future__ import annotations

import concurrent.futures
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import yaml

from components.offline.reachability import Network, Peer

from ..fidelity import predicted_objects
from ..harness import StepError
from ..kube import Kube, wait_for
from . import kube_router
from .parts import NodeRun

PROBE_IMAGE = "busybox:1.37.0"
PROBE_VALUE = "enforce"
PROBE_PORT = 8000  # the probes' own listener (task and team probes are destinations too)
CONNECT_SECONDS = 2
# busybox nc's exit codes under `timeout`: an idle connection that stays open is killed by the
# timeout (143); one the server closes ends 0; refused, reset or dropped (no answer within -w) 1.
NC_CONNECTED = {"0": True, "124": True, "143": True, "1": False}
PROBE_LABEL = "airflow-k8s-e2e"
# Labels a controller puts on its pods: a probe does not copy them.
CONTROLLER_LABELS = (
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
)


def _source_labels(pod: dict[str, Any]) -> dict[str, str]:
    labels = dict(pod["metadata"].get("labels") or {})
    return {k: v for k, v in labels.items() if k not in CONTROLLER_LABELS}


def component_of(pod: dict[str, Any]) -> str:
    labels = pod["metadata"].get("labels") or {}
    return str(labels.get("component") or labels.get("app.kubernetes.io/name") or pod["metadata"]["name"])


def serving_pods(kube: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    """One Running pod of each Deployment/StatefulSet of `namespace`, by component."""
    found: dict[str, dict[str, Any]] = {}
    for pod in kube.list("v1", "Pod", namespace):
        owners = {o.get("kind") for o in pod["metadata"].get("ownerReferences") or []}
        if owners & {"ReplicaSet", "StatefulSet"} and (pod.get("status") or {}).get("phase") == "Running":
            found.setdefault(component_of(pod), pod)
    return found


def task_template(kube: Kube, namespace: str) -> dict[str, Any]:
    """The KubernetesExecutor's pod template (the chart's `pod_template_file.yaml`)."""
    for cm in kube.list("v1", "ConfigMap", namespace):
        for key, text in (cm.get("data") or {}).items():
            if key.endswith("pod_template_file.yaml"):
                loaded: dict[str, Any] = yaml.safe_load(text)
                return loaded
    raise StepError(f"no ConfigMap in {namespace} holds the executor's pod_template_file.yaml")


def probe_pod(
    name: str, namespace: str, labels: dict[str, str], account: str | None, owner: dict[str, Any]
) -> dict[str, Any]:
    """A busybox pod with `labels` (the policies select it as they select the pod it stands for),
    listening on PROBE_PORT; never Ready (no Service sends it traffic) and owned by a ConfigMap
    (no ReplicaSet or StatefulSet adopts it); within Pod Security `restricted`."""
    serve = f"mkdir -p /tmp/www; exec busybox httpd -f -p {PROBE_PORT} -h /tmp/www"
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "probe",
                "image": PROBE_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", serve],
                "ports": [{"name": "probe", "containerPort": PROBE_PORT}],
                "readinessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 30},
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"cpu": "100m", "memory": "32Mi"},
                },
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
    }
    if account:
        spec["serviceAccountName"] = account
    owner_ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    meta = {
        "name": name,
        "namespace": namespace,
        "labels": {**labels, PROBE_LABEL: PROBE_VALUE},
        "ownerReferences": [owner_ref],
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def _owner(kube: Kube, namespace: str) -> dict[str, Any]:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "enforce-probes", "namespace": namespace, "labels": {PROBE_LABEL: PROBE_VALUE}},
    }
    return kube.read("v1", "ConfigMap", "enforce-probes", namespace) or kube.create(cm)


def kubectl(r: NodeRun, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    binary = Path(r.node.binaries["kubelet"]).parent / "kubectl"
    kubeconfig = r.node.layout.root / "admin.kubeconfig"
    return subprocess.run(
        [str(binary), f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def listening(ip: str, port: int) -> bool:
    """From the host (which kube-router lets reach its own pods): does anything listen?"""
    try:
        with socket.create_connection((ip, port), timeout=CONNECT_SECONDS):
            return True
    except OSError:
        return False


def reachability(r: NodeRun, team_namespace: str, team_account: str) -> None:
    """The matrix: each source's probe to each destination, against the preview's model."""
    kube, ns = r.kube, r.namespace
    objects = predicted_objects(r.d.project, r.d.stack, charts=r.d.harness.charts_dir)
    live_ns = {n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in kube.list("v1", "Namespace")}
    network = Network.of(objects, extra_namespaces=live_ns)

    # Sources: each Airflow component, a task pod, a team pod; each a probe with their labels.
    components = serving_pods(kube, ns)
    template = task_template(kube, ns)
    # The template's labels (the executor adds kubernetes_executor and the run's own, which no policy
    # selects on; a pod with kubernetes_executor=True would be the scheduler's to adopt).
    task_labels = dict(template.get("metadata", {}).get("labels") or {})
    team_labels = {
        "app.kubernetes.io/part-of": "airflow",
        "app.kubernetes.io/component": "task",
        "kubernetes_pod_operator": "True",
    }
    sources: dict[str, tuple[str, dict[str, str], str | None]] = {
        "task pod": (ns, task_labels, (template.get("spec") or {}).get("serviceAccountName")),
        "team pod": (team_namespace, team_labels, team_account),
    }
    for name, pod in sorted(components.items()):
        sources[name] = (ns, _source_labels(pod), pod["spec"].get("serviceAccountName"))
    owners = {n: _owner(kube, n) for n in {ns, team_namespace}}
    probes: dict[str, str] = {}  # source -> probe pod name
    for i, (source, (namespace, labels, account)) in enumerate(sources.items()):
        pod_name = f"enforce-probe-{i}"
        kube.create(probe_pod(pod_name, namespace, labels, account, owners[namespace]))
        probes[source] = pod_name
    try:
        _measure(r, network, components, sources, probes)
    finally:
        for source, pod_name in probes.items():
            kube.delete("v1", "Pod", pod_name, sources[source][0])
        for namespace in owners:
            kube.delete("v1", "ConfigMap", "enforce-probes", namespace)


def _measure(
    r: NodeRun,
    network: Network,
    components: dict[str, dict[str, Any]],
    sources: dict[str, tuple[str, dict[str, str], str | None]],
    probes: dict[str, str],
) -> None:
    kube = r.kube
    ips: dict[str, str] = {}

    def running() -> str | None:
        for source, pod_name in probes.items():
            pod = kube.read("v1", "Pod", pod_name, sources[source][0]) or {}
            status = pod.get("status") or {}
            if status.get("phase") != "Running" or not status.get("podIP"):
                return f"{pod_name} ({source}): {status.get('phase')}"
            ips[source] = status["podIP"]
        return None

    wait_for("the probe pods running", running, timeout=120, interval=0.5)

    # Destinations: every TCP port an Airflow pod declares, the probes' listeners, CoreDNS, the API.
    peers: dict[str, Peer] = {}
    targets: list[tuple[str, str, int]] = []  # (destination, ip, port)
    for name, pod in sorted(components.items()):
        peer = _peer(name, pod)
        peers[name] = peer
        for container in pod["spec"].get("containers") or []:
            for port in container.get("ports") or []:
                if port.get("protocol", "TCP") == "TCP":
                    targets.append((name, pod["status"]["podIP"], int(port["containerPort"])))
    for source in ("task pod", "team pod"):
        namespace, labels, _ = sources[source]
        peers[source] = Peer(source, namespace, {**labels, PROBE_LABEL: PROBE_VALUE}, {"probe": (PROBE_PORT, "TCP")})
        targets.append((source, ips[source], PROBE_PORT))
    for dns in kube.list("v1", "Pod", "kube-system"):
        if (dns["metadata"].get("labels") or {}).get("k8s-app") == "kube-dns" and dns.get("status", {}).get("podIP"):
            peers["DNS"] = _peer("DNS", dns)
            targets.append(("DNS", dns["status"]["podIP"], 53))
            break
    for source, (namespace, labels, _) in sources.items():
        peers.setdefault(source, Peer(source, namespace, {**labels, PROBE_LABEL: PROBE_VALUE}))
    silent = [f"{d} {ip}:{port}" for d, ip, port in targets if not listening(ip, port)]
    if silent:
        r.echo(f"    not listening (left out): {', '.join(silent)}")
    targets = [t for t in targets if f"{t[0]} {t[1]}:{t[2]}" not in silent]

    # kube-router puts every pod of the node behind a chain of its own: each probe's before it is measured.
    wait_for(
        "kube-router's chains for the probes",
        lambda: next((s for s in probes if not kube_router.pod_filtered(ips[s])), None),
        timeout=60,
        interval=0.5,
    )

    nc = f"timeout {CONNECT_SECONDS + 1} nc -w {CONNECT_SECONDS}"
    script = "\n".join(
        f"({nc} {ip} {port} </dev/null >/dev/null 2>&1; echo edge{i}=$?) &" for i, (_, ip, port) in enumerate(targets)
    )
    script += "\nwait"

    def probe(source: str) -> tuple[str, dict[int, bool]]:
        out = kubectl(r, "exec", "-n", sources[source][0], probes[source], "--", "sh", "-c", script)
        if out.returncode != 0:
            raise StepError(f"exec in the {source} probe failed: {out.stderr.strip()[-400:]}")
        return source, {
            int(i): NC_CONNECTED[rc]
            for i, rc in re.findall(r"^edge(\d+)=(\d+)$", out.stdout, re.M)
            if rc in NC_CONNECTED
        }

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        measured = dict(pool.map(probe, list(probes)))

    columns = [f"{d}:{port}" for d, _, port in targets]
    wrong: list[str] = []
    allowed = denied = 0
    rows = []
    for source in probes:
        cells = []
        for i, (dest, _, port) in enumerate(targets):
            if dest == source:  # a pod's connection to its own address never leaves it: no policy applies
                cells.append(" .")
                continue
            why = network.explain(_src_peer(sources, source), peers[dest], port)
            connected = measured[source].get(i)
            if connected is None:
                wrong.append(f"{source} -> {dest}:{port}: no result")
                cells.append("??")
            elif why is None and connected:
                allowed += 1
                cells.append("ok")
            elif why is not None and not connected:
                denied += 1
                cells.append("--")
            elif why is None:
                wrong.append(f"{source} -> {dest}:{port}: the model allows it, the connection failed")
                cells.append("X!")
            else:
                wrong.append(f"{source} -> {dest}:{port}: the model denies it ({why}), it connected")
                cells.append("L!")
        rows.append((source, cells))
    width = max(len(s) for s in probes)
    r.echo("    ok: allowed and connected; --: denied and dropped; X!/L!: the model and the node disagree; .: itself")
    for j, column in enumerate(columns):
        r.echo(f"    {'':{width}}  {'   ' * j}{column}")
    for source, cells in rows:
        r.echo(f"    {source:{width}}  " + " ".join(cells))
    r.echo(f"    {allowed} allowed edges connected, {denied} denied edges dropped, {len(wrong)} disagree")
    if wrong:
        raise StepError("the node and the preview's reachability model disagree:\n  " + "\n  ".join(wrong))
    if not allowed or not denied:
        raise StepError(f"a matrix without both kinds of edge shows nothing ({allowed} allowed, {denied} denied)")


def _peer(name: str, pod: dict[str, Any]) -> Peer:
    ports = {
        str(p["name"]): (int(p["containerPort"]), str(p.get("protocol", "TCP")))
        for c in pod["spec"].get("containers") or []
        for p in c.get("ports") or []
        if p.get("name")
    }
    return Peer(name, pod["metadata"]["namespace"], pod["metadata"].get("labels") or {}, ports)


def _src_peer(sources: dict[str, tuple[str, dict[str, str], str | None]], source: str) -> Peer:
    namespace, labels, _ = sources[source]
    return Peer(source, namespace, {**labels, PROBE_LABEL: PROBE_VALUE})
