"""pod_etl.py and contrib_pod_etl.py for Airflow 3 on this platform.

The provider's modules; the team's namespace, account and Secret (stack `teams`); a pinned
image; a pod that Pod Security `restricted` admits. In a DAG folder that holds
k8s_conventions.py, `**pod_defaults()` sets the same security contexts.
"""

import pendulum
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from airflow.sdk import DAG
from kubernetes.client import models as k8s

password = Secret("env", "DB_PASSWORD", "warehouse", "password")

with DAG(
    dag_id="tutorial_pod_etl",
    schedule="0 3 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    extract = KubernetesPodOperator(
        task_id="extract",
        name="extract",
        namespace="etl-tasks",
        service_account_name="etl-tasks",
        image="python:3.13.7-slim-bookworm",
        cmds=["python", "-c"],
        arguments=["print('extract')"],
        secrets=[password],
        on_finish_action="delete_pod",
        get_logs=True,
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=1001,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
    )
