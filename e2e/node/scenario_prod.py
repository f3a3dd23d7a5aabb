"""Scenario `node-prod` (on trial, not in CI; issue scenario 1): a stack shaped like prod on the
real node, its metadata database outside the cluster.

The node scenario's machinery (images, the node, the REST API, a DAG run, its log; e2e.node.scenario
and e2e.node.airflow_steps) with another first `up`:

- a PostgreSQL server on the node's address, outside the cluster, TLS only, with a CA of its own
  (e2e.node.external_db): the managed database;
- the stack: Pulumi.prod.yaml's Airflow shape (CeleryExecutor, Redis with its password, PgBouncer
  with prod's pools, Flower, two schedulers, two api-servers) sized for the node's two cores,
  `databaseUrl` (a secret) pointing at that server with `sslmode=verify-full`, and its CA in
  `airflow.database.caCertificate` (PgBouncer, the backup Job and the drivers check the server);
- every pod Ready, a DAG run on a Celery worker, its task log through the REST API (and on the
  logs volume); Flower refuses a request without its credentials and answers one with them;
- the Postgres drivers the image really uses (a pod of the Airflow image with the stack's own
  connection Secrets), each running transactions through PgBouncer's transaction pooling, and no
  prepared-statement error in the database's log, the schedulers' or the api-servers'.

Then its parts (`PROD_PARTS`, e2e.node.parts), on the same node and stack, chosen by
AIRFLOW_K8S_PROD_PARTS as the node scenario's are by AIRFLOW_K8S_NODE_PARTS.
"""

from __future__ import annotations

import base64
import copy
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from components.airflow.config.secret_names import SecretNames
from components.airflow.config.secret_paths import METADATA_ASYNC_KEY

from ..harness import ROOT, STACK, StepError, copy_project, write_stack_config
from ..kube import Kube, wait_for
from ..scenarios import Deployment, Harness, deploy_project
from . import (
    config,
    host,
    prod_backup,
    prod_drain,
    prod_pgbouncer,
    prod_redis,
    prod_rollout,
    prod_scheduler,
    prod_timings,
)
from .airflow_steps import airflow_api, evidence, read_logs, stays_ready, wait_ready
from .external_db import SSLMODE, ExternalPostgres, prepared_statement_errors, tls_connections
from .image_check import POSTGRES_REF
from .parts import PROD_SELECT_ENV, NodeRun, Part, selected, set_secrets, stack_for
from .recipes import PGBOUNCER_EXPORTER_STANDIN
from .scenario import build_images, machine_clean, node_here, node_stack_config, with_kube_minor

NAME = "node-prod"
RUN_DAG = "example_one_task"
TASK = "hello"
RUN_TIMEOUT = 600
FLOWER_PORT = 5555
# Two schedulers and two api-servers as in prod; the rest at one (the node has two cores, shared).
REPLICAS = {"scheduler": 2, "apiServer": 2, "triggerer": 1, "dagProcessor": 1, "workers": 1}
# What Pulumi.prod.yaml's Airflow keys keep on the node: its shape, not its sizes or its cloud.
PROD_KEYS = ("executor", "database", "flower", "redis")
# The parts after the first run (e2e.node.parts), in the order they run, chosen by
# AIRFLOW_K8S_PROD_PARTS; those on trial run only when named.
PROD_PARTS: tuple[Part, ...] = (
    prod_scheduler.PART,
    prod_backup.PART,  # last: it leaves the stack on the restored database
)
PROD_TRIAL_PARTS: tuple[Part, ...] = (
    prod_redis.PART,  # back on trial: the Celery stall the worker probe does not catch (docs/e2e-prod-parts.md)
    prod_pgbouncer.PART,
    prod_rollout.PART,
    prod_drain.PART,
    prod_timings.PART,  # the benchmark's (./run.sh bench-node-prod)
)
PREPARED_IN_LOGS = re.compile(r"prepared statement|InvalidSQLStatementName|DuplicatePreparedStatement", re.I)


def prod_stack(node_cfg: dict[str, Any], prod: dict[str, Any] | None = None) -> dict[str, Any]:
    """The node's dev stack (hostPath DAGs and logs in the node's folder, the local charts) with
    Pulumi.prod.yaml's Airflow shape: its executor, external database behind PgBouncer (its pools
    and replicas), Flower and Redis, and two schedulers and two api-servers. Sizes stay the dev
    stack's (prod's requests alone ask for more than the node's two cores), images are taken
    from the node (prod's `pullPolicy: Always` asks a registry there is none of), and the PgBouncer
    exporter sidecar runs the stand-in (its real image cannot be built here: recipes.py)."""
    if prod is None:
        prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["airflow-k8s:airflow"]
    cfg = copy.deepcopy(node_cfg)
    airflow = cfg["airflow-k8s:airflow"]
    for key in PROD_KEYS:
        airflow[key] = copy.deepcopy(prod[key])
    for sized in (airflow["database"]["pgbouncer"], airflow["flower"], airflow["redis"]):
        sized.pop("resources", None)
    for component, replicas in REPLICAS.items():
        airflow.setdefault(component, {})["replicas"] = replicas
    repository, _, tag = PGBOUNCER_EXPORTER_STANDIN.rpartition(":")
    extra = airflow.setdefault("extraValues", {})
    extra.setdefault("images", {})["pgbouncerExporter"] = {"repository": repository, "tag": tag}
    cfg["airflow-k8s:databaseUrl"] = {"secure": "set-after-stack-init"}
    cfg.pop("airflow-k8s:maintenance", None)  # the backup of an external database: issue scenario 5
    return cfg


def credentials(kube: Kube, name: str, namespace: str) -> dict[str, str]:
    secret = kube.read("v1", "Secret", name, namespace)
    if secret is None:
        raise StepError(f"no Secret {name} in {namespace}")
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def http_status(url: str, user: str = "", password: str = "") -> tuple[int, str]:
    request = urllib.request.Request(url)
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


# Run in a pod of the Airflow image with the stack's two connection Secrets: which distributions
# and which SQLAlchemy drivers, then transactions through PgBouncer from several clients at once
# (so that a client's next transaction lands on another server connection), each repeating the
# same parameterised statement (what a driver prepares and reuses).
DRIVER_PROBE = r"""
import asyncio, importlib.metadata as md, os, sys
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
for dist in ("SQLAlchemy", "psycopg2-binary", "psycopg2", "psycopg", "psycopg-binary", "asyncpg", "apache-airflow"):
    try:
        print(f"dist {dist} {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"dist {dist} -")
SQL = sa.text("SELECT count(*) FROM dag WHERE dag_id <> :d")
ROUNDS, CLIENTS = 40, 4
sync = sa.create_engine(os.environ["SYNC"], pool_size=CLIENTS)
print(f"driver sync {sync.dialect.name}+{sync.dialect.driver}")
conns = [sync.connect() for _ in range(CLIENTS)]
for i in range(ROUNDS):
    for c in conns:
        with c.begin():
            c.execute(SQL, {"d": str(i)}).scalar()
print(f"transactions sync {ROUNDS * CLIENTS} ok")
async def main():
    engine = create_async_engine(os.environ["ASYNC"], pool_size=CLIENTS)
    print(f"driver async {engine.dialect.name}+{engine.dialect.driver}")
    async def client(n):
        async with engine.connect() as c:
            for i in range(ROUNDS):
                async with c.begin():
                    (await c.execute(SQL, {"d": f"{n}-{i}"})).scalar()
    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    await engine.dispose()
    print(f"transactions async {ROUNDS * CLIENTS} ok")
asyncio.run(main())
"""


def driver_pod(image: str, release: str, namespace: str) -> dict[str, Any]:
    names = SecretNames(release)
    env = [
        {"name": "SYNC", "valueFrom": {"secretKeyRef": {"name": names.metadata, "key": "connection"}}},
        {"name": "ASYNC", "valueFrom": {"secretKeyRef": {"name": names.metadata_async, "key": METADATA_ASYNC_KEY}}},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe-drivers", "namespace": namespace, "labels": {"airflow-k8s-e2e": "probe"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsUser": 50000, "runAsGroup": 0, "runAsNonRoot": True},
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", DRIVER_PROBE],
                    "env": env,
                }
            ],
        },
    }


def run_driver_probe(d: Deployment, namespace: str) -> str:
    release = str(d.airflow.get("releaseName", "airflow"))
    scheduler = d.kube.read("apps/v1", "Deployment", f"{release}-scheduler", namespace)
    if scheduler is None:
        raise StepError(f"no Deployment {release}-scheduler in {namespace}")
    image = scheduler["spec"]["template"]["spec"]["containers"][0]["image"]
    d.kube.create(driver_pod(image, release, namespace))

    def finished() -> str | None:
        pod = d.kube.read("v1", "Pod", "probe-drivers", namespace) or {}
        phase = (pod.get("status") or {}).get("phase")
        return None if phase in ("Succeeded", "Failed") else f"phase {phase}"

    wait_for("the driver probe pod", finished, timeout=300, interval=2)
    pod = d.kube.read("v1", "Pod", "probe-drivers", namespace) or {}
    log = str(d.kube.request("GET", f"/api/v1/namespaces/{namespace}/pods/probe-drivers/log") or "")
    d.kube.delete("v1", "Pod", "probe-drivers", namespace)
    for line in log.splitlines()[-40:]:
        d.echo(f"    | {line[:240]}")
    if (pod.get("status") or {}).get("phase") != "Succeeded":
        raise StepError("the driver probe failed (its log above)")
    return log


def pod_logs_with(kube: Kube, namespace: str, components: tuple[str, ...], pattern: re.Pattern[str]) -> list[str]:
    """Lines matching `pattern` in the logs of each container of the pods of `components`."""
    found = []
    for pod in kube.list("v1", "Pod", namespace):
        if (pod["metadata"].get("labels") or {}).get("component") not in components:
            continue
        name = pod["metadata"]["name"]
        for container in pod["spec"]["containers"]:
            path = f"/api/v1/namespaces/{namespace}/pods/{name}/log?container={container['name']}"
            text = str(kube.request("GET", path) or "")
            found += [f"{name}/{container['name']}: {line[:300]}" for line in text.splitlines() if pattern.search(line)]
    return found


def celery_run(d: Deployment, api: Any, namespace: str) -> tuple[str, list[dict[str, Any]]]:
    """RUN_DAG triggered; it succeeds and its task ran on a Celery worker (its host a worker pod,
    no task pod made)."""
    release = str(d.airflow.get("releaseName", "airflow"))

    def parsed() -> str | None:
        return None if RUN_DAG in api.dag_ids() else f"{RUN_DAG} not parsed yet"

    wait_for(f"{RUN_DAG} parsed", parsed, timeout=300, interval=3)
    api.unpause(RUN_DAG)
    started = time.monotonic()
    run_id = api.trigger(RUN_DAG)
    d.echo(f"    triggered {RUN_DAG}: run {run_id}")
    state = api.wait_run(RUN_DAG, run_id, RUN_TIMEOUT)
    tasks = api.task_instances(RUN_DAG, run_id)
    d.echo(f"    {RUN_DAG}: run {state} after {time.monotonic() - started:.1f}s")
    for task in tasks:
        fields = ("state", "hostname", "queue", "executor", "try_number")
        d.echo(f"    {task['task_id']}: " + ", ".join(f"{k}={task.get(k)}" for k in fields))
    if state != "success":
        raise StepError(f"the run {run_id} of {RUN_DAG} is {state}")
    task = next(t for t in tasks if t["task_id"] == TASK)
    if not str(task.get("hostname") or "").startswith(f"{release}-worker-"):
        raise StepError(f"{RUN_DAG}.{TASK} ran on {task.get('hostname')!r}, not on a Celery worker pod")
    pods = [
        p["metadata"]["name"]
        for p in d.kube.list("v1", "Pod", namespace)
        if (p["metadata"].get("labels") or {}).get("dag_id") == RUN_DAG
    ]
    if pods:
        raise StepError(f"task pods were made for {RUN_DAG} (a KubernetesExecutor's): {pods}")
    return run_id, tasks


def scenario_node_prod(h: Harness) -> None:
    steps = h.steps
    folder = h.work / NAME
    here = node_here(h, NAME, "a prod-shaped stack on a real node")
    if here is None:
        return
    node, binaries = here
    parts = selected(PROD_PARTS, trial=PROD_TRIAL_PARTS, variable=PROD_SELECT_ENV)
    db = ExternalPostgres(folder / "external-postgresql", Path(), config.NODE_ADDRESS, host.free_port())
    stack = stack_for(parts, prod_stack(node_stack_config(h, folder)))
    secret = Part("external-database", lambda _run: None, secrets=lambda: {"databaseUrl": db.url(SSLMODE)})

    with steps.step(f"[{NAME}] the machine holds nothing of a node (whatever ran before left it clean)"):
        machine_clean(folder, "before the node starts")
    with steps.step(f"[{NAME}] images: the prod-shaped stack's, the external PostgreSQL's", setup=True):
        project = copy_project(folder / "images-project")
        write_stack_config(project, with_kube_minor(stack))
        extra = [POSTGRES_REF, *(ref for part in parts for ref in part.images)]
        archives = build_images(project, STACK, h.charts_dir, steps.echo, extra)
        db.archive = archives[POSTGRES_REF]
    title = "node up: address, control plane on it, containerd (images imported), kubelet, kube-proxy, CoreDNS"
    with steps.step(f"[{NAME}] {title}", setup=True):
        plane, kube = host.bring_up(node, binaries, archives)
        h.planes.append(plane)

    namespace = str(stack["airflow-k8s:airflow"].get("namespace", "airflow"))
    release = str(stack["airflow-k8s:airflow"].get("releaseName", "airflow"))
    failed: list[str] = []
    try:
        title = f"PostgreSQL outside the cluster on {config.NODE_ADDRESS}: TLS only, its own CA; a user for Airflow"
        with steps.step(f"[{NAME}] {title}", setup=True):
            started = time.monotonic()
            db.start()
            shown = db.psql("SELECT version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()", "verify-full")
            refused = db.psql("SELECT 1", "disable")
            took = time.monotonic() - started
            steps.echo(f"    {db.address}:{db.port} up in {took:.1f}s; verify-full: {shown.stdout.strip()}")
            steps.echo(f"    without TLS: {refused.stderr.strip()[-160:]}")
            if refused.returncode == 0 or "no encryption" not in refused.stderr:
                raise StepError("the database took a connection without TLS")
        with evidence(kube, steps.echo, ("default", "kube-system", namespace)):
            with steps.step(f"[{NAME}] copy the project; stack init; databaseUrl set as a secret", setup=True):
                # The server's CA, made when it started: what `sslmode=verify-full` checks it against.
                stack["airflow-k8s:airflow"]["database"]["caCertificate"] = db.ca_pem
                d = deploy_project(h, NAME, plane, kube, stack)
                d.pulumi.stall_seconds = config.UP_STALL_SECONDS
                set_secrets([secret, *parts], d)
            with steps.step(f"[{NAME}] pulumi up of the prod-shaped stack (Celery, PgBouncer, external database)"):
                started = time.monotonic()
                d.up()
                steps.echo(f"    pulumi up: {time.monotonic() - started:.1f}s")
            with steps.step(f"[{NAME}] every pod Ready by its own probes"):
                wait_ready(d, namespace)
            with steps.step(f"[{NAME}] no container restarts for a minute"):
                stays_ready(d, namespace)
            with steps.step(f"[{NAME}] REST API: log in as admin (two api-servers behind the Service)"):
                api = airflow_api(d, node, namespace)
            with steps.step(f"[{NAME}] {RUN_DAG} runs on a Celery worker and succeeds; its log through the API"):
                run_id, tasks = celery_run(d, api, namespace)
                read_logs(d, api, RUN_DAG, run_id, tasks, folder)
            try:
                with steps.step(f"[{NAME}] Flower: 401 without its credentials, 200 with them"):
                    flower(d, node, namespace, release)
            except StepError as exc:
                failed.append(f"Flower: {exc}")
            try:
                with steps.step(f"[{NAME}] the drivers the image uses, through PgBouncer's transaction pooling"):
                    drivers(d, namespace, db)
            except StepError as exc:
                failed.append(f"drivers: {exc}")
            run = NodeRun(h, node, plane, kube, d, api, namespace, folder, stack, {RUN_DAG: (run_id, tasks)}, db)
            for part in parts:
                steps.echo(f"--- [{NAME}:{part.name}]")
                try:
                    part.run(run)
                except (StepError, TimeoutError) as exc:  # its step says what did not hold; the next part still runs
                    failed.append(f"{part.name}: {exc}")
    finally:
        db.stop()

    with steps.step(f"[{NAME}] teardown: nothing of the node is left on the machine"):
        problems = plane.stop()
        if problems:
            raise StepError("the node's teardown: " + "; ".join(problems))
        machine_clean(folder, "after the teardown")
    if failed:
        raise StepError("; ".join(failed))


def flower(d: Deployment, node: host.Node, namespace: str, release: str) -> None:
    service = d.kube.read("v1", "Service", f"{release}-flower", namespace)
    if service is None:
        raise StepError(f"no Service {release}-flower in {namespace}")
    local = host.free_port()
    node.start_forwarder(local, f"{service['spec']['clusterIP']}:{FLOWER_PORT}")
    url = f"http://127.0.0.1:{local}/"

    def answers() -> str | None:
        try:
            http_status(url)
        except OSError as exc:
            return str(exc)
        return None

    wait_for("Flower answering", answers, timeout=60, interval=1)
    anonymous, _ = http_status(url)
    login = credentials(d.kube, SecretNames(release).flower, namespace)
    status, _ = http_status(url, login["username"], login["password"])
    wrong, _ = http_status(url, login["username"], "not-the-password")
    workers, body = http_status(url + "api/workers", login["username"], login["password"])
    d.echo(f"    without credentials: {anonymous}; wrong password: {wrong}; with them: {status}")
    d.echo(f"    /api/workers: {workers} {body[:200]}")
    if (anonymous, wrong, status) != (401, 401, 200):
        raise StepError(f"Flower answered {anonymous} without credentials, {wrong} wrong, {status} with them")


def drivers(d: Deployment, namespace: str, db: ExternalPostgres) -> None:
    log = run_driver_probe(d, namespace)
    used = dict(re.findall(r"^driver (sync|async) (\S+)$", log, re.M))
    d.echo(f"    the image's drivers: sync {used.get('sync')}, async {used.get('async')}")
    ok = re.findall(r"^transactions (sync|async) (\d+) ok$", log, re.M)
    if len(ok) != 2:
        raise StepError(f"not every driver ran its transactions through PgBouncer: {ok}")
    server_log = db.log.read_text(errors="replace")
    with_tls, without = tls_connections(server_log)
    d.echo(f"    the database's connections: {with_tls} with TLS, {without} without")
    errors = prepared_statement_errors(server_log)
    pods = pod_logs_with(d.kube, namespace, ("scheduler", "api-server", "pgbouncer"), PREPARED_IN_LOGS)
    for line in (errors + pods)[:20]:
        d.echo(f"    | {line}")
    if without or not with_tls:
        raise StepError(f"{without} connections to the database without TLS ({with_tls} with)")
    if errors or pods:
        raise StepError(f"prepared-statement errors: {len(errors)} in the database's log, {len(pods)} in the pods'")


PROD_SCENARIOS = {NAME: scenario_node_prod}
