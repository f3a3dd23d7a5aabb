"""Airflow 3's async database engine gets a URL of its own, rendered for every kind of database.

Airflow's async engine (asyncpg) takes `[database] sql_alchemy_conn_async`; left unset, Airflow
derives it from the sync URL and keeps `sslmode`, which asyncpg refuses (TypeError on every async
API path, seen on a real node). tests/test_metadata_async.py runs these URLs against a real server.
"""

from __future__ import annotations

import pytest

from components.offline.program import unwrap
from tests.helpers import DB_URL, release, render_release, run_stack, secret_file_sources, secrets_by_name, values

GIT_HTTPS = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}

SSLMODES = ("disable", "allow", "prefer", "require")  # verify-*: refused (no CA can be given yet)


def metadata_data(run) -> dict[str, str]:
    by_name = secrets_by_name(run)
    # The metadata Secret keeps only the sync URL: a stack deployed before the async one keeps it unchanged.
    assert set(unwrap(by_name["airflow-pulumi-metadata"].inputs)["stringData"]) == {"connection"}
    return {
        **unwrap(by_name["airflow-pulumi-metadata"].inputs)["stringData"],
        **unwrap(by_name["airflow-pulumi-metadata-async"].inputs)["stringData"],
    }


class TestAsyncDatabaseUrl:
    """Airflow 3's async engine gets a URL of its own (`[database] sql_alchemy_conn_async`): the one
    Airflow derives from the sync URL keeps `sslmode`, which asyncpg refuses (TypeError on every
    async API path); asyncpg's name for it is `ssl`, with libpq's modes."""

    @pytest.mark.parametrize("mode", SSLMODES)
    def test_every_sslmode_of_an_external_url_becomes_asyncpgs_ssl(self, mode):
        run = run_stack(
            {"database": {"mode": "external", "pgbouncer": {"enabled": False}}, "dags": GIT_HTTPS},
            secrets={"databaseUrl": DB_URL.replace("sslmode=require", f"sslmode={mode}")},
        )
        data = metadata_data(run)
        assert data["connection"] == f"postgresql://airflow:s3cr%40t-db@db.internal:5432/airflow?sslmode={mode}"
        assert (
            data["async-connection"] == f"postgresql+asyncpg://airflow:s3cr%40t-db@db.internal:5432/airflow?ssl={mode}"
        )

    def test_a_url_without_sslmode_gets_libpqs_default_prefer_in_both(self):
        url = DB_URL.split("?", 1)[0]
        run = run_stack(
            {"database": {"mode": "external", "pgbouncer": {"enabled": False}}, "dags": GIT_HTTPS},
            secrets={"databaseUrl": url},
        )
        data = metadata_data(run)
        assert data["connection"].endswith("/airflow?sslmode=prefer")
        assert data["async-connection"].endswith("/airflow?ssl=prefer")

    def test_the_bundled_postgres_is_reached_without_tls_by_both_engines(self):
        data = metadata_data(run_stack({"dags": GIT_HTTPS}))
        password = data["connection"].split(":", 2)[2].split("@", 1)[0]
        assert data["async-connection"] == (
            f"postgresql+asyncpg://postgres:{password}@airflow-postgresql.airflow:5432/postgres?ssl=disable"
        )

    def test_through_pgbouncer_the_async_engine_uses_the_same_pool_and_pgbouncer_keeps_its_statements(self):
        run = run_stack({"database": {"mode": "external"}, "dags": GIT_HTTPS}, secrets={"databaseUrl": DB_URL})
        data = metadata_data(run)
        assert data["async-connection"] == (
            "postgresql+asyncpg://airflow:s3cr%40t-db@airflow-pgbouncer.airflow:6543/airflow-metadata?ssl=disable"
        )
        # asyncpg prepares named statements: PgBouncer 1.23 tracks them only when told to.
        ini = unwrap(secrets_by_name(run)["airflow-pulumi-pgbouncer-config"].inputs)["stringData"]["pgbouncer.ini"]
        assert "max_prepared_statements = 100" in ini and "pool_mode = transaction" in ini

    @pytest.mark.parametrize("mode", SSLMODES)
    def test_no_async_url_carries_a_libpq_only_parameter(self, mode):
        run = run_stack(
            {"database": {"mode": "external"}, "dags": GIT_HTTPS},
            secrets={"databaseUrl": DB_URL.replace("sslmode=require", f"sslmode={mode}")},
        )
        query = metadata_data(run)["async-connection"].split("?", 1)[1]
        assert [p.split("=")[0] for p in query.split("&")] == ["ssl"]

    def test_the_scheduler_reads_the_async_url_from_a_file_of_the_metadata_secret_never_from_its_env(self):
        run = run_stack({"dags": GIT_HTTPS})
        objects = render_release(release(run))
        scheduler = next(
            o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "airflow-scheduler"
        )
        pod = scheduler["spec"]["template"]["spec"]
        container = next(c for c in pod["containers"] if c["name"] == "scheduler")
        env = {e["name"]: e for e in container["env"]}
        path = "/opt/airflow/secrets/sql-alchemy-conn-async"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC_CMD"] == {
            "name": "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC_CMD",
            "value": f"cat {path}",
        }
        assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC" not in env
        assert secret_file_sources(pod, container)[path] == ("airflow-pulumi-metadata-async", "async-connection")

    def test_airflow_2_gets_no_async_url_option(self):
        run = run_stack({"version": "2.11.0", "dags": GIT_HTTPS})
        assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC_CMD" not in {e["name"] for e in values(run)["env"]}
