"""An external database checked against its CA (`airflow.database.caCertificate`, `sslmode=verify-full`):
whatever reaches the server itself has the CA and is told where it is. With PgBouncer that is PgBouncer
(`server_tls_ca_file`) and the backup Job (`sslrootcert` in its service file); without it, every
container of the Airflow image (PGSSLROOTCERT, read by libpq and by asyncpg alike)."""

from __future__ import annotations

from typing import Any

import pytest

from components.offline.program import unwrap
from tests.helpers import of_type, release, render_release, run_stack, secret_file_sources, secrets_by_name
from tests.test_config import TEST_CA

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
VERIFY_FULL = "postgresql://airflow:s3cr%40t-db@db.internal:5432/airflow?sslmode=verify-full"
CA_FILE = "/opt/airflow/secrets/database-ca.crt"
MAINTENANCE = {"backup": {"schedule": "5 1 * * *", "keep": 2, "size": "1Gi"}}


def stack(pgbouncer: bool) -> Any:
    airflow = {
        "executor": "CeleryExecutor",
        "dags": GIT,
        "database": {"mode": "external", "caCertificate": TEST_CA, "pgbouncer": {"enabled": pgbouncer}},
    }
    return run_stack(airflow, secrets={"databaseUrl": VERIFY_FULL}, extra={"maintenance": MAINTENANCE})


@pytest.fixture(scope="module")
def with_pgbouncer() -> Any:
    return stack(True)


@pytest.fixture(scope="module")
def direct() -> Any:
    return stack(False)


def pods(run: Any) -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload the chart renders and of the Jobs and CronJobs beside it."""
    out = []
    for obj in render_release(release(run)):
        template = (obj.get("spec") or {}).get("template")
        if obj["kind"] in ("Deployment", "StatefulSet", "Job") and template:
            out.append((obj["metadata"]["name"], template["spec"]))
    for res in of_type(run, "batch/v1:Job"):
        job = unwrap(res.inputs)
        out.append((job["metadata"]["name"], job["spec"]["template"]["spec"]))
    for res in of_type(run, "batch/v1:CronJob"):
        cron = unwrap(res.inputs)
        out.append((cron["metadata"]["name"], cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return out


def airflow_containers(run: Any) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(pod, pod spec, container) for every container told to read the metadata database's URL."""
    return [
        (name, spec, c)
        for name, spec in pods(run)
        for c in spec.get("initContainers", []) + spec["containers"]
        if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD" in env_of(c)
    ]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


class TestTheCaSecret:
    def test_the_ca_is_a_secret_of_the_release_under_its_own_name(self, with_pgbouncer):
        secret = secrets_by_name(with_pgbouncer)["airflow-pulumi-database-ca"]
        assert unwrap(secret.inputs["stringData"]) == {"ca.crt": TEST_CA}

    def test_airflows_urls_keep_verify_full(self, direct):
        data = {k: unwrap(v) for k, v in unwrap(secrets_by_name(direct)["airflow-pulumi-metadata"].inputs).items()}
        assert data["stringData"]["connection"].endswith("@db.internal:5432/airflow?sslmode=verify-full")
        async_data = unwrap(secrets_by_name(direct)["airflow-pulumi-metadata-async"].inputs["stringData"])
        assert next(iter(async_data.values())).endswith("@db.internal:5432/airflow?ssl=verify-full")


class TestTheOfflinePreview:
    def test_a_stand_in_database_url_verifies_where_a_ca_is_set(self):
        from components.offline.program import placeholder_for

        with_ca = {"airflow": {"database": {"mode": "external", "caCertificate": TEST_CA}}}
        assert placeholder_for("databaseUrl", with_ca).endswith("?sslmode=verify-full")
        assert placeholder_for("databaseUrl", {"airflow": {"database": {"mode": "external"}}}).endswith(
            "?sslmode=require"
        )


class TestWithPgBouncer:
    def test_pgbouncer_checks_the_server_against_the_mounted_ca(self, with_pgbouncer):
        ini = unwrap(secrets_by_name(with_pgbouncer)["airflow-pulumi-pgbouncer-config"].inputs["stringData"])
        assert "server_tls_sslmode = verify-full\n" in ini["pgbouncer.ini"]
        assert "server_tls_ca_file = /etc/pgbouncer/database-ca.crt\n" in ini["pgbouncer.ini"]
        (spec,) = [s for n, s in pods(with_pgbouncer) if n == "airflow-pgbouncer"]
        pgbouncer = next(c for c in spec["containers"] if c["name"] == "pgbouncer")
        (mount,) = [m for m in pgbouncer["volumeMounts"] if m["mountPath"] == "/etc/pgbouncer/database-ca.crt"]
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == "airflow-pulumi-database-ca"
        assert mount["subPath"] == "ca.crt"

    def test_airflow_reaches_pgbouncer_and_gets_no_ca(self, with_pgbouncer):
        containers = airflow_containers(with_pgbouncer)
        assert len(containers) > 5
        for name, spec, container in containers:
            assert "PGSSLROOTCERT" not in env_of(container), name
            assert CA_FILE not in secret_file_sources(spec, container), name


class TestWithoutPgBouncer:
    def test_every_airflow_container_has_the_ca_file_and_pgsslrootcert_naming_it(self, direct):
        containers = airflow_containers(direct)
        names = {name for name, _, _ in containers}
        assert {"airflow-scheduler", "airflow-api-server", "airflow-worker", "airflow-triggerer"} <= names
        assert any(n.startswith("airflow-migrate-") for n in names)
        for name, spec, container in containers:
            assert env_of(container).get("PGSSLROOTCERT") == CA_FILE, (name, container["name"])
            assert secret_file_sources(spec, container).get(CA_FILE) == ("airflow-pulumi-database-ca", "ca.crt"), (
                name,
                container["name"],
            )


class TestTheBackup:
    @pytest.mark.parametrize("pgbouncer", [True, False])
    def test_the_backup_checks_the_server_against_the_ca(self, pgbouncer, with_pgbouncer, direct):
        run = with_pgbouncer if pgbouncer else direct
        text = unwrap(secrets_by_name(run)["airflow-pulumi-backup"].inputs["stringData"])["pg_service.conf"]
        assert "sslmode=verify-full\n" in text
        rootcert = text.split("sslrootcert=", 1)[1].splitlines()[0]
        (spec,) = [s for n, s in pods(run) if n == "airflow-metadata-backup"]
        (volume,) = [v for v in spec["volumes"] if v["name"] == "backup-secrets"]
        (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "backup-secrets"]
        files = {
            f"{mount['mountPath']}/{item['path']}": (source["secret"]["name"], item["key"])
            for source in volume["projected"]["sources"]
            for item in source["secret"]["items"]
        }
        assert files[rootcert] == ("airflow-pulumi-database-ca", "ca.crt")


# Both drivers of the image, as the pods run them: the rendered URLs (sslmode=verify-full for
# psycopg2, ssl=verify-full for asyncpg) and PGSSLROOTCERT naming the CA file.
DRIVERS = """
import asyncio, json, sys
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

def sync(url):
    try:
        with sa.create_engine(url).connect() as c:
            return str(c.execute(sa.text("select current_user")).scalar())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

async def asyn(url):
    engine = create_async_engine(url)
    try:
        async with engine.connect() as c:
            return str((await c.execute(sa.text("select current_user"))).scalar())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()

print(json.dumps({"sync": sync(sys.argv[1]), "async": asyncio.run(asyn(sys.argv[2]))}))
"""


@pytest.fixture(scope="module")
def tls_server() -> Any:
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from e2e.node.tls import certificate
    from tests.test_metadata_backup import AIRFLOW, Server

    if not AIRFLOW.exists():
        pytest.fail("no .venv-dags: run ./run.sh test (it creates the virtualenv with Airflow)")
    root = Path(tempfile.mkdtemp(prefix="airflow-k8s-pg-tls-"))
    os.chmod(root, 0o755)  # the server runs as `postgres` when the tests run as root
    cert, key, ca = certificate(root / "tls", "127.0.0.1", "database")
    other = certificate(root / "other", "127.0.0.1", "other")[2]  # a CA the server's certificate is not from
    if os.geteuid() == 0:
        for path in (root / "tls", cert, key):
            shutil.chown(path, "postgres")
    key.chmod(0o600)
    (root / "ca.crt").write_text(ca)
    (root / "other.crt").write_text(other)
    srv = Server(root / "server", f"-c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}")
    srv.start()
    try:
        yield srv, root
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def drivers(root: Any, port: int, ca: str | None) -> dict[str, str]:
    import json
    import os
    import subprocess

    from components.airflow.config.airflow import DatabaseUrl
    from tests.test_metadata_backup import AIRFLOW, PASSWORD

    url = DatabaseUrl("airflow", PASSWORD, "127.0.0.1", port, "postgres", "verify-full")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["HOME"] = str(root)  # no ~/.postgresql/root.crt to fall back on
    if ca is not None:
        env["PGSSLROOTCERT"] = str(root / ca)
    python = AIRFLOW.parent / "python"
    done = subprocess.run(
        [str(python), "-c", DRIVERS, url.sqlalchemy(), url.asyncpg()],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=True,
    )
    result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class TestTheDriversVerifyTheServer:
    """A real PostgreSQL server with TLS, its certificate from a CA of its own."""

    def test_psycopg2_and_asyncpg_connect_with_verify_full_and_pgsslrootcert(self, tls_server):
        srv, root = tls_server
        assert drivers(root, srv.port, "ca.crt") == {"sync": "airflow", "async": "airflow"}

    def test_without_the_ca_both_refuse_to_connect(self, tls_server):
        srv, root = tls_server
        result = drivers(root, srv.port, None)
        assert "root certificate file" in result["sync"], result
        assert result["async"] != "airflow", result

    def test_a_server_certificate_from_another_ca_is_refused_by_both(self, tls_server):
        srv, root = tls_server
        result = drivers(root, srv.port, "other.crt")
        assert "certificate verify failed" in result["sync"], result
        assert (
            "certificate verify failed" in result["async"].lower() or "CERTIFICATE_VERIFY_FAILED" in result["async"]
        ), result
