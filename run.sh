#!/usr/bin/env bash
# One entry point that sets itself up and runs a job:
#   ./run.sh preview [stack]   offline preview of a stack (default: dev)
#   ./run.sh test              lint, types and the whole test suite
#   ./run.sh bench             benchmarks (prints numbers)
#   ./run.sh e2e [options]     end to end against a local API server (python -m e2e --help)
# Virtualenvs: .venv (project and test tools), .venv-checkov (the checkov scanner) and,
# for `test`, .venv-dags (Airflow, for the DAG tests); the last two have pins that clash
# with pulumi's. They are created on first use and reused after.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}

setup() {
  local stamp
  stamp=$(cat requirements.txt requirements-test.txt | sha256sum | cut -c1-16)
  if [ ! -f .venv/.stamp ] || [ "$(cat .venv/.stamp)" != "$stamp" ]; then
    echo "setting up .venv (project and test dependencies)"
    "$PYTHON" -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
    echo "$stamp" > .venv/.stamp
  fi
  stamp=$(sha256sum requirements-checkov.txt | cut -c1-16)
  if [ ! -f .venv-checkov/.stamp ] || [ "$(cat .venv-checkov/.stamp)" != "$stamp" ]; then
    echo "setting up .venv-checkov (checkov scanner)"
    "$PYTHON" -m venv .venv-checkov
    .venv-checkov/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
    echo "$stamp" > .venv-checkov/.stamp
  fi
  export AIRFLOW_K8S_CHECKOV="$PWD/.venv-checkov/bin/checkov"
  if [ "${1:-}" = dags ]; then
    stamp=$(sha256sum requirements-dags.txt | cut -c1-16)
    if [ ! -f .venv-dags/.stamp ] || [ "$(cat .venv-dags/.stamp)" != "$stamp" ]; then
      echo "setting up .venv-dags (Airflow with the cncf.kubernetes and Celery providers, for the DAG tests)"
      "$PYTHON" -m venv .venv-dags
      .venv-dags/bin/pip install --quiet --disable-pip-version-check -r requirements-dags.txt
      echo "$stamp" > .venv-dags/.stamp
    fi
  fi
}

job=${1:-preview}
shift || true
case "$job" in
  preview)
    setup
    exec .venv/bin/python -m components.offline --stack "${1:-dev}" "${@:2}"
    ;;
  test)
    setup dags
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
  *)
    echo "usage: ./run.sh preview [stack] | test | bench | e2e [options]" >&2
    exit 2
    ;;
esac
