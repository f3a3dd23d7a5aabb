"""A team's task: a pod in the team's namespace, under the team's ServiceAccount, reading its Secret.

Not in dags/: it needs a stack with the team `analytics` (namespace `analytics-tasks`, Secret
`warehouse` with key `token`), which the node scenario's `enforce` part declares. The scenario adds
this file to the DAG folder it mounts.

The task prints what it read without showing it: the token's length and the first 16 hex digits of
its SHA-256, which the part compares with the value it set. The Variable `k8s_team_namespace` sends
the pod elsewhere: the part sends it to a namespace no Role grants and to another team's, and the
task log must say why each was refused.
"""

from __future__ import annotations

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from k8s_conventions import PYTHON_IMAGE, example_dag_args, image, pod_defaults, variable

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG

TEAM_NAMESPACE = "analytics-tasks"
TEAM_SERVICE_ACCOUNT = "analytics-tasks"  # the team's `<name>-tasks` account (components/teams)
READ = (
    "import hashlib, os; t = os.environ['TEAM_TOKEN'].encode(); "
    "print(f'team secret warehouse/token: {len(t)} bytes, sha256 {hashlib.sha256(t).hexdigest()[:16]}')"
)

with DAG(
    dag_id="example_team_pod",
    description="A pod in a team's namespace, under its account, reading its Secret",
    doc_md=__doc__,
    schedule=None,
    **example_dag_args("kubernetes", "team"),
):
    KubernetesPodOperator(
        task_id="read_team_secret",
        name="read-team-secret",
        image=image("python", PYTHON_IMAGE),
        cmds=["python", "-c"],
        arguments=[READ],
        secrets=[Secret("env", "TEAM_TOKEN", "warehouse", "token")],
        retries=0,  # a refusal shows at once
        **pod_defaults(
            namespace=variable("k8s_team_namespace", TEAM_NAMESPACE), service_account_name=TEAM_SERVICE_ACCOUNT
        ),
    )
