#!/usr/bin/env bash
# images/airflow/prove-constraints.sh [AIRFLOW_VERSION]   (default 3.2.0)
#
# Proves a constraints file of this folder the way its header says: installs apache-airflow
# AIRFLOW_VERSION with the providers the image carries into a scratch virtualenv (uv, from PyPI),
# under constraints-<major.minor>.txt (or constraints-<version>.txt when there is one), starts a
# throw-away PostgreSQL on 127.0.0.1 (Debian's server binaries, or AIRFLOW_K8S_PG_BIN) and checks:
# the imports the stacks rely on, `airflow db migrate`, the sync driver (psycopg2), a query through
# the async engine with the URL form AirflowRelease renders (postgresql+asyncpg, ssl=),
# `airflow users create`, and `airflow api-server` answering /api/v2/monitor/health and
# /api/v2/dags with a token, with no traceback in its log. Prints one line per check; exit 0 when
# all pass. Everything it makes (virtualenv, database, processes) is removed at the end.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=${1:-3.2.0}
constraints="$here/constraints-$version.txt"
[ -f "$constraints" ] || constraints="$here/constraints-${version%.*}.txt"
[ -f "$constraints" ] || { echo "no constraints file for apache-airflow $version in $here" >&2; exit 2; }
uv=$(command -v uv || true)
[ -n "$uv" ] || uv="$here/../../.venv-uv/bin/uv"
[ -x "$uv" ] || { echo "uv not found (./run.sh installs it into .venv-uv)" >&2; exit 2; }
pg_bin=${AIRFLOW_K8S_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$pg_bin/postgres" ] || { echo "no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 2; }

work=$(mktemp -d)
chmod 755 "$work"
api=""
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  [ -n "$api" ] && kill "$api" 2>/dev/null && wait "$api" 2>/dev/null
  [ -d "$work/data" ] && as_pg "$pg_bin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "apache-airflow $version under $(basename "$constraints")"
"$uv" venv -q --python "${PYTHON:-python3}" "$work/venv"
"$uv" pip install -q --python "$work/venv/bin/python" "apache-airflow==$version" \
  apache-airflow-providers-cncf-kubernetes apache-airflow-providers-celery apache-airflow-providers-postgres \
  apache-airflow-providers-redis apache-airflow-providers-standard apache-airflow-providers-common-sql \
  apache-airflow-providers-fab apache-airflow-providers-git psycopg2-binary asyncpg statsd -c "$constraints" || exit 1

pg_port=$(free_port)
[ "$(id -u)" = 0 ] && chown postgres "$work"
as_pg "$pg_bin/initdb" -D "$work/data" -U airflow --auth=trust -E UTF8 --no-instructions >/dev/null || exit 1
as_pg "$pg_bin/pg_ctl" -D "$work/data" -l "$work/pg.log" -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1" \
  -w start >/dev/null || exit 1
as_pg "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U airflow airflow || exit 1

export AIRFLOW_HOME="$work/home"
mkdir -p "$AIRFLOW_HOME"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql://airflow:x@127.0.0.1:$pg_port/airflow?sslmode=disable"
echo "postgresql+asyncpg://airflow:x@127.0.0.1:$pg_port/airflow?ssl=disable" > "$work/async-conn"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC_CMD="cat $work/async-conn"
export AIRFLOW__CORE__AUTH_MANAGER=airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager
export AIRFLOW__CORE__EXECUTOR=CeleryExecutor,KubernetesExecutor
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__API_AUTH__JWT_SECRET=prove-constraints-jwt-secret-0123456789
export AIRFLOW__CELERY__BROKER_URL=redis://127.0.0.1:1/0
airflow=("$work/venv/bin/python" -m airflow)
python="$work/venv/bin/python"
failed=0
check() {
  local what=$1 started=$SECONDS
  shift
  if "$@" >"$work/out" 2>&1; then
    echo "ok   $what ($((SECONDS - started)) s)"
  else
    echo "FAIL $what"
    tail -15 "$work/out"
    failed=1
  fi
}

check "imports: CeleryExecutor, KubernetesExecutor, FabAuthManager, GitDagBundle, Postgres/Redis hooks, statsd" \
  "$python" -c '
from airflow.providers.celery.executors.celery_executor import CeleryExecutor
from airflow.providers.cncf.kubernetes.executors.kubernetes_executor import KubernetesExecutor
from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager
from airflow.providers.git.bundles.git import GitDagBundle
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.providers.redis.hooks.redis import RedisHook
import statsd'
check "airflow db migrate" "${airflow[@]}" db migrate
check "the sync engine's driver is psycopg2" "$python" -c '
from airflow import settings
settings.configure_orm()
assert settings.engine.dialect.driver == "psycopg2", settings.engine.dialect.driver'
check "the async engine (postgresql+asyncpg, ssl=disable) runs a query" "$python" -c '
import asyncio
from sqlalchemy import text
from airflow import settings
settings.configure_orm()
async def main():
    async with settings.AsyncSession() as session:
        await session.execute(text("select count(*) from dag_run"))
asyncio.run(main())'
check "airflow users create" "${airflow[@]}" users create -r Admin -u admin -e admin@example.com -f a -l b -p pw

api_port=$(free_port)
"${airflow[@]}" api-server --port "$api_port" >"$work/api.log" 2>&1 &
api=$!
up=0
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$api_port/api/v2/monitor/health" >"$work/health" 2>/dev/null && up=1 && break
  kill -0 "$api" 2>/dev/null || break
  sleep 1
done
if [ "$up" = 1 ]; then
  echo "ok   airflow api-server: /api/v2/monitor/health $(cut -c1-60 "$work/health")..."
  token=$(curl -fsS -X POST -H 'Content-Type: application/json' -d '{"username": "admin", "password": "pw"}' \
    "http://127.0.0.1:$api_port/auth/token" | "$python" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$api_port/api/v2/dags")
  if [ "$code" = 200 ]; then echo "ok   GET /api/v2/dags with a token: 200"; else echo "FAIL GET /api/v2/dags: $code"; failed=1; fi
  if grep -q Traceback "$work/api.log"; then
    echo "FAIL the api-server log has a traceback"
    grep -A20 Traceback "$work/api.log" | head -40
    failed=1
  fi
else
  echo "FAIL airflow api-server did not answer"
  grep -v '^ *\^' "$work/api.log" | tail -25
  failed=1
fi
[ "$failed" = 0 ] && echo "result: PASS" || echo "result: FAIL"
exit "$failed"
