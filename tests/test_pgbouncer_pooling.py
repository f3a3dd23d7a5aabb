"""PgBouncer's transaction pooling, as the stack configures it, with the drivers the Airflow image
really uses: a real PostgreSQL (TLS only, e2e.node.external_db), the node's PgBouncer image with the
pgbouncer.ini the component writes, and the node scenario's driver probe (e2e.node.scenario_prod)
run in the node's Airflow image: psycopg2 for the sync engine, asyncpg for the async one, four
clients at once so that a client's next transaction lands on another server connection.

With `max_prepared_statements = 0` (PgBouncer's default before 1.24) asyncpg's named statements
(`__asyncpg_stmt_N__`) meet server connections that lack them: the control case shows the check
catches that. Root only (the images run in namespaces), and only where the three images are
cached (`python -m e2e.node.images build`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.airflow.config.airflow import StackSecrets, parse_airflow, parse_database_url
from components.airflow.values.chart import PGBOUNCER_PORT, pgbouncer_ini, pgbouncer_users
from e2e.node import images
from e2e.node.external_db import ExternalPostgres, prepared_statement_errors
from e2e.node.host import free_port
from e2e.node.image_check import POSTGRES_REF, TMPFS, Container, Image, stop_container, unpack
from e2e.node.scenario_prod import DRIVER_PROBE

PGBOUNCER_REF = "apache/airflow:airflow-pgbouncer-2026.04.17-1.23.1"
AIRFLOW_REF = "apache/airflow:3.2.0"
REFS = (POSTGRES_REF, PGBOUNCER_REF, AIRFLOW_REF)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the images run in namespaces: root only"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl"),
    pytest.mark.skipif(
        os.geteuid() == 0 and None in images.cached(REFS).values(),
        reason="the PostgreSQL, PgBouncer and Airflow images are not all cached",
    ),
]


def local_ini(ini: str, listen_port: int) -> str:
    """The component's pgbouncer.ini with the addresses of this machine (the server on 127.0.0.1)."""
    ini = ini.replace(f"listen_port = {PGBOUNCER_PORT}", f"listen_port = {listen_port}")
    return ini.replace("listen_addr = *", "listen_addr = 127.0.0.1")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ExternalPostgres, dict[str, Image]]]:
    base = tmp_path_factory.mktemp("pooling")
    archives = {ref: path for ref, path in images.cached(REFS).items() if path is not None}
    db = ExternalPostgres(base / "db", archives[POSTGRES_REF], "127.0.0.1", free_port())
    unpacked = {ref: unpack(archives[ref], base / ref.rsplit(":", 1)[-1]) for ref in (PGBOUNCER_REF, AIRFLOW_REF)}
    db.start()
    try:
        created = db.psql("CREATE TABLE dag (dag_id text)", "require")
        assert created.returncode == 0, created.stderr
        yield base, db, unpacked
    finally:
        db.stop()


def probe_through_pgbouncer(
    setup: tuple[Path, ExternalPostgres, dict[str, Image]], name: str, prepared: int | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The driver probe through a PgBouncer with the component's pgbouncer.ini (`prepared`: another
    max_prepared_statements): its result, and the prepared-statement errors the server logged meanwhile."""
    base, db, unpacked = setup
    dags = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
    raw = {"executor": "CeleryExecutor", "database": {"mode": "external"}, "dags": dags}
    cfg = parse_airflow(raw, StackSecrets(database_url=db.url("require")))
    target = parse_database_url(db.url("require"))
    port = free_port()
    ini = local_ini(pgbouncer_ini(cfg, target), port)
    if prepared is not None:
        ini, count = re.subn(
            r"^max_prepared_statements = \d+$", f"max_prepared_statements = {prepared}", ini, flags=re.M
        )
        assert count == 1
    conf = base / name
    conf.mkdir()
    (conf / "pgbouncer.ini").write_text(ini)
    (conf / "users.txt").write_text(pgbouncer_users(target))
    conf.chmod(0o755)
    bouncer = Container(unpacked[PGBOUNCER_REF], mounts={"/etc/pgbouncer": (conf, True)}, user="65534:65534")
    before = len(db.log.read_text(errors="replace").splitlines())
    with (conf / "pgbouncer.log").open("wb") as log:
        proc = subprocess.Popen(bouncer.argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(2)
        password = urllib.parse.quote(db.password, safe="")
        database = f"{cfg.release_name}-metadata"
        env = {
            "SYNC": f"postgresql://{target.user}:{password}@127.0.0.1:{port}/{database}?sslmode=disable",
            "ASYNC": f"postgresql+asyncpg://{target.user}:{password}@127.0.0.1:{port}/{database}?ssl=disable",
        }
        command = ["python", "-c", DRIVER_PROBE]
        tmp = {"/tmp": (TMPFS, False)}
        probe = Container(unpacked[AIRFLOW_REF], command=command, args=[], env=env, user="50000:0", mounts=tmp)
        done = subprocess.run(probe.argv(), capture_output=True, text=True, timeout=300, check=False)
    finally:
        stop_container(proc)
    logged = "\n".join(db.log.read_text(errors="replace").splitlines()[before:])
    return done, prepared_statement_errors(logged)


class TestTransactionPooling:
    def test_psycopg2_and_asyncpg_run_their_transactions_with_the_components_settings(self, setup):
        done, errors = probe_through_pgbouncer(setup, "as-configured")
        assert done.returncode == 0, done.stderr[-2000:]
        assert "driver sync postgresql+psycopg2" in done.stdout
        assert "driver async postgresql+asyncpg" in done.stdout
        assert "transactions sync 160 ok" in done.stdout and "transactions async 160 ok" in done.stdout
        assert errors == []

    def test_with_prepared_statements_off_asyncpg_loses_them_and_the_check_sees_it(self, setup):
        """0: PgBouncer before 1.24 by default (the chart's own image is 1.23.1); 1.24 defaults to 200."""
        done, errors = probe_through_pgbouncer(setup, "prepared-statements-off", prepared=0)
        assert done.returncode != 0
        assert "transactions sync 160 ok" in done.stdout  # psycopg2 prepares nothing
        assert "__asyncpg_stmt_" in done.stderr
        assert errors and all("__asyncpg_stmt_" in line for line in errors)
