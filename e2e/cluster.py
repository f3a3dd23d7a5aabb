"""A local control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake nodes and pod lifecycle), with run-time certificates.

Under kwok nothing listens on any other address. Pod and Service IPs are only numbers that the
API server allocates: no container runs, no network is set up, no packet is sent to them.
With a real node (e2e.node, `real_node`), the API server listens on the node's own address (a
bridge interface the node made) instead, so that pods reach it; kwok does not run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .kube import Kube, wait_for
from .volumes import Provisioner

LOCALHOST = "127.0.0.1"
NODE_COUNT = 2
NODE_ANNOTATION = "kwok.x-k8s.io/node"
STORAGE_CLASS = "standard"  # what Pulumi.dev.yaml declares (minikube's and kind's default)
VOLUME_COUNT = 8
VOLUME_SIZE = "20Gi"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"  # the first address of SERVICE_CIDR

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        port: int = s.getsockname()[1]
        return port


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"`openssl {' '.join(args)}` failed: {proc.stderr.strip()}")


def make_certificates(pki: Path, address: str = LOCALHOST, node: str | None = None, days: int = 2) -> None:
    """A throwaway CA, the API server's serving certificate (127.0.0.1, and `address` when the API
    server listens there), an admin client certificate (system:masters) and the service-account
    signing key pair. With a real `node`: the kubelet's serving certificate (on `address`), the
    API server's client certificate towards the kubelet, and the client certificates of the
    kubelet (system:node:<node>) and kube-proxy (system:kube-proxy)."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", str(days), "-subj", "/CN=airflow-k8s-e2e-ca", cwd=pki,
    )  # fmt: skip
    # The `kubernetes` Service's address too: pods reach the API server there (through kube-proxy).
    ips = ",".join(f"IP:{ip}" for ip in dict.fromkeys([LOCALHOST, address, KUBERNETES_SERVICE_IP]))
    server = "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment"
    client = "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment"
    leaves = {
        "apiserver": (
            "/CN=kube-apiserver",
            f"subjectAltName={ips},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            f"DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n{server}",
        ),
        "admin": ("/O=system:masters/CN=airflow-k8s-e2e-admin", client),
    }
    if node is not None:
        leaves |= {
            "kubelet": (f"/CN={node}", f"subjectAltName=IP:{address},DNS:{node}\n{server}"),
            "apiserver-kubelet-client": ("/O=system:masters/CN=kube-apiserver-kubelet-client", client),
            "node": (f"/O=system:nodes/CN=system:node:{node}", client),
            "kube-proxy": ("/CN=system:kube-proxy", client),
        }
    for name, (subject, ext) in leaves.items():
        (pki / f"{name}.ext").write_text(ext + "\n")
        _openssl(
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", subject, cwd=pki,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", str(days), "-extfile", f"{name}.ext", cwd=pki,
        )  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def kubeconfig(server: str, pki: Path) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: {server}
    certificate-authority: {pki / "ca.crt"}
users:
- name: admin
  user:
    client-certificate: {pki / "admin.crt"}
    client-key: {pki / "admin.key"}
contexts:
- name: e2e
  context: {{cluster: e2e, user: admin}}
current-context: e2e
"""


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    handle: IO[bytes]


def spawn(logs: Path, name: str, args: list[str], cwd: Path | None = None) -> Process:
    """`args` in a process group of its own (stopped as a group, by id), output in logs/<name>.log."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    handle = log.open("ab")
    handle.write(f"$ {' '.join(args)}\n".encode())
    handle.flush()
    popen = subprocess.Popen(
        args, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd
    )
    return Process(name, popen, log, handle)


def first_exited(processes: list[Process]) -> str | None:
    """The first of `processes` that has exited, with its code and log (None while all run)."""
    for p in processes:
        if p.popen.poll() is not None:
            return f"{p.name} exited with {p.popen.returncode} (log: {p.log})"
    return None


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
        etcd_client, etcd_peer = free_port(), free_port()
        etcd = self._spawn(
            "etcd",
            [
                str(self.binaries["etcd"]),
                "--name=e2e",
                f"--data-dir={self.work / 'etcd'}",
                f"--listen-client-urls=http://{LOCALHOST}:{etcd_client}",
                f"--advertise-client-urls=http://{LOCALHOST}:{etcd_client}",
                f"--listen-peer-urls=http://{LOCALHOST}:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://{LOCALHOST}:{etcd_peer}",
                f"--initial-cluster=e2e=http://{LOCALHOST}:{etcd_peer}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes=2147483648",
            ],
        )
        self._wait_port("etcd", etcd, etcd_client)

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
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries["kube-apiserver"]),
                f"--etcd-servers=http://{LOCALHOST}:{etcd_client}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                *node_args,
                "--allow-privileged=true",
                "--profiling=false",
                f"--cert-dir={pki}",
            ],
        )
        self.kubeconfig_path.write_text(kubeconfig(self.server, pki))
        kube = Kube(self.server, pki / "ca.crt", pki / "admin.crt", pki / "admin.key")
        self.kube = kube

        def ready() -> str | None:
            dead = self._check_alive()
            if dead:
                raise RuntimeError(dead)
            try:
                kube.request("GET", "/readyz", timeout=5)
            except Exception as exc:
                return str(exc)
            return None

        wait_for("kube-apiserver /readyz", ready, timeout=180)
        del apiserver

        kubeconfig_arg = f"--kubeconfig={self.kubeconfig_path}"
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries["kube-controller-manager"]),
                kubeconfig_arg,
                f"--authentication-kubeconfig={self.kubeconfig_path}",
                f"--authorization-kubeconfig={self.kubeconfig_path}",
                f"--bind-address={LOCALHOST}",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
                # Claims bind within a second of their volume appearing, not at the next 15 s resync.
                "--pvclaimbinder-sync-period=1s",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries["kube-scheduler"]),
                kubeconfig_arg,
                f"--authentication-kubeconfig={self.kubeconfig_path}",
                f"--authorization-kubeconfig={self.kubeconfig_path}",
                f"--bind-address={LOCALHOST}",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
            ],
        )
        if self.kwok:
            stages = self.work / "kwok-stages.yaml"
            stages.write_text("\n---\n".join(p.read_text() for p in self.kwok_stages))
            self._spawn(
                "kwok",
                [
                    str(self.binaries["kwok"]),
                    kubeconfig_arg,
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

    def _wait_port(self, name: str, proc: Process, port: int) -> None:
        def up() -> str | None:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.popen.returncode} (log: {proc.log})")
            try:
                with socket.create_connection((LOCALHOST, port), timeout=1):
                    return None
            except OSError as exc:
                return str(exc)

        wait_for(f"{name} on {LOCALHOST}:{port}", up, timeout=60, interval=0.2)

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
        for p in reversed(self.processes):
            if p.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.popen.pid, signal.SIGTERM)
                try:
                    p.popen.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.popen.pid, signal.SIGKILL)
                    p.popen.wait(timeout=10)
                    problems.append(f"{p.name} needed SIGKILL")
            p.handle.close()
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
