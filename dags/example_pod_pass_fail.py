"""One task, then two pods: one passes, one fails on purpose.

`passing_task` runs `python -c` in an image that has Python and succeeds.
`failing_task` runs the same command in an image without Python: the container cannot
start (`python` is not in the image), the pod fails, and the task turns red in the UI
with the reason and the pod's events in its log. It does not retry, so the failure shows
at once; the DAG run ends failed. This is what a broken task looks like on the platform.
"""

from __future__ import annotations

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from k8s_conventions import NO_PYTHON_IMAGE, PYTHON_IMAGE, example_dag_args, image, pod_defaults

try:  # Airflow 3
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.operators.empty import EmptyOperator  # type: ignore[no-redef]

with DAG(
    dag_id="example_pod_pass_fail",
    description="A first task, then a KubernetesPodOperator that passes and one that fails",
    doc_md=__doc__,
    schedule=None,
    **example_dag_args("kubernetes"),
):
    run_this_first = EmptyOperator(task_id="run_this_first")
    passing_task = KubernetesPodOperator(
        task_id="passing_task",
        name="passing-task",
        image=image("python", PYTHON_IMAGE),
        cmds=["python", "-c"],
        arguments=["print('hello world')"],
        **pod_defaults(),
    )
    failing_task = KubernetesPodOperator(
        task_id="failing_task",
        name="failing-task",
        image=image("no_python", NO_PYTHON_IMAGE),
        cmds=["python", "-c"],
        arguments=["print('hello world')"],
        retries=0,
        **pod_defaults(),
    )
    run_this_first >> [passing_task, failing_task]
