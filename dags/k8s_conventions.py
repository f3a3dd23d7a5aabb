"""Platform conventions for the pods that DAGs launch with KubernetesPodOperator.

Not a DAG file (it is listed in `.airflowignore`): the DAG files next to it import it.
Airflow puts the DAG folder on `sys.path` wherever DAG files are parsed or tasks run
(the DAG processor, Celery workers, KubernetesExecutor task pods), whether the folder
comes from git-sync, a hostPath mount, a volume claim or the image.

Every value has a default that matches the airflow-k8s stack and can be changed without
touching DAG code:

| setting                | Airflow Variable (read when the task runs) | default                                  |
| ---------------------- | ------------------------------------------ | ---------------------------------------- |
| task pod namespace     | `k8s_task_namespace`                       | Airflow's own namespace (see below)      |
| Python image           | `k8s_image_python`                         | `PYTHON_IMAGE`                           |
| image without Python   | `k8s_image_no_python`                      | `NO_PYTHON_IMAGE`                        |
| the task image         | `k8s_image_task`                           | `TASK_IMAGE` (built from images/task/)   |
| task pod account       | `k8s_task_service_account` (parse time)    | `default`                                |

The stack key `taskImages` sets the image Variables (`taskImages.python` is
`k8s_image_python`, ...), so a registry copy or a new tag is a stack change.

Namespaces and images are templated operator fields, so the Variable is looked up when
the task runs (Airflow's secrets backends first, for example the variables file
AirflowRelease's `variables` deliver, then `AIRFLOW_VAR_<NAME>` environment variables, then
the metadata database) and the UI shows the value used under "Rendered Template". The
service account is not a templated field: it is read from the environment variable
`AIRFLOW_VAR_K8S_TASK_SERVICE_ACCOUNT` when the DAG file is parsed (set it with
`airflow.extraValues.env`). Nothing here reads the metadata database while parsing.

Airflow's own namespace is, in order: `AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE` (Airflow's
setting for where KubernetesExecutor starts pods), the namespace of the pod parsing the
DAG (its service-account mount), else `airflow`, the stack's default. The chart's
`pod-launcher` Role lets the accounts that run tasks create pods there (AirflowRelease
binds it to KubernetesExecutor task pods too); other namespaces need their own Role.

Pods never name a cluster: they use the `kubernetes_default` connection with in-cluster
credentials (`in_cluster=True`), so a DAG run from a laptop shell fails instead of
launching pods in whatever cluster the local kubeconfig points at.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from kubernetes.client import models as k8s

# Images are pinned by tag (never `latest`): the same DAG run always gets the same image.
PYTHON_IMAGE = "python:3.13.7-slim-bookworm"
NO_PYTHON_IMAGE = "busybox:1.37.0"
TASK_IMAGE = "airflow-k8s-task:1.0.0"

# The non-root user task pods run as; images/task/Dockerfile creates the same user.
TASK_UID = 1001

# The connection the stack provides (in cluster); KubernetesHook falls back to an empty
# `kubernetes_default` connection when none is defined, so in-cluster credentials apply.
KUBERNETES_CONN_ID = "kubernetes_default"

DEFAULT_NAMESPACE = "airflow"
DEFAULT_SERVICE_ACCOUNT = "default"
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

# Examples are started by hand; each task retries once after a short pause.
DEFAULT_RETRIES = 1
DEFAULT_RETRY_DELAY = timedelta(seconds=5)


def example_dag_args(*tags: str) -> dict[str, Any]:
    """What every example DAG shares: unpaused, one retry after 5 seconds (each DAG says `schedule=None`
    itself: run by hand; ruff's AIR002 asks for the schedule in the DAG call, where readers look)."""
    return {
        "start_date": pendulum.datetime(2025, 1, 1, tz="UTC"),
        "catchup": False,
        "is_paused_upon_creation": False,
        "default_args": {"owner": "platform", "retries": DEFAULT_RETRIES, "retry_delay": DEFAULT_RETRY_DELAY},
        "tags": ["example", *tags],
    }


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def airflow_namespace() -> str:
    """The namespace Airflow runs in: where task pods go unless a Variable says otherwise."""
    configured = _env("AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE")
    if configured:
        return configured
    try:
        own = SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip()
    except OSError:
        own = ""
    return own or DEFAULT_NAMESPACE


def variable(name: str, default: str) -> str:
    """A Jinja expression for a templated field: the Airflow Variable `name`, else `default`."""
    return "{{ var.value.get(" + json.dumps(name) + ", " + json.dumps(default) + ") }}"


def task_namespace() -> str:
    """The namespace of task pods (templated: Variable `k8s_task_namespace`)."""
    return variable("k8s_task_namespace", airflow_namespace())


def image(role: str, default: str) -> str:
    """The image for `role` (templated: Variable `k8s_image_<role>`)."""
    return variable(f"k8s_image_{role}", default)


def task_service_account() -> str:
    """The service account of task pods, read when the DAG file is parsed."""
    return _env("AIRFLOW_VAR_K8S_TASK_SERVICE_ACCOUNT") or DEFAULT_SERVICE_ACCOUNT


def pod_security_context(uid: int = TASK_UID) -> k8s.V1PodSecurityContext:
    """Non-root, RuntimeDefault seccomp: what Pod Security Admission's `restricted` level asks."""
    return k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        fs_group=uid,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def container_security_context() -> k8s.V1SecurityContext:
    """No privilege escalation, every capability dropped, a read-only root filesystem."""
    return k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        privileged=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def resources(
    cpu: str = "50m", memory: str = "64Mi", cpu_limit: str = "500m", memory_limit: str = "256Mi"
) -> k8s.V1ResourceRequirements:
    """Requests and limits for both CPU and memory (a ResourceQuota on limits needs all four)."""
    return k8s.V1ResourceRequirements(
        requests={"cpu": cpu, "memory": memory},
        limits={"cpu": cpu_limit, "memory": memory_limit},
    )


def pod_defaults(uid: int = TASK_UID, **overrides: Any) -> dict[str, Any]:
    """KubernetesPodOperator keyword arguments every task pod on this platform shares.

    Pass the task's own arguments (task_id, name, image, cmds, arguments) beside these;
    `overrides` replace single defaults, by KubernetesPodOperator argument name (for
    example `container_resources=resources(memory_limit="1Gi")`).
    """
    kwargs: dict[str, Any] = {
        "namespace": task_namespace(),
        "service_account_name": task_service_account(),
        "automount_service_account_token": False,
        "kubernetes_conn_id": KUBERNETES_CONN_ID,
        "in_cluster": True,
        "image_pull_policy": "IfNotPresent",
        "security_context": pod_security_context(uid),
        "container_security_context": container_security_context(),
        "container_resources": resources(),
        "labels": {"app.kubernetes.io/part-of": "airflow", "app.kubernetes.io/component": "task"},
        "get_logs": True,
        "log_events_on_failure": True,
        "termination_message_policy": "FallbackToLogsOnError",
        "startup_timeout_seconds": 300,
        "on_finish_action": "delete_pod",
    }
    kwargs.update(overrides)
    return kwargs
