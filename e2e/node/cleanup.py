"""Removing everything a node made, also after a run that was killed: the plan is computed from
what the machine shows (processes, mounts, links, network namespaces, iptables rules, cgroups),
each item recognised as the node's by something only the node has (its folder in a process's
command line or a mount's path, its cgroup root, its pod range on an interface, its chain names),
never by a broad name.

Planning is pure (each function takes what was read and returns what to do; tests/test_node.py);
`sweep` reads the machine, plans, and does it, in an order that lets each step succeed: processes
first (the kubelet would restart containers), then mounts, network namespaces, interfaces,
firewall rules, cgroups, the sysctl, and the runtime folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import config

# Chains made by the node's programs: kube-proxy and the kubelet (KUBE-*), the CNI portmap and
# bridge plugins (CNI-*), and the node's egress rules (AIRFLOW-K8S-*).
CHAIN_PREFIXES = ("KUBE-", "CNI-", "AIRFLOW-K8S-")
# kube-router's firewall (the `enforce` part, e2e.node.kube_router): its chains, removed without
# kube-proxy's, and its ipsets (kube-proxy in iptables mode makes none).
KUBE_ROUTER_CHAINS = ("KUBE-ROUTER-", "KUBE-NWPLCY-", "KUBE-POD-FW-")
IPSET_PREFIXES = ("KUBE-", "kube-router-", "inet6:KUBE-", "inet6:kube-router-")
TABLES = ("filter", "nat", "mangle", "raw")
NETNS_DIR = Path("/var/run/netns")
CNI_RESULTS = Path("/var/lib/cni/results")
CGROUP_MOUNT = Path("/sys/fs/cgroup")
SHIM_SOCKETS = Path("/run/containerd/s")  # containerd 1.6's shims put their sockets there, whatever its state
# Folders of the machine that the node's programs make when they are missing; the record lists
# those that were missing, and they go again when empty.
SYSTEM_FOLDERS = (SHIM_SOCKETS, SHIM_SOCKETS.parent, CNI_RESULTS, CNI_RESULTS.parent, NETNS_DIR)


@dataclass(frozen=True)
class Proc:
    pid: int
    cmdline: str  # arguments joined by spaces
    cgroup: str  # the text of /proc/<pid>/cgroup


def mentions(cmdline: str, folder: Path) -> bool:
    """True when `cmdline` names `folder` or a path below it (not a longer sibling name)."""
    text = str(folder).rstrip("/")
    return re.search(re.escape(text) + r"(?=/|\s|$|\"|')", cmdline) is not None


def in_cgroup_root(cgroup: str, root: str = config.CGROUP_ROOT) -> bool:
    return any(
        line.split(":", 2)[-1].startswith(f"/{root}/") or line.endswith(f":/{root}") for line in cgroup.splitlines()
    )


def node_processes(procs: Iterable[Proc], folder: Path, spare: Iterable[int] = ()) -> list[int]:
    """The pids of the node's processes: every one whose command line names the node's folder
    (containerd, its shims, the kubelet, kube-proxy, the control plane, the node's helpers) or that
    runs in the node's cgroup root (the containers). `spare`: this process and its parents."""
    keep = set(spare)
    return sorted(
        p.pid for p in procs if p.pid not in keep and (mentions(p.cmdline, folder) or in_cgroup_root(p.cgroup))
    )


def mounts_to_unmount(mountinfo: str, folder: Path, netns: Iterable[str] = ()) -> list[str]:
    """Mount points below the node's folder (pod volumes, containerd's overlay and shm mounts) and
    the node's network namespace files, deepest first so that each one can go."""
    under = str(folder).rstrip("/") + "/"
    ns_paths = {str(NETNS_DIR / name) for name in netns} | {str(Path("/run/netns") / name) for name in netns}
    found = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        if point.startswith(under) or point in ns_paths:
            found.append(point)
    unique = list(dict.fromkeys(found))
    return sorted(unique, key=lambda p: (-p.count("/"), p))


def node_netns(namespaces: dict[str, list[str]]) -> list[str]:
    """The network namespaces that hold an address of the pod range (namespace name -> its IPv4
    addresses): the pods' namespaces that containerd made and the CNI plugin addressed."""
    pods = ipaddress.ip_network(config.POD_CIDR)
    return sorted(
        name for name, addresses in namespaces.items() if any(ipaddress.ip_address(a) in pods for a in addresses)
    )


def links_to_delete(links: Sequence[Mapping[str, object]]) -> list[str]:
    """The node's interfaces (`ip -j link` entries): its two bridges and any veth still attached
    to the pods' bridge. Each bridge after its ports."""
    bridges = (config.CNI_BRIDGE, config.NODE_BRIDGE)
    ports = [str(link["ifname"]) for link in links if link.get("master") == config.CNI_BRIDGE]
    present = {str(link.get("ifname")) for link in links}
    return ports + [b for b in bridges if b in present]


@dataclass
class TablePlan:
    table: str
    delete_rules: list[str] = field(default_factory=list)  # "-D CHAIN spec..."
    chains: list[str] = field(default_factory=list)  # flushed, then removed

    def restore_script(self) -> str:
        """Input for `iptables-restore --noflush`: the rules that jump to the node's chains or carry
        its comment, then each of its chains flushed and removed."""
        lines = [f"*{self.table}", *self.delete_rules]
        lines += [f"-F {c}" for c in self.chains]
        lines += [f"-X {c}" for c in self.chains]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


def firewall_plan(save: str, prefixes: tuple[str, ...] = CHAIN_PREFIXES) -> list[TablePlan]:
    """From `iptables-save` output: per table, the node's chains (those of `prefixes`) and every
    rule outside them that jumps to one or carries the node's comment."""
    plans: list[TablePlan] = []
    current: TablePlan | None = None
    rules: list[str] = []
    for raw in save.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            current, rules = TablePlan(line[1:]), []
        elif line.startswith(":") and current is not None:
            chain = line[1:].split(" ", 1)[0]
            if chain.startswith(prefixes):
                current.chains.append(chain)
        elif line.startswith("-A ") and current is not None:
            rules.append(line)
        elif line == "COMMIT" and current is not None:
            for rule in rules:
                chain = rule.split(" ", 2)[1]
                if chain in current.chains:
                    continue  # goes with its chain
                target = re.search(r"\s-[jg]\s+(\S+)", rule)
                ours = target is not None and target.group(1).startswith(prefixes)
                if ours or f'--comment "{config.RULE_COMMENT}"' in rule or f"--comment {config.RULE_COMMENT}" in rule:
                    current.delete_rules.append("-D " + rule[3:])
            if current.chains or current.delete_rules:
                plans.append(current)
            current = None
    return plans


def node_ipsets(names: Iterable[str]) -> list[str]:
    """The ipsets kube-router's firewall made (`ipset list -n`), in the order they can go."""
    return sorted(n for n in names if n.startswith(IPSET_PREFIXES))


def cgroup_dirs(hierarchies: dict[str, list[str]]) -> list[str]:
    """Every cgroup folder below the node's cgroup root in each hierarchy (hierarchy -> the folders
    found, relative paths included), deepest first: a cgroup goes only once its children have."""
    found = [d for dirs in hierarchies.values() for d in dirs]
    return sorted(set(found), key=lambda d: (-d.count("/"), d))


def cni_result_files(names: Iterable[str], before: Iterable[str] = ()) -> list[str]:
    """The CNI plugins' cached results (`<network>-<container>-<ifname>`) the node left: those of
    its network, and the loopback results containerd's CRI plugin wrote (`cni-loopback-...`) that
    were not there before the node started (`before`)."""
    earlier = set(before)
    return sorted(
        n
        for n in names
        if n.startswith(config.CNI_NETWORK + "-") or (n.startswith("cni-loopback-") and n not in earlier)
    )


def shim_sockets(address: str, tasks: dict[str, list[str]]) -> list[str]:
    """The socket file of each task's shim: containerd 1.6 names it after the sha256 of
    `<containerd's address>/<namespace>/<id>` (runtime/v2/shim SocketAddress). `tasks`: the
    namespace -> task ids found in containerd's state folder."""
    return sorted(
        str(SHIM_SOCKETS / hashlib.sha256(f"{address}/{ns}/{task}".encode()).hexdigest())
        for ns, ids in tasks.items()
        for task in ids
    )


def read_tasks(containerd_dir: Path) -> dict[str, list[str]]:
    tasks_dir = containerd_dir / "state" / "io.containerd.runtime.v2.task"
    if not tasks_dir.is_dir():
        return {}
    return {ns.name: sorted(t.name for t in ns.iterdir()) for ns in tasks_dir.iterdir() if ns.is_dir()}


def missing_system_folders() -> list[str]:
    """SYSTEM_FOLDERS that do not exist now (recorded before a node starts)."""
    return [str(f) for f in SYSTEM_FOLDERS if not f.exists()]


def existing_cni_results() -> list[str]:
    """What the CNI result cache holds now (recorded before a node starts)."""
    return sorted(p.name for p in CNI_RESULTS.iterdir()) if CNI_RESULTS.is_dir() else []


# --- reading the machine, doing the plan --------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def read_processes() -> list[Proc]:
    procs = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            procs.append(Proc(int(entry.name), _read(entry / "cmdline"), _read(entry / "cgroup")))
    return procs


def ancestors(pid: int | None = None) -> list[int]:
    """This process and its parents (never stopped by a sweep)."""
    out = []
    current = pid or os.getpid()
    while current > 1:
        out.append(current)
        stat = _read(Path(f"/proc/{current}/stat"))
        try:
            current = int(stat.rsplit(")", 1)[1].split()[1])
        except (IndexError, ValueError):
            break
    return out


def _run(cmd: list[str], *, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, input=input, check=False)


def read_netns() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    if not NETNS_DIR.is_dir():
        return found
    for entry in sorted(NETNS_DIR.iterdir()):
        proc = _run(["ip", "-n", entry.name, "-j", "-4", "addr"])
        addresses = []
        with contextlib.suppress(ValueError):
            for link in json.loads(proc.stdout or "[]"):
                addresses += [a["local"] for a in link.get("addr_info") or [] if "local" in a]
        found[entry.name] = addresses
    return found


def read_links() -> list[dict[str, object]]:
    proc = _run(["ip", "-j", "link"])
    try:
        links: list[dict[str, object]] = json.loads(proc.stdout or "[]")
    except ValueError:
        return []
    return links


def remove_firewall(prefixes: tuple[str, ...] = CHAIN_PREFIXES) -> list[str]:
    """The chains of `prefixes` and the rules that jump to them, in iptables and ip6tables;
    problems back."""
    problems = []
    for save_cmd, restore_cmd in (("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore")):
        if shutil.which(save_cmd) is None:
            continue
        for plan in firewall_plan(_run([save_cmd]).stdout, prefixes):
            proc = _run([restore_cmd, "--noflush"], input=plan.restore_script())
            if proc.returncode != 0:
                problems.append(f"{restore_cmd} ({plan.table}): {proc.stderr.strip()}")
    return problems


def read_ipsets() -> list[str]:
    if shutil.which("ipset") is None:
        return []
    return _run(["ipset", "list", "-n"]).stdout.split()


def destroy_ipsets() -> list[str]:
    """Destroy kube-router's ipsets (after the rules that use them are gone); problems back."""
    errors: dict[str, str] = {}
    for _ in range(3):  # a set a list:set names goes once that list has
        left = node_ipsets(read_ipsets())
        if not left:
            return []
        for name in left:
            errors[name] = _run(["ipset", "destroy", name]).stderr.strip()
    return [f"ipset destroy {name}: {errors.get(name, '')}" for name in node_ipsets(read_ipsets())]


def read_cgroups(root: str = config.CGROUP_ROOT) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    if not CGROUP_MOUNT.is_dir():
        return found
    for hierarchy in sorted(CGROUP_MOUNT.iterdir()):
        top = hierarchy / root
        if top.is_dir() and not top.is_symlink():
            found[hierarchy.name] = [str(top)] + [str(p) for p in top.rglob("*") if p.is_dir()]
    return found


def stop_processes(pids: Callable[[], list[int]], echo: Callable[[str], None], grace: float = 5.0) -> list[str]:
    """SIGTERM to each, then SIGKILL to whatever is left after `grace` seconds; asked again until
    no process of the node is left (a shim may start a container meanwhile). Problems back."""
    first = pids()
    for pid in first:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    for _ in range(50):
        left = pids()
        if not left:
            return []
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    left = pids()
    return [f"processes still alive after SIGKILL: {left}"] if left else []


@dataclass(frozen=True)
class MachineView:
    """What the machine shows of nodes, read at one moment (`read_machine`)."""

    procs: list[Proc]
    mountinfo: str
    netns: dict[str, list[str]]
    links: list[dict[str, object]]
    firewall: dict[str, str]  # "iptables" / "ip6tables" -> its -save output
    cgroups: dict[str, list[str]]
    cni_results: list[str]
    record: bool  # the record of a running node is there
    ipsets: list[str] = field(default_factory=list)  # `ipset list -n`


def read_machine(record: Path) -> MachineView:
    firewall = {
        cmd.removesuffix("-save"): _run([cmd]).stdout
        for cmd in ("iptables-save", "ip6tables-save")
        if shutil.which(cmd)
    }
    return MachineView(
        read_processes(),
        Path("/proc/self/mountinfo").read_text(errors="replace"),
        read_netns(),
        read_links(),
        firewall,
        read_cgroups(),
        existing_cni_results(),
        record.exists(),
        read_ipsets(),
    )


def leftovers(view: MachineView, folder: Path, spare: Iterable[int] = ()) -> list[str]:
    """What a sweep would still find of a node of `folder` (and of any node, where it can tell: its
    cgroup root, its pods' namespaces, its interfaces and chains, its network's CNI results, the
    record): empty on a machine the node left clean. Each item named, for a failure message."""
    netns = node_netns(view.netns)
    found = [f"process {pid}" for pid in node_processes(view.procs, folder, spare)]
    found += [f"mount {point}" for point in mounts_to_unmount(view.mountinfo, folder, netns)]
    found += [f"network namespace {name}" for name in netns]
    found += [f"interface {link}" for link in links_to_delete(view.links)]
    for tool, save in view.firewall.items():
        for plan in firewall_plan(save):
            found += [f"{tool} {plan.table} chain {chain}" for chain in plan.chains]
            found += [f"{tool} {plan.table} rule {rule[3:]}" for rule in plan.delete_rules]
    found += [f"ipset {name}" for name in node_ipsets(view.ipsets)]
    found += [f"cgroup {d}" for d in cgroup_dirs(view.cgroups)]
    found += [f"CNI result {n}" for n in view.cni_results if n.startswith(config.CNI_NETWORK + "-")]
    if view.record:
        found.append("the record of a running node")
    return found


def sweep(
    folder: Path,
    *,
    kube_proxy: Path | None = None,
    ip_forward: str | None = None,
    remove: Iterable[Path] = (),
    cni_results_before: Iterable[str] = (),
    made_folders: Iterable[str] = (),
    containerd_dir: Path | None = None,
    echo: Callable[[str], None] = print,
) -> list[str]:
    """Remove everything of the node whose folder is `folder`; returns the problems (empty when all
    went). `kube_proxy`: the binary, for its own `--cleanup`. `ip_forward`: the value to put back.
    `remove`: folders to delete at the end (the runtime's; the data folders stay).
    `cni_results_before`: the CNI result cache's files from before the node (they stay).
    `made_folders`: the SYSTEM_FOLDERS that were missing before the node (removed when empty).
    `containerd_dir`: the node's containerd folder (its shims' sockets are found from it)."""
    problems: list[str] = []
    spare = ancestors()
    problems += stop_processes(lambda: node_processes(read_processes(), folder, spare), echo)

    netns = node_netns(read_netns())
    mountinfo = Path("/proc/self/mountinfo").read_text(errors="replace")
    for point in mounts_to_unmount(mountinfo, folder, netns):
        proc = _run(["umount", point])
        if proc.returncode != 0:
            lazy = _run(["umount", "-l", point])
            if lazy.returncode != 0:
                problems.append(f"umount {point}: {proc.stderr.strip() or lazy.stderr.strip()}")
    for name in netns:
        proc = _run(["ip", "netns", "delete", name])
        if proc.returncode != 0 and (NETNS_DIR / name).exists():
            problems.append(f"ip netns delete {name}: {proc.stderr.strip()}")

    for link in links_to_delete(read_links()):
        proc = _run(["ip", "link", "delete", link])
        if proc.returncode != 0 and "Cannot find device" not in proc.stderr:
            problems.append(f"ip link delete {link}: {proc.stderr.strip()}")

    if kube_proxy is not None and kube_proxy.is_file():
        _run([str(kube_proxy), "--cleanup"])  # its own chains in every mode it knows; the rest below
    problems += remove_firewall()
    problems += destroy_ipsets()  # kube-router's, once no rule uses them

    for cgroup in cgroup_dirs(read_cgroups()):
        try:
            os.rmdir(cgroup)
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"rmdir {cgroup}: {exc.strerror}")

    if ip_forward is not None:
        with contextlib.suppress(OSError):
            Path("/proc/sys/net/ipv4/ip_forward").write_text(ip_forward + "\n")

    if CNI_RESULTS.is_dir():
        for name in cni_result_files((p.name for p in CNI_RESULTS.iterdir()), cni_results_before):
            with contextlib.suppress(OSError):
                (CNI_RESULTS / name).unlink()
    if containerd_dir is not None:
        for socket_file in shim_sockets(str(containerd_dir / "containerd.sock"), read_tasks(containerd_dir)):
            with contextlib.suppress(OSError):
                Path(socket_file).unlink()
    for made in sorted(made_folders, key=lambda f: -f.count("/")):
        with contextlib.suppress(OSError):
            Path(made).rmdir()  # only when nothing else left anything there
    for path in remove:
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            problems.append(f"{path} could not be removed")
    return problems
