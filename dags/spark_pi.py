"""SparkPi on the Kubeflow Spark Operator, submitted from Airflow.

One task, `spark_pi`, creates the SparkApplication in `spark/spark-pi.yaml` with
SparkKubernetesOperator, follows the driver's log in the task log, and deletes the
application when it ends. The estimate of pi is in the driver log ("Pi is roughly ...").

Nothing names a cluster or is clicked together in the UI. The stack's SparkOperator
component provides:

- the connection `kubernetes_default` (in cluster), delivered to every Airflow container
  and task pod as `AIRFLOW_CONN_KUBERNETES_DEFAULT`;
- the Variables below (as `AIRFLOW_VAR_<NAME>`), from the `spark` stack config;
- in every job namespace, a Role that lets exactly the ServiceAccounts running Airflow
  tasks create and follow SparkApplications, and the driver's and executors' accounts.

| setting                 | Airflow Variable (read when the task runs) | default          |
| ----------------------- | ------------------------------------------ | ---------------- |
| job namespace           | `spark_job_namespace`                      | `spark-jobs`     |
| driver ServiceAccount   | `spark_driver_service_account`             | `spark-driver`   |
| executor ServiceAccount | `spark_executor_service_account`           | `spark-executor` |

The defaults are the stack's defaults, so the DAG also runs where the Variables are
unset. The rendered values show under "Rendered Template" in the UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
from k8s_conventions import KUBERNETES_CONN_ID, example_dag_args, variable

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG  # type: ignore[attr-defined,no-redef]

MANIFEST = Path(__file__).resolve().parent / "spark" / "spark-pi.yaml"

DEFAULT_JOB_NAMESPACE = "spark-jobs"
DEFAULT_DRIVER_SERVICE_ACCOUNT = "spark-driver"
DEFAULT_EXECUTOR_SERVICE_ACCOUNT = "spark-executor"


def spark_application(manifest: Path = MANIFEST) -> dict[str, Any]:
    """The SparkApplication, with its ServiceAccounts templated from Airflow Variables.

    Its namespace is the operator's `namespace` argument; its name gets a unique suffix
    per run (SparkKubernetesOperator's `random_name_suffix`).
    """
    app: dict[str, Any] = yaml.safe_load(manifest.read_text())
    app["metadata"].pop("namespace", None)
    spec = app["spec"]
    spec["driver"]["serviceAccount"] = variable("spark_driver_service_account", DEFAULT_DRIVER_SERVICE_ACCOUNT)
    spec["executor"]["serviceAccount"] = variable("spark_executor_service_account", DEFAULT_EXECUTOR_SERVICE_ACCOUNT)
    return app


with DAG(
    dag_id="spark_pi",
    description="SparkPi as a SparkApplication on the Spark Operator, from SparkKubernetesOperator",
    doc_md=__doc__,
    schedule=None,
    **example_dag_args("spark"),
):
    SparkKubernetesOperator(
        task_id="spark_pi",
        namespace=variable("spark_job_namespace", DEFAULT_JOB_NAMESPACE),
        template_spec=spark_application(),
        kubernetes_conn_id=KUBERNETES_CONN_ID,
        # In-cluster credentials, whatever the connection says: a run from a laptop shell
        # fails instead of submitting to the cluster the local kubeconfig points at.
        in_cluster=True,
        get_logs=True,
        log_events_on_failure=True,
        delete_on_termination=True,
        startup_timeout_seconds=600,
    )
