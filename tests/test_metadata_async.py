"""Airflow's async database engine against a real PostgreSQL server, with the URL AirflowRelease renders.

Airflow 3 runs part of its API on an async engine (SQLAlchemy's asyncpg dialect). Left to itself it
derives that engine's URL from the sync one by swapping the driver, keeping `sslmode`, which asyncpg
refuses: `TypeError: connect() got an unexpected keyword argument 'sslmode'` on every async path.
The release hands Airflow its own async URL (`config.asyncpg_url`). Here a PostgreSQL server
(Debian's package; `./run.sh test` installs it, without TLS) is asked through Airflow's virtualenv
(`.venv-dags`): for every sslmode, does the rendered URL connect, or fail for TLS only; does the
derived URL fail as it did on the real node; and does Airflow itself, given the files as the pods
get them, run a query on its async engine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.airflow.config.airflow import DatabaseUrl
from tests.test_metadata_backup import AIRFLOW, PASSWORD, Server

PYTHON = AIRFLOW.parent / "python"
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# A mode that may go without TLS connects to a server without it; the others refuse, for TLS (as
# libpq would: verify-* want a root certificate, by default ~/.postgresql/root.crt).
PLAIN_OK = {"disable", "allow", "prefer"}
TLS_REFUSAL = {"require": "rejected SSL upgrade", "verify-ca": "root certificate", "verify-full": "root certificate"}

CONNECT = """
import asyncio, json, sys
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

async def one(url):
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return str((await conn.execute(text("select current_user"))).scalar())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()

urls = json.loads(sys.argv[1])
print(json.dumps({name: asyncio.run(one(url)) for name, url in urls.items()}))
"""

AIRFLOW_ASYNC = """
import asyncio, json
from sqlalchemy import text
from airflow import settings
settings.configure_orm()

async def main():
    async with settings.AsyncSession() as session:
        return (await session.execute(text("select current_user"))).scalar()

print(json.dumps({"sync": settings.engine.dialect.driver, "async": asyncio.run(main())}))
"""


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    if not AIRFLOW.exists():
        pytest.fail("no .venv-dags: run ./run.sh test (it creates the virtualenv with Airflow)")
    root = Path(tempfile.mkdtemp(prefix="airflow-k8s-pg-async-"))
    os.chmod(root, 0o755)  # the server runs as `postgres` when the tests run as root
    srv = Server(root / "server")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def target(srv: Server, sslmode: str) -> DatabaseUrl:
    return DatabaseUrl("airflow", PASSWORD, "127.0.0.1", srv.port, "postgres", sslmode)


def last_json(stdout: str) -> dict[str, str]:
    """The JSON line a script printed (Airflow may log to stdout after it)."""
    result: dict[str, str] = json.loads(next(line for line in reversed(stdout.splitlines()) if line.startswith("{")))
    return result


def connect(urls: dict[str, str]) -> dict[str, str]:
    done = subprocess.run(
        [str(PYTHON), "-c", CONNECT, json.dumps(urls)], capture_output=True, text=True, timeout=300, check=True
    )
    return last_json(done.stdout)


class TestTheRenderedAsyncUrl:
    def test_every_sslmode_connects_or_fails_for_tls_never_for_the_url(self, server):
        results = connect({mode: target(server, mode).asyncpg() for mode in SSLMODES})
        for mode, result in results.items():
            if mode in PLAIN_OK:
                assert result == "airflow", f"ssl={mode}: {result}"
            else:
                assert TLS_REFUSAL[mode] in result and not result.startswith("TypeError"), f"ssl={mode}: {result}"

    def test_the_url_airflow_would_derive_is_refused_as_on_the_real_node(self, server):
        derive = (
            "import json, sys; from airflow.settings import _get_async_conn_uri_from_sync as d; "
            "print(json.dumps(d(sys.argv[1])))"
        )
        sync = target(server, "disable").sqlalchemy()
        done = subprocess.run(
            [str(PYTHON), "-c", derive, sync], capture_output=True, text=True, timeout=300, check=True
        )
        derived = json.loads(done.stdout.strip().splitlines()[-1])
        assert "sslmode=disable" in derived
        result = connect({"derived": derived})["derived"]
        assert result.startswith("TypeError") and "sslmode" in result


class TestAirflowItself:
    def test_airflow_runs_a_query_on_its_async_engine_with_the_urls_read_from_files(self, server, tmp_path):
        (tmp_path / "sql-alchemy-conn").write_text(target(server, "disable").sqlalchemy())
        (tmp_path / "sql-alchemy-conn-async").write_text(target(server, "disable").asyncpg())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        env.update(
            {
                "AIRFLOW_HOME": str(tmp_path / "home"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": f"cat {tmp_path / 'sql-alchemy-conn'}",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC_CMD": f"cat {tmp_path / 'sql-alchemy-conn-async'}",
            }
        )
        done = subprocess.run([str(PYTHON), "-c", AIRFLOW_ASYNC], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert last_json(done.stdout) == {"sync": "psycopg2", "async": "airflow"}
