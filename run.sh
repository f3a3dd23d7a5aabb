#!/usr/bin/env bash
# One entry point that sets itself up and runs a job: `./run.sh help` lists them (usage() below).
# Virtualenvs: .venv (project and test tools), .venv-checkov (the checkov scanner) and,
# for `test`, .venv-dags (Airflow, for the DAG tests); the last two have pins that clash
# with pulumi's. They are created on first use and reused after.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}

usage() {
  cat <<'USAGE'
usage: ./run.sh JOB [options]    (each job sets up what it needs on first use)

  preview [STACK] [options]   offline preview of a stack (default: dev); ./run.sh preview --help
                              lists the options (--diff, --kube-version, --no-checkov, ...)
  test [pytest options]       lint, types, the test suites, then the end-to-end run (what CI runs)
  bench                       benchmarks of the preview (prints numbers)
  bench-e2e [--whole]         end-to-end timings with the real Pulumi engine (minutes)
  bench-node [--cold]         the real node's numbers: up, images, memory, DAG runs, the floor (root)
  bench-node-prod [--runs N]  the prod shape's numbers on the real node: Celery runs, from zero
                              workers, an image rollout's failed requests (root, ~15 min)
  e2e [options]               end to end against a local API server (./run.sh e2e --help)
  up [STACK]                  Airflow on a real node on this machine (root; dev by default)
  down [--purge]              remove it (volumes kept unless --purge)
  status                      what the real node runs
  screenshots [options]       the Airflow UI of `up` (or --url) in headless Chromium, checked,
                              into docs/images (./run.sh screenshots --help)
  schema [--check]            write schemas/stack.schema.json (the stack files' JSON Schema) from
                              the config parsers, and the table of top-level keys in
                              docs/configuration.md; --check: fail when either is stale
  diagram [--check]           write the architecture diagram into docs/architecture.md from what the
                              shipped stacks declare; --check: fail when it is stale
  dags-check [FOLDER] [--stack NAME]
                              will the DAGs run on the Airflow this stack deploys? (default: dags/, dev)
  help                        this text

Without a job, ./run.sh runs `preview`.
USAGE
}

# uv creates the virtualenvs (much faster than pip on a fresh machine). It is taken from PATH,
# or installed once into .venv-uv with pip.
UV_VERSION=0.13.9
uv_bin() {
  if command -v uv >/dev/null 2>&1; then command -v uv; return; fi
  if [ ! -x .venv-uv/bin/uv ]; then
    quietly "setting up .venv-uv (uv $UV_VERSION, the virtualenv installer)" make_uv_venv
  fi
  echo "$PWD/.venv-uv/bin/uv"
}
make_uv_venv() {
  "$PYTHON" -m venv .venv-uv && .venv-uv/bin/pip install --disable-pip-version-check "uv==$UV_VERSION"
}

# quietly MESSAGE COMMAND...: one line on stderr ("MESSAGE ... done in N s"); the command's own
# output is kept in a log and printed only when it fails.
quietly() {
  local message=$1 log started=$SECONDS
  shift
  log=$(mktemp)
  printf '%s ... ' "$message" >&2
  if "$@" >"$log" 2>&1; then
    echo "done in $((SECONDS - started)) s" >&2
    rm -f "$log"
  else
    local rc=$?
    echo "FAILED (exit $rc); its output:" >&2
    cat "$log" >&2
    rm -f "$log"
    exit "$rc"
  fi
}

# venv DIR WHAT REQUIREMENTS [STAMPED...]: (re)create DIR from REQUIREMENTS when the files
# in STAMPED (default: REQUIREMENTS) changed since it was last set up.
venv() {
  local dir=$1 what=$2 requirements=$3 stamp uv
  shift 3
  stamp=$(cat "${@:-$requirements}" | sha256sum | cut -c1-16)
  if [ ! -f "$dir/.stamp" ] || [ "$(cat "$dir/.stamp")" != "$stamp" ]; then
    uv=$(uv_bin)
    quietly "setting up $dir ($what), once" make_venv "$uv" "$dir" "$requirements"
    echo "$stamp" > "$dir/.stamp"
  fi
}
make_venv() {
  local uv=$1 dir=$2 requirements=$3
  "$uv" venv --clear --seed --python "$PYTHON" "$dir" && "$uv" pip install --python "$dir/bin/python" -r "$requirements"
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

# The real node (./run.sh up, and the e2e run's node scenario): Debian's containerd, runc, the CNI
# plugins, iptables, conntrack and ipset, and chromium (the scenario's screenshots of the Airflow
# UI, headless; tests/test_node_screenshots.py), installed here when one is missing. Without root or
# apt-get it says what is missing and goes on: the node then names it and how to do without.
NODE_PACKAGES="containerd runc containernetworking-plugins iptables conntrack ipset chromium"
ensure_node_packages() {
  local missing=""
  for program in containerd runc ctr iptables conntrack ipset chromium; do
    command -v "$program" >/dev/null 2>&1 || missing="$missing $program"
  done
  [ -x /usr/lib/cni/bridge ] || missing="$missing /usr/lib/cni/bridge"
  [ -n "$missing" ] || return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "the real node needs:$missing (Debian: apt-get install $NODE_PACKAGES)" >&2
    return 0
  fi
  echo "installing the real node's packages ($NODE_PACKAGES), once" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $NODE_PACKAGES >&2
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
    # ./run.sh preview [STACK] [options]; --help lists the options. No checkov or Airflow
    # virtualenv is set up for --help or --no-checkov (the Airflow checks then say they did not run
    # unless .venv-dags is there).
    if [[ " $* " == *" --no-checkov "* || " $* " == *" --help "* || " $* " == *" -h "* ]]; then
      venv .venv "project and test dependencies" requirements-test.txt requirements.txt requirements-test.txt
    else
      setup dags  # .venv-dags: Airflow's own checks of what the stack hands it
    fi
    exec .venv/bin/python -m components.offline "$@"
    ;;
  schema)
    venv .venv "project and test dependencies" requirements-test.txt requirements.txt requirements-test.txt
    exec .venv/bin/python -m components.offline.stack_schema "$@"
    ;;
  diagram)
    venv .venv "project and test dependencies" requirements-test.txt requirements.txt requirements-test.txt
    exec .venv/bin/python -m components.offline.diagram "$@"
    ;;
  test)
    # Every stage runs; the summary at the end names each one's result. The end-to-end run
    # (real Pulumi engine, README "End-to-end run") is skipped, loudly, only when its tools
    # cannot be found; with AIRFLOW_K8S_E2E=required (CI) that is a failure, and with
    # AIRFLOW_K8S_E2E=off it is not run at all.
    setup dags
    ensure_postgres
    ensure_node_packages
    summary=()
    failed=0
    stage() {
      local name=$1
      shift
      echo "=== $name: $*" >&2
      if "$@"; then summary+=("$name: ok"); else summary+=("$name: FAILED"); failed=1; fi
    }
    stage lint .venv/bin/ruff check .
    stage types .venv/bin/mypy
    # On every core (2 in CI), at most 4 workers; work stealing, as the
    # tests' lengths differ by two orders of magnitude. AIRFLOW_K8S_TEST_WORKERS=0: one process.
    stage "fast suite" .venv/bin/python -m pytest -n "${AIRFLOW_K8S_TEST_WORKERS:-auto}" --maxprocesses=4 \
      --dist worksteal "$@"
    stage "DAG suite" .venv-dags/bin/python -m pytest tests_dags
    if [ "${AIRFLOW_K8S_E2E:-}" = off ]; then
      summary+=("e2e: NOT RUN (AIRFLOW_K8S_E2E=off)")
    else
      echo "=== e2e: .venv/bin/python -m e2e" >&2
      e2e_log=$(mktemp)
      set +e
      .venv/bin/python -m e2e 2>&1 | tee "$e2e_log"
      rc=${PIPESTATUS[0]}
      set -e
      line=$(grep -E '^e2e: [0-9]+ passed' "$e2e_log" | tail -n 1 || true)
      rm -f "$e2e_log"
      if [ "$rc" = 4 ]; then
        summary+=("e2e: SKIPPED: the tools for the real Pulumi engine were not found (see above); set AIRFLOW_K8S_E2E=required to make this a failure")
        printf '\n%s\n%s\n%s\n' '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!' \
          '!!! END-TO-END RUN SKIPPED: the Pulumi engine or the cluster tools were not found' \
          '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!' >&2
      elif [ "$rc" = 0 ]; then
        summary+=("${line:-e2e: passed}")
      else
        summary+=("${line:-e2e: FAILED (exit $rc)} (FAILED)")
        failed=1
      fi
    fi
    echo
    echo "=== summary"
    printf '%s\n' "${summary[@]}"
    exit "$failed"
    ;;
  bench)
    setup
    exec .venv/bin/python benchmarks/preview.py "$@"
    ;;
  bench-e2e)
    setup
    exec .venv/bin/python benchmarks/end_to_end.py "$@"
    ;;
  bench-node)
    setup
    ensure_node_packages
    exec .venv/bin/python benchmarks/node.py "$@"
    ;;
  bench-node-prod)
    setup
    ensure_node_packages
    exec .venv/bin/python benchmarks/node_prod.py "$@"
    ;;
  e2e)
    setup
    ensure_node_packages
    exec .venv/bin/python -m e2e "$@"
    ;;
  up | down | status)
    # Airflow on a real node on this machine: e2e/node/local.py (docs/e2e.md, "The real node").
    venv .venv "project and test dependencies" requirements-test.txt requirements.txt requirements-test.txt
    [ "$job" = status ] || ensure_node_packages
    exec .venv/bin/python -m e2e.node.local "$job" "$@"
    ;;
  screenshots)
    # The Airflow UI of a running Airflow (./run.sh up's, by default) in headless Chromium: the
    # DAG list, a successful run, a task's log, each checked, into docs/images (e2e/node/screenshots.py).
    venv .venv "project and test dependencies" requirements-test.txt requirements.txt requirements-test.txt
    ensure_node_packages
    exec .venv/bin/python -m e2e.node.screenshots "$@"
    ;;
  dags-check)
    setup dags
    exec .venv/bin/python -m dagcheck "$@"
    ;;
  help | -h | --help)
    usage
    ;;
  *)
    echo "error: unknown job '$job'" >&2
    usage >&2
    exit 2
    ;;
esac
