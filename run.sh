#!/usr/bin/env bash
# One entry point that sets itself up and runs a job:
#   ./run.sh preview [stack] [options]   offline preview of a stack (default: dev; --help for options)
#   ./run.sh test              lint, types and the whole test suite
#   ./run.sh bench             benchmarks (prints numbers)
#   ./run.sh e2e [options]     end to end against a local API server (python -m e2e --help)
#   ./run.sh dags-check [FOLDER] [--stack NAME]
#                              will the DAGs run on the Airflow this stack deploys? (default: dags/, dev)
# Virtualenvs: .venv (project and test tools), .venv-checkov (the checkov scanner) and,
# for `test`, .venv-dags (Airflow, for the DAG tests); the last two have pins that clash
# with pulumi's. They are created on first use and reused after.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}

# uv creates the virtualenvs (much faster than pip on a fresh machine). It is taken from PATH,
# or installed once into .venv-uv with pip.
UV_VERSION=0.13.9
uv_bin() {
  if command -v uv >/dev/null 2>&1; then command -v uv; return; fi
  if [ ! -x .venv-uv/bin/uv ]; then
    echo "setting up .venv-uv (uv $UV_VERSION, the virtualenv installer)" >&2
    "$PYTHON" -m venv .venv-uv
    .venv-uv/bin/pip install --quiet --disable-pip-version-check "uv==$UV_VERSION" >&2
  fi
  echo "$PWD/.venv-uv/bin/uv"
}

# venv DIR WHAT REQUIREMENTS [STAMPED...]: (re)create DIR from REQUIREMENTS when the files
# in STAMPED (default: REQUIREMENTS) changed since it was last set up.
venv() {
  local dir=$1 what=$2 requirements=$3 stamp uv
  shift 3
  stamp=$(cat "${@:-$requirements}" | sha256sum | cut -c1-16)
  if [ ! -f "$dir/.stamp" ] || [ "$(cat "$dir/.stamp")" != "$stamp" ]; then
    local started=$SECONDS
    echo "setting up $dir ($what), once: uv prints what it resolves, downloads and installs" >&2
    uv=$(uv_bin)
    "$uv" venv --quiet --clear --seed --python "$PYTHON" "$dir" >&2
    "$uv" pip install --python "$dir/bin/python" -r "$requirements" >&2
    echo "$stamp" > "$dir/.stamp"
    echo "set up $dir in $((SECONDS - started)) s" >&2
  fi
}

# The metadata backup/restore test starts a real PostgreSQL server: Debian's `postgresql`
# package, installed here when no server binaries are present.
postgres_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
ensure_postgres() {
  if [ -z "$(postgres_bin)" ]; then
    echo "installing PostgreSQL (Debian's postgresql package) for the metadata backup test" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >&2
  fi
  AIRFLOW_K8S_PG_BIN="$(postgres_bin)"
  export AIRFLOW_K8S_PG_BIN
}

setup() {
  venv .venv "project and test dependencies" requirements-test.txt requirements.txt requirements-test.txt
  venv .venv-checkov "checkov scanner" requirements-checkov.txt
  export AIRFLOW_K8S_CHECKOV="$PWD/.venv-checkov/bin/checkov"
  if [ "${1:-}" = dags ]; then
    venv .venv-dags "Airflow with the cncf.kubernetes and Celery providers, for the DAG tests" requirements-dags.txt
  fi
}

job=${1:-preview}
shift || true
case "$job" in
  preview)
    # ./run.sh preview [STACK] [options]; --help lists the options. No checkov virtualenv
    # is needed for --help or --no-checkov.
    if [[ " $* " == *" --no-checkov "* || " $* " == *" --help "* || " $* " == *" -h "* ]]; then
      venv .venv "project and test dependencies" requirements-test.txt requirements.txt requirements-test.txt
    else
      setup
    fi
    exec .venv/bin/python -m components.offline "$@"
    ;;
  test)
    setup dags
    ensure_postgres
    .venv/bin/ruff check .
    .venv/bin/mypy
    .venv/bin/python -m pytest "$@"
    exec .venv-dags/bin/python -m pytest tests_dags
    ;;
  bench)
    setup
    exec .venv/bin/python benchmarks/preview.py "$@"
    ;;
  e2e)
    setup
    exec .venv/bin/python -m e2e "$@"
    ;;
  dags-check)
    setup dags
    exec .venv/bin/python -m dagcheck "$@"
    ;;
  *)
    echo "usage: ./run.sh preview [stack] [options] | test | bench | e2e [options] | dags-check [FOLDER] [--stack NAME]" >&2
    exit 2
    ;;
esac
