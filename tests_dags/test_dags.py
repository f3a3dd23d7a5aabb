"""The DAG folder loads cleanly, each example DAG is what it says, and every task pod is
built by the provider's own code into a valid, hardened Kubernetes Pod."""

from __future__ import annotations

import ast
import copy
import hashlib
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import k8s_conventions as conv
import kubernetes_validate
import pytest
from airflow.dag_processing.dagbag import BundleDagBag
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import Context
from airflow.sdk.execution_time.context import VariableAccessor
from kubernetes.client import ApiClient

from tests_dags.conftest import DAGS, ROOT, STACK_NAMESPACE

KUBERNETES_VERSION = "1.31"
RUN_ID = "manual__2025-01-01T00:00:00+00:00"

OUR_DAGS = {
    "example_etl": {"extract"},
    "example_pod_pass_fail": {"run_this_first", "passing_task", "failing_task"},
    "example_task_image": {"hello"},
    "example_one_task": {"hello"},
    "example_memory_limit": {"outgrow"},
    "example_keys": {"read"},
}
# Tasks that are not KubernetesPodOperators: they run in the executor's own pod or process.
NOT_POD_TASKS = {
    ("example_pod_pass_fail", "run_this_first"),
    ("example_one_task", "hello"),
    ("example_memory_limit", "outgrow"),
    ("example_keys", "read"),
}
# Owned by the Spark example (SparkOperator): loaded and checked here when present.
SPARK_DAG_FILE = DAGS / "spark_pi.py"
SPARK_FILES = {SPARK_DAG_FILE, DAGS / "spark" / "spark-pi.yaml"}

DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL_KEY = re.compile(rf"^({DNS_SUBDOMAIN}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|Ki|Mi|Gi|Ti)?$")


@pytest.fixture(scope="session")
def dagbag() -> BundleDagBag:
    # What the dag-processor does: the bundle root (the DAG folder) goes on sys.path.
    return BundleDagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")


def is_spark_file(path: str | Path) -> bool:
    """Whether a DagBag path (absolute, or relative to the bundle root) is the Spark example's."""
    return (DAGS / path).resolve() in SPARK_FILES


def pod_tasks(dagbag: BundleDagBag) -> Iterator[tuple[Any, KubernetesPodOperator]]:
    """Every plain KubernetesPodOperator task (SparkKubernetesOperator builds no Pod of its own)."""
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            if type(task) is KubernetesPodOperator:
                yield dag, task


def context(dag: Any, task: Any) -> Context:
    """The parts of a task's template context that the DAGs and the provider read."""
    ti = SimpleNamespace(dag_id=dag.dag_id, task_id=task.task_id, map_index=-1, try_number=1, run_id=RUN_ID)
    parts: dict[str, Any] = {
        "dag": dag,
        "task": task,
        "ti": ti,
        "task_instance": ti,
        "run_id": RUN_ID,
        "var": {"value": VariableAccessor(deserialize_json=False), "json": VariableAccessor(deserialize_json=True)},
    }
    return cast(Context, parts)


def rendered(dag: Any, task: KubernetesPodOperator) -> tuple[KubernetesPodOperator, Context]:
    """A copy of the task with its templates rendered, as a worker would before running it."""
    task = copy.deepcopy(task)
    ctx = context(dag, task)
    task.render_template_fields(ctx)
    return task, ctx


def pod_of(dag: Any, task: KubernetesPodOperator) -> dict[str, Any]:
    """The Pod the provider would create for this task, as the API server would receive it."""
    task, ctx = rendered(dag, task)
    pod = task.build_pod_request_obj(ctx, dry_run=True)
    data: dict[str, Any] = ApiClient().sanitize_for_serialization(pod)
    return data


def the_task(dagbag: BundleDagBag, dag_id: str, task_id: str) -> tuple[Any, Any]:
    dag = dagbag.dags[dag_id]
    return dag, dag.get_task(task_id)


def declared_dag_ids(path: Path) -> set[str]:
    """DAG ids a file declares literally: DAG("id")/DAG(dag_id="id") calls and @dag functions."""
    ids: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name in ("DAG", "dag"):
                args = [kw.value for kw in node.keywords if kw.arg == "dag_id"] + list(node.args[:1])
                ids.update(a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str))
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                named = isinstance(deco, ast.Call) and any(kw.arg == "dag_id" for kw in deco.keywords)
                if getattr(target, "id", getattr(target, "attr", "")) == "dag" and not named:
                    ids.add(node.name)
    return ids


def spark_dag_ids(dagbag: BundleDagBag) -> set[str]:
    """The Spark example's DAG ids, when its file is there and loaded."""
    return {d.dag_id for d in dagbag.dags.values() if is_spark_file(d.fileloc)}


class TestTheDagFolder:
    def test_our_dag_files_import_with_zero_errors(self, dagbag):
        ours = {path: error for path, error in dagbag.import_errors.items() if not is_spark_file(path)}
        assert ours == {}

    def test_the_spark_example_imports_without_errors_when_present(self, dagbag):
        if not SPARK_DAG_FILE.exists():
            pytest.skip("dags/spark_pi.py is not there (the SparkOperator example adds it)")
        assert {p: e for p, e in dagbag.import_errors.items() if is_spark_file(p)} == {}
        assert spark_dag_ids(dagbag), "dags/spark_pi.py defines no DAG"

    def test_the_spark_example_declares_the_dag_ids_it_loads_as(self, dagbag):
        if not SPARK_DAG_FILE.exists() or not spark_dag_ids(dagbag):
            pytest.skip("dags/spark_pi.py is not there or did not load (see the test above)")
        declared = declared_dag_ids(SPARK_DAG_FILE)
        assert declared <= spark_dag_ids(dagbag)

    def test_the_dag_ids_are_the_examples_and_nothing_else(self, dagbag):
        assert set(dagbag.dag_ids) == set(OUR_DAGS) | spark_dag_ids(dagbag)

    def test_every_example_has_its_tasks(self, dagbag):
        assert {d: set(dagbag.dags[d].task_ids) for d in OUR_DAGS} == OUR_DAGS

    def test_the_shared_conventions_module_is_not_parsed_as_a_dag_file(self, dagbag):
        parsed = {Path(stat.file).name for stat in dagbag.dagbag_stats}
        assert "k8s_conventions.py" not in parsed
        assert {
            "example_etl.py",
            "example_pod_pass_fail.py",
            "example_task_image.py",
            "example_one_task.py",
            "example_memory_limit.py",
        } <= parsed

    def test_every_dag_is_started_by_hand_and_tagged_as_an_example(self, dagbag):
        for dag_id in OUR_DAGS:
            dag = dagbag.dags[dag_id]
            assert dag.schedule is None and type(dag.timetable).__name__ == "NullTimetable", dag_id
            assert "example" in dag.tags, dag_id
            assert dag.doc_md, dag_id

    def test_the_dag_folder_loads_quickly(self, dagbag):
        slow = {Path(s.file).name: s.duration for s in dagbag.dagbag_stats if s.duration > timedelta(seconds=2)}
        assert slow == {}


class TestTheEtlExample:
    def test_extract_echoes_the_extract_step_in_a_slim_python_image(self, dagbag):
        dag, task = the_task(dagbag, "example_etl", "extract")
        task, _ = rendered(dag, task)
        assert isinstance(task, KubernetesPodOperator)
        assert task.image == conv.PYTHON_IMAGE
        assert re.match(r"^python:3\.\d+\.\d+-slim", task.image)
        assert task.cmds == ["sh", "-c"]
        assert task.arguments == ['echo "This can be the extract part of an ETL"']

    def test_extract_retries_once_after_five_seconds(self, dagbag):
        _, task = the_task(dagbag, "example_etl", "extract")
        assert task.retries == 1
        assert task.retry_delay == timedelta(seconds=5)


class TestThePassAndFailExample:
    def test_both_pods_run_after_the_first_task(self, dagbag):
        dag = dagbag.dags["example_pod_pass_fail"]
        first = dag.get_task("run_this_first")
        assert type(first).__name__ == "EmptyOperator"
        assert first.downstream_task_ids == {"passing_task", "failing_task"}
        assert dag.get_task("passing_task").upstream_task_ids == {"run_this_first"}
        assert dag.get_task("failing_task").upstream_task_ids == {"run_this_first"}
        assert dag.get_task("passing_task").downstream_task_ids == set()

    def test_the_passing_task_runs_python_in_an_image_with_python(self, dagbag):
        dag, task = the_task(dagbag, "example_pod_pass_fail", "passing_task")
        task, _ = rendered(dag, task)
        assert task.image == conv.PYTHON_IMAGE
        assert task.cmds == ["python", "-c"]
        assert task.arguments == ["print('hello world')"]

    def test_the_failing_task_runs_the_same_command_in_an_image_without_python(self, dagbag):
        dag, task = the_task(dagbag, "example_pod_pass_fail", "failing_task")
        task, _ = rendered(dag, task)
        assert task.image == conv.NO_PYTHON_IMAGE
        assert task.image.split(":")[0] not in ("python", "apache/airflow")
        assert (task.cmds, task.arguments) == (["python", "-c"], ["print('hello world')"])

    def test_the_failure_shows_at_once_with_the_pod_events(self, dagbag):
        _, failing = the_task(dagbag, "example_pod_pass_fail", "failing_task")
        _, passing = the_task(dagbag, "example_pod_pass_fail", "passing_task")
        assert failing.retries == 0
        assert failing.log_events_on_failure is True
        assert passing.retries == 1
        assert passing.retry_delay == timedelta(seconds=5)


class TestTheTaskImageExample:
    def test_it_runs_the_task_image_with_its_own_entrypoint(self, dagbag):
        dag, task = the_task(dagbag, "example_task_image", "hello")
        task, _ = rendered(dag, task)
        assert task.image == conv.TASK_IMAGE
        assert task.cmds == []
        assert task.arguments == []

    def test_the_pod_runs_as_the_user_the_image_creates(self, dagbag):
        dockerfile = (ROOT / "images" / "task" / "Dockerfile").read_text()
        users = re.findall(r"^USER\s+(\d+)", dockerfile, flags=re.M)
        pod = pod_of(*the_task(dagbag, "example_task_image", "hello"))
        assert users and int(users[-1]) == pod["spec"]["securityContext"]["runAsUser"] == conv.TASK_UID

    def test_the_greeting_is_rendered_from_the_run(self, dagbag):
        pod = pod_of(*the_task(dagbag, "example_task_image", "hello"))
        env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
        assert env["GREETING"] == "Hello from example_task_image / hello"


class TestTheOneTaskExample:
    def test_it_is_one_python_task_that_runs_in_the_executors_own_pod(self, dagbag):
        dag, task = the_task(dagbag, "example_one_task", "hello")
        assert dag.task_ids == ["hello"]
        assert type(task).__name__ == "_PythonDecoratedOperator"
        assert not isinstance(task, KubernetesPodOperator)

    def test_it_prints_its_greeting(self, dagbag, capsys):
        _, task = the_task(dagbag, "example_one_task", "hello")
        assert task.python_callable() == "hello"
        assert capsys.readouterr().out == "hello from example_one_task\n"


class TestTheMemoryLimitExample:
    def test_its_task_runs_in_the_executors_pod_with_a_memory_limit_of_its_own(self, dagbag):
        _, task = the_task(dagbag, "example_memory_limit", "outgrow")
        assert not isinstance(task, KubernetesPodOperator)
        (container,) = task.executor_config["pod_override"].spec.containers
        assert container.name == "base"  # the container of Airflow's pod template
        assert container.resources.limits == {"memory": "512Mi"}

    def test_it_retries_once_after_five_seconds(self, dagbag):
        _, task = the_task(dagbag, "example_memory_limit", "outgrow")
        assert (task.retries, task.retry_delay) == (1, timedelta(seconds=5))


class TestTheKeysExample:
    def test_it_is_one_python_task_that_runs_in_the_executors_own_pod(self, dagbag):
        dag, task = the_task(dagbag, "example_keys", "read")
        assert dag.task_ids == ["read"]
        assert type(task).__name__ == "_PythonDecoratedOperator"

    def test_it_prints_the_variable_and_the_connection_but_only_a_digest_of_the_password(
        self, dagbag, capsys, monkeypatch
    ):
        from airflow.sdk import Connection, Variable

        _, task = the_task(dagbag, "example_keys", "read")
        stored = Connection(conn_id="example_keys_db", conn_type="postgres", host="db", login="etl", password="pw")
        monkeypatch.setattr(Variable, "get", classmethod(lambda cls, key: {"example_keys_greeting": "hi"}[key]))
        monkeypatch.setattr(Connection, "get", classmethod(lambda cls, conn_id: {"example_keys_db": stored}[conn_id]))
        digest = hashlib.sha256(b"pw").hexdigest()[:12]
        conn = f"connection example_keys_db: host=db login=etl password-sha256={digest}"
        line = f"variable example_keys_greeting=hi; {conn}"
        assert task.python_callable() == line
        assert capsys.readouterr().out == line + "\n"


def all_pod_tasks() -> list[tuple[str, str]]:
    return sorted((dag, task) for dag, tasks in OUR_DAGS.items() for task in tasks if (dag, task) not in NOT_POD_TASKS)


class TestEveryTaskPod:
    def test_every_pod_task_of_ours_is_covered(self, dagbag):
        found = {(d.dag_id, t.task_id) for d, t in pod_tasks(dagbag) if not is_spark_file(d.fileloc)}
        assert found == set(all_pod_tasks())

    @pytest.mark.parametrize(("dag_id", "task_id"), all_pod_tasks())
    def test_the_pod_is_valid_for_kubernetes_1_31_strict(self, dagbag, dag_id, task_id):
        pod = pod_of(*the_task(dagbag, dag_id, task_id))
        try:
            kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{dag_id}.{task_id}: {getattr(exc, 'message', exc)}")
        for key, value in pod["metadata"]["labels"].items():
            assert LABEL_KEY.match(key) and LABEL_VALUE.match(value) and len(value) <= 63, (key, value)

    @pytest.mark.parametrize(("dag_id", "task_id"), all_pod_tasks())
    def test_the_pod_runs_in_airflows_namespace_under_the_task_account(self, dagbag, dag_id, task_id):
        pod = pod_of(*the_task(dagbag, dag_id, task_id))
        assert pod["metadata"]["namespace"] == STACK_NAMESPACE
        assert pod["spec"]["serviceAccountName"] == conv.DEFAULT_SERVICE_ACCOUNT
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert pod["spec"]["restartPolicy"] == "Never"
        labels = pod["metadata"]["labels"]
        assert (labels["dag_id"], labels["task_id"], labels["kubernetes_pod_operator"]) == (dag_id, task_id, "True")

    @pytest.mark.parametrize(("dag_id", "task_id"), all_pod_tasks())
    def test_the_pod_is_hardened(self, dagbag, dag_id, task_id):
        pod = pod_of(*the_task(dagbag, dag_id, task_id))
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = spec["containers"]
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["privileged"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        for part in ("requests", "limits"):
            assert set(container["resources"][part]) == {"cpu", "memory"}, part
            for quantity in container["resources"][part].values():
                assert QUANTITY.match(quantity), (part, quantity)
        assert "hostNetwork" not in spec or spec["hostNetwork"] is False
        assert not any("hostPath" in v for v in spec.get("volumes", []))

    @pytest.mark.parametrize(("dag_id", "task_id"), all_pod_tasks())
    def test_the_image_is_pinned_and_pulled_only_when_missing(self, dagbag, dag_id, task_id):
        pod = pod_of(*the_task(dagbag, dag_id, task_id))
        (container,) = pod["spec"]["containers"]
        name, _, tag = container["image"].split("@")[0].rpartition(":")
        assert name and "/" not in tag and tag not in ("", "latest"), container["image"]
        assert container["imagePullPolicy"] == "IfNotPresent"

    @pytest.mark.parametrize(("dag_id", "task_id"), all_pod_tasks())
    def test_the_task_streams_its_logs_and_cleans_up(self, dagbag, dag_id, task_id):
        _, task = the_task(dagbag, dag_id, task_id)
        assert task.get_logs is True
        assert task.on_finish_action.value == "delete_pod"
        assert task.termination_message_policy == "FallbackToLogsOnError"


class TestNoDagNamesACluster:
    def test_every_kubernetes_task_uses_the_in_cluster_connection(self, dagbag):
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator as Base

        tasks = [(d.dag_id, t) for d in dagbag.dags.values() for t in d.tasks if isinstance(t, Base)]
        assert len(tasks) >= len(all_pod_tasks())
        for dag_id, task in tasks:
            where = f"{dag_id}.{task.task_id}"
            assert task.config_file is None, where
            assert task.cluster_context is None, where
            assert task.in_cluster is not False, where
            assert task.kubernetes_conn_id == conv.KUBERNETES_CONN_ID, where


class TestTheConventionsCanBeChangedWithoutEditingDags:
    def test_a_variable_changes_the_image_and_the_namespace_when_the_task_runs(self, dagbag, monkeypatch):
        monkeypatch.setenv("AIRFLOW_VAR_K8S_IMAGE_PYTHON", "registry.example.com/python:3.13.7-slim-bookworm")
        monkeypatch.setenv("AIRFLOW_VAR_K8S_TASK_NAMESPACE", "team-a")
        pod = pod_of(*the_task(dagbag, "example_etl", "extract"))
        assert pod["spec"]["containers"][0]["image"] == "registry.example.com/python:3.13.7-slim-bookworm"
        assert pod["metadata"]["namespace"] == "team-a"

    def test_each_image_has_its_own_variable(self, dagbag, monkeypatch):
        monkeypatch.setenv("AIRFLOW_VAR_K8S_IMAGE_TASK", "ghcr.io/org/airflow-k8s-task:2.0.0")
        pod = pod_of(*the_task(dagbag, "example_task_image", "hello"))
        assert pod["spec"]["containers"][0]["image"] == "ghcr.io/org/airflow-k8s-task:2.0.0"
        pod = pod_of(*the_task(dagbag, "example_pod_pass_fail", "failing_task"))
        assert pod["spec"]["containers"][0]["image"] == conv.NO_PYTHON_IMAGE

    def test_the_namespace_is_airflows_own_by_default(self, monkeypatch, tmp_path):
        own = tmp_path / "namespace"
        monkeypatch.setattr(conv, "SERVICE_ACCOUNT_NAMESPACE_FILE", own)
        monkeypatch.delenv("AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE")
        assert conv.airflow_namespace() == conv.DEFAULT_NAMESPACE == "airflow"
        own.write_text("data-team\n")
        assert conv.airflow_namespace() == "data-team"
        monkeypatch.setenv("AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE", "from-config")
        assert conv.airflow_namespace() == "from-config"

    def test_the_service_account_comes_from_the_environment_variable(self, monkeypatch):
        assert conv.task_service_account() == "default"
        monkeypatch.setenv("AIRFLOW_VAR_K8S_TASK_SERVICE_ACCOUNT", "team-a-tasks")
        assert conv.task_service_account() == "team-a-tasks"
        assert conv.pod_defaults()["service_account_name"] == "team-a-tasks"

    def test_variable_names_and_defaults_are_quoted_for_jinja(self):
        assert conv.variable("k8s_image_task", 'a"b') == '{{ var.value.get("k8s_image_task", "a\\"b") }}'

    def test_a_pod_default_can_be_overridden_by_argument_name(self):
        kwargs = conv.pod_defaults(container_resources=conv.resources(memory_limit="1Gi"))
        assert kwargs["container_resources"].limits == {"cpu": "500m", "memory": "1Gi"}
        assert kwargs["get_logs"] is True
