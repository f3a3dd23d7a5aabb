"""kube-router's firewall on the node: the NetworkPolicy implementation the `enforce` part runs.

The bridge CNI enforces nothing. kube-router v2.1.0 (the only version the Go module proxy serves)
with only its firewall (`--run-firewall`, no router, no service proxy) enforces NetworkPolicies
on this kernel with iptables and ipsets. It is built from the Go module proxy, cached under the
image cache (`go/<module>@<version>/kube-router`), and runs on the host beside the kubelet, its
command line naming the node's folder (so the node's sweep stops it like the node's own
programs). That version has reported security flaws: fine for a throwaway local cluster only.

Its own `--cleanup-config` panics after the policy part, so `remove_rules` takes its chains
(KUBE-ROUTER-*, KUBE-NWPLCY-*, KUBE-POD-FW-*, and the rules that jump to them) and its ipsets
away itself; the node's sweep (e2e.node.cleanup) does the same after an interrupt.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ..cluster import Process, spawn
from ..harness import ROOT, StepError
from ..kube import wait_for
from . import cleanup, images
from .builders import Context
from .host import Node

MODULE = "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
VERSION = "v2.1.0"
DEFAULT_CHAIN = "KUBE-NWPLCY-DEFAULT"  # beside one KUBE-NWPLCY-<hash> chain per policy


def binary(echo: Callable[[str], None], cache: Path | None = None) -> Path:
    """kube-router, from the cache or built with `go install` from the Go module proxy (cold: about
    3 minutes on 2 cores)."""
    cache = cache or images.default_cache()
    work = cache / "work" / "kube-router"
    work.mkdir(parents=True, exist_ok=True)

    def no_uv() -> Path:
        raise StepError("kube-router's build needs no uv")

    ctx = Context("kube-router", cache, ROOT, work, work / "build.log", echo, no_uv)
    try:
        return ctx.go_binary(f"{MODULE}@{VERSION}")
    except Exception as exc:
        raise StepError(f"kube-router {VERSION} could not be built: {exc} (log: {work / 'build.log'})") from None


def start(node: Node, program: Path) -> Process:
    """kube-router's firewall for the node's pods, with the admin kubeconfig."""
    lay = node.layout
    args = [
        str(program),
        f"--kubeconfig={lay.root / 'admin.kubeconfig'}",
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        f"--hostname-override={lay.node_name}",
        "--health-port=0",  # no health server: no port to clash with
        "--v=1",
    ]
    process = spawn(lay.logs, "kube-router", args, cwd=ROOT)
    node.processes.append(process)
    return process


def wait_synced(process: Process, policies: int, timeout: float = 90) -> float:
    """Until kube-router has made a chain for each of the `policies` NetworkPolicies; seconds taken."""
    started = time.monotonic()

    def synced() -> str | None:
        if process.popen.poll() is not None:
            raise StepError(f"kube-router exited ({process.popen.returncode}); its log: {process.log}")
        save = _run(["iptables-save", "-t", "filter"]).stdout
        chains = sum(1 for line in save.splitlines() if line.startswith(":KUBE-NWPLCY-") and DEFAULT_CHAIN not in line)
        return None if chains >= policies else f"{chains} of {policies} policy chains"

    wait_for("kube-router's policy chains", synced, timeout=timeout, interval=0.5)
    return time.monotonic() - started


def pod_filtered(pod_ip: str) -> bool:
    """kube-router has put the pod (by its address) behind its firewall chain."""
    save = _run(["iptables-save", "-t", "filter"]).stdout
    return any(f" {pod_ip}/32 " in line and "-j KUBE-POD-FW-" in line for line in save.splitlines())


def stop(node: Node, process: Process, echo: Callable[[str], None]) -> list[str]:
    """Stop kube-router, then remove its chains, the rules that jump to them and its ipsets.
    Problems back (empty: nothing of it is left)."""
    if process.popen.poll() is None:
        process.popen.terminate()
        try:
            process.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait(timeout=5)
    if process in node.processes:
        node.processes.remove(process)
    process.handle.close()
    problems = remove_rules()
    left = leftovers()
    if left:
        problems.append("kube-router left: " + ", ".join(left[:20]))
    else:
        echo("    kube-router stopped; its chains and ipsets removed")
    return problems


def remove_rules() -> list[str]:
    return cleanup.remove_firewall(cleanup.KUBE_ROUTER_CHAINS) + cleanup.destroy_ipsets()


def leftovers() -> list[str]:
    found = []
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool) is None:
            continue
        for plan in cleanup.firewall_plan(_run([tool]).stdout, cleanup.KUBE_ROUTER_CHAINS):
            found += [f"{plan.table} chain {c}" for c in plan.chains]
            found += [f"{plan.table} rule {r[3:]}" for r in plan.delete_rules]
    found += [f"ipset {name}" for name in cleanup.node_ipsets(cleanup.read_ipsets())]
    return found


def _run(cmd: list[str], *, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, input=input, check=False)


if __name__ == "__main__":  # the build e2e.node.early starts
    print(binary(print))
