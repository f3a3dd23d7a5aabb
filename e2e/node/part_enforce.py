"""Part `enforce` of the node scenario: what the stack promises about isolation, shown on real pods.

The stack gets a team (namespace, ServiceAccount, quota, Pod Security level, a Secret from the
secret key `teamSecrets`) and the NetworkPolicies on. Then, with kube-router's firewall running on
the node (e2e.node.kube_router, started for this part and stopped at its end):

- reachability: probe pods with the labels and service accounts of each Airflow component, of a
  task pod and of a team pod connect to every listening port of every Airflow pod, the probes,
  CoreDNS and the execution API; each connection agrees with the offline preview's model
  (components/offline/reachability.py): every allowed edge connects, every denied one is dropped;
- Pod Security: a pod at the team's level is admitted, one without the security contexts is
  refused with the message docs/dags.md shows, a root image under `runAsNonRoot` cannot start;
- RBAC: each ServiceAccount the stack made, with a token of its own, is refused what it must
  not do (other namespaces' Secrets, pods outside its namespace, binding itself cluster-admin);
- team pods: `example_team_pod` runs a KubernetesPodOperator pod in the team's namespace under
  its ServiceAccount, reading the team Secret, and a pod in a namespace the team does not own is
  refused, the task log saying why;
- the task pods carry no metadata-database credentials (the executor's pods, read while they run).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..harness import ROOT, StepError
from ..kube import ApiError, Kube, wait_for
from . import early, kube_router, reach_matrix
from .airflow_api import AirflowApi, AirflowApiError
from .parts import NodeRun, Part
from .reach_matrix import PROBE_IMAGE, PROBE_LABEL

NAME = "enforce"
TEAM = "analytics"
TEAM_NAMESPACE = f"{TEAM}-tasks"
OTHER_TEAM = "marketing"  # a second team: its namespace is not analytics'
OTHER_NAMESPACE = f"{OTHER_TEAM}-tasks"
TEAM_SECRET = "warehouse"
TEAM_DAG = "example_team_pod"  # e2e/node/dags/: a pod in the team namespace, reading its Secret
ROOT_IMAGE = "python:3.13.7-slim-bookworm"  # runs as root (USER unset)
_SECRET_VALUE = secrets.token_urlsafe(24)  # the team Secret's value, this run's


def stack(cfg: dict[str, Any]) -> dict[str, Any]:
    """Two teams with quotas and Pod Security `restricted`, the first with a Secret; the NetworkPolicies on."""
    cfg = copy.deepcopy(cfg)
    airflow = cfg["airflow-k8s:airflow"]
    airflow["networkPolicies"] = {**airflow.get("networkPolicies", {}), "enabled": True}
    cfg["airflow-k8s:teams"] = [
        {
            "name": TEAM,
            "namespace": TEAM_NAMESPACE,
            "quota": {"cpu": "2", "memory": "2Gi", "limitsCpu": "4", "limitsMemory": "4Gi", "pods": 10},
            "podSecurity": {"level": "restricted"},
            "secrets": [TEAM_SECRET],
        },
        {
            "name": OTHER_TEAM,
            "namespace": OTHER_NAMESPACE,
            "quota": {"cpu": "1", "memory": "1Gi", "limitsCpu": "2", "limitsMemory": "2Gi", "pods": 5},
        },
    ]
    # Set encrypted once the stack exists (stack_secrets); until then the offline preview that
    # finds the images puts a placeholder of its shape here.
    cfg["airflow-k8s:teamSecrets"] = {"secure": "set-after-stack-init"}
    return cfg


def stack_secrets() -> dict[str, Any]:
    return {"teamSecrets": {TEAM: {TEAM_SECRET: {"token": _SECRET_VALUE}}}}


def run(r: NodeRun) -> None:
    steps = r.h.steps
    with steps.step(f"[node:{NAME}] kube-router {kube_router.VERSION}: built or from the cache", setup=True):
        started = time.monotonic()
        early.wait("kube-router", lambda line: r.echo(f"    {line}"))
        program = kube_router.binary(lambda line: r.echo(f"    {line}"))
        r.echo(f"    {program} ({time.monotonic() - started:.1f}s)")
    checks = (
        ("the team's namespace, account, quota, Pod Security level and Secret exist", team_objects),
        ("reachability: every edge as the preview's model says (allowed connects, denied dropped)", _reachability),
        (
            "Pod Security: the team's level admitted, a pod without security contexts refused as documented",
            pod_security,
        ),
        ("RBAC: each ServiceAccount the stack made is refused what it must not do", rbac),
        (
            f"team pods: {TEAM_DAG} reads its Secret in {TEAM_NAMESPACE}, elsewhere refused; no database credentials",
            team_pods,
        ),
    )
    failed: list[str] = []
    with firewall(r, program):
        for title, check in checks:  # each is recorded on its own; the part fails if any did
            try:
                with steps.step(f"[node:{NAME}] {title}"):
                    check(r)
            except Exception as exc:
                failed.append(f"{title}: {exc}")
    if failed:
        raise StepError(f"{len(failed)} of the part's checks failed:\n  " + "\n  ".join(failed))


@contextmanager
def firewall(r: NodeRun, program: Path) -> Iterator[None]:
    """kube-router running for the part's steps; stopped and cleaned after them, also on a failure
    (an interrupt: the node's sweep stops it and removes its chains and ipsets)."""
    steps = r.h.steps
    process = None
    try:
        with steps.step(f"[node:{NAME}] kube-router's firewall on the node: every NetworkPolicy synced", setup=True):
            policies = len(r.kube.list("networking.k8s.io/v1", "NetworkPolicy"))
            process = kube_router.start(r.node, program)
            took = kube_router.wait_synced(process, policies)
            r.echo(f"    {policies} NetworkPolicies as chains after {took:.1f}s")
        yield
    finally:
        if process is not None:
            with steps.step(f"[node:{NAME}] kube-router stopped; its chains and ipsets removed", setup=True):
                problems = kube_router.stop(r.node, process, r.echo)
                if problems:
                    raise StepError("; ".join(problems))


def _reachability(r: NodeRun) -> None:
    reach_matrix.reachability(r, TEAM_NAMESPACE, f"{TEAM}-tasks")


# --- the team -------------------------------------------------------------------------------------


def team_objects(r: NodeRun) -> None:
    ns = r.kube.read("v1", "Namespace", TEAM_NAMESPACE) or {}
    labels = ns.get("metadata", {}).get("labels") or {}
    level = labels.get("pod-security.kubernetes.io/enforce")
    account = r.kube.read("v1", "ServiceAccount", f"{TEAM}-tasks", TEAM_NAMESPACE)
    quotas = r.kube.list("v1", "ResourceQuota", TEAM_NAMESPACE)
    secret = r.kube.read("v1", "Secret", TEAM_SECRET, TEAM_NAMESPACE)
    problems = []
    if level != "restricted":
        problems.append(f"namespace {TEAM_NAMESPACE}: Pod Security enforce level {level!r}, not 'restricted'")
    if account is None:
        problems.append(f"no ServiceAccount {TEAM}-tasks in {TEAM_NAMESPACE}")
    if not quotas:
        problems.append(f"no ResourceQuota in {TEAM_NAMESPACE}")
    if secret is None or "token" not in (secret.get("data") or {}):
        problems.append(f"no Secret {TEAM_SECRET} with key 'token' in {TEAM_NAMESPACE}")
    if problems:
        raise StepError("; ".join(problems))
    hard = quotas[0].get("spec", {}).get("hard", {})
    r.echo(f"    {TEAM_NAMESPACE}: enforce={level}, account {TEAM}-tasks, quota {hard}, Secret {TEAM_SECRET}")


# --- Pod Security -----------------------------------------------------------------------------------


def documented_refusal(doc: Path = ROOT / "docs" / "dags.md") -> str:
    """The API server's answer docs/dags.md shows for a task pod without security contexts, from
    `violates PodSecurity` on, whitespace made single spaces."""
    match = re.search(r"```\n(pods \"[^\n]*is forbidden: violates PodSecurity.*?)```", doc.read_text(), re.S)
    if match is None:
        raise StepError(f"{doc.name} shows no Pod Security refusal")
    return _words(match.group(1).split("is forbidden: ", 1)[1])


def api_message(exc: ApiError) -> str:
    """The API server's `message` (its Status object), else the whole body."""
    try:
        return str(json.loads(exc.body).get("message", exc.body))
    except ValueError:
        return exc.body


def _words(text: str) -> str:
    return " ".join(text.split())


def pod_security(r: NodeRun) -> None:
    kube = r.kube
    base: dict[str, Any] = {"name": "base", "image": ROOT_IMAGE, "imagePullPolicy": "IfNotPresent"}
    base["command"] = ["python", "-c", "1"]
    bare: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "extract-enforce", "namespace": TEAM_NAMESPACE, "labels": {PROBE_LABEL: NAME}},
        "spec": {"restartPolicy": "Never", "containers": [base], "serviceAccountName": f"{TEAM}-tasks"},
    }
    try:
        kube.create(bare, dry_run=True)
        raise StepError(f"a pod without security contexts was admitted into {TEAM_NAMESPACE}")
    except ApiError as exc:
        said = _words(api_message(exc))
        promised = documented_refusal()
        if promised not in said:
            raise StepError(
                f"refused, but not as docs/dags.md shows:\n  said: {said[-600:]}\n  docs: {promised}"
            ) from None
        r.echo(f"    no security contexts: refused: ...{promised[:90]}...")
    hardened = copy.deepcopy(bare)
    hardened["metadata"]["name"] = "root-image-enforce"
    hardened["spec"]["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    hardened["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    hardened["spec"]["terminationGracePeriodSeconds"] = 1
    kube.create(hardened)  # admitted at `restricted`: the kubelet then refuses the root image
    message = ""

    def refused() -> str | None:
        nonlocal message
        pod = kube.read("v1", "Pod", "root-image-enforce", TEAM_NAMESPACE) or {}
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CreateContainerConfigError":
                message = str(waiting.get("message", ""))
                return None
        return f"phase {(pod.get('status') or {}).get('phase')}"

    try:
        wait_for("the root image refused by the kubelet", refused, timeout=90, interval=0.5)
    finally:
        kube.delete("v1", "Pod", "root-image-enforce", TEAM_NAMESPACE)
    if "runAsNonRoot and image will run as root" not in message:
        raise StepError(f"the root image was stopped, but not as docs/dags.md says: {message}")
    r.echo(f"    at restricted, a root image ({ROOT_IMAGE}): admitted, then CreateContainerConfigError: {message}")


# --- RBAC ----------------------------------------------------------------------------------------


def token_client(r: NodeRun, namespace: str, account: str) -> Kube:
    """A client that is `account`, with a token the API server issues for it (TokenRequest)."""
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token"
    answer = r.kube.request(
        "POST", path, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    )
    context = ssl.create_default_context(cafile=str(r.node.layout.pki / "ca.crt"))
    return Kube(r.kube.server, None, None, None, token=answer["status"]["token"], context=context)


def _forbidden_attempts(other: str) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(what, method, path, body): each must be refused with 403."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "rbac-enforce"},
        "spec": {"containers": [{"name": "c", "image": PROBE_IMAGE}]},
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "rbac-enforce"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "Group", "name": "system:serviceaccounts"}],
    }
    return [
        (f"list Secrets in {other}", "GET", f"/api/v1/namespaces/{other}/secrets", None),
        ("list Secrets in kube-system", "GET", "/api/v1/namespaces/kube-system/secrets", None),
        (
            f"create a pod in {other}",
            "POST",
            f"/api/v1/namespaces/{other}/pods?dryRun=All",
            {**pod, "metadata": {"name": "rbac-enforce", "namespace": other}},
        ),
        ("create a pod in kube-system", "POST", "/api/v1/namespaces/kube-system/pods?dryRun=All", pod),
        (
            "bind itself cluster-admin",
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?dryRun=All",
            binding,
        ),
        ("list Nodes", "GET", "/api/v1/nodes", None),
    ]


def rbac(r: NodeRun) -> None:
    accounts = [
        (ns, a["metadata"]["name"])
        for ns in (r.namespace, TEAM_NAMESPACE)
        for a in r.kube.list("v1", "ServiceAccount", ns)
        if a["metadata"]["name"] != "default"
    ]
    allowed: list[str] = []
    refused = 0
    for ns, account in accounts:
        client = token_client(r, ns, account)
        # Airflow's task accounts may launch pods in the team's namespace (its launcher Role), in
        # no other; the team's account may do nothing outside its own.
        other = "default" if ns == r.namespace else r.namespace
        for what, method, path, body in _forbidden_attempts(other):
            try:
                client.request(method, path, body)
                allowed.append(f"{ns}/{account} could {what}")
            except ApiError as exc:
                if exc.status != 403:
                    allowed.append(f"{ns}/{account}: {what}: {exc.status}, not 403")
                else:
                    refused += 1
    r.echo(f"    {len(accounts)} ServiceAccounts: {', '.join(f'{n}/{a}' for n, a in accounts)}")
    r.echo(f"    {refused} attempts refused (403), {len(allowed)} not")
    if allowed:
        raise StepError("RBAC let through:\n  " + "\n  ".join(allowed))
    if not accounts:
        raise StepError("no ServiceAccount to try")


# --- team pods and the task pods' credentials ---------------------------------------------------


DB_MARKERS = ("SQL_ALCHEMY_CONN", "AIRFLOW_CONN_AIRFLOW_DB")


def database_credentials(pod: dict[str, Any], metadata_secrets: set[str]) -> tuple[list[str], list[str]]:
    """What of the metadata database's credentials a pod carries: (in its spec or environment: an
    env value with a user or password in it, a Secret reference to a metadata Secret, envFrom one;
    as a file: a volume that projects a metadata Secret). A `_CMD` variable reads a file and holds
    none itself; a connection without credentials (the task pods' stand-in) carries none."""
    exposed, files = [], []
    spec = pod.get("spec") or {}
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for env in container.get("env") or []:
            name = str(env.get("name", ""))
            ref = ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
            named = any(m in name for m in DB_MARKERS) and not name.endswith("_CMD")
            if ref in metadata_secrets or (named and ("valueFrom" in env or _has_credentials(env.get("value")))):
                exposed.append(f"{container['name']}: env {name}")
        for source in container.get("envFrom") or []:
            if (source.get("secretRef") or {}).get("name") in metadata_secrets:
                exposed.append(f"{container['name']}: envFrom {source['secretRef']['name']}")
    for volume in spec.get("volumes") or []:
        names = {(volume.get("secret") or {}).get("secretName")}
        names |= {(s.get("secret") or {}).get("name") for s in (volume.get("projected") or {}).get("sources") or []}
        files += [f"volume {volume['name']}: Secret {n}" for n in sorted(n for n in names if n in metadata_secrets)]
    return exposed, files


def _has_credentials(url: Any) -> bool:
    """A connection URL with a user or password in it (anything unparsable counts as one)."""
    try:
        parts = urllib.parse.urlsplit(str(url or ""))
        return bool(parts.username or parts.password)
    except ValueError:
        return True


TEAM_TASK = "read_team_secret"
NAMESPACE_VARIABLE = "k8s_team_namespace"  # e2e/node/dags/example_team_pod.py: where its pod goes


def set_variable(api: AirflowApi, key: str, value: str | None) -> None:
    """An Airflow Variable through the REST API (None: deleted)."""
    try:
        api.request("DELETE", f"/api/v2/variables/{key}")
    except AirflowApiError as exc:
        if exc.status != 404:
            raise
    if value is not None:
        api.request("POST", "/api/v2/variables", {"key": key, "value": value})


def _team_run(r: NodeRun, namespace: str, seen: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """example_team_pod with its pod sent to `namespace`: (run id, its one task instance); every pod
    of the DAG seen while it ran is kept in `seen` (the executor's and the operator's)."""
    api, kube = r.api, r.kube
    set_variable(api, NAMESPACE_VARIABLE, namespace)

    def watch() -> None:
        for ns in {r.namespace, namespace}:
            for pod in kube.list("v1", "Pod", ns):
                labels = pod["metadata"].get("labels") or {}
                if labels.get("dag_id") == TEAM_DAG:
                    seen[pod["metadata"]["name"]] = pod  # the newest view: its status too

    api.unpause(TEAM_DAG)
    run_id = api.trigger(TEAM_DAG)
    state = api.wait_run(TEAM_DAG, run_id, 300, on_poll=watch)
    [task] = [t for t in api.task_instances(TEAM_DAG, run_id) if t["task_id"] == TEAM_TASK]
    r.echo(f"    {TEAM_DAG} into {namespace}: run {state}, {TEAM_TASK} {task['state']}")
    return run_id, task


def full_log(api: AirflowApi, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
    """A task's log with every field of each entry (an exception's detail is in fields of its own)."""
    run = urllib.parse.quote(run_id, safe="")
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/logs/{try_number}?full_content=true"
    answer = api.request("GET", path)
    return "\n".join(_strings(answer))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.splitlines()
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [str(value)] if value is not None else []


# What the API server says when a task account may not use the pods of a namespace. In the task log
# it is inside the Kubernetes client's exception text, which shows the response body as a Python
# bytes literal: the quotes around "pods" arrive escaped (`\\"pods\\"`).
REFUSED_PODS = r'cannot (create|list|get|watch|delete) resource \\*"pods\\*"'
# What the ServiceAccount admission says when a pod names an account its namespace does not have.
REFUSED_ACCOUNT = rf"error looking up service account {OTHER_TEAM}-tasks/{TEAM}-tasks"


def secret_digest(value: str) -> str:
    """What example_team_pod prints of the token it read: its length and a SHA-256 prefix."""
    data = value.encode()
    return f"team secret warehouse/token: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}"


def team_pods(r: NodeRun) -> None:
    api = r.api
    seen: dict[str, dict[str, Any]] = {}
    try:
        run_id, task = _team_run(r, TEAM_NAMESPACE, seen)
        log = full_log(api, TEAM_DAG, run_id, TEAM_TASK, int(task.get("try_number") or 1))
        if task["state"] != "success":
            raise StepError(f"{TEAM_DAG} in {TEAM_NAMESPACE}: {TEAM_TASK} {task['state']}:\n{log[-2000:]}")
        team = [p for p in seen.values() if p["metadata"]["namespace"] == TEAM_NAMESPACE]
        if not team:
            raise StepError(f"no pod of {TEAM_DAG} was seen in {TEAM_NAMESPACE}")
        for pod in team:
            account = pod["spec"].get("serviceAccountName")
            if account != f"{TEAM}-tasks":
                raise StepError(f"{pod['metadata']['name']} ran as {account!r}, not the team's {TEAM}-tasks")
        expected = secret_digest(_SECRET_VALUE)
        if expected not in log:
            raise StepError(f"the task log does not show the team Secret read ({expected!r}):\n{log[-1500:]}")
        names = ", ".join(sorted(p["metadata"]["name"] for p in team))
        r.echo(f"    in {TEAM_NAMESPACE} as {TEAM}-tasks (restricted, the team's quota and limits): {names}")
        r.echo(f"    the task log: {expected}")

        # A namespace no Role grants Airflow's task accounts: RBAC refuses them the namespace's pods.
        _refused(r, "default", REFUSED_PODS, seen)
        # Another team's namespace: Airflow may launch pods there, but not as this team's account,
        # which exists only in its own namespace (nor with its Secret).
        _refused(r, OTHER_NAMESPACE, REFUSED_ACCOUNT, seen)
    finally:
        set_variable(api, NAMESPACE_VARIABLE, None)
    no_database_in_task_pods(r, seen)


def _refused(r: NodeRun, namespace: str, reason: str, seen: dict[str, dict[str, Any]]) -> None:
    """example_team_pod sent to `namespace` fails, and its task log says why (`reason`, a regex)."""
    run_id, task = _team_run(r, namespace, seen)
    if task["state"] != "failed":
        raise StepError(f"{TEAM_TASK} into {namespace}: {task['state']}, expected failed (refused)")
    log = full_log(r.api, TEAM_DAG, run_id, TEAM_TASK, int(task.get("try_number") or 1))
    line = next((line for line in log.splitlines() if re.search(reason, line)), None)
    if line is None or "forbidden" not in log.lower():
        raise StepError(f"{TEAM_TASK} into {namespace} failed, but its log does not say why:\n{log[-1500:]}")
    found = re.search(reason + r"[^\n]{0,60}", line)
    r.echo(f"    into {namespace}: refused; the task log: ...{found.group(0) if found else line[-200:]}")


def no_database_in_task_pods(r: NodeRun, seen: dict[str, dict[str, Any]]) -> None:
    """The pods of example_team_pod's runs (the executor's and the operator's) carry none of the
    metadata database's credentials: not in their environment, and on Airflow 3 not as a file."""
    release = str(r.config["airflow-k8s:airflow"].get("releaseName", "airflow"))
    metadata_secrets = {
        s["metadata"]["name"]
        for s in r.kube.list("v1", "Secret", r.namespace)
        if s["metadata"]["name"].startswith(f"{release}-") and "metadata" in s["metadata"]["name"]
    }
    executor = [p for p in seen.values() if (p["metadata"].get("labels") or {}).get("kubernetes_executor") == "True"]
    if not executor:
        raise StepError(f"no KubernetesExecutor pod of {TEAM_DAG} was seen")
    r.echo(f"    the metadata database's Secrets: {', '.join(sorted(metadata_secrets))}")
    exposed = []
    for pod in sorted(seen.values(), key=lambda p: p["metadata"]["name"]):
        in_env, as_files = database_credentials(pod, metadata_secrets)
        exposed += [f"{pod['metadata']['name']}: {e}" for e in in_env + as_files]
        where = "; ".join(as_files) or "none"
        r.echo(f"    {pod['metadata']['name']}: in env: {', '.join(in_env) or 'none'}; as files: {where}")
    # docs/guarantees.md, "Task pods and the metadata database": on Airflow 3 the executor's pods
    # get a stand-in without credentials (components/airflow/values/secret_files.py).
    if exposed:
        raise StepError("task pods carry the metadata database's credentials:\n  " + "\n  ".join(exposed))


PART = Part(NAME, run, images=(PROBE_IMAGE, ROOT_IMAGE), stack=stack, secrets=stack_secrets)
