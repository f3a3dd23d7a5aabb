"""Kubernetes' own validation in the preview: every rendered object, sent as a server-side dry run
(`?dryRun=All`: validation, defaulting and admission, nothing stored) to an API server of the
target Kubernetes version, each refusal reported under the stack key that produced it.

Offline, the API server is a local kube-apiserver and etcd (the binaries of `../shared/tools`, or
on PATH, or in the tools cache), emulating the stack's Kubernetes minor (`--emulated-version`,
1.31 to 1.34 for a 1.34 binary), started once and reused (components/offline/local_apiserver.py).
The charts' CRDs, the namespaces and the ServiceAccounts are created there
for real first (a pod's ServiceAccount must exist for admission); everything else is a dry run.

With `--cluster` the API server is the user's own (a kubeconfig context): nothing is created
there, every object is a dry run, and a refusal only because an object the stack itself creates
does not exist yet (its namespace, CRD or ServiceAccount) is not a problem.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .checks import Item, Problem
from .kube_api import ApiError, Kube, wait_for
from .local_apiserver import DryRunUnavailableError, emulated, local_folder, local_server

FIELD_MANAGER = "airflow-k8s-preview"
DRY_RUN_ENV = "AIRFLOW_K8S_DRY_RUN"  # "off": no dry run; "required": a missing API server is a problem
CREATED_FIRST = ("CustomResourceDefinition", "Namespace", "ServiceAccount")


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
_INVALID = re.compile(r'"((?:[^"\\]|\\.)*)"')  # a quoted value: `Invalid value: "7"`, `serviceaccount "x"`


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
    # No field: the refusal is about the whole object (admission), and only a value it quotes says which key.
    inside = list(_strings(part, secret_data=obj.get("kind") == "Secret")) if field else []
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
                return _refusal(source, obj, created)
        return _refusal(source, obj, exc)  # any answer but success: `pulumi up` would fail on it too
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
    unjudged: list[str] | None = None,
) -> list[Problem]:
    """Send every object to `kube` as a dry run; a Problem (rule `api-server`) per refused field, under
    its stack key. `local`: create the CRDs, namespaces and ServiceAccounts there first, except those
    whose digest is in `created` (made by an earlier preview on the same server; new ones are added:
    re-applying the charts' CRDs, 4 MB, takes seconds). `unjudged` gets the objects a user's cluster
    could not judge because something the stack creates is not there yet."""
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
            # Each namespace with its `default` ServiceAccount, which a cluster's controller-manager makes (a
            # pod that names none runs under it; this server runs no controllers).
            made = [
                Item("(namespace of an object)", {"apiVersion": "v1", "kind": kind, "metadata": meta})
                for n in namespaces
                for kind, meta in (("Namespace", {"name": n}), ("ServiceAccount", {"name": "default", "namespace": n}))
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
            if unjudged is not None:
                unjudged.append(_ident(refusal.obj))
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
    text = " ".join(m for _, m in refusal.causes)
    match = re.search(r'(namespaces|serviceaccounts?) "([^"]+)" not found', text)
    if match:
        kind = "Namespace" if match[1] == "namespaces" else "ServiceAccount"
        return (kind, match[2]) in declared
    return "no such kind on the server" in text or "the server could not find the requested resource" in text


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
    minor = ""  # the local server's Kubernetes minor
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
    except (RuntimeError, OSError) as exc:  # DryRunUnavailableError, ApiError, a runtime folder not ours
        if not target.required:
            return Outcome(False, "", f"not run: {exc}", [])
        return Outcome(False, "", str(exc), [Problem("api-server", "(dry run)", "-", f"no dry run: {exc}")])
    try:
        return _judged(kube, target, items, crds, config, server, note, minor)
    except OSError as exc:  # the server stopped answering midway
        return Outcome(
            False, server, "", [Problem("api-server", "(dry run)", "-", f"{server} stopped answering: {exc}")]
        )


def _judged(
    kube: Kube,
    target: Target,
    items: list[Item],
    crds: list[dict[str, Any]],
    config: Mapping[str, str],
    server: str,
    note: str,
    minor: str,
) -> Outcome:
    if target.mode == "cluster":
        unjudged: list[str] = []
        problems = dry_run(kube, items, crds, config, local=False, server=server, unjudged=unjudged)
        if unjudged:
            note = (
                f"{len(unjudged)} objects not judged: their namespace, CRD or ServiceAccount is the stack's own "
                f"and not on the cluster yet (the API server refuses anything in a missing namespace before it "
                f"validates it), such as {unjudged[0]}"
            )
        return Outcome(True, server, note, problems)
    record = local_folder(minor).folder / "created.json"
    try:
        known = json.loads(record.read_text())
    except (OSError, ValueError):
        known = {}
    created = set(known.get("digests", [])) if known.get("server") == kube.server else set()
    problems = dry_run(kube, items, crds, config, local=True, server=server, created=created)
    record.write_text(json.dumps({"server": kube.server, "digests": sorted(created)}))
    return Outcome(True, server, note, problems)
