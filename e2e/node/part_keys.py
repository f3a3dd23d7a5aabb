"""Part `keys` of the node scenario (issue 24, scenario 5, first half): a Variable and a Connection
stored through the REST API are encrypted in the metadata database; the Fernet key is rotated
the way docs/reliability.md says (`pulumi config set --path airflow.fernetKey.generation 2`,
`... rotate true`, `pulumi up`: the Job runs `airflow rotate-fernet-key`); both are then
encrypted with the new key, still decrypt, and a run that reads them succeeds.

Also the helpers the `upgrade` and `comeback` parts use to check the same Variable and
Connection are still there and still decrypt (`check_stored`, `run_reader`).

What the database holds is read by a probe pod (the Airflow image's SQLAlchemy, the metadata
connection from its Secret, no Fernet key): each row's `is_encrypted` and its token. Which key
made a token is told by its HMAC (a Fernet token is signed with the first 16 bytes of its key),
so the harness needs no cryptography package.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import yaml

from components.airflow.config.secret_names import SecretNames

from ..harness import STACK, StepError
from ..kube import wait_for
from .airflow_api import AirflowApiError
from .airflow_steps import RUN_TIMEOUT, show_logs, wait_answering, wait_ready
from .parts import NodeRun, Part

NAME = "keys"
DAG = "example_keys"  # dags/example_keys.py: reads the Variable and the Connection
VARIABLE = "example_keys_greeting"
GREETING = "hello from a Variable encrypted at rest"
CONNECTION = "example_keys_db"
CONN = {"conn_type": "postgres", "host": "warehouse.internal", "login": "etl", "port": 5432, "schema": "dw"}
PASSWORD = "e2e-" + hashlib.sha256(b"airflow-k8s e2e keys").hexdigest()[:20]  # a test value, not a secret
PROBE = "e2e-probe-metadata"

# Run in the probe pod: the rows as the database holds them (no Fernet key in the pod).
PROBE_SCRIPT = """
import json, os, sqlalchemy
engine = sqlalchemy.create_engine(os.environ["DB"])
VAR = "SELECT is_encrypted, val FROM variable WHERE key = :k"
CONN = "SELECT is_encrypted, password FROM connection WHERE conn_id = :k"
with engine.connect() as c:
    var = c.execute(sqlalchemy.text(VAR), {"k": os.environ["VAR"]}).first()
    conn = c.execute(sqlalchemy.text(CONN), {"k": os.environ["CONN"]}).first()
print("ROWS " + json.dumps({"variable": list(var) if var else None, "connection": list(conn) if conn else None}))
"""


def fernet_keys(run: NodeRun) -> list[str]:
    """The keys in the Fernet Secret AirflowRelease owns, newest first."""
    name = SecretNames(release(run)).fernet_key
    secret = run.kube.read("v1", "Secret", name, run.namespace) or {}
    raw = (secret.get("data") or {}).get("fernet-key")
    if not raw:
        raise StepError(f"no key fernet-key in the Secret {run.namespace}/{name}")
    return [k for k in base64.b64decode(raw).decode().split(",") if k]


def release(run: NodeRun) -> str:
    return str(run.d.airflow.get("releaseName", "airflow"))


def signed_by(token: str, keys: list[str]) -> int | None:
    """Which of `keys` (index) made this Fernet token: its last 32 bytes are the HMAC-SHA256 of
    the rest under the key's first 16 bytes."""
    try:
        raw = base64.urlsafe_b64decode(token.encode())
    except ValueError:
        return None
    if len(raw) < 57 or raw[0] != 0x80:
        return None
    for index, key in enumerate(keys):
        signing = base64.urlsafe_b64decode(key.encode())[:16]
        if hmac.compare_digest(hmac.new(signing, raw[:-32], hashlib.sha256).digest(), raw[-32:]):
            return index
    return None


def stored_rows(run: NodeRun) -> dict[str, Any]:
    """The Variable's and the Connection's rows (`is_encrypted`, value), read by a probe pod."""
    kube, ns = run.kube, run.namespace
    image = scheduler_image(run)
    names = SecretNames(release(run))
    from components.airflow.values.chart import CONTAINER_SECURITY, POD_SECURITY

    env = [
        {"name": "DB", "valueFrom": {"secretKeyRef": {"name": names.metadata, "key": "connection"}}},
        {"name": "VAR", "value": VARIABLE},
        {"name": "CONN", "value": CONNECTION},
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        # The labels of the stack's own CLI Jobs: the chart's NetworkPolicies let them reach the database.
        "metadata": {"name": PROBE, "namespace": ns, "labels": {"tier": "airflow", "release": release(run)}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": dict(POD_SECURITY),
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", PROBE_SCRIPT],
                    "env": env,
                    "securityContext": dict(CONTAINER_SECURITY),
                    "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                }
            ],
        },
    }
    if kube.read("v1", "Pod", PROBE, ns) is not None:
        kube.delete("v1", "Pod", PROBE, ns)
        gone = lambda: "still there" if kube.read("v1", "Pod", PROBE, ns) else None  # noqa: E731
        wait_for("the previous probe pod gone", gone, timeout=60)
    kube.create(pod)

    def finished() -> str | None:
        phase = ((kube.read("v1", "Pod", PROBE, ns) or {}).get("status") or {}).get("phase")
        return None if phase in ("Succeeded", "Failed") else f"phase {phase}"

    wait_for("the probe pod", finished, timeout=180, interval=1)
    log = str(kube.request("GET", f"/api/v1/namespaces/{ns}/pods/{PROBE}/log") or "")
    phase = ((kube.read("v1", "Pod", PROBE, ns) or {}).get("status") or {}).get("phase")
    kube.delete("v1", "Pod", PROBE, ns)
    lines = [line for line in log.splitlines() if line.startswith("ROWS ")]
    if phase != "Succeeded" or not lines:
        raise StepError(f"the probe pod ({image}) ended {phase}:\n{log[-2000:]}")
    rows: dict[str, Any] = json.loads(lines[-1][5:])
    return rows


def scheduler_image(run: NodeRun) -> str:
    """The Airflow image the release runs now (its scheduler's)."""
    name = f"{release(run)}-scheduler"
    deployment = run.kube.read("apps/v1", "Deployment", name, run.namespace) or {}
    for container in ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []:
        if container.get("name") == "scheduler":
            return str(container["image"])
    raise StepError(f"no scheduler container in the Deployment {run.namespace}/{name}")


def encrypted_with(run: NodeRun, rows: dict[str, Any], keys: list[str]) -> dict[str, int]:
    """Each row is encrypted (`is_encrypted`, a Fernet token, not the plain value); which key
    (index in `keys`) made each token."""
    made = {}
    plain = {"variable": GREETING, "connection": PASSWORD}
    for what, row in rows.items():
        if row is None:
            raise StepError(f"no {what} row in the metadata database")
        is_encrypted, token = row
        index = signed_by(str(token), keys)
        run.echo(f"    {what} row: is_encrypted={is_encrypted}, value {str(token)[:16]}... ({len(str(token))} chars)")
        if is_encrypted is not True or plain[what] in str(token) or index is None:
            raise StepError(f"the {what} is not encrypted with a key of the Secret: is_encrypted={is_encrypted}")
        made[what] = index
    return made


def store(run: NodeRun) -> None:
    """The Variable and the Connection, through the REST API (created, or set again as they are)."""
    api = run.api
    try:
        api.request("POST", "/api/v2/variables", {"key": VARIABLE, "value": GREETING})
    except AirflowApiError as exc:
        if exc.status != 409:
            raise
        api.request("PATCH", f"/api/v2/variables/{VARIABLE}", {"key": VARIABLE, "value": GREETING})
    body = {"connection_id": CONNECTION, **CONN, "password": PASSWORD}
    try:
        api.request("POST", "/api/v2/connections", body)
    except AirflowApiError as exc:
        if exc.status != 409:
            raise
        api.request("PATCH", f"/api/v2/connections/{CONNECTION}", body)
    run.echo(f"    stored Variable {VARIABLE} and Connection {CONNECTION} ({CONN['conn_type']}, with a password)")


def check_stored(run: NodeRun) -> None:
    """The Variable and the Connection read back through the REST API, decrypted, as stored."""
    variable = run.api.request("GET", f"/api/v2/variables/{VARIABLE}")
    if variable.get("value") != GREETING:
        raise StepError(f"Variable {VARIABLE} reads {variable.get('value')!r}, not {GREETING!r}")
    conn = run.api.request("GET", f"/api/v2/connections/{CONNECTION}")
    got = {k: conn.get(k) for k in ("conn_type", "host", "login", "port", "schema")}
    if got != CONN:
        raise StepError(f"Connection {CONNECTION} reads {got}, not {CONN}")
    run.echo(f"    REST API: Variable {VARIABLE} = {variable['value']!r}; Connection {CONNECTION} {got}")


def expected_line() -> str:
    digest = hashlib.sha256(PASSWORD.encode()).hexdigest()[:12]
    return (
        f"variable {VARIABLE}={GREETING}; connection {CONNECTION}: "
        f"host={CONN['host']} login={CONN['login']} password-sha256={digest}"
    )


def run_reader(run: NodeRun) -> str:
    """A run of example_keys: its task reads the Variable and the Connection (decrypted by Airflow)
    and prints them; the run succeeds and its log shows the values stored. Returns the run's id."""
    api = run.api
    started = time.monotonic()
    api.unpause(DAG)
    run_id = api.trigger(DAG)
    state = api.wait_run(DAG, run_id, RUN_TIMEOUT)
    tasks = api.task_instances(DAG, run_id)
    if state != "success":
        show_logs(run.d, api, DAG, run_id, tasks)
        raise StepError(f"{DAG} run {run_id}: {state}")
    text = api.task_log(DAG, run_id, "read", int(tasks[0].get("try_number") or 1))
    if expected_line() not in text:
        show_logs(run.d, api, DAG, run_id, tasks)
        raise StepError(f"the log of {DAG}.read does not show the stored values ({expected_line()!r})")
    run.echo(f"    {DAG} run {run_id}: success after {time.monotonic() - started:.1f}s; its log: {expected_line()}")
    return run_id


def reload_config(run: NodeRun) -> None:
    """The stack config as the documented `pulumi config set` commands left it in Pulumi.<stack>.yaml
    (later parts write the config from it)."""
    doc = yaml.safe_load((run.d.project / f"Pulumi.{STACK}.yaml").read_text())
    run.d.config.clear()
    run.d.config.update(doc["config"])


def job_log(run: NodeRun, name: str) -> str:
    """The log of the (last) pod of Job `name`."""
    pods = [
        p
        for p in run.kube.list("v1", "Pod", run.namespace)
        if (p["metadata"].get("labels") or {}).get("job-name") == name
    ]
    if not pods:
        raise StepError(f"no pod of the Job {name}")
    pod = sorted(pods, key=lambda p: str(p["metadata"].get("creationTimestamp")))[-1]
    return str(run.kube.request("GET", f"/api/v1/namespaces/{run.namespace}/pods/{pod['metadata']['name']}/log") or "")


def job_complete(run: NodeRun, name: str) -> None:
    job = run.kube.read("batch/v1", "Job", name, run.namespace)
    if job is None:
        raise StepError(f"no Job {run.namespace}/{name}")
    conds = {c["type"]: c["status"] for c in (job.get("status") or {}).get("conditions") or []}
    if conds.get("Complete") != "True":
        raise StepError(f"the Job {name} is not complete: {conds}")


def run_keys(run: NodeRun) -> None:
    h, d = run.h, run.d
    with h.steps.step(f"[node:{NAME}] a Variable and a Connection through the REST API: ciphertext in the database"):
        store(run)
        check_stored(run)
        before = fernet_keys(run)
        rows = stored_rows(run)
        made = encrypted_with(run, rows, before)
        if set(made.values()) != {0}:
            raise StepError(f"not encrypted with the Secret's first key: {made}")
        run.echo(f"    both tokens made by the Fernet Secret's only key ({len(before)} key in it)")
    with h.steps.step(
        f"[node:{NAME}] rotate the Fernet key as docs/reliability.md says: generation 2, rotate, pulumi up"
    ):
        d.pulumi.run("config", "set", "--path", "airflow.fernetKey.generation", "2")
        d.pulumi.run("config", "set", "--path", "airflow.fernetKey.rotate", "true")
        reload_config(run)
        d.up()
        wait_ready(d, run.namespace)
        wait_answering(run.api, 120)
        job = f"{release(run)}-rotate-fernet-key-2"
        job_complete(run, job)
        for line in job_log(run, job).splitlines()[-6:]:
            run.echo(f"    | {job}: {line[:200]}")
        after = fernet_keys(run)
        if len(after) != 2 or after[1] != before[0]:
            raise StepError(f"the Fernet Secret should hold the new key, then the old one: {len(after)} keys")
        run.echo("    the Fernet Secret holds 2 keys: the new one first, the old one behind it")
    with h.steps.step(
        f"[node:{NAME}] both re-encrypted with the new key; still decrypt; a run of {DAG} reads them and succeeds"
    ):
        rows_after = stored_rows(run)
        made = encrypted_with(run, rows_after, after)
        if set(made.values()) != {0}:
            raise StepError(f"after `airflow rotate-fernet-key`, tokens not made by the new key: {made}")
        if any(rows_after[k][1] == rows[k][1] for k in rows):
            raise StepError("a token is the same as before the rotation")
        run.echo("    both tokens are new, made by the new key (generation 2)")
        check_stored(run)
        run_reader(run)


PART = Part(NAME, run_keys)
