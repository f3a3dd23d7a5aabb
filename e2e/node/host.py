# Longer than 600 lines: one node's whole life (network, containerd, kubelet, kube-proxy, CoreDNS,
# storage, images, stop), in the order it runs.
"""A real node beside the control plane: containerd + runc, the CNI bridge, the kubelet and
kube-proxy, then CoreDNS, the default StorageClass and its provisioner (e2e/node/config.py says
what each runs with).

One node per machine (its interfaces, ranges and kube-proxy's rules are the machine's): a record
in RECORD names the folder of the node that runs. A node whose processes are gone (a killed run)
is swept before the next starts; a live one is refused. Everything the node makes is found again
from that folder (e2e.node.cleanup), so `stop` works from another process too (`./run.sh down`).

    node = Node(Layout(folder / "node", node_name), binaries, folder)
    problems = node.preflight()       # one line each: what is missing
    node.claim(); node.network_up()   # the record, the bridge and address, forwarding, egress rules
    plane = ControlPlane(..., address=config.NODE_ADDRESS, port=config.API_PORT, real_node=name)
    plane.start(); node.start(plane, archives)
    ...
    node.stop()                       # everything, also on interrupt (the harness's finally)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from ..cluster import ControlPlane, Process, first_exited, spawn, stop_all
from ..kube import ApiError, Kube, wait_for
from . import cleanup, config
from .oci import archive_tags, normalise

RECORD = Path("/run/airflow-k8s-node/node.json")
LOCKED = "/run"  # flocked while a node starts or is swept (machine_lock)
ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = (
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "ctr",
    "ip",
    "iptables",
    "iptables-save",
    "iptables-restore",
    "openssl",
)
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
DEBIAN_PACKAGES = "containerd runc containernetworking-plugins iptables conntrack ipset"
MIN_FREE_GIB = 10
ALTERNATIVE = 'use minikube or kind (README, "Quickstart on minikube": `minikube start`, then `pulumi up -s dev`)'


class NodeError(RuntimeError):
    """The node cannot start here, or a step of it failed: says what, in one line where it can."""


@dataclass
class Record:
    folder: str  # everything of the node is below it
    ip_forward: str  # net.ipv4.ip_forward before the node turned it on
    pid: int  # the process that started the node
    purpose: str  # "e2e" or "up"
    cni_results: list[str] = field(default_factory=list)  # the CNI result cache before the node
    made_folders: list[str] = field(default_factory=list)  # cleanup.SYSTEM_FOLDERS missing before it

    @classmethod
    def read(cls, path: Path = RECORD) -> Record | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def live(self) -> bool:
        """The node runs and someone owns it: `./run.sh up`'s node outlives the command that
        started it; an e2e run's node is orphaned once that run is gone (killed), and swept."""
        if not running_processes(Path(self.folder)):
            return False
        return self.purpose == "up" or Path(f"/proc/{self.pid}").exists()

    def write(self, path: Path = RECORD) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """One node at a time changes the machine: a start (record, interfaces, rules) and a cleanup
    never interleave with another's. An exclusive flock on /run itself (a folder every machine
    has), so that nothing is left behind to remove."""
    fd = os.open(LOCKED, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def running_processes(folder: Path) -> list[int]:
    return cleanup.node_processes(cleanup.read_processes(), folder, cleanup.ancestors())


def listeners(port: int) -> list[str]:
    """Local addresses with a TCP listener on `port` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state = fields[1], fields[3]
                address, _, hex_port = local.rpartition(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.append(_hex_address(address))
    return found


def _hex_address(text: str) -> str:
    if len(text) == 8:
        return socket.inet_ntoa(bytes.fromhex(text)[::-1])
    raw = b"".join(bytes.fromhex(text[i : i + 8])[::-1] for i in range(0, 32, 8))
    return socket.inet_ntop(socket.AF_INET6, raw)


def port_taken(port: int) -> str | None:
    """Who would stop a listener on NODE_ADDRESS:port: one on every address or on that one."""
    for address in listeners(port):
        if address in ("0.0.0.0", "::", config.NODE_ADDRESS):
            return f"port {port} is in use on {address}"
    return None


def default_interface() -> str:
    proc = subprocess.run(["ip", "-j", "route", "show", "default"], capture_output=True, text=True, check=False)
    try:
        routes = json.loads(proc.stdout or "[]")
    except ValueError:
        return ""
    return str(routes[0].get("dev", "")) if routes else ""


def route_destinations() -> list[str]:
    proc = subprocess.run(
        ["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=False
    )
    try:
        routes = json.loads(proc.stdout or "[]")
    except ValueError:
        return []
    own = (config.NODE_BRIDGE, config.CNI_BRIDGE)
    return [str(r.get("dst", "")) for r in routes if r.get("dev") not in own and r.get("type", "unicast") == "unicast"]


def sh(*cmd: str, input: str | None = None) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, input=input, check=False)
    if proc.returncode != 0:
        raise NodeError(f"`{' '.join(cmd)}` exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-600:]}")
    return proc.stdout


def runtime_folders(folder: Path) -> list[Path]:
    """What a node's runtime keeps below the run's folder; removed with the node (the data stays)."""
    node = folder / "node"
    return [node / "containerd", node / "kubelet", node / "cni"]


@dataclass
class Node:
    folder: Path  # the run's folder: everything below it is the node's (its record names it)
    binaries: Mapping[str, Path]  # kubelet, kube-proxy
    node_name: str = config.DEFAULT_NODE_NAME
    purpose: str = "e2e"
    echo: Callable[[str], None] = print
    python: str = sys.executable
    processes: list[Process] = field(default_factory=list)
    record: Record | None = None
    kube: Kube | None = None
    server: str = ""
    layout: config.Layout = field(init=False)

    def __post_init__(self) -> None:
        self.layout = config.Layout(
            self.folder / "node", self.plane_folder / "pki", self.node_name, default_interface()
        )

    @property
    def plane_folder(self) -> Path:
        """The control plane's folder (e2e.cluster.ControlPlane's `work`): its certificates are the node's."""
        return self.folder / "cluster"

    # --- before anything is made ---------------------------------------------------------------

    def preflight(self) -> list[str]:
        """Why a node cannot run here, one line each (empty: it can)."""
        problems = []
        if os.geteuid() != 0:
            problems.append("not root: a node creates interfaces, mounts, cgroups and firewall rules")
        missing = [p for p in PROGRAMS if shutil.which(p) is None]
        missing += [f"/usr/lib/cni/{p}" for p in CNI_PLUGINS if not Path("/usr/lib/cni", p).is_file()]
        if missing:
            problems.append(f"missing programs: {', '.join(missing)} (Debian: apt-get install {DEBIAN_PACKAGES})")
        for name in ("kubelet", "kube-proxy"):
            if name not in self.binaries:
                problems.append(f"no {name} binary (../shared/tools node-tools.tar.xz)")
        if "overlay" not in Path("/proc/filesystems").read_text():
            problems.append("the kernel has no overlay file system (containerd's snapshotter needs it)")
        if not Path("/proc/sys/net/bridge").is_dir() and not Path("/sys/module/bridge").exists():
            problems.append("the kernel has no bridge support")
        if not (Path("/sys/fs/cgroup/memory").is_dir() or Path("/sys/fs/cgroup/cgroup.controllers").is_file()):
            problems.append("no memory cgroup mounted under /sys/fs/cgroup")
        for port in (config.API_PORT, config.KUBELET_PORT):
            taken = port_taken(port)
            if taken:
                problems.append(taken + " (the API server and kubelet listen there on the node's address)")
        clash = config.overlapping(
            [config.POD_CIDR, config.SERVICE_CIDR, f"{config.NODE_ADDRESS}/32"], route_destinations()
        )
        if clash:
            problems.append(
                f"the machine already routes {', '.join(clash)}, which overlaps the node's ranges "
                f"({config.POD_CIDR}, {config.SERVICE_CIDR}, {config.NODE_ADDRESS})"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.folder).free / 2**30
        if free < MIN_FREE_GIB:
            problems.append(f"too little disk: {free:.1f} GiB free under {self.folder}, {MIN_FREE_GIB} GiB needed")
        other = Record.read()
        if other is not None and Path(other.folder) != self.folder and other.live():
            how = "./run.sh down" if other.purpose == "up" else f"stop process {other.pid}"
            problems.append(f"another node runs on this machine ({other.purpose}, folder {other.folder}): {how} first")
        return problems

    def claim(self) -> None:
        """Sweep what a killed run left (its record, its folder), then record this node."""
        previous = Record.read()
        if previous is not None:
            if Path(previous.folder) == self.folder or not previous.live():
                self.echo(f"    sweeping what a previous node left ({previous.folder})")
                # A run's temporary folder goes with it; `./run.sh up`'s state folder keeps its data.
                self._sweep(Path(previous.folder), previous.ip_forward, previous.purpose != "up", previous)
            else:
                raise NodeError(f"another node runs on this machine (folder {previous.folder})")
        # Leftovers of a node whose record is gone: same interfaces, chains, cgroups; no processes.
        self._sweep(self.folder, None)
        forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        self.record = Record(
            str(self.folder),
            forward,
            os.getpid(),
            self.purpose,
            cleanup.existing_cni_results(),
            cleanup.missing_system_folders(),
        )
        self.record.write()

    # --- the network -----------------------------------------------------------------------------

    def network_up(self) -> None:
        """The node's address on a bridge of its own, the Service range routed there (never out of
        the machine's interface), forwarding on, and the egress rules."""
        sh("ip", "link", "add", config.NODE_BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{config.NODE_ADDRESS}/32", "dev", config.NODE_BRIDGE)
        sh("ip", "link", "set", config.NODE_BRIDGE, "up")
        sh("ip", "route", "add", config.SERVICE_CIDR, "dev", config.NODE_BRIDGE, "src", config.NODE_ADDRESS)
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        for rule in config.egress_rules(self.layout.outside_interface):
            sh("iptables", "-w", *rule)

    # --- the programs ----------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> Process:
        spawned = spawn(self.layout.logs, name, args, cwd=ROOT)
        self.processes.append(spawned)
        return spawned

    def dead(self) -> str | None:
        return first_exited(self.processes)

    def _alive(self) -> None:
        why = self.dead()
        if why:
            raise NodeError(why + "\n" + tail(self._log_of(why)))

    def _log_of(self, why: str) -> Path:
        return Path(why.rsplit("(log: ", 1)[-1].rstrip(")"))

    def write_files(self, server: str) -> None:
        lay = self.layout
        for folder in (
            lay.containerd_dir,
            lay.registry_hosts / "_default",
            lay.cni_conf_dir,
            lay.kubelet_dir,
            lay.volumes,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        lay.containerd_config.write_text(config.containerd_config(lay))
        (lay.registry_hosts / "_default" / "hosts.toml").write_text(config.registry_hosts())
        (lay.cni_conf_dir / "10-airflow-k8s-node.conflist").write_text(config.cni_conflist_text(lay))
        pki = lay.pki
        for user, cert in (("kubelet", "node"), ("kube-proxy", "kube-proxy"), ("admin", "admin")):
            (lay.root / f"{user}.kubeconfig").write_text(
                config.kubeconfig(server, pki / "ca.crt", pki / f"{cert}.crt", pki / f"{cert}.key", user)
            )
        (lay.root / "kubelet.yaml").write_text(
            yaml.safe_dump(config.kubelet_config(lay, healthz_port=free_port()), sort_keys=False)
        )
        (lay.root / "kube-proxy.yaml").write_text(
            yaml.safe_dump(
                config.kube_proxy_config(
                    lay, lay.root / "kube-proxy.kubeconfig", healthz_port=free_port(), metrics_port=free_port()
                ),
                sort_keys=False,
            )
        )

    def start_containerd(self) -> None:
        self._spawn("containerd", ["containerd", "--config", str(self.layout.containerd_config)])

        def answers() -> str | None:
            self._alive()
            proc = subprocess.run(self.ctr("version"), capture_output=True, text=True, check=False)
            return None if proc.returncode == 0 else proc.stderr.strip()[-200:]

        wait_for("containerd answering", answers, timeout=60, interval=0.3)

    def ctr(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.layout.containerd_socket), "--namespace", "k8s.io", *args]

    def import_images(self, archives: Mapping[str, Path]) -> list[str]:
        """Each archive into containerd's k8s.io namespace, unpacked, named as its pod specs name it."""
        for ref, archive in sorted(archives.items()):
            started = time.monotonic()
            sh(*self.ctr("images", "import", str(archive)))
            self.echo(
                f"    imported {ref} ({archive.stat().st_size / 2**20:.0f} MiB, {time.monotonic() - started:.1f}s)"
            )
        have = set(sh(*self.ctr("images", "list", "--quiet")).split())
        wanted = {normalise(ref) for ref in archives} | {t for a in archives.values() for t in archive_tags(a)}
        missing = sorted(wanted - have)
        if missing:
            raise NodeError(f"containerd does not list {', '.join(missing)} after the import")
        return sorted(wanted)

    def make_cgroup_root(self) -> None:
        """CGROUP_ROOT in every hierarchy (the kubelet wants it there before it starts); a cpuset
        cgroup gets its parent's CPUs and memory nodes, or no task could join its children."""
        for hierarchy in sorted(cleanup.CGROUP_MOUNT.iterdir()):
            if not hierarchy.is_dir() or hierarchy.is_symlink():
                continue
            top = hierarchy / config.CGROUP_ROOT
            top.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / name).is_file() and not (top / name).read_text().strip():
                    (top / name).write_text((hierarchy / name).read_text())

    def start_kubelet(self) -> None:
        self.make_cgroup_root()
        lay = self.layout
        args = config.kubelet_args(lay, lay.root / "kubelet.yaml", lay.root / "kubelet.kubeconfig")
        self._spawn("kubelet", [str(self.binaries["kubelet"]), *args])

    def stop_kubelet(self) -> None:
        """Stop the kubelet (SIGTERM to its process group, as the node's stop does); the pods'
        containers go on under containerd. `restart_kubelet` starts it again the same way."""
        kubelets = [p for p in self.processes if p.name == "kubelet"]
        if not kubelets:
            raise NodeError("no kubelet of this node runs")
        stop_all(kubelets)
        self.processes[:] = [p for p in self.processes if p not in kubelets]

    def restart_kubelet(self, timeout: float = 180) -> None:
        """The kubelet started as `start` starts it, and the node Ready as it reports again."""
        assert self.kube is not None
        kube, since = self.kube, datetime.now(UTC)
        self.start_kubelet()

        def ready() -> str | None:
            self._alive()
            node = kube.read("v1", "Node", self.layout.node_name)
            return "not registered" if node is None else node_not_ready(node, since)

        wait_for(f"node {self.layout.node_name} Ready again", ready, timeout=timeout, interval=1)

    def start_kube_proxy(self) -> None:
        self._spawn(
            "kube-proxy", [str(self.binaries["kube-proxy"]), f"--config={self.layout.root / 'kube-proxy.yaml'}"]
        )

    def start_provisioner(self) -> None:
        lay = self.layout
        self._spawn(
            "volume-provisioner",
            [
                self.python, "-m", "e2e.node.helpers", "provisioner",
                f"--kubeconfig={lay.root / 'admin.kubeconfig'}", f"--folder={lay.root}",
                f"--node={lay.node_name}", f"--log={lay.logs / 'volume-provisioner.actions.log'}",
            ],
        )  # fmt: skip

    def start_forwarder(self, port: int, target: str) -> None:
        """127.0.0.1:`port` to `target` (a Service's address: kube-proxy takes it to a pod)."""
        self._spawn(
            f"forward-{port}",
            [
                self.python,
                "-m",
                "e2e.node.helpers",
                "forward",
                f"--listen=127.0.0.1:{port}",
                f"--to={target}",
                f"--folder={self.folder}",
            ],
        )

    def start(self, kube: Kube, server: str, archives: Mapping[str, Path]) -> None:
        """containerd (images imported), the kubelet, kube-proxy; the node Ready; CoreDNS, the
        StorageClass and its provisioner. The control plane runs already (on NODE_ADDRESS)."""
        self.kube, self.server = kube, server
        self.write_files(server)
        started = time.monotonic()
        self.start_containerd()
        self.echo(f"    containerd answering ({time.monotonic() - started:.1f}s)")
        self.import_images(archives)
        since = datetime.now(UTC)  # a kept cluster (`./run.sh up` after `down`) holds yesterday's Ready
        self.start_kubelet()
        self.start_kube_proxy()

        def ready() -> str | None:
            self._alive()
            node = kube.read("v1", "Node", self.layout.node_name)
            return "not registered yet" if node is None else node_not_ready(node, since)

        wait_for(f"node {self.layout.node_name} Ready", ready, timeout=180, interval=1)
        self.echo(f"    node {self.layout.node_name} Ready ({time.monotonic() - started:.1f}s after containerd)")
        for obj in [config.storage_class(), *config.coredns_objects()]:
            kube.apply(obj)
        self.start_provisioner()
        self.wait_pods_ready("kube-system", "k8s-app=kube-dns", since, timeout=180)
        self.echo(f"    CoreDNS Ready ({time.monotonic() - started:.1f}s after containerd)")

    def wait_pods_ready(self, namespace: str, selector: str, since: datetime, timeout: float) -> None:
        """Every pod of `selector` Ready with containers started after `since` (on this kubelet)."""
        assert self.kube is not None
        kube = self.kube

        def ready() -> str | None:
            self._alive()
            pods = kube.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}")["items"]
            if not pods:
                return "no pod yet"
            return next((why for why in (pod_not_ready(p, since) for p in pods) if why), None)

        wait_for(f"pods {selector} in {namespace} Ready", ready, timeout=timeout, interval=1)

    # --- the end ------------------------------------------------------------------------------------

    def _sweep(
        self, folder: Path, ip_forward: str | None, everything: bool = False, record: Record | None = None
    ) -> list[str]:
        """`record`: the node's, for what the machine had before it (None: no node of this folder is
        known to have run: every CNI result and system folder stays)."""
        problems = cleanup.sweep(
            folder,
            kube_proxy=self.binaries.get("kube-proxy"),
            ip_forward=ip_forward if ip_forward == "0" else None,
            remove=[folder] if everything else runtime_folders(folder),
            cni_results_before=cleanup.existing_cni_results() if record is None else record.cni_results,
            made_folders=[] if record is None else record.made_folders,
            containerd_dir=folder / "node" / "containerd",
            echo=self.echo,
        )
        for problem in problems:
            self.echo(f"    cleanup: {problem}")
        return problems

    def stop(self, everything: bool = False, locked: bool = False) -> list[str]:
        """Everything the node made, whatever state it is in; the record last. The run's folder
        stays (logs, and `./run.sh up`'s data) unless `everything`. Not interrupted by a second
        Ctrl-C or SIGTERM. `locked`: the caller holds machine_lock already."""
        with _signals_held(), contextlib.nullcontext() if locked else machine_lock():
            record = self.record or Record.read()
            mine = record is not None and Path(record.folder) == self.folder
            ip_forward = record.ip_forward if record is not None and mine else None
            problems = self._sweep(self.folder, ip_forward, everything, record if mine else None)
            for p in self.processes:
                with contextlib.suppress(Exception):
                    p.popen.wait(timeout=1)
                p.handle.close()
            self.processes.clear()
            current = Record.read()
            if current is not None and Path(current.folder) == self.folder:
                RECORD.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    RECORD.parent.rmdir()
            self.record = None
        return problems


def bring_up(
    node: Node, binaries: Mapping[str, Path], archives: Mapping[str, Path], certificate_days: int = 2
) -> tuple[ControlPlane, Kube]:
    """The node's record and network, the control plane on the node's address, then the node.
    The plane stops the node first (`plane.stop()`); a kept control plane (`./run.sh up` after
    `down`) starts again on its store and certificates."""
    with machine_lock():
        node.claim()
        try:
            node.network_up()
        except BaseException:
            node.stop(locked=True)
            raise
    plane = ControlPlane(
        node.plane_folder,
        dict(binaries),
        [],
        node.echo,
        address=config.NODE_ADDRESS,
        port=config.API_PORT,
        real_node=node.node_name,
        certificate_days=certificate_days,
    )
    plane.attached.append(node.stop)
    try:
        kube = plane.start()
        node.start(kube, plane.server, archives)
    except BaseException:
        plane.stop()
        raise
    return plane, kube


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the cleanup is done (main thread only)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            os.kill(os.getpid(), received[0])


def _time(text: object) -> datetime | None:
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def node_not_ready(node: dict[str, Any], since: datetime) -> str | None:
    """Why the node is not Ready as its kubelet reported after `since` (None when it is). The
    times are whole seconds: a report within the second before `since` counts."""
    conds = {c["type"]: c for c in (node.get("status") or {}).get("conditions") or []}
    ready = conds.get("Ready") or {}
    beat = _time(ready.get("lastHeartbeatTime"))
    if ready.get("status") != "True":
        return f"Ready={ready.get('status')}: {ready.get('message')}"
    if beat is None or beat < since.replace(microsecond=0) - timedelta(seconds=1):
        return "Ready only as reported before this kubelet started"
    return None


def is_ready(pod: dict[str, Any]) -> bool:
    """The pod's Ready condition is True."""
    conds = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
    return conds.get("Ready") == "True"


def pod_not_ready(pod: dict[str, Any], since: datetime) -> str | None:
    """Why the pod is not Ready with every container started after `since` (None when it is)."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    if not is_ready(pod):
        return f"{name} {status.get('phase')}"
    for cs in status.get("containerStatuses") or []:
        started = _time(((cs.get("state") or {}).get("running") or {}).get("startedAt"))
        if started is None or started < since.replace(microsecond=0) - timedelta(seconds=1):
            return f"{name}: container {cs['name']} not started by this kubelet yet"
    return None


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at `address` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def pod_report(kube: Kube, namespace: str, lines: int = 15) -> str:
    """A failing step's evidence: each pod that is not Ready or not Succeeded with its events and
    the last lines of each container's log (through the API server, from the kubelet)."""
    out = []
    for pod in kube.list("v1", "Pod", namespace):
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
        if status.get("phase") == "Succeeded" or conds.get("Ready") == "True":
            continue
        out.append(f"--- pod {namespace}/{name}: {status.get('phase')}")
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            state = cs.get("state") or {}
            what, detail = next(iter(state.items()), ("?", {}))
            restarts = cs.get("restartCount")
            out.append(f"    container {cs['name']}: {what} {json.dumps(detail)[:300]} restarts={restarts}")
        events = [e for e in kube.list("v1", "Event", namespace) if (e.get("involvedObject") or {}).get("name") == name]
        for e in events[-8:]:
            out.append(f"    event {e.get('type')} {e.get('reason')}: {str(e.get('message'))[:300]}")
        spec = pod.get("spec") or {}
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            try:
                text = kube.request(
                    "GET", f"/api/v1/namespaces/{namespace}/pods/{name}/log?container={c['name']}&tailLines={lines}"
                )
            except (ApiError, OSError) as exc:
                text = f"(no log: {str(exc)[:200]})"
            out.append(f"    log {c['name']}:")
            out += [f"      {line}" for line in str(text or "").splitlines()[-lines:]]
    return "\n".join(out)


def images_in(objects: list[dict[str, Any]]) -> list[str]:
    """Every container image the objects name (pods, pod templates of workloads, Jobs, CronJobs)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key in ("containers", "initContainers", "ephemeralContainers"):
                for c in value.get(key) or []:
                    if isinstance(c, dict) and isinstance(c.get("image"), str):
                        found.append(c["image"])
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)

    walk(objects)
    return list(dict.fromkeys(found))
