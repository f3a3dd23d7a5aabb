"""Kubernetes' own validation in the preview: every rendered object, sent as a server-side dry run
(`?dryRun=All`: validation, defaulting and admission, nothing stored) to an API server of the
target Kubernetes version, each refusal reported under the stack key that produced it.

Offline, the API server is a local kube-apiserver and etcd (the binaries of `../shared/tools`, or
on PATH, or in the tools cache), emulating the stack's Kubernetes minor (`--emulated-version`,
1.31 to 1.34 for a 1.34 binary). It is started by the first preview that needs it, in a process
of its own (`python -m components.offline.dry_run --serve DIR`) that stops it after
`AIRFLOW_K8S_APISERVER_IDLE` seconds without a preview (default 900), and reused meanwhile, like
the checkov scanner. The charts' CRDs, the namespaces and the ServiceAccounts are created there
for real first (a pod's ServiceAccount must exist for admission); everything else is a dry run.

With `--cluster` the API server is the user's own (a kubeconfig context): nothing is created
there, every object is a dry run, and a refusal only because an object the stack itself creates
does not exist yet (its namespace, CRD or ServiceAccount) is not a problem.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.offline.checks import Item, Problem
from components.offline.control_plane import (
    LOCALHOST,
    admin_client,
    first_exited,
    free_port,
    make_certificates,
    start_apiserver,
    start_etcd,
    stop_all,
    wait_ready,
)
from components.offline.helm import tools_cache
from components.offline.kube_api import ApiError, Kube, wait_for
from components.offline.policy import socket_dir

FIELD_MANAGER = "airflow-k8s-preview"
IDLE_ENV = "AIRFLOW_K8S_APISERVER_IDLE"  # seconds the local API server stays without a preview
DEFAULT_IDLE = 900
DRY_RUN_ENV = "AIRFLOW_K8S_DRY_RUN"  # "off": no dry run; "required": a missing API server is a problem
BINARY_MINOR = (1, 34)  # the kube-apiserver of ../shared/tools (v1.34.4)
OLDEST_EMULATED = (1, 31)  # what it can emulate: three minors back
CREATED_FIRST = ("CustomResourceDefinition", "Namespace", "ServiceAccount")
START_TIMEOUT = 180
REFUSED = (400, 403, 404, 409, 413, 422)  # what the API server answers for an object it will not take


class DryRunUnavailableError(RuntimeError):
    """No API server to send the dry run to: says what was looked for."""


# --------------------------------------------------------------------------- binaries


def _bin_folders(root: Path) -> Iterator[tuple[str, Path]]:
    script = root.resolve().parent / "shared" / "tools" / "install.sh"
    if script.is_file():
        out = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
        lines = out.stdout.strip().splitlines()
        if out.returncode == 0 and lines:
            yield "../shared/tools/install.sh", Path(lines[-1])
    yield "the tools cache", tools_cache() / "bin"


def binaries(root: Path) -> dict[str, Path]:
    """kube-apiserver and etcd: from PATH when both are there, else ../shared/tools, else the tools cache."""
    on_path = {name: shutil.which(name) for name in ("kube-apiserver", "etcd")}
    if all(on_path.values()):
        return {name: Path(str(found)) for name, found in on_path.items()}
    tried = ["PATH"]
    for where, folder in _bin_folders(root):
        found = {name: folder / name for name in ("kube-apiserver", "etcd")}
        if all(p.is_file() for p in found.values()):
            return found
        tried.append(where)
    raise DryRunUnavailableError(
        f"no kube-apiserver and etcd found (looked in: {', '.join(tried)}); put them on PATH (Kubernetes "
        f"{'.'.join(map(str, BINARY_MINOR))} and etcd 3.6), or run the preview with --cluster CONTEXT or --no-dry-run"
    )


def emulated(kube_version: str) -> tuple[str, str]:
    """The minor the local API server emulates for a stack's Kubernetes version, and a note when it
    is not that version ("" when it is)."""
    major, minor = (int(p) for p in kube_version.lstrip("v").split(".")[:2])
    wanted = (major, minor)
    used = min(max(wanted, OLDEST_EMULATED), BINARY_MINOR)
    text = f"{used[0]}.{used[1]}"
    if used == wanted:
        return text, ""
    return text, f"the local API server validates as Kubernetes {text}, the closest it can emulate to {major}.{minor}"


# --------------------------------------------------------------------------- the local API server


@dataclass(frozen=True)
class Local:
    folder: Path

    @property
    def state(self) -> Path:
        return self.folder / "state.json"

    @property
    def used(self) -> Path:
        return self.folder / "used"

    @property
    def pki(self) -> Path:
        return self.folder / "pki"

    @property
    def log(self) -> Path:
        return self.folder / "serve.log"


def local_folder(version: str) -> Local:
    folder = socket_dir() / f"apiserver-{version}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return Local(folder)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # started by this process: reap it once it exited
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(local: Local) -> Kube | None:
    try:
        state = json.loads(local.state.read_text())
    except (OSError, ValueError):
        return None
    if not _alive(int(state.get("pid", 0))):
        return None
    kube = admin_client(state["server"], local.pki)
    try:
        kube.request("GET", "/readyz", timeout=5)
    except Exception:
        return None
    return kube


def local_server(root: Path, version: str) -> Kube:
    """The local API server emulating Kubernetes `version` (major.minor): the running one, else one
    started now in a process that outlives this preview (see the module docstring)."""
    local = local_folder(version)
    with (local.folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        local.used.touch()
        kube = _running(local)
        if kube is not None:
            return kube
        found = binaries(root)
        local.state.unlink(missing_ok=True)
        with local.log.open("ab") as log:
            serving = subprocess.Popen(
                [
                    sys.executable, "-m", "components.offline.dry_run", "--serve", str(local.folder),
                    "--version", version, "--apiserver", str(found["kube-apiserver"]), "--etcd", str(found["etcd"]),
                ],
                cwd=Path(__file__).resolve().parents[2],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

        def started() -> str | None:
            if serving.poll() is not None:
                raise DryRunUnavailableError(
                    f"the local API server did not start (exit {serving.returncode}): {_tail(local.log)}"
                )
            return None if local.state.is_file() else "starting"

        wait_for("the local API server", started, timeout=START_TIMEOUT, interval=0.1)
        kube = _running(local)
        if kube is None:
            raise DryRunUnavailableError(f"the local API server started but does not answer: {_tail(local.log)}")
        return kube


def stop_local(version: str) -> None:
    """Stop the local API server of `version`, if one runs (its serving process stops its children)."""
    local = local_folder(version)
    try:
        pid = int(json.loads(local.state.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def serve(folder: Path, version: str, apiserver: Path, etcd_binary: Path) -> int:
    """Run etcd and kube-apiserver until no preview used them for the idle time, or until SIGTERM."""
    local = Local(folder)
    idle = float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE)
    if not (local.pki / "ca.crt").is_file() or time.time() - (local.pki / "ca.crt").stat().st_mtime > 86400:
        shutil.rmtree(local.pki, ignore_errors=True)
        make_certificates(local.pki, days=2)
    shutil.rmtree(folder / "etcd", ignore_errors=True)  # a fresh store: nothing of an earlier run stays
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stopping.append(signum))
    processes = []
    try:
        etcd, etcd_port = start_etcd(folder / "logs", etcd_binary, folder / "etcd")
        processes.append(etcd)
        port = free_port()
        flags = ["--endpoint-reconciler-type=none"]
        if version != f"{BINARY_MINOR[0]}.{BINARY_MINOR[1]}":
            flags.append(f"--emulated-version=kube={version}")
        processes.append(
            start_apiserver(folder / "logs", apiserver, local.pki, etcd_port, address=LOCALHOST, port=port, extra=flags)
        )
        server = f"https://{LOCALHOST}:{port}"
        wait_ready(admin_client(server, local.pki), processes, timeout=START_TIMEOUT)
        local.state.write_text(json.dumps({"pid": os.getpid(), "server": server, "version": version}))
        while not stopping:
            dead = first_exited(processes)
            if dead:
                print(dead, flush=True)
                return 1
            if time.time() - local.used.stat().st_mtime > idle:
                return 0
            time.sleep(1)
        return 0
    finally:
        local.state.unlink(missing_ok=True)
        stop_all(processes, grace=3)  # nothing to keep: the next start begins with an empty store


# --------------------------------------------------------------------------- a user's cluster


def _data_file(folder: Path, name: str, data: str | None, path: str | None, base: Path) -> Path | None:
    if data:
        target = folder / name
        target.write_bytes(base64.b64decode(data))
        target.chmod(0o600)
        return target
    if path:
        return (base / path).expanduser()
    return None


def cluster_client(context: str | None, kubeconfig: Path | None = None) -> Kube:
    """A client of the cluster a kubeconfig context names (default: the file's current context), as
    kubectl reads it: client certificates, a token or token file, or an exec credential plugin."""
    path = kubeconfig or Path(os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or Path.home() / ".kube/config")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise DryRunUnavailableError(f"cannot read the kubeconfig {path}: {exc.strerror}") from None
    name = context or config.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or []}
    if name not in contexts:
        known = ", ".join(map(str, contexts)) or "none"
        raise DryRunUnavailableError(f"no context {name!r} in {path}; it has: {known}")
    ctx = contexts[name]
    cluster = next(
        (c.get("cluster") or {} for c in config.get("clusters") or [] if c.get("name") == ctx.get("cluster")), {}
    )
    user = next((u.get("user") or {} for u in config.get("users") or [] if u.get("name") == ctx.get("user")), {})
    folder = Path(tempfile.mkdtemp(prefix="airflow-k8s-kubeconfig-"))
    try:
        base = path.parent
        ca = _data_file(
            folder, "ca.crt", cluster.get("certificate-authority-data"), cluster.get("certificate-authority"), base
        )
        token = user.get("token")
        if user.get("tokenFile"):
            token = (base / user["tokenFile"]).expanduser().read_text().strip()
        cert_data, key_data = user.get("client-certificate-data"), user.get("client-key-data")
        if user.get("exec"):
            status = _exec_credential(user["exec"])
            token = status.get("token") or token
            cert_data = base64.b64encode(status.get("clientCertificateData", "").encode()).decode() or cert_data
            key_data = base64.b64encode(status.get("clientKeyData", "").encode()).decode() or key_data
        cert = _data_file(folder, "client.crt", cert_data, user.get("client-certificate"), base)
        key = _data_file(folder, "client.key", key_data, user.get("client-key"), base)
        tls = ssl.create_default_context(cafile=str(ca) if ca else None)
        if cluster.get("insecure-skip-tls-verify"):
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        if cert and key:
            tls.load_cert_chain(str(cert), str(key))
        return Kube(str(cluster.get("server", "")), None, None, None, token=token, context=tls)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _exec_credential(spec: Mapping[str, Any]) -> dict[str, Any]:
    env = os.environ | {str(e["name"]): str(e["value"]) for e in spec.get("env") or []}
    proc = subprocess.run(
        [str(spec["command"]), *map(str, spec.get("args") or [])], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise DryRunUnavailableError(
            f"the kubeconfig's credential plugin {spec['command']} failed: {proc.stderr.strip()[:300]}"
        )
    status: dict[str, Any] = json.loads(proc.stdout).get("status") or {}
    return status


# --------------------------------------------------------------------------- which stack key


def config_tree(config: Mapping[str, str]) -> dict[str, Any]:
    """The stack's config by short key (`airflow`, `variables`, ...), structured values parsed."""
    tree: dict[str, Any] = {}
    for full, raw in config.items():
        _, _, short = full.rpartition(":")
        if full.startswith("kubernetes:"):
            continue
        try:
            tree[short] = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            tree[short] = raw
    return tree


def _entries(value: Any, path: str) -> Iterator[tuple[str, str, bool]]:
    """(config path, text, is a mapping key) for every leaf and every mapping key under `value`."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            child = f"{path}.{k}" if path else str(k)
            yield child, str(k), True
            yield from _entries(v, child)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _entries(v, f"{path}[{i}]")
    elif value is not None:
        yield path, value if isinstance(value, str) else json.dumps(value), False


_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_INVALID = re.compile(r'Invalid value: "((?:[^"\\]|\\.)*)"')


def _names(path: str) -> set[str]:
    return {n.lower() for n in _NAME.findall(path)}


def _strings(value: Any, secret_data: bool = False) -> Iterator[str]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v, secret_data)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, secret_data)
    elif isinstance(value, str):
        if secret_data:
            with contextlib.suppress(ValueError):
                yield base64.b64decode(value, validate=True).decode(errors="replace")
                return
        yield value
    elif value is not None:
        yield json.dumps(value)


def _at(obj: Any, field: str) -> Any:
    """The part of `obj` a cause's field path names (its deepest part that exists)."""
    node = obj
    for part in re.findall(r"[^.\[\]]+", field):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            break
    return node


def stack_key(config: Mapping[str, str], obj: Mapping[str, Any], field: str, message: str) -> str | None:
    """The stack key behind a refused field: the config value the message quotes, the config path
    sharing most names with the field path, else the config value the refused part holds most of.
    None when no config value is in it (a value of the components or of a chart's defaults)."""
    quoted = set(_INVALID.findall(message))
    part = _at(obj, field)
    inside = list(_strings(part, secret_data=obj.get("kind") == "Secret"))
    field_names = _names(field) - {"spec", "template", "metadata", "containers", "initcontainers", "jobtemplate"}
    best: tuple[float, int] = (0.0, 0)
    found = None
    for order, (path, text, _is_key) in enumerate(_entries(config_tree(config), "")):
        score = 0.0
        if text in quoted:
            score += 100
        if text in inside:
            score += 5
        elif len(text) >= 8 and any(text in s for s in inside):
            score += 1 + math.log2(len(text))
        if score == 0:
            continue
        score += 10 * len(field_names & _names(path))
        if (score, order) >= best:
            best, found = (score, order), path
    return found


# --------------------------------------------------------------------------- the dry run


@dataclass(frozen=True)
class Refusal:
    source: str
    obj: dict[str, Any]
    status: int
    reason: str
    causes: list[tuple[str, str]]  # (field, message)


def _ident(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')}/{ns}{meta.get('name', '?')}"


def _refusal(source: str, obj: dict[str, Any], exc: ApiError) -> Refusal:
    try:
        body = json.loads(exc.body)
    except ValueError:
        body = {"message": exc.body[:500]}
    details = body.get("details") or {}
    causes = [(str(c.get("field", "")), str(c.get("message", ""))) for c in details.get("causes") or []]
    return Refusal(source, obj, exc.status, str(body.get("reason", "")), causes or [("", str(body.get("message", "")))])


def _send(kube: Kube, source: str, obj: dict[str, Any], *, dry_run: bool) -> Refusal | None:
    if not (obj.get("metadata") or {}).get("name"):
        return None  # a name the server generates (none of the charts' objects): nothing to apply
    try:
        kube.apply(obj, dry_run=dry_run, field_manager=FIELD_MANAGER)
    except ApiError as exc:
        if exc.status == 500 and "failed to create typed patch object" in exc.body:
            # Server-side apply cannot even read it (two list entries with one key, such as two mounts
            # at one path): a plain create shows what validation says; else apply's own refusal stands.
            try:
                kube.create(obj, dry_run=True)
            except ApiError as created:
                if created.status in REFUSED:
                    return _refusal(source, obj, created)
            return _refusal(source, obj, exc)
        if exc.status in REFUSED:
            return _refusal(source, obj, exc)
        raise
    return None


def _established(kube: Kube, crds: list[dict[str, Any]]) -> None:
    def check() -> str | None:
        for crd in crds:
            name = crd["metadata"]["name"]
            live = kube.get_or_none(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}") or {}
            conditions = {c["type"]: c["status"] for c in (live.get("status") or {}).get("conditions") or []}
            if conditions.get("Established") != "True":
                return f"{name} not Established yet"
        return None

    wait_for("the charts' CRDs", check, timeout=60, interval=0.1)
    kube.rediscover()


def _digest(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def dry_run(
    kube: Kube,
    items: list[Item],
    crds: list[dict[str, Any]],
    config: Mapping[str, str],
    *,
    local: bool,
    server: str = "the API server",
    created: set[str] | None = None,
) -> list[Problem]:
    """Send every object to `kube` as a dry run; a Problem (rule `api-server`) per refused field, under
    its stack key. `local`: create the CRDs, namespaces and ServiceAccounts there first, except those
    whose digest is in `created` (made by an earlier preview on the same server; new ones are added:
    re-applying the charts' CRDs, 4 MB, takes seconds)."""
    created = set() if created is None else created
    refusals: list[Refusal] = []
    declared = {(o.get("kind"), (o.get("metadata") or {}).get("name")) for o in (i.obj for i in items)}
    first = [i for i in items if i.obj.get("kind") in CREATED_FIRST]
    rest = [i for i in items if i.obj.get("kind") not in CREATED_FIRST]
    with ThreadPoolExecutor(max_workers=4) as pool:
        if local:
            listed = {str((i.obj.get("metadata") or {}).get("name")) for i in first}
            extra = [Item("(a chart's crds/)", c) for c in crds if c["metadata"]["name"] not in listed]
            namespaces = sorted({ns for i in items if (ns := (i.obj.get("metadata") or {}).get("namespace"))})
            made = [
                Item("(namespace of an object)", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}})
                for n in namespaces
            ]
            for kind in CREATED_FIRST:
                batch = [
                    i for i in [*extra, *made, *first] if i.obj.get("kind") == kind and _digest(i.obj) not in created
                ]
                done = list(pool.map(lambda i: _send(kube, i.source, i.obj, dry_run=False), batch))
                refusals += [r for r in done if r]
                created.update(_digest(i.obj) for i, r in zip(batch, done, strict=True) if r is None)
                if kind == "CustomResourceDefinition" and batch:
                    _established(kube, [i.obj for i in batch])
        else:
            rest = first + rest
        refusals += [r for r in pool.map(lambda i: _send(kube, i.source, i.obj, dry_run=True), rest) if r]
    problems = []
    for refusal in refusals:
        if not local and _missing_from_the_stack(refusal, declared):
            continue
        for field, message in refusal.causes:
            key = stack_key(config, refusal.obj, field, message)
            where = f"stack key {key}" if key else f"no stack key holds it (from {refusal.source})"
            text = f"{field}: {message}" if field and not message.startswith(field) else message
            problems.append(
                Problem("api-server", refusal.source, _ident(refusal.obj), f"{where}: {server} refuses it: {text}")
            )
    return problems


def _missing_from_the_stack(refusal: Refusal, declared: set[tuple[Any, Any]]) -> bool:
    """On a user's cluster: refused only because a namespace, CRD or ServiceAccount the stack creates
    is not there yet."""
    if refusal.status != 404 and refusal.reason != "NotFound":
        return False
    text = " ".join(m for _, m in refusal.causes)
    match = re.search(r'(namespaces|serviceaccounts?) "([^"]+)" not found', text)
    if match:
        kind = "Namespace" if match[1] == "namespaces" else "ServiceAccount"
        return (kind, match[2]) in declared
    return "no such kind on the server" in text or "the server could not find the requested resource" in text


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="the local API server of the preview's dry run")
    parser.add_argument("--serve", type=Path, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--apiserver", type=Path, required=True)
    parser.add_argument("--etcd", type=Path, required=True)
    args = parser.parse_args(argv)
    return serve(args.serve, args.version, args.apiserver, args.etcd)


if __name__ == "__main__":
    sys.exit(main())


# --------------------------------------------------------------------------- in the preview


@dataclass(frozen=True)
class Target:
    """Where the preview's dry run goes: `local` (the local API server), `cluster` (a kubeconfig
    context; `context` None for the current one) or `off`."""

    mode: str = "local"
    context: str | None = None
    kubeconfig: Path | None = None

    @staticmethod
    def default() -> Target:
        return Target("off" if os.environ.get(DRY_RUN_ENV, "").strip().lower() == "off" else "local")

    @property
    def required(self) -> bool:
        return self.mode == "cluster" or os.environ.get(DRY_RUN_ENV, "").strip().lower() == "required"


@dataclass
class Outcome:
    ran: bool
    server: str  # which API server judged ("" when none)
    note: str  # why it did not run, or how the server differs from the target
    problems: list[Problem]

    def summary(self) -> dict[str, Any]:
        return {"ran": self.ran, "server": self.server, "note": self.note, "refused": len(self.problems)}


def preview_dry_run(
    root: Path,
    target: Target,
    kube_version: str,
    items: list[Item],
    crds: list[dict[str, Any]],
    config: Mapping[str, str],
) -> Outcome:
    """The preview's step: pick the API server, send everything, name the refusals by stack key. A local
    server that cannot be had is a note (a problem when AIRFLOW_K8S_DRY_RUN=required); a cluster that
    cannot be reached is a problem."""
    if target.mode == "off":
        return Outcome(False, "", "off (--no-dry-run or AIRFLOW_K8S_DRY_RUN=off)", [])
    try:
        if target.mode == "cluster":
            kube = cluster_client(target.context, target.kubeconfig)
            version = kube.get("/version")
            server = (
                f"the cluster's API server ({version.get('gitVersion', '?')}, context {target.context or 'current'})"
            )
            note = ""
        else:
            minor, note = emulated(kube_version)
            kube = local_server(root, minor)
            server = f"kube-apiserver {kube.get('/version').get('gitVersion', '?')} as Kubernetes {minor}"
    except (DryRunUnavailableError, OSError, ApiError) as exc:
        if not target.required:
            return Outcome(False, "", f"not run: {exc}", [])
        return Outcome(False, "", str(exc), [Problem("api-server", "(dry run)", "-", f"no dry run: {exc}")])
    if target.mode == "cluster":
        return Outcome(True, server, note, dry_run(kube, items, crds, config, local=False, server=server))
    record = local_folder(minor).folder / "created.json"
    try:
        known = json.loads(record.read_text())
    except (OSError, ValueError):
        known = {}
    created = set(known.get("digests", [])) if known.get("server") == kube.server else set()
    problems = dry_run(kube, items, crds, config, local=True, server=server, created=created)
    record.write_text(json.dumps({"server": kube.server, "digests": sorted(created)}))
    return Outcome(True, server, note, problems)
