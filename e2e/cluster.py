"""A local control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake nodes and pod lifecycle), with run-time certificates.

Under kwok nothing listens on any other address. Pod and Service IPs are only numbers that the
API server allocates: no container runs, no network is set up, no packet is sent to them.
With a real node (e2e.node, `real_node`), the API server listens on the node's own address (a
bridge interface the node made) instead, so that pods reach it; kwok does not run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from components.offline.control_plane import (
    KUBERNETES_SERVICE_IP,
    LOCALHOST,
    SERVICE_CIDR,
    Process,
    admin_client,
    first_exited,
    free_port,
    kubeconfig,
    make_certificates,
    spawn,
    start_apiserver,
    start_etcd,
    stop_all,
    wait_ready,
)

from .kube import Kube, wait_for
from .volumes import Provisioner

__all__ = [
    "KUBERNETES_SERVICE_IP",
    "SERVICE_CIDR",
    "ControlPlane",
    "Process",
    "first_exited",
    "make_certificates",
    "spawn",
    "stop_all",
    "tail",
]
NODE_COUNT = 2
NODE_ANNOTATION = "kwok.x-k8s.io/node"
STORAGE_CLASS = "standard"  # what Pulumi.dev.yaml declares (minikube's and kind's default)
VOLUME_COUNT = 8
VOLUME_SIZE = "20Gi"

# kwok's own default stages (what `kwokctl create cluster` loads), read from the kwok
# module in the Go module cache: nodes become Ready and keep heartbeating, pods on them
# become Ready, pods owned by a Job complete, deleted pods go away.
KWOK_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat/node-heartbeat.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)


@dataclass
class ControlPlane:
    """Starts the processes in order and stops them in reverse, whatever happened."""

    work: Path
    binaries: dict[str, Path]
    kwok_stages: list[Path]
    echo: Callable[[str], None] = print
    # Nodes to make besides the default ones: the names a stack pins (stackinfo.pinned_node_names).
    node_names: list[str] = field(default_factory=list)
    # Where the API server listens. 127.0.0.1 for kwok; a real node's pods reach it on an
    # address of a bridge interface the node made (e2e.node), with `real_node` its name.
    address: str = LOCALHOST
    port: int = 0  # 0: any free port
    real_node: str | None = None
    certificate_days: int = 2
    # What runs beside the control plane (a real node): stopped first, its problems reported.
    attached: list[Callable[[], list[str]]] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)
    server: str = ""
    kube: Kube | None = None
    provisioner: Provisioner | None = None

    @property
    def kwok(self) -> bool:
        """Fake nodes (kwok) unless a real node joins."""
        return self.real_node is None

    @property
    def pki(self) -> Path:
        return self.work / "pki"

    @property
    def kubeconfig_path(self) -> Path:
        return self.work / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    def log_of(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def _spawn(self, name: str, args: list[str]) -> Process:
        proc = spawn(self.logs, name, args)
        self.processes.append(proc)
        return proc

    def _check_alive(self) -> str | None:
        return first_exited(self.processes)

    def start(self) -> Kube:
        if not (self.pki / "ca.crt").is_file():  # a kept control plane (./run.sh up) keeps its CA
            make_certificates(self.pki, self.address, self.real_node, self.certificate_days)
        etcd, etcd_client = start_etcd(self.logs, self.binaries["etcd"], self.work / "etcd")
        self.processes.append(etcd)

        port = self.port or free_port()
        self.server = f"https://{self.address}:{port}"
        pki = self.pki
        if self.kwok:
            # The built-in `kubernetes` Service may not point at a loopback address.
            node_args = ["--endpoint-reconciler-type=none"]
        else:  # the kubelet by its InternalIP (not its name through DNS), both sides authenticated
            node_args = [
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            ]
        self.processes.append(
            start_apiserver(
                self.logs,
                self.binaries["kube-apiserver"],
                pki,
                etcd_client,
                address=self.address,
                port=port,
                extra=node_args,
            )
        )
        self.kubeconfig_path.write_text(kubeconfig(self.server, pki))
        kube = admin_client(self.server, pki)
        self.kube = kube
        wait_ready(kube, self.processes)

        def common(component: str) -> list[str]:
            """What the controller manager and the scheduler share: the kubeconfig, a loopback port, no election."""
            kubeconfig = self.kubeconfig_path
            return [
                str(self.binaries[component]),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={LOCALHOST}",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
            ]

        self._spawn(
            "kube-controller-manager",
            [
                *common("kube-controller-manager"),
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
                # Claims bind within a second of their volume appearing, not at the next 15 s resync.
                "--pvclaimbinder-sync-period=1s",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
            ],
        )
        self._spawn("kube-scheduler", common("kube-scheduler"))
        if self.kwok:
            stages = self.work / "kwok-stages.yaml"
            stages.write_text("\n---\n".join(p.read_text() for p in self.kwok_stages))
            self._spawn(
                "kwok",
                [
                    str(self.binaries["kwok"]),
                    f"--kubeconfig={self.kubeconfig_path}",
                    f"--config={stages}",
                    "--manage-all-nodes=false",
                    f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
                    f"--node-ip={LOCALHOST}",
                    "--cidr=10.244.0.1/16",
                ],
            )
            self._seed(kube)
            self.provisioner = Provisioner(kube, self.work / "provisioned", self.log_of("volume-provisioner"))
            self.provisioner.start()
        return kube

    @property
    def all_node_names(self) -> list[str]:
        """The default nodes, then the ones asked for (each once)."""
        names = [f"kwok-node-{i}" for i in range(NODE_COUNT)]
        return names + [n for n in dict.fromkeys(self.node_names) if n not in names]

    def _seed(self, kube: Kube) -> None:
        """Fake nodes (kwok): the default ones and those a stack pins; a default StorageClass and
        pre-made hostPath volumes that claims of up to VOLUME_SIZE bind to through the real PV
        controller. Larger claims, and claims of other classes, get a volume from the
        provisioner stand-in (e2e.volumes) started next."""
        for node in self.all_node_names:
            kube.create(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": node,
                        "annotations": {NODE_ANNOTATION: "fake"},
                        "labels": {
                            "type": "kwok",
                            **({"kubernetes.io/hostname": node} if len(node) <= 63 else {}),  # label value limit
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                        },
                    },
                }
            )
        kube.create(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": STORAGE_CLASS,
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": "kubernetes.io/no-provisioner",
                "reclaimPolicy": "Retain",
                "volumeBindingMode": "Immediate",
            }
        )
        for i in range(VOLUME_COUNT):
            kube.create(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": f"e2e-volume-{i}", "labels": {"airflow-k8s-e2e": "volume"}},
                    "spec": {
                        "capacity": {"storage": VOLUME_SIZE},
                        "accessModes": ["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"],
                        "storageClassName": STORAGE_CLASS,
                        "persistentVolumeReclaimPolicy": "Retain",
                        "hostPath": {"path": str(self.work / "volumes" / str(i)), "type": "DirectoryOrCreate"},
                    },
                }
            )

        def nodes_ready() -> str | None:
            for node in kube.list("v1", "Node"):
                conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
                if conds.get("Ready") != "True":
                    return f"node {node['metadata']['name']} not Ready yet"
            return None

        wait_for("kwok nodes Ready", nodes_ready, timeout=120)

    def stop(self) -> list[str]:
        """Stop the volume provisioner, then every process this control plane started (reverse
        order), by process group id."""
        problems = []
        for stop in reversed(self.attached):
            problems += stop()
        self.attached.clear()
        if self.provisioner is not None:
            self.provisioner.stop()
            self.provisioner = None
        problems += stop_all(self.processes)
        self.processes.clear()
        return problems

    def dead(self) -> str | None:
        return self._check_alive()


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
