"""Part `backup` of node-prod (issue 25, scenario 5: backups that restore), on the external
TLS-only PostgreSQL the scenario runs (e2e.node.external_db).

Its stack change puts back Pulumi.prod.yaml's `maintenance` (prod's schedules, `keep` and
`retentionDays`), node-sized: a 2Gi claim of the node's StorageClass, `airflow db clean` first
as a dry run. Then, after the first run:

- state worth restoring through the REST API: the Variable and the Connection of part `keys`,
  and a second run of the first run's DAG, made 100 days old in the database (its `start_date`s,
  as `airflow db clean` reads them): older than prod's 90 days of retention;
- the backup CronJob, triggered by hand as docs/database.md says (a Job from the CronJob),
  writes a `pg_dump` of the external database to its retained claim: its log line, the file on
  the claim's folder on the node;
- `airflow db clean` from its CronJob, a dry run: what it would delete (the old run), and every
  row count as it was;
- docs/database.md's restore, step by step: writers stopped (`scale deploy,sts -l tier=airflow
  --replicas=0`), an empty database made on the server by its admin, `pg_restore` from a Job made
  from the backup CronJob (its claim, its service file) with the documented command, `databaseUrl`
  pointed at the restored database and `pulumi up`: Airflow on it has every run, Variable and
  Connection it had when the dump was taken, and not the Variable set after;
- `airflow db clean` for real (`maintenance.cleanup.dryRun: false`, set with the same `up`): the
  old run and its task instance deleted, the rest as it was (row counts before and after; the REST
  API no longer finds the old run).
"""

from __future__ import annotations

import copy
import re
import time
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from components.airflow.values.maintenance import RESTORE_COMMAND

from ..harness import ROOT, StepError
from ..kube import wait_for
from . import config, part_keys, part_upgrade
from .airflow_api import AirflowApiError
from .airflow_steps import airflow_api, wait_ready
from .external_db import DATABASE, SSLMODE, USER, ExternalPostgres
from .parts import NodeRun, Part

NAME = "backup"
RESTORED = "airflow_restored"
SIZE = "2Gi"  # prod's 20Gi claim, node-sized
AGE_DAYS = 100  # the old run's age: beyond prod's retentionDays (90)
MARKER = "e2e_after_backup"  # a Variable set after the dump: the restored database must not have it
JOB_TIMEOUT = 300
TABLES = ("dag_run", "task_instance", "task_instance_history", "log", "job", "xcom", "variable", "connection")
# Written by what runs meanwhile (every CLI command adds a `log` row, `airflow db clean` too; jobs
# start): the dry run's "nothing deleted" is judged on the others.
LIVE = ("log", "job")
# The backup script's last line (components/airflow/values/maintenance.py, BACKUP_SCRIPT).
DUMP_LINE = re.compile(r"wrote (\S*/airflow-metadata-\d{8}T\d{6}Z\.dump) \((\d+) bytes\); (\d+) dumps kept")
CHECKING = re.compile(r"^Checking table (\S+)$")
FOUND = re.compile(r"^Found (\d+) rows meeting deletion criteria\.$")


def backup_stack(cfg: dict[str, Any], prod: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stack with Pulumi.prod.yaml's `maintenance`: its schedules, `keep` and retention; the
    claim node-sized and of the node's StorageClass; `airflow db clean` a dry run to begin with."""
    if prod is None:
        prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["airflow-k8s:maintenance"]
    maint = copy.deepcopy(prod)
    maint["backup"].update(size=SIZE, storageClass=config.STORAGE_CLASS)
    maint["cleanup"]["dryRun"] = True
    return {**cfg, "airflow-k8s:maintenance": maint}


def job_from_cronjob(cron: dict[str, Any], name: str, command: list[str] | None = None) -> dict[str, Any]:
    """The Job `kubectl create job --from=cronjob/<name>` makes (the CronJob's jobTemplate, marked
    as made by hand, owned by the CronJob); `command` replaces its container's, with no retry."""
    template = copy.deepcopy(cron["spec"]["jobTemplate"])
    meta = cron["metadata"]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": dict((template.get("metadata") or {}).get("labels") or {}),
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "CronJob", "name": meta["name"], "uid": meta["uid"]}
            ],
        },
        "spec": template["spec"],
    }
    if command is not None:
        containers = job["spec"]["template"]["spec"]["containers"]
        if len(containers) != 1:
            raise StepError(f"the CronJob {meta['name']} has {len(containers)} containers, one expected")
        containers[0].pop("args", None)
        containers[0]["command"] = command
        job["spec"]["backoffLimit"] = 0
    return job


def restore_command(dump: str, database: str = RESTORED) -> list[str]:
    """docs/database.md's restore command (the components' own), as a container's command."""
    return RESTORE_COMMAND.format(dbname=database, dump=dump).split()


def dump_written(log: str) -> tuple[str, int, int]:
    """(path, bytes, dumps kept) from the backup's last line."""
    found = DUMP_LINE.findall(log)
    if not found:
        raise StepError(f"no 'wrote /backups/airflow-metadata-....dump' line in the backup's log:\n{log[-1500:]}")
    path, size, kept = found[-1]
    return path, int(size), int(kept)


def clean_found(log: str) -> dict[str, int]:
    """Table -> rows `airflow db clean` found older than its cutoff ("Checking table X", then
    "Found N rows meeting deletion criteria.")."""
    found: dict[str, int] = {}
    table = ""
    for line in log.splitlines():
        line = line.strip()
        if m := CHECKING.match(line):
            table = m.group(1)
        elif (m := FOUND.match(line)) and table:
            found[table] = int(m.group(1))
    return found


def counts_sql(tables: tuple[str, ...] = TABLES) -> str:
    return " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables)


def parse_counts(out: str) -> dict[str, int]:
    return {t: int(n) for t, n in (line.split("|", 1) for line in out.split() if "|" in line)}


def quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def age_sql(table: str, dag_id: str, run_id: str, days: int = AGE_DAYS) -> str:
    """Move a run's (or its task instances') times `days` back: what `airflow db clean` judges by."""
    shift = ", ".join(f"{c} = {c} - interval '{days} days'" for c in ("start_date", "end_date"))
    return f"UPDATE {table} SET {shift} WHERE dag_id = {quoted(dag_id)} AND run_id = {quoted(run_id)}"


def with_database(url: str, database: str) -> str:
    """`databaseUrl` with another database on the same server (its query, sslmode, kept)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


def counts(db: ExternalPostgres, database: str = DATABASE) -> dict[str, int]:
    done = db.psql(counts_sql(), "require", database)
    if done.returncode != 0:
        raise StepError(f"row counts in {database}: {done.stderr.strip()[-400:]}")
    return parse_counts(done.stdout)


def psql_ok(db: ExternalPostgres, sql: str, database: str = DATABASE, admin: bool = False) -> str:
    done = db.psql(sql, "require", database, admin)
    if done.returncode != 0:
        raise StepError(f"psql ({database}): {sql[:120]}: {done.stderr.strip()[-400:]}")
    return done.stdout.strip()


def shown_counts(before: dict[str, int], after: dict[str, int]) -> str:
    return ", ".join(f"{t} {before.get(t)}->{after.get(t)}" for t in TABLES)


def run_job(run: NodeRun, job: dict[str, Any]) -> tuple[str, float]:
    """Create the Job, wait until it completes (its log shown if it fails); its log and time back."""
    name = job["metadata"]["name"]
    started = time.monotonic()
    run.kube.create(job)

    def finished() -> str | None:
        status = (run.kube.read("batch/v1", "Job", name, run.namespace) or {}).get("status") or {}
        conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
        if conds.get("Complete") == "True" or conds.get("Failed") == "True":
            return None
        return f"active {status.get('active', 0)}, failed {status.get('failed', 0)}"

    wait_for(f"the Job {name}", finished, timeout=JOB_TIMEOUT, interval=2)
    took = time.monotonic() - started
    log = part_keys.job_log(run, name)
    try:
        part_keys.job_complete(run, name)
    except StepError:
        for line in log.splitlines()[-30:]:
            run.echo(f"    | {name}: {line[:240]}")
        raise
    return log, took


def cronjob(run: NodeRun, name: str) -> dict[str, Any]:
    cron = run.kube.read("batch/v1", "CronJob", name, run.namespace)
    if cron is None:
        raise StepError(f"no CronJob {run.namespace}/{name}")
    return cron


def runs_seen(run: NodeRun) -> set[tuple[str, str, str]]:
    """Every DAG run the REST API lists: (dag_id, run_id, state)."""
    answer = run.api.request("GET", "/api/v2/dags/~/dagRuns?limit=100")
    return {(r["dag_id"], r["dag_run_id"], r["state"]) for r in answer["dag_runs"]}


def keys_seen(run: NodeRun) -> tuple[set[str], set[str]]:
    """The Variables' keys and the Connections' ids the REST API lists."""
    variables = run.api.request("GET", "/api/v2/variables?limit=100")["variables"]
    connections = run.api.request("GET", "/api/v2/connections?limit=100")["connections"]
    return {v["key"] for v in variables}, {c["connection_id"] for c in connections}


# docs/database.md step 1's selector: what writes the metadata database. Not Redis (it holds no
# metadata, and the chart's Redis StatefulSet names no replicas: Helm's upgrade never puts it
# back; found on the node, where `pulumi up` left it at 0).
SELECTOR = "tier=airflow,component!=redis"


def selected_by(labels: dict[str, str], selector: str = SELECTOR) -> bool:
    """A label selector of `key=value` and `key!=value` terms, as kubectl reads one."""
    for term in selector.split(","):
        key, _, value = term.partition("!=") if "!=" in term else term.partition("=")
        if ("!=" in term) == (labels.get(key) == value):
            return False
    return True


def writers(run: NodeRun) -> dict[tuple[str, str], int]:
    """(kind, name) -> replicas of every Deployment and StatefulSet SELECTOR picks."""
    found = {}
    for kind in ("Deployment", "StatefulSet"):
        for obj in run.kube.list("apps/v1", kind, run.namespace):
            if selected_by(obj["metadata"].get("labels") or {}):
                found[(kind, obj["metadata"]["name"])] = int(obj["spec"].get("replicas") or 0)
    return found


def scale_to_zero(run: NodeRun) -> dict[tuple[str, str], int]:
    """docs/database.md step 1: `kubectl -n <ns> scale deploy,sts -l '<SELECTOR>' --replicas=0`,
    through the scale subresource; back when no pod of them runs."""
    before = writers(run)
    scale(run, dict.fromkeys(before, 0))

    def stopped() -> str | None:
        running = []
        for kind, name in before:
            obj = run.kube.read("apps/v1", kind, name, run.namespace) or {}
            if int((obj.get("status") or {}).get("replicas") or 0):
                running.append(name)
        return f"still running: {', '.join(running)}" if running else None

    wait_for("the Airflow Deployments and StatefulSets at 0 pods", stopped, timeout=180, interval=2)
    return before


def claim_folder(run: NodeRun, claim: str) -> Path:
    """The folder on the node behind a claim (the node's volumes are hostPath folders)."""
    pvc = run.kube.read("v1", "PersistentVolumeClaim", claim, run.namespace) or {}
    volume = (pvc.get("spec") or {}).get("volumeName")
    pv = run.kube.read("v1", "PersistentVolume", volume) if volume else None
    path = ((pv or {}).get("spec") or {}).get("hostPath", {}).get("path")
    if not path:
        raise StepError(f"the claim {claim} has no hostPath volume (volume {volume})")
    return Path(path)


def scale(run: NodeRun, replicas: dict[tuple[str, str], int]) -> None:
    for (kind, name), count in replicas.items():
        path = f"/apis/apps/v1/namespaces/{run.namespace}/{kind.lower()}s/{name}/scale"
        run.kube.request("PATCH", path, {"spec": {"replicas": count}}, content_type="application/merge-patch+json")


def run_backup(run: NodeRun) -> None:
    h, d, ns = run.h, run.d, run.namespace
    db = run.database
    if not isinstance(db, ExternalPostgres):
        raise StepError(f"part {NAME} runs in node-prod, on its external database (NodeRun.database)")
    release = part_keys.release(run)
    step = f"[node-prod:{NAME}]"
    started_part = time.monotonic()
    first_dag, (first_run, _tasks) = next(iter(run.runs.items()))
    failed: list[str] = []

    with h.steps.step(f"{step} before: a Variable, a Connection (REST API); a second run, made {AGE_DAYS} days old"):
        part_keys.store(run)
        started = time.monotonic()
        old_run = run.api.trigger(first_dag)
        state = run.api.wait_run(first_dag, old_run, JOB_TIMEOUT)
        if state != "success":
            raise StepError(f"the second run {old_run} of {first_dag}: {state}")
        for table in ("task_instance", "dag_run"):
            psql_ok(db, age_sql(table, first_dag, old_run))
        old = psql_ok(db, f"SELECT start_date FROM dag_run WHERE run_id = {quoted(old_run)}")
        run.echo(f"    {first_dag} run {old_run}: success in {time.monotonic() - started:.1f}s; start_date now {old}")
        seen_runs = runs_seen(run)
        seen_vars, seen_conns = keys_seen(run)
        run.echo(
            f"    REST API: {len(seen_runs)} runs, Variables {sorted(seen_vars)}, Connections {sorted(seen_conns)}"
        )

    with h.steps.step(f"{step} the backup CronJob by hand: a pg_dump of the external database on its claim"):
        cron = cronjob(run, f"{release}-metadata-backup")
        log, took = run_job(run, job_from_cronjob(cron, f"{release}-backup-manual-{int(time.time())}"))
        dump, size, kept = dump_written(log)
        run.echo(f"    | {log.strip().splitlines()[-1][:240]}")
        on_node = claim_folder(run, f"{release}-metadata-backups") / Path(dump).name
        if not on_node.is_file() or on_node.stat().st_size != size:
            raise StepError(f"{on_node} on the node: not a file of {size} bytes")
        run.echo(f"    the Job took {took:.1f}s; {dump}: {size} bytes, {kept} kept; on the node: {on_node.name}")
        run.api.request("POST", "/api/v2/variables", {"key": MARKER, "value": "set after the dump"})

    with h.steps.step(f"{step} airflow db clean from its CronJob, dry run: finds the old run, deletes nothing"):
        cron = cronjob(run, f"{release}-db-clean")
        command = str(cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0])
        if "--dry-run" not in command:
            raise StepError(f"the CronJob {release}-db-clean is not a dry run: {command[-400:]}")
        before = counts(db)
        log, took = run_job(run, job_from_cronjob(cron, f"{release}-db-clean-dry-{int(time.time())}"))
        after = counts(db)
        found = {t: n for t, n in clean_found(log).items() if n}
        run.echo(f"    the Job took {took:.1f}s; it would delete: {found or 'nothing'}")
        run.echo(f"    rows: {shown_counts(before, after)}")
        changed = [t for t in TABLES if t not in LIVE and before[t] != after[t]]
        if changed:
            raise StepError(f"the dry run changed row counts of {changed}: {before} -> {after}")
        if not found.get("dag_run"):
            raise StepError(f"the dry run found no dag_run row older than the retention: {clean_found(log)}")
        run.echo(f"    REST API: the old run {old_run} still {run.api.run_state(first_dag, old_run)}")

    with h.steps.step(f"{step} restore (docs/database.md): writers stopped, an empty database, pg_restore"):
        started = time.monotonic()
        stopped = scale_to_zero(run)
        sessions = psql_ok(
            db, f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{DATABASE}' AND pid <> pg_backend_pid()"
        )
        run.echo(f"    {len(stopped)} Deployments/StatefulSets at 0; sessions on {DATABASE} left: {sessions}")
        psql_ok(db, f"CREATE DATABASE {RESTORED} OWNER {USER}", admin=True)
        cron = cronjob(run, f"{release}-metadata-backup")
        job = job_from_cronjob(cron, f"{release}-restore-{int(time.time())}", restore_command(dump))
        log, took = run_job(run, job)
        restored = counts(db, RESTORED)
        original = counts(db)
        run.echo(f"    pg_restore Job: {took:.1f}s; rows original->restored: {shown_counts(original, restored)}")
        same = [t for t in ("dag_run", "task_instance", "connection") if restored[t] != original[t]]
        if same or restored["variable"] != original["variable"] - 1:  # the marker came after the dump
            raise StepError(f"the restored database's rows differ: {restored} (the original: {original})")
        run.echo(f"    writers stopped and the dump restored in {time.monotonic() - started:.1f}s")

    with h.steps.step(f"{step} databaseUrl -> {RESTORED}, db clean for real, pulumi up: Airflow on the restore"):
        started = time.monotonic()
        migrations = set(part_upgrade.migration_jobs(run))
        d.pulumi.run("config", "set", "--secret", "databaseUrl", "--", with_database(db.url(SSLMODE), RESTORED))
        d.pulumi.run("config", "set", "--path", "maintenance.cleanup.dryRun", "false")
        part_keys.reload_config(run)
        d.up()
        back = writers(run)
        if back != stopped:
            failed.append(f"`pulumi up` did not scale the writers back: {back} (before: {stopped})")
            run.echo(f"    FINDING: after `pulumi up` the writers are {back}; scaled back by hand")
            scale(run, stopped)
        wait_ready(d, ns)
        part_upgrade.new_migration(run, migrations)  # `airflow db migrate` on the restored database
        on_restored = psql_ok(
            db, f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{RESTORED}' AND pid <> pg_backend_pid()"
        )
        took = time.monotonic() - started
        run.echo(f"    up and every pod Ready in {took:.1f}s; sessions on {RESTORED}: {on_restored}")
        run.api = airflow_api(d, run.node, ns)

    with h.steps.step(f"{step} on the restored database: the same runs, Variables and Connections (REST API)"):
        now_runs = runs_seen(run)
        now_vars, now_conns = keys_seen(run)
        missing = seen_runs - now_runs
        run.echo(
            f"    {len(now_runs)} runs ({len(missing)} of the {len(seen_runs)} before missing); "
            f"Variables {sorted(now_vars)}; Connections {sorted(now_conns)}"
        )
        if MARKER in now_vars:
            raise StepError(f"the Variable {MARKER}, set after the dump, is there: Airflow is not on the restore")
        part_keys.check_stored(run)
        if missing or now_vars != seen_vars or now_conns != seen_conns:
            raise StepError(
                f"not as at the dump: runs missing {sorted(missing)}; Variables {sorted(now_vars)} "
                f"(then {sorted(seen_vars)}); Connections {sorted(now_conns)} (then {sorted(seen_conns)})"
            )

    with h.steps.step(f"{step} airflow db clean from its CronJob, for real: the old run deleted, the rest kept"):
        cron = cronjob(run, f"{release}-db-clean")
        command = str(cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0])
        if "--dry-run" in command:
            raise StepError(f"the CronJob {release}-db-clean is still a dry run after dryRun: false: {command[-400:]}")
        before = counts(db, RESTORED)
        log, took = run_job(run, job_from_cronjob(cron, f"{release}-db-clean-{int(time.time())}"))
        after = counts(db, RESTORED)
        found = {t: n for t, n in clean_found(log).items() if n}
        run.echo(f"    the Job took {took:.1f}s; it found and deleted: {found or 'nothing'}")
        run.echo(f"    rows: {shown_counts(before, after)}")
        try:
            state = run.api.run_state(first_dag, old_run)
            raise StepError(f"the old run {old_run} is still there ({state})")
        except AirflowApiError as exc:
            if exc.status != 404:
                raise
        first_state = run.api.run_state(first_dag, first_run)
        if after["dag_run"] != before["dag_run"] - found.get("dag_run", 0) or not found.get("dag_run"):
            raise StepError(f"dag_run rows {before['dag_run']} -> {after['dag_run']}, found {found.get('dag_run')}")
        run.echo(f"    REST API: the old run {old_run} 404; the first run {first_run} {first_state}")
        run.echo(f"    part {NAME}: {time.monotonic() - started_part:.1f}s")
        if failed:
            raise StepError("; ".join(failed))


PART = Part(NAME, run_backup, stack=backup_stack)
