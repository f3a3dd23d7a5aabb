"""The metadata database backup, proven end to end against a real PostgreSQL server.

The test starts PostgreSQL (Debian's package; `./run.sh test` installs it), lets Airflow
(`.venv-dags`) create its schema with `airflow db migrate` and write rows, runs the backup with
the exact script and environment the CronJob runs (connection from a libpq service file, as the
CronJob mounts it), restores the dump into an empty database with the documented restore
command, and compares the row counts of every Airflow table. It also runs the cleanup CronJob's
`airflow db clean` command against the restored database.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.airflow.config.airflow import DatabaseUrl, parse_airflow
from components.airflow.config.maintenance import parse_maintenance, resolve_backup_bucket
from components.airflow.values.maintenance import (
    BACKUP_SCRIPT,
    PG_SERVICE,
    RESTORE_COMMAND,
    backup_cronjob,
    cleanup_command,
    pg_service_file,
)
from components.logs.config import parse_logs
from tests.helpers import ROOT

AIRFLOW = ROOT / ".venv-dags" / "bin" / "airflow"
PASSWORD = "b@ck:up pw'\"x"  # characters a service file and a URL must both survive


def pg_bin() -> Path:
    found = os.environ.get("AIRFLOW_K8S_PG_BIN") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None
    )
    if not found or not (Path(found) / "postgres").exists():
        pytest.fail("no PostgreSQL server binaries: ./run.sh test installs Debian's postgresql package")
    return Path(found)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL's server refuses to run as root: run server commands as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class Server:
    def __init__(self, root: Path, options: str = "") -> None:
        self.bin = pg_bin()
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.options = options  # more server settings (`-c name=value ...`)
        self.env = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}"}

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(pwfile, "postgres")
        subprocess.run(
            as_postgres(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "airflow",
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-instructions",
                ]
            ),
            check=True,
            capture_output=True,
            env=self.env,
        )
        subprocess.run(
            as_postgres(
                [
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.root / "server.log"),
                    "-o",
                    f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 {self.options}".rstrip(),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            env=self.env,
        )

    def stop(self) -> None:
        subprocess.run(
            as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
            capture_output=True,
            env=self.env,
        )

    def target(self, database: str) -> DatabaseUrl:
        return DatabaseUrl("airflow", PASSWORD, "127.0.0.1", self.port, database, "disable")

    def client_env(self, service_file: Path, database: str | None = None) -> dict[str, str]:
        env = {**self.env, "PGSERVICEFILE": str(service_file), "PGSERVICE": PG_SERVICE}
        if database:
            env["PGDATABASE"] = database
        return env

    def sql(self, service_file: Path, database: str, query: str) -> str:
        out = subprocess.run(
            [str(self.bin / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", query],
            check=True,
            capture_output=True,
            text=True,
            env=self.client_env(service_file),
        )
        return out.stdout.strip()


def airflow_env(home: Path, target: DatabaseUrl) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    return {
        **env,
        "PATH": f"{AIRFLOW.parent}:{env['PATH']}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": target.sqlalchemy().replace("postgresql://", "postgresql+psycopg2://"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
    }


ROWS = """
from airflow.models import Variable
from airflow.models.pool import Pool
from airflow.models.connection import Connection
from airflow.utils.session import create_session
for i in range(7):
    Variable.set(f"backup_test_{i}", f"value {i}")
with create_session() as session:
    for i in range(3):
        session.add(Pool(pool=f"backup_pool_{i}", slots=i + 1, include_deferred=False))
    session.add(Connection(conn_id="backup_conn", conn_type="postgres", host="db", password="secret"))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    if not AIRFLOW.exists():
        pytest.fail("no .venv-dags: run ./run.sh test (it creates the virtualenv with Airflow)")
    root = tmp_path_factory.mktemp("pg")
    # The server runs as `postgres` when the tests run as root: its folder lives outside pytest's
    # private (0700) temporary tree.
    server_root = Path(tempfile.mkdtemp(prefix="airflow-k8s-pg-"))
    os.chmod(server_root, 0o755)
    srv = Server(server_root / "server")
    srv.start()
    try:
        service = root / "pg_service.conf"
        service.write_text(pg_service_file(srv.target("postgres")))
        for database in ("airflow", "restored"):
            srv.sql(service, "postgres", f"CREATE DATABASE {database}")
        home = root / "airflow-home"
        home.mkdir()
        env = airflow_env(home, srv.target("airflow"))
        python = str(AIRFLOW.parent / "python")
        for cmd in ([str(AIRFLOW), "db", "migrate"], [python, "-c", ROWS]):
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
            assert done.returncode == 0, f"{cmd[1:]}: {done.stderr[-3000:]}"
        yield srv, root
    finally:
        srv.stop()
        shutil.rmtree(server_root, ignore_errors=True)


def table_counts(srv: Server, service: Path, database: str) -> dict[str, int]:
    tables = srv.sql(
        service, database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    ).split()
    return {t: int(srv.sql(service, database, f'SELECT count(*) FROM "{t}"')) for t in tables}


def run_backup(srv: Server, service: Path, backups: Path, keep: int, bucket: str | None = None) -> str:
    """The CronJob's container, as it runs: its command and its environment, with the service
    file and backup folder at the test's paths (and, for a bucket target, a file:// folder in
    place of the bucket, written through the same Airflow object storage)."""
    maintenance = parse_maintenance({"backup": {"keep": keep, **({"target": "bucket"} if bucket else {})}})
    if bucket:
        logs = parse_logs(
            {"mode": "remote", "remote": {"target": "s3", "baseLogFolder": "s3://logs/airflow"}},
            logs_connection="aws://k:s@",
        )
        maintenance = resolve_backup_bucket(maintenance, logs)
    cron = backup_cronjob(
        parse_airflow({"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/o/d.git"}}}), maintenance
    )
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["bash", "-c", BACKUP_SCRIPT]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PGSERVICE"] == PG_SERVICE and "PGPASSWORD" not in env
    env.update({"PGSERVICEFILE": str(service), "BACKUP_DIR": str(backups)})
    path = srv.env["PATH"]
    if bucket:
        assert env["BACKUP_URL"] == "s3://logs/airflow-metadata-backups" and env["BACKUP_CONN_ID"] == "aws_logs"
        env.update({"BACKUP_URL": bucket, "AIRFLOW_HOME": str(backups / "home")})
        for key in ("BACKUP_CONN_ID", "AIRFLOW__SECRETS__BACKEND", "AIRFLOW__SECRETS__BACKEND_KWARGS"):
            env.pop(key)  # a local folder needs no connection
        path = f"{AIRFLOW.parent}:{path}"  # `python` is Airflow's, as in the image
    out = subprocess.run(
        container["command"],
        check=True,
        capture_output=True,
        text=True,
        env={**srv.env, **env, "PATH": path},
        timeout=300,
    )
    return out.stdout


def service_file(srv: Server, folder: Path, database: str, name: str = "pg_service.conf") -> Path:
    """A libpq service file for `database`, as the backup Secret holds one."""
    path = folder / name
    path.write_text(pg_service_file(srv.target(database)))
    return path


def folder(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(parents=True)
    return path


class TestBackupAndRestore:
    def test_a_dump_restored_into_an_empty_database_has_every_airflow_row(self, server, tmp_path):
        srv, _ = server
        service = service_file(srv, tmp_path, "airflow")
        backups = folder(tmp_path, "backups")
        out = run_backup(srv, service, backups, keep=2)
        (dump,) = sorted(backups.glob("airflow-metadata-*.dump"))
        assert f"wrote {dump}" in out
        assert dump.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format

        admin = service_file(srv, tmp_path, "restored", "admin.conf")
        restore = RESTORE_COMMAND.format(dbname="restored", dump=dump).split()
        subprocess.run(restore, check=True, capture_output=True, env=srv.client_env(admin), timeout=300)

        before = table_counts(srv, service, "airflow")
        after = table_counts(srv, admin, "restored")
        assert len(before) > 30  # Airflow's schema, created by `airflow db migrate`
        assert after == before
        assert before["variable"] == 7 and before["slot_pool"] >= 3 and before["connection"] == 1
        version = "SELECT version_num FROM alembic_version"
        assert srv.sql(admin, "restored", version) == srv.sql(service, "airflow", version)

    def test_the_backup_keeps_only_the_newest_dumps(self, server, tmp_path):
        srv, _ = server
        service = service_file(srv, tmp_path, "airflow")
        backups = folder(tmp_path, "backups")
        old = backups / "airflow-metadata-20000101T000000Z.dump"
        old.write_bytes(b"old")
        for _ in range(3):
            run_backup(srv, service, backups, keep=2)
            time.sleep(1.1)  # one dump per second at most (the name carries the time)
        dumps = sorted(p.name for p in backups.glob("airflow-metadata-*.dump"))
        assert len(dumps) == 2
        assert old.name not in dumps
        assert not list(backups.glob("*.partial"))

    def test_a_bucket_target_uploads_through_airflows_object_storage_and_keeps_the_newest(self, server, tmp_path):
        srv, _ = server
        service = service_file(srv, tmp_path, "airflow")
        staging = folder(tmp_path, "staging")
        bucket = tmp_path / "bucket" / "airflow-metadata-backups"
        bucket.mkdir(parents=True)
        (bucket / "airflow-metadata-20000101T000000Z.dump").write_bytes(b"old")
        for _ in range(2):
            out = run_backup(srv, service, staging, keep=2, bucket=f"file://{bucket}")
            time.sleep(1.1)
        assert "uploaded" in out
        dumps = sorted(bucket.glob("airflow-metadata-*.dump"))
        assert len(dumps) == 2 and all(d.read_bytes()[:5] == b"PGDMP" for d in dumps)
        assert not list(staging.glob("airflow-metadata-*"))  # nothing left in the pod's emptyDir

    def test_a_wrong_password_fails_the_backup_and_leaves_no_dump(self, server, tmp_path):
        srv, _ = server
        service = tmp_path / "pg_service.conf"
        target = srv.target("airflow")
        service.write_text(
            pg_service_file(DatabaseUrl(target.user, "wrong", target.host, target.port, "airflow", "disable"))
        )
        backups = tmp_path / "backups"
        backups.mkdir()
        with pytest.raises(subprocess.CalledProcessError) as err:
            run_backup(srv, service, backups, keep=2)
        assert "password authentication failed" in err.value.stderr
        assert not list(backups.glob("airflow-metadata-*.dump"))

    def test_the_cleanup_command_runs_against_the_migrated_schema(self, server, tmp_path):
        srv, _ = server
        home = tmp_path / "home"
        home.mkdir()
        env = airflow_env(home, srv.target("airflow"))
        for dry_run in (True, False):
            out = subprocess.run(
                ["bash", "-c", cleanup_command(30, dry_run)], capture_output=True, text=True, env=env, timeout=300
            )
            assert out.returncode == 0, out.stderr[-2000:]
        service = service_file(srv, tmp_path, "airflow")
        assert int(srv.sql(service, "airflow", "SELECT count(*) FROM variable")) == 7  # not old task data
