"""The example DAGs reach the dev stack, and the task image is what its DAG expects.

The DAG integrity tests themselves need Airflow and live in tests_dags/ (run with the
DAG virtualenv; `./run.sh test` runs both).
"""

from __future__ import annotations

import ast
import os
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.airflow.config.airflow import parse_airflow
from components.airflow.values.chart import task_pod_launcher_binding
from components.offline.program import load_stack_config, run_program, unwrap
from tests.helpers import ROOT, docs_text, of_type, release, render_release, run_stack

TASK_IMAGE = ROOT / "images" / "task"
DAGS = ROOT / "dags"
DOCS = docs_text()


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return out


def run_script(**env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("GREETING", "HOME")}
    done = subprocess.run(
        [sys.executable, str(TASK_IMAGE / "hello.py")],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


class TestTheTaskImage:
    def test_the_base_image_is_python_alpine_pinned_by_tag_and_digest(self):
        froms = [args for keyword, args in instructions(TASK_IMAGE / "Dockerfile") if keyword == "FROM"]
        assert len(froms) == 1
        assert re.fullmatch(r"python:3\.\d+\.\d+-alpine3\.\d+@sha256:[0-9a-f]{64}", froms[0]), froms[0]

    def test_the_image_runs_as_the_non_root_user_1001(self):
        steps = instructions(TASK_IMAGE / "Dockerfile")
        users = [args for keyword, args in steps if keyword == "USER"]
        assert users, "no USER instruction: the image would run as root"
        assert users[-1] in ("1001", "1001:1001")
        run = " ".join(args for keyword, args in steps if keyword == "RUN")
        assert re.search(r"adduser\b[^&]*-u 1001\b", run)
        assert re.search(r"addgroup\b[^&]*-g 1001\b", run)
        env = " ".join(args for keyword, args in steps if keyword == "ENV")
        assert "HOME=/home/app" in env

    def test_the_entrypoint_runs_the_script_the_image_copies(self):
        steps = dict(instructions(TASK_IMAGE / "Dockerfile"))
        assert steps["COPY"] == "hello.py /opt/task/hello.py"
        assert steps["ENTRYPOINT"] == '["python", "/opt/task/hello.py"]'
        lines = (TASK_IMAGE / ".dockerignore").read_text().splitlines()
        assert [line for line in lines if line and not line.startswith("#")] == ["*", "!hello.py"]

    def test_the_script_prints_a_greeting_the_time_the_host_and_the_home_folder(self, tmp_path):
        before = datetime.now(UTC).replace(microsecond=0)
        lines = run_script(HOME=str(tmp_path))
        assert len(lines) == 4
        greeting, time, host, home = lines
        assert greeting == "Hello from the airflow-k8s task image!"
        printed = datetime.fromisoformat(time.removeprefix("Time: "))
        assert before <= printed <= datetime.now(UTC) + timedelta(seconds=1)
        assert printed.utcoffset() == timedelta(0)
        assert host == f"Host: {socket.gethostname()}"
        assert home == f"Home: {tmp_path}"

    def test_the_greeting_can_be_set_per_run(self, tmp_path):
        assert run_script(HOME=str(tmp_path), GREETING="Hi from a DAG run")[0] == "Hi from a DAG run"

    def test_the_readme_says_how_to_build_push_and_load_the_image(self):
        text = (TASK_IMAGE / "README.md").read_text()
        for command in ("docker build", "docker push", "minikube image load", "kind load docker-image"):
            assert command in text, command
        assert "k8s_image_task" in text


def dev_stack() -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    airflow: dict[str, Any] = config["airflow-k8s:airflow"]
    return airflow


class TestTheDevStackServesTheDagFolder:
    def test_dev_mounts_a_node_folder_and_the_readme_says_how_to_fill_it_from_this_checkout(self):
        dags = dev_stack()["dags"]
        assert dags["mode"] == "hostPath"
        node_path = dags["hostPath"]["path"]
        assert f'minikube mount "$PWD/dags:{node_path}"' in DOCS
        assert f'--mount-string="$PWD/dags:{node_path}"' in DOCS
        assert f"containerPath: {node_path}" in DOCS
        assert "hostPath: $PWD/dags" in DOCS

    def test_the_readme_says_how_to_follow_your_own_repository_instead(self):
        for key in ("airflow.dags.gitSync.repo", "airflow.dags.gitSync.branch", "airflow.dags.gitSync.subPath"):
            assert f"pulumi config set --path -s dev {key}" in DOCS, key
        assert "pulumi config rm --path -s dev airflow.dags.hostPath" in DOCS

    def test_the_dag_processor_and_every_task_pod_mount_the_node_folder(self):
        project, config, secret_keys, _ = load_stack_config(ROOT, "dev", env={})
        run = run_program(ROOT, "dev", config=config, secret_keys=secret_keys, project=project)
        (volume,) = [unwrap(r.inputs) for r in of_type(run, "core/v1:PersistentVolume") if "dags" in r.name]
        (claim,) = [unwrap(r.inputs) for r in of_type(run, "core/v1:PersistentVolumeClaim") if "dags" in r.name]
        assert volume["spec"]["hostPath"]["path"] == dev_stack()["dags"]["hostPath"]["path"]
        assert claim["spec"]["volumeName"] == volume["metadata"]["name"]
        airflow = next(r for r in of_type(run, "helm.sh/v3:Release") if unwrap(r.inputs)["chart"] == "airflow")
        objects = render_release(airflow)

        def claims(pod_spec: dict[str, Any]) -> set[str]:
            return {
                v["persistentVolumeClaim"]["claimName"] for v in pod_spec["volumes"] if "persistentVolumeClaim" in v
            }

        processor = next(
            o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("dag-processor")
        )
        assert claim["metadata"]["name"] in claims(processor["spec"]["template"]["spec"])
        config_map = next(
            o for o in objects if o["kind"] == "ConfigMap" and "pod_template_file.yaml" in o.get("data", {})
        )
        task_pod = yaml.safe_load(config_map["data"]["pod_template_file.yaml"])
        assert claim["metadata"]["name"] in claims(task_pod["spec"])


class TestTheDagFolder:
    def test_the_examples_are_there(self):
        names = {p.name for p in DAGS.glob("*.py")}
        assert {"example_etl.py", "example_pod_pass_fail.py", "example_task_image.py", "k8s_conventions.py"} <= names

    def test_dag_files_import_nothing_from_the_rest_of_this_repository(self):
        # Only dags/ reaches Airflow (git-sync subPath or the mount), so nothing else is importable there.
        local = {"components", "tests", "tests_dags", "benchmarks", "pulumi", "e2e"}
        for path in DAGS.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                assert not {n.split(".")[0] for n in names} & local, (path.name, names)

    def test_the_conventions_module_is_ignored_by_the_dag_processor(self):
        patterns = [
            line.strip()
            for line in (DAGS / ".airflowignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert "k8s_conventions.py" in patterns

    def test_the_readme_lists_every_example_dag(self):
        for dag_file in DAGS.glob("example_*.py"):
            assert f"`{dag_file.stem}`" in DOCS, dag_file.stem


GIT_HTTPS = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}


def launcher_subjects(objects: list[dict[str, Any]], extra: list[dict[str, Any]]) -> set[str]:
    """Accounts bound to the chart's pod-launcher Role, by the chart or by the stack."""
    roles = {o["metadata"]["name"] for o in objects if o["kind"] == "Role" and "pod-launcher" in o["metadata"]["name"]}
    bindings = [o for o in objects if o["kind"] == "RoleBinding"] + extra
    return {
        s["name"]
        for b in bindings
        if b["roleRef"]["kind"] == "Role" and b["roleRef"]["name"] in roles
        for s in b["subjects"]
    }


class TestTaskPodsMayLaunchPodsInAirflowsNamespace:
    @pytest.mark.parametrize(
        "executor", ["LocalExecutor", "CeleryExecutor", "KubernetesExecutor", "CeleryExecutor,KubernetesExecutor"]
    )
    def test_every_account_that_runs_tasks_is_bound_to_the_charts_pod_launcher_role(self, executor):
        run = run_stack({"executor": executor, "dags": GIT_HTTPS})
        objects = render_release(release(run))
        role = next(o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "airflow-pod-launcher-role")
        assert any("pods" in r["resources"] and "create" in r["verbs"] for r in role["rules"])
        ours = [unwrap(r.inputs) for r in of_type(run, "rbac.authorization.k8s.io/v1:RoleBinding")]
        ours = [{"roleRef": b["roleRef"], "subjects": b["subjects"]} for b in ours]
        assert set(run.outputs["taskServiceAccounts"]) <= launcher_subjects(objects, ours)

    def test_only_kubernetes_executor_task_pods_need_the_extra_binding(self):
        (binding,) = of_type(run_stack({"executor": "KubernetesExecutor", "dags": GIT_HTTPS}), ":RoleBinding")
        inputs = unwrap(binding.inputs)
        assert binding.name == "airflow-task-pod-launcher"
        assert inputs["metadata"]["namespace"] == "airflow"
        assert inputs["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "airflow-pod-launcher-role",
        }
        assert inputs["subjects"] == [
            {"kind": "ServiceAccount", "name": "airflow-worker-kubernetes", "namespace": "airflow"}
        ]
        assert of_type(run_stack({"executor": "CeleryExecutor", "dags": GIT_HTTPS}), ":RoleBinding") == []

    @pytest.mark.parametrize(
        "extra", [{"allowPodLaunching": False}, {"rbac": {"create": False}}, {"multiNamespaceMode": True}]
    )
    def test_no_binding_when_the_chart_makes_no_pod_launcher_role_in_the_namespace(self, extra):
        cfg = parse_airflow({"executor": "KubernetesExecutor", "dags": GIT_HTTPS, "extraValues": extra})
        assert task_pod_launcher_binding(cfg) is None
