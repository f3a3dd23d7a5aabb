"""`./run.sh up [STACK]`, `./run.sh down [--purge]`, `./run.sh status`: Airflow on a real node on
this machine, for anyone with Python and root, no cluster needed.

`up` brings up the node (e2e.node.host: its own address, the control plane on it, containerd,
kubelet, kube-proxy, CoreDNS), builds or takes from the cache every image the stack names and
imports it, deploys the stack (dev by default) with the real Pulumi engine (a local backend and
a passphrase in the state folder), waits until Airflow answers, and prints the UI address (a
forwarder on 127.0.0.1) and the admin login; one progress line per phase. The node keeps
running after `up` returns. `up` again deploys again on the running node.

`down` stops and removes everything the node runs and made (processes, mounts, interfaces,
firewall rules, cgroups, containerd's state); the cluster's store, the Pulumi state and the
volumes stay in the state folder, so the next `up` comes back with the same data. `--purge`
removes those too, with the stack's hostPath folders (its task logs).

State: $AIRFLOW_K8S_NODE_STATE, default /var/lib/airflow-k8s-node. The UI: 127.0.0.1:8080
($AIRFLOW_K8S_UI_PORT).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.airflow.config.airflow import DEFAULT_CHART_VERSION

from .. import runlock, tools
from ..harness import ROOT, Pulumi, StepError, copy_project, install_plugins, pulumi_env
from ..kube import Kube
from ..scenarios import stall_watch
from . import config, host
from .airflow_api import AirflowApi
from .host import Node, NodeError, Record
from .oci import normalise

STATE = Path("/var/lib/airflow-k8s-node")
UI_PORT = 8080
CERTIFICATE_DAYS = 3650
# Left out of the stack for now: their images (the Spark operator's, kube-prometheus-stack's) are
# not built yet, and nothing is ever pulled.
LEFT_OUT = ("airflow-k8s:spark", "airflow-k8s:monitoring")
ANSWER_TIMEOUT = 600


def state_folder() -> Path:
    explicit = os.environ.get("AIRFLOW_K8S_NODE_STATE")
    return Path(explicit).expanduser().resolve() if explicit else STATE


def ui_port() -> int:
    return int(os.environ.get("AIRFLOW_K8S_UI_PORT", UI_PORT))


@dataclass
class Phases:
    """One progress line per phase, with its duration."""

    echo: Callable[[str], None] = print
    started: float = 0.0
    timings: dict[str, float] | None = None

    def begin(self, what: str) -> None:
        self.started = time.monotonic()
        self.echo(f"==> {what}")

    def done(self, what: str, detail: str = "") -> None:
        took = time.monotonic() - self.started
        if self.timings is not None:
            self.timings[what] = took
        self.echo(f"<== {what}: {took:.1f}s" + (f" ({detail})" if detail else ""))


def cannot(problems: list[str]) -> str:
    """The one line for a machine where the node cannot run."""
    return f"cannot run a node here: {'; '.join(problems)}. Instead, {host.ALTERNATIVE}."


def find_tools(echo: Callable[[str], None]) -> tuple[dict[str, Path], list[str]]:
    found: dict[str, Path] = {}
    missing = []
    for name in (*tools.CLUSTER_TOOLS, *tools.NODE_TOOLS, *tools.PULUMI_TOOLS):
        if name == "kwok":
            continue
        resolved = tools.resolve(name, tools.default_cache(), build_missing=name in tools.NODE_TOOLS)
        if resolved.path is None:
            missing.append(name)
        else:
            found[name] = resolved.path
    return found, missing


def running(folder: Path) -> bool:
    record = Record.read()
    return record is not None and Path(record.folder) == folder and bool(host.running_processes(folder))


def read_stack(stack: str) -> dict[str, Any]:
    """The `config` of Pulumi.<stack>.yaml, refused when it holds encrypted values (they belong to
    another backend's secrets provider)."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise NodeError(f"no stack file Pulumi.{stack}.yaml (stacks: {', '.join(stacks())})")
    raw: dict[str, Any] = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    secure = sorted(k for k, v in raw.items() if isinstance(v, dict) and "secure" in v)
    if secure:
        raise NodeError(
            f"Pulumi.{stack}.yaml holds secrets ({', '.join(secure)}) encrypted for another backend; "
            "`./run.sh up` deploys stacks without them (dev)"
        )
    return raw


def node_config(raw: dict[str, Any], kubeconfig: Path, charts: Path) -> tuple[dict[str, Any], list[str]]:
    """A stack's config for the node: its cluster named by the node's kubeconfig (never whatever
    kubectl points at), the Airflow chart from the local archives when they are there, Spark and
    monitoring left out (named)."""
    cfg = json.loads(json.dumps({k: v for k, v in raw.items() if k not in LEFT_OUT}))
    dropped = [k.split(":", 1)[1] for k in LEFT_OUT if k in raw]
    notes = [f"left out: {', '.join(dropped)} (their images are not built yet)"] if dropped else []
    cfg["kubernetes:kubeconfig"] = str(kubeconfig)
    cfg["kubernetes:context"] = "e2e"  # e2e.cluster.kubeconfig's context
    airflow = cfg.setdefault("airflow-k8s:airflow", {})
    chart = airflow.get("chart") if isinstance(airflow.get("chart"), dict) else {}
    archive = charts / f"airflow-{chart.get('version') or DEFAULT_CHART_VERSION}.tgz"
    if archive.is_file():
        airflow["chart"] = {"path": str(archive)}
        notes.append(f"chart: {archive.name} from {charts}")
    return cfg, notes


def link_dags(cfg: dict[str, Any], folder: Path) -> list[str]:
    """A hostPath DAG folder the stack names and that does not exist becomes a link to this
    checkout's dags/ (what `minikube mount ./dags:/data/airflow-dags` does for minikube); the
    stack's hostPath logs folder, when `up` is the first to use it, is recorded as its data
    (`down --purge` removes it), and so are the folders made above them."""
    notes = []
    dags = (((cfg.get("airflow-k8s:airflow") or {}).get("dags") or {}).get("hostPath") or {}).get("path")
    logs = ((cfg.get("airflow-k8s:logs") or {}).get("hostPath") or {}).get("path")
    for path in (dags, logs):  # folders that `up` (or the kubelet for it) makes above them
        for parent in Path(path).parents if path else ():
            if not parent.exists():
                record_made(folder, "dirs", str(parent))
    if dags:
        link = Path(dags)
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(ROOT / "dags", target_is_directory=True)
            record_made(folder, "links", str(link))
            notes.append(f"DAGs: {link} -> this checkout's dags/")
        else:
            notes.append(f"DAGs: {link} (already there)")
    if logs and not Path(logs).exists():  # a folder that was there before is not ours to purge
        record_made(folder, "data", str(logs))
    return notes


def charts_folder() -> Path:
    """The chart archives: $AIRFLOW_K8S_CHARTS, else ../shared/charts beside the checkout."""
    explicit = os.environ.get("AIRFLOW_K8S_CHARTS")
    return Path(explicit) if explicit else ROOT.parent / "shared" / "charts"


def stacks() -> list[str]:
    return sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))


def record_made(folder: Path, kind: str, path: str) -> None:
    """Paths outside the state folder that `up` made (links) or that hold the stack's data."""
    made = folder / "made.json"
    doc: dict[str, list[str]] = json.loads(made.read_text()) if made.is_file() else {}
    if path not in doc.setdefault(kind, []):
        doc[kind].append(path)
    made.write_text(json.dumps(doc, indent=2) + "\n")


def passphrase(folder: Path) -> str:
    path = folder / "pulumi" / "passphrase"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def write_project(folder: Path, stack: str, cfg: dict[str, Any]) -> Path:
    """A copy of this checkout's project with the node's stack file (as the cluster will see it)."""
    from .scenario import with_kube_minor

    shutil.rmtree(folder, ignore_errors=True)
    copy_project(folder)
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    doc["config"] = with_kube_minor(cfg)
    (folder / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def deploy(folder: Path, stack: str, cfg: dict[str, Any], found: dict[str, Path], kube: Kube) -> Pulumi:
    """`pulumi up` of `stack` from a copy of this checkout, local backend in the state folder. When
    the same objects stay pending for config.UP_STALL_SECONDS (a failed Release's pods, a Job that
    never completes), it stops and names them with their last Events instead of waiting out the
    Release's timeout."""
    project = write_project(folder / "project", stack, cfg)
    pulumi_dir = folder / "pulumi"
    env = pulumi_env(pulumi_dir, found, folder / "cluster" / "kubeconfig")
    env["PULUMI_CONFIG_PASSPHRASE"] = passphrase(folder)
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pulumi = Pulumi(found["pulumi"], project, env, logs)
    pulumi.stall = functools.partial(stall_watch, kube)
    pulumi.stall_seconds = config.UP_STALL_SECONDS
    install_plugins(pulumi, found)
    pulumi.run("login", env["PULUMI_BACKEND_URL"])
    pulumi.run("stack", "select", "--create", stack, "--secrets-provider", "passphrase")
    pulumi.run("up", "--yes", "--skip-preview", timeout=1800)
    return pulumi


def up(stack: str, echo: Callable[[str], None] = print) -> int:
    folder = state_folder()
    fresh = not folder.exists()
    phases = Phases(echo, timings={})
    found, missing = find_tools(echo)
    node = Node(folder, found, purpose="up", echo=lambda line: None)
    again = running(folder)
    problems = [] if again else node.preflight()
    if missing:
        problems.append(f"missing tools: {', '.join(missing)} (../shared/tools/install.sh, or the official releases)")
    port = ui_port()
    if not again and host.listeners(port):
        problems.append(f"port {port} is in use on this machine (set AIRFLOW_K8S_UI_PORT to another)")
    if problems:
        if fresh:
            shutil.rmtree(folder, ignore_errors=True)  # preflight made it to measure its free space
        echo(cannot(problems))
        return 1
    try:
        return _up(stack, folder, node, found, phases, again, echo)
    except (NodeError, StepError, TimeoutError, RuntimeError) as exc:
        log = f" (log: {exc.log})" if isinstance(exc, StepError) and exc.log else ""
        echo(f"up: FAILED: {exc}{log}")
        if fresh:  # nothing half-made: a first `up` that failed leaves its logs only (not the
            # stack's data folders it made, which a later `down --purge` could no longer name)
            forget(folder, purge=True, keep_folder=True)
            for entry in folder.iterdir() if folder.is_dir() else []:
                if entry.is_dir() and entry.name != "logs":
                    shutil.rmtree(entry, ignore_errors=True)
                elif not entry.is_dir():
                    entry.unlink()
            echo(f"    nothing was left running or made; its logs: {folder / 'logs'}")
        elif running(folder):
            echo("    the node keeps running: ./run.sh status; ./run.sh down removes it")
        return 1
    except BaseException:
        if fresh:
            forget(folder, purge=True)
        raise


def _up(
    stack: str,
    folder: Path,
    node: Node,
    found: dict[str, Path],
    phases: Phases,
    again: bool,
    echo: Callable[[str], None],
) -> int:
    kubeconfig = folder / "cluster" / "kubeconfig"
    cfg, notes = node_config(read_stack(stack), kubeconfig, charts_folder())
    notes += link_dags(cfg, folder)
    for note in notes:
        echo(f"    {note}")

    from .airflow_steps import admin_login, api_target, wait_answering
    from .scenario import build_images

    log = folder / "logs" / "images.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    phases.begin(f"images: every image the {stack} stack names, built unless cached (log: {log})")
    project = write_project(folder / "images-project", stack, cfg)
    with log.open("a") as out:
        archives = build_images(project, stack, charts_folder(), lambda line: print(line, file=out, flush=True))
    phases.done("images", f"{len(archives)} images")

    if again:
        echo(f"==> node: running already ({folder})")
        kube = node_kube(folder)
        have = node_images(node)
        node.import_images({r: a for r, a in archives.items() if normalise(r) not in have})
    else:
        phases.begin("node: its address, the control plane, containerd (images imported), kubelet, kube-proxy, CoreDNS")
        _, kube = host.bring_up(node, found, archives, CERTIFICATE_DAYS)
        phases.done("node", node.node_name)

    phases.begin(f"pulumi up: the {stack} stack (log: {folder / 'logs'})")
    deploy(folder, stack, cfg, found, kube)
    phases.done("pulumi up")

    phases.begin("Airflow answering on 127.0.0.1")
    namespace = str(cfg.get("airflow-k8s:airflow", {}).get("namespace", "airflow"))
    release = str(cfg.get("airflow-k8s:airflow", {}).get("releaseName", "airflow"))
    port = ui_port()
    if not host.listeners(port):
        node.start_forwarder(port, api_target(kube, release, namespace))
    api = AirflowApi(f"http://127.0.0.1:{port}")
    try:
        wait_answering(api, ANSWER_TIMEOUT)
    except TimeoutError:
        echo(host.pod_report(kube, namespace))
        raise
    phases.done("Airflow answering")
    user, password = admin_login(kube, release, namespace)
    echo("")
    echo(f"Airflow UI:  http://127.0.0.1:{port}   login: {user} / {password}")
    echo(f"kubectl:     KUBECONFIG={kubeconfig} kubectl get pods -A")
    echo("stop:        ./run.sh down   (keeps the volumes; --purge removes them)")
    timings = phases.timings or {}
    echo("timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    return 0


def node_kube(folder: Path) -> Kube:
    from .helpers import kube_from

    return kube_from(folder / "cluster" / "kubeconfig")


def node_images(node: Node) -> set[str]:
    """The images containerd holds."""
    return set(host.sh(*node.ctr("images", "list", "--quiet")).split())


def forget(folder: Path, purge: bool, keep_folder: bool = False) -> list[str]:
    """Stop and remove the node of `folder`; the links `up` made; with `purge`, the data too (the
    state folder as well, unless `keep_folder`: a first `up` that failed keeps its logs there)."""
    found, _ = find_tools(lambda line: None)
    node = Node(folder, found, purpose="up", echo=lambda line: None)
    made = json.loads((folder / "made.json").read_text()) if (folder / "made.json").is_file() else {}
    problems = node.stop(everything=purge and not keep_folder)  # with `purge`, made.json goes with the folder
    for link in made.get("links", []):
        if Path(link).is_symlink():
            Path(link).unlink()
    if purge:
        for data in made.get("data", []):
            shutil.rmtree(data, ignore_errors=True)
        for made_dir in sorted(made.get("dirs", []), key=lambda d: -d.count("/")):
            with contextlib.suppress(OSError):
                Path(made_dir).rmdir()  # only when empty
        if not keep_folder:
            shutil.rmtree(folder, ignore_errors=True)
    return problems


def down(purge: bool, echo: Callable[[str], None] = print) -> int:
    if os.geteuid() != 0:
        echo("down: needs root (it removes interfaces, mounts, cgroups and firewall rules)")
        return 1
    folder = state_folder()
    started = time.monotonic()
    made = json.loads((folder / "made.json").read_text()) if (folder / "made.json").is_file() else {}
    problems = forget(folder, purge)
    for problem in problems:
        echo(f"    could not remove: {problem}")
    kept = [str(folder), *made.get("data", [])]
    what = (
        "everything removed"
        if purge
        else f"stopped and removed; kept (volumes, cluster store, Pulumi state): {', '.join(kept)}"
    )
    echo(f"down: {what if not problems else 'done, with the problems above'} ({time.monotonic() - started:.1f}s)")
    return 1 if problems else 0


def status(echo: Callable[[str], None] = print) -> int:
    folder = state_folder()
    record = Record.read()
    if running(folder):
        kube = node_kube(folder)
        nodes = kube.list("v1", "Node")
        ready = [
            n["metadata"]["name"]
            for n in nodes
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
        ]
        pods = kube.list("v1", "Pod")
        serving = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        ready_pods = [
            p
            for p in serving
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]
        names = ", ".join(ready) or "(not Ready)"
        echo(f"running: node {names} on {config.NODE_ADDRESS}; {len(ready_pods)}/{len(serving)} pods Ready")
        port = ui_port()
        answering = "not forwarded"
        if host.listeners(port):
            try:
                AirflowApi(f"http://127.0.0.1:{port}", timeout=5).health()
                answering = "answering"
            except Exception as exc:  # a reason, whatever it is
                answering = f"not answering: {str(exc)[:120]}"
        echo(f"Airflow UI: http://127.0.0.1:{port} ({answering}); state: {folder}")
        return 0
    if record is not None and record.live():
        echo(f"another node runs on this machine ({record.purpose}, folder {record.folder})")
        return 0
    if folder.exists():
        echo(f"not running; kept: {folder} (./run.sh up starts it again, ./run.sh down --purge removes it)")
        return 3
    echo("not running; nothing kept")
    return 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./run.sh up|down|status", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up_ = sub.add_parser("up")
    up_.add_argument("stack", nargs="?", default="dev")
    down_ = sub.add_parser("down")
    down_.add_argument(
        "--purge", action="store_true", help="also remove the volumes, the cluster's store and the Pulumi state"
    )
    sub.add_parser("status")
    args = parser.parse_args(argv)
    echo: Callable[[str], None] = lambda line: print(line, flush=True)  # noqa: E731
    if args.command == "status":
        return status(echo)
    try:
        with runlock.machine_run():
            return up(args.stack, echo) if args.command == "up" else down(args.purge, echo)
    except runlock.BusyError as exc:
        echo(f"{args.command}: {exc}")
        return runlock.BUSY


if __name__ == "__main__":
    sys.exit(main())
