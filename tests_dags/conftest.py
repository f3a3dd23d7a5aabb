"""Set Airflow up for the DAG tests, before anything imports it.

These tests need Airflow and the cncf.kubernetes provider, which the project's own
virtualenv cannot hold (their pins clash with pulumi's), so they live outside `tests/`
and run with `.venv-dags` (`./run.sh test` does both). Airflow gets a throw-away home:
no metadata database is needed, since DAG files never touch it while being parsed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"

# The namespace the dev stack runs Airflow in: the chart hands it to Airflow as
# `kubernetes_executor.namespace`, which is what the DAGs default to.
STACK_NAMESPACE: str = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["airflow-k8s:airflow"].get(
    "namespace", "airflow"
)

_HOME = tempfile.mkdtemp(prefix="airflow-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
for name in [n for n in os.environ if n.startswith(("AIRFLOW__", "AIRFLOW_VAR_", "AIRFLOW_CONN_"))]:
    del os.environ[name]
os.environ.update(
    {
        "AIRFLOW_HOME": _HOME,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE": STACK_NAMESPACE,
    }
)

try:
    import airflow
    import airflow.providers.cncf.kubernetes  # noqa: F401
    import kubernetes_validate  # noqa: F401
except ImportError as exc:  # pragma: no cover - the wrong interpreter
    raise pytest.UsageError(
        f"the DAG tests need Airflow, the cncf.kubernetes provider and kubernetes-validate ({exc}); "
        "run them with the DAG virtualenv: ./run.sh test, or .venv-dags/bin/python -m pytest tests_dags"
    ) from None

# Where Airflow itself puts a bundle's root: on sys.path, so DAG files import their helpers.
if str(DAGS) not in sys.path:
    sys.path.append(str(DAGS))


def pytest_configure(config: pytest.Config) -> None:
    # Airflow's own .airflowignore reader, not something the DAGs can change.
    config.addinivalue_line("filterwarnings", "ignore:GitWildMatchPattern:DeprecationWarning")
