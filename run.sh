#!/usr/bin/env bash
# One entry point that sets itself up and runs a job:
#   ./run.sh preview [stack]   offline preview of a stack (default: dev)
#   ./run.sh test              lint, types and the whole test suite
#   ./run.sh bench             benchmarks (prints numbers)
# Virtualenvs: .venv (project and test tools) and .venv-checkov (the checkov scanner,
# whose pins clash with pulumi's). They are created on first use and reused after.
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
}

job=${1:-preview}
shift || true
case "$job" in
  preview)
    setup
    exec .venv/bin/python -m components.offline --stack "${1:-dev}" "${@:2}"
    ;;
  test)
    setup
    .venv/bin/ruff check .
    .venv/bin/mypy
    exec .venv/bin/python -m pytest "$@"
    ;;
  bench)
    setup
    exec .venv/bin/python benchmarks/preview.py "$@"
    ;;
  *)
    echo "usage: ./run.sh preview [stack] | test | bench" >&2
    exit 2
    ;;
esac
