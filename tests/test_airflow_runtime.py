"""Every container that runs Airflow gets what Airflow reads and writes (components/airflow/values/airflow_runtime.py).

Found by running real Airflow with what the stacks render, on a read-only root: the `db-clean`
CronJob had no airflow.cfg (Airflow's attempt to write a default one failed), the chart's cleanup
CronJob had no /tmp ("No usable temporary directory found") and no metadata connection. One rule
over every container of both stacks' rendered pods, whoever renders them, instead of one test per
object; the offline preview reports what breaks it (rule `guarantee`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from components.airflow.values.airflow_runtime import runs_airflow, runtime_problems
from components.airflow.values.invariants import rendered_problems
from components.offline.preview import PreviewResult, preview
from tests.helpers import ROOT

STACKS = ("dev", "prod")
CMD = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"
ASYNC = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC_CMD"
IMAGE = "apache/airflow:3.2.0"


@pytest.fixture(scope="module")
def previews(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PreviewResult]:
    out = tmp_path_factory.mktemp("runtime")
    return {stack: preview(ROOT, stack, out / stack, run_checkov=False) for stack in STACKS}


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]["template"]["spec"]
        elif obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            spec = spec["template"]["spec"]
        elif obj["kind"] != "Pod":
            continue
        yield obj["kind"], f"{obj['kind']}/{obj['metadata']['name']}", spec


def airflow_containers(objects: list[dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    for kind, ident, spec in pod_specs(objects):
        for container in (spec.get("initContainers") or []) + spec["containers"]:
            if runs_airflow(kind, container):
                yield kind, ident, spec, container


def container(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "c",
        "image": IMAGE,
        "args": ["bash", "-c", "exec airflow db clean --yes"],
        "env": [
            {"name": CMD, "value": "cat /opt/airflow/secrets/sql-alchemy-conn"},
            {"name": ASYNC, "value": "cat /opt/airflow/secrets/sql-alchemy-conn-async"},
        ],
        "securityContext": {"readOnlyRootFilesystem": True},
        "volumeMounts": [
            {"name": "config", "mountPath": "/opt/airflow/airflow.cfg", "subPath": "airflow.cfg", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return {**base, **fields}


SPEC = {"volumes": [{"name": "config", "configMap": {"name": "airflow-config"}}, {"name": "tmp", "emptyDir": {}}]}


class TestEveryAirflowContainerOfBothStacks:
    @pytest.mark.parametrize("stack", STACKS)
    def test_has_airflow_cfg_the_metadata_connections_and_a_writable_tmp(self, previews, stack):
        lacking = [
            f"{ident}: {message}"
            for kind, ident, spec, c in airflow_containers(previews[stack].objects)
            for message in runtime_problems(kind, spec, c)
        ]
        assert lacking == []

    @pytest.mark.parametrize("stack", STACKS)
    def test_the_rule_sees_the_chart_pods_our_jobs_and_the_task_pod_template(self, previews, stack):
        seen = {(ident, c["name"]) for _, ident, _, c in airflow_containers(previews[stack].objects)}
        expected = {
            ("Deployment/airflow-scheduler", "scheduler"),
            ("Deployment/airflow-scheduler", "wait-for-airflow-migrations"),
            ("Deployment/airflow-api-server", "api-server"),
            ("Job/airflow-create-user", "create-user"),
            ("Job/airflow-create-user", "wait-for-airflow-migrations"),
            ("CronJob/airflow-db-clean", "db-clean"),
            ("CronJob/airflow-db-clean", "wait-for-airflow-migrations"),
        }
        expected |= (
            {("Pod/placeholder-name", "base"), ("CronJob/airflow-cleanup-pods", "cleanup-pods")}
            if stack == "dev"
            else {("Deployment/airflow-worker", "worker"), ("Deployment/airflow-flower", "flower")}
        )
        assert expected <= seen
        assert any(
            ident.startswith("Job/airflow-migrate-") and name == "run-airflow-migrations" for ident, name in seen
        )

    @pytest.mark.parametrize("stack", STACKS)
    def test_only_the_log_groomer_and_the_backups_pg_dump_run_the_airflow_image_without_airflow(self, previews, stack):
        others = {
            c["name"]
            for kind, _, _, c in (
                (kind, ident, spec, c)
                for kind, ident, spec in pod_specs(previews[stack].objects)
                for c in (spec.get("initContainers") or []) + spec["containers"]
            )
            if c.get("image", "").startswith("apache/airflow:3") and not runs_airflow(kind, c)
        }
        assert others == {"scheduler-log-groomer", "pg-dump"}

    @pytest.mark.parametrize("stack", STACKS)
    def test_the_preview_reports_no_broken_guarantee(self, previews, stack):
        assert [p for p in previews[stack].problems if p.rule == "guarantee"] == []


class TestStartingUnderLoad:
    """A slow start is not a crash: on a 2-core node under load the chart's one-minute startup probes
    restarted the scheduler and the api-server before Airflow had finished importing."""

    @pytest.mark.parametrize("stack", STACKS)
    def test_the_scheduler_and_the_api_server_may_take_five_minutes_to_start(self, previews, stack):
        budgets = {
            ident: c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
            for _, ident, _, c in airflow_containers(previews[stack].objects)
            if c["name"] in ("scheduler", "api-server")
        }
        assert budgets == {"Deployment/airflow-scheduler": 300, "Deployment/airflow-api-server": 300}

    @pytest.mark.parametrize("stack", STACKS)
    def test_once_started_a_hung_server_is_restarted_as_quickly_as_the_chart_would(self, previews, stack):
        liveness = {
            c["name"]: (c["livenessProbe"]["periodSeconds"], c["livenessProbe"]["failureThreshold"])
            for _, _, _, c in airflow_containers(previews[stack].objects)
            if c["name"] in ("scheduler", "api-server")
        }
        assert liveness == {"scheduler": (60, 5), "api-server": (10, 5)}


class TestFlowerStartingUnderLoad:
    """Found on the real node (node-prod): Flower imports Airflow and Celery too, and the chart's
    one-minute startup probe restarted it twice before it answered."""

    def test_flower_may_take_five_minutes_to_start(self, previews):
        budgets = {
            ident: c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
            for _, ident, _, c in airflow_containers(previews["prod"].objects)
            if c["name"] == "flower"
        }
        assert budgets == {"Deployment/airflow-flower": 300}


class TestTheRule:
    def test_a_complete_container_passes(self):
        assert runtime_problems("Job", SPEC, container()) == []

    @pytest.mark.parametrize(
        ("change", "fragment"),
        [
            (
                {"volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]},
                "without airflow.cfg mounted at /opt/airflow/airflow.cfg",
            ),
            ({"env": [{"name": ASYNC, "value": "cat /g"}]}, "without the metadata connection"),
            ({"env": [{"name": CMD, "value": "cat /f"}]}, "Airflow 3 without its async database URL"),
            (
                {"volumeMounts": container()["volumeMounts"][:1]},
                "read-only root and no writable /tmp",
            ),
        ],
        ids=["no-config", "no-connection", "no-async-url", "no-tmp"],
    )
    def test_a_container_lacking_one_thing_is_a_problem_naming_it(self, change, fragment):
        (problem,) = runtime_problems("Job", SPEC, container(**change))
        assert fragment in problem and "'c'" in problem

    def test_the_task_pods_stand_in_database_needs_the_entrypoint_not_to_wait_for_it(self):
        """Found on the node: every task pod waited a minute for the stand-in, then failed."""
        from components.airflow.values.secret_files import NO_DATABASE_WAIT, TASK_POD_DATABASE

        stand_in = [{"name": k, "value": v} for k, v in TASK_POD_DATABASE.items()]
        (problem,) = runtime_problems("Job", SPEC, container(env=container()["env"] + stand_in))
        assert "CONNECTION_CHECK_MAX_COUNT=0" in problem
        wait = [{"name": k, "value": v} for k, v in NO_DATABASE_WAIT.items()]
        assert runtime_problems("Job", SPEC, container(env=[*container()["env"], *stand_in, *wait])) == []

    def test_a_read_only_tmp_is_no_tmp(self):
        ro = container(
            volumeMounts=[container()["volumeMounts"][0], {"name": "tmp", "mountPath": "/tmp", "readOnly": True}]
        )
        (problem,) = runtime_problems("Job", SPEC, ro)
        assert "no writable /tmp" in problem

    def test_a_writable_root_needs_no_tmp_mount_and_airflow_2_no_async_url(self):
        c = container(
            image="apache/airflow:2.11.0",
            env=[{"name": CMD, "value": "cat /f"}],
            securityContext={},
            volumeMounts=container()["volumeMounts"][:1],
        )
        assert runtime_problems("Job", SPEC, c) == []

    def test_airflow_home_moves_the_config_it_needs(self):
        c = container(env=[*container()["env"], {"name": "AIRFLOW_HOME", "value": "/srv/airflow"}])
        (problem,) = runtime_problems("Job", SPEC, c)
        assert "/srv/airflow/airflow.cfg" in problem

    @pytest.mark.parametrize(
        ("kind", "fields", "runs"),
        [
            ("Job", {"args": ["bash", "-c", "exec airflow db migrate"]}, True),
            ("Job", {"args": ["airflow", "db", "check-migrations"]}, True),
            ("Job", {"command": ["bash", "-c", "set -e; airflow users create -r Admin"]}, True),
            ("Pod", {"name": "base", "args": []}, True),  # the task pod template: the executor supplies the command
            ("Deployment", {"args": ["bash", "/clean-logs"]}, False),
            ("Job", {"command": ["bash", "-c", "pg_dump --file=airflow-metadata-x.dump"]}, False),
            ("Pod", {"name": "sidecar", "args": []}, False),
        ],
    )
    def test_what_counts_as_running_airflow(self, kind, fields, runs):
        assert runs_airflow(kind, {"name": "c", **fields}) is runs

    def test_the_preview_guarantees_include_it(self):
        obj = {
            "kind": "CronJob",
            "metadata": {"name": "db-clean"},
            "spec": {
                "jobTemplate": {"spec": {"template": {"spec": {**SPEC, "containers": [container(volumeMounts=[])]}}}}
            },
        }
        problems = rendered_problems([("airflow-db-clean", obj)])
        assert [(p[0], p[1]) for p in problems] == [("airflow-db-clean", "CronJob/db-clean")] * 2
        assert "airflow.cfg" in problems[0][2] and "/tmp" in problems[1][2]


class TestTheUiLeavesItsServiceBeforeItStops:
    """An image rollout must not fail a request to the api-server's Service (node-prod's `rollout`
    part counts them). A deleted pod gets SIGTERM at the moment it is taken out of the Service's
    endpoints; kube-proxy applies that later, and a server that stops listening at once refuses
    what is sent meanwhile. The preStop hook holds SIGTERM back, within the grace period."""

    @pytest.mark.parametrize("stack", STACKS)
    def test_the_api_server_waits_before_it_stops(self, previews, stack):
        hooks = {
            ident: (c.get("lifecycle") or {}).get("preStop")
            for _, ident, _, c in airflow_containers(previews[stack].objects)
            if c["name"] == "api-server"
        }
        assert hooks == {"Deployment/airflow-api-server": {"exec": {"command": ["sleep", "10"]}}}

    @pytest.mark.parametrize("stack", STACKS)
    def test_the_wait_ends_well_within_its_grace_period(self, previews, stack):
        for _, ident, spec, c in airflow_containers(previews[stack].objects):
            if c["name"] == "api-server":
                waited = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
                assert 5 <= waited <= spec.get("terminationGracePeriodSeconds", 30) - 15, ident

    def test_airflow_2s_webserver_waits_too(self):
        from components.airflow.config.airflow import parse_airflow
        from components.airflow.values.chart import chart_values

        cfg = parse_airflow({"version": "2.11.0", "dags": {"mode": "hostPath", "hostPath": {"path": "/data/dags"}}})
        values = chart_values(cfg)
        assert values["webserver"]["containerLifecycleHooks"]["preStop"] == {"exec": {"command": ["sleep", "10"]}}
        assert "containerLifecycleHooks" not in values["apiServer"]


class TestAStalledCeleryWorkerIsRestartedWithinMinutes:
    """Found on the real node (node-prod's `redis-restart`): after Redis restarted, the Celery worker
    logged "Connected to redis://..." but took no task and answered no ping (kombu 5.6's Redis
    transport, celery/kombu#2492 and #2630). The task Airflow sent waited in Redis until the chart's
    liveness probe (`celery inspect ping` importing Airflow, 5 x 60 s) restarted the worker after
    4 min 50 s. The component's probe pings the worker without importing Airflow, so it can run
    often enough to restart such a worker in about a minute and a quarter."""

    @staticmethod
    def worker(previews: dict[str, PreviewResult]) -> dict[str, Any]:
        (c,) = [c for _, _, _, c in airflow_containers(previews["prod"].objects) if c["name"] == "worker"]
        return c

    def test_a_worker_that_answers_no_ping_is_restarted_within_90_seconds(self, previews):
        probe = self.worker(previews)["livenessProbe"]
        assert probe["periodSeconds"] * probe["failureThreshold"] + probe["timeoutSeconds"] <= 90

    def test_a_starting_worker_has_as_long_as_three_minutes_before_its_first_probe(self, previews):
        probe = self.worker(previews)["livenessProbe"]
        assert probe["initialDelaySeconds"] >= 180

    def test_the_probe_pings_this_worker_with_the_broker_url_it_reads_and_imports_no_airflow(self, previews):
        c = self.worker(previews)
        command = c["livenessProbe"]["exec"]["command"]
        assert command[:2] == ["python", "-c"]
        assert "airflow" not in command[2] and "/entrypoint" not in command
        broker_cmd = {e["name"]: e.get("value") for e in c["env"]}["AIRFLOW__CELERY__BROKER_URL_CMD"]
        assert broker_cmd == f"cat {command[3]}"

    @pytest.mark.parametrize(("replies", "code"), [([{"celery@worker-0": {"ok": "pong"}}], 0), ([], 1)])
    def test_the_probe_passes_only_when_this_worker_answers(self, previews, tmp_path, replies, code):
        import socket
        import subprocess
        import sys

        command = self.worker(previews)["livenessProbe"]["exec"]["command"]
        fake = tmp_path / "celery"
        fake.mkdir()
        (fake / "__init__.py").write_text(
            "import json, sys\n"
            "class Celery:\n"
            "    def __init__(self, broker):\n"
            "        self.broker = broker\n"
            "        self.control = self\n"
            "    def ping(self, destination, timeout):\n"
            "        print(json.dumps([self.broker, destination, timeout]))\n"
            f"        return {replies!r}\n"
        )
        url = tmp_path / "celery-broker-url"
        url.write_text("redis://:secret@airflow-redis:6379/0\n")
        done = subprocess.run(
            [sys.executable, "-c", command[2], str(url)],
            env={"PYTHONPATH": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == code, done.stderr
        broker, destination, timeout = json.loads(done.stdout)
        assert broker == "redis://:secret@airflow-redis:6379/0"
        assert destination == [f"celery@{socket.gethostname()}"]
        assert timeout < self.worker(previews)["livenessProbe"]["timeoutSeconds"]

    def test_airflow_2s_celery_workers_get_it_and_no_celery_no_probe(self):
        from components.airflow.config.airflow import parse_airflow
        from components.airflow.values.chart import WORKER_LIVENESS, chart_values

        dags = {"mode": "hostPath", "hostPath": {"path": "/data/dags"}}
        two = chart_values(parse_airflow({"version": "2.11.0", "executor": "CeleryKubernetesExecutor", "dags": dags}))
        assert {k: two["workers"]["livenessProbe"][k] for k in WORKER_LIVENESS} == WORKER_LIVENESS
        k8s = chart_values(parse_airflow({"executor": "KubernetesExecutor", "dags": dags}))
        assert "livenessProbe" not in k8s["workers"]
