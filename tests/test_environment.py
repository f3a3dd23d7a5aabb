"""Connections, variables and pools as code, and pods that pick up a changed Secret."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.airflow.config.airflow import parse_airflow
from components.airflow.config.pools import pools_file
from components.airflow.values.jobs import import_pools_job
from components.core.reader import ConfigError
from components.offline.preview import preview
from components.offline.program import ProgramRun, is_secret, unwrap
from components.platform.config import parse_stack
from tests.helpers import (
    DB_URL,
    ROOT,
    connections_files,
    of_type,
    release,
    run_stack,
    secret_file_sources,
    values,
)

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
WAREHOUSE = "postgresql://etl:Sentinel-Pw-4711@warehouse:5432/dw"
S3 = {"conn_type": "aws", "login": "AKIA-SENTINEL", "password": "Sentinel-S3-0815", "extra": {"region_name": "eu"}}
CONNECTIONS = {"warehouse": WAREHOUSE, "s3_data": S3}
SENTINELS = ("Sentinel-Pw-4711", "Sentinel-S3-0815", "Sentinel-Var-9")


def stack(
    connections: dict[str, Any] | None = CONNECTIONS,
    variables: dict[str, Any] | None = None,
    *,
    secret_variables: bool = False,
    airflow: dict[str, Any] | None = None,
    **extra: Any,
) -> ProgramRun:
    secrets = {"connections": json.dumps(connections)} if connections is not None else {}
    if variables is not None and secret_variables:
        secrets["variables"] = json.dumps(variables)
    elif variables is not None:
        extra["variables"] = variables
    return run_stack(airflow or {"dags": GIT}, secrets=secrets, extra=extra)


def environment(run: ProgramRun) -> tuple[dict[str, Any], dict[str, Any]]:
    """(connections.json, variables.json) as the pods read them."""
    return connections_files(run)


def plaintext(value: Any) -> list[str]:
    """Every string outside a secret marker, recursively."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *plaintext(v)]]
    if isinstance(value, list):
        return [s for v in value for s in plaintext(v)]
    return [str(value)]


class TestConnectionsAndVariables:
    def test_declared_connections_and_variables_reach_the_connections_secret_next_to_sparks(self):
        run = stack(variables={"environment": "prod", "retries": 3, "buckets": ["a", "b"]}, spark={})
        connections, variables = environment(run)
        assert connections["warehouse"] == WAREHOUSE
        assert connections["s3_data"] == S3
        assert variables["environment"] == "prod"
        assert variables["retries"] == "3"
        assert json.loads(variables["buckets"]) == ["a", "b"]
        assert "kubernetes_default" in connections and "spark_job_namespace" in variables

    def test_every_airflow_container_and_the_task_pod_template_read_those_files(self, tmp_path):
        run = stack(
            variables={"environment": "prod"}, airflow={"dags": GIT, "executor": "CeleryExecutor,KubernetesExecutor"}
        )
        result = preview(ROOT, "test", tmp_path, run_checkov=False, program_run=run)
        assert [p.message for p in result.problems] == []
        wanted = {
            "/opt/airflow/secrets/connections.json": ("airflow-pulumi-environment", "connections.json"),
            "/opt/airflow/secrets/variables.json": ("airflow-pulumi-environment", "variables.json"),
        }

        def reads(pod_spec: dict[str, Any]) -> bool:
            # The Airflow container itself (sidecars such as the log groomer need no connections).
            airflow = next(c for c in pod_spec["containers"] if not c["name"].endswith("log-groomer"))
            files = secret_file_sources(pod_spec, airflow)
            return all(files.get(path) == source for path, source in wanted.items())

        workloads = {
            o["metadata"]["name"]: reads(o["spec"]["template"]["spec"])
            for o in result.objects
            if o["kind"] in ("Deployment", "StatefulSet")
            and o["spec"]["template"]["metadata"]["labels"].get("tier") == "airflow"
        }
        for name in (
            "airflow-scheduler",
            "airflow-worker",
            "airflow-api-server",
            "airflow-triggerer",
            "airflow-dag-processor",
        ):
            assert workloads[name], name
        (task_pod,) = [o for o in result.objects if o["kind"] == "Pod"]
        assert reads(task_pod["spec"])
        config = next(
            o for o in result.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "airflow-config"
        )
        backend_kwargs = next(
            json.loads(line.split("=", 1)[1])
            for line in config["data"]["airflow.cfg"].splitlines()
            if line.startswith("backend_kwargs")
        )
        assert backend_kwargs == {
            "connections_file_path": "/opt/airflow/secrets/connections.json",
            "variables_file_path": "/opt/airflow/secrets/variables.json",
        }

    @pytest.mark.parametrize("secret_variables", [True, False])
    def test_values_are_never_plaintext_in_a_resource_input_an_output_or_the_helm_values(self, secret_variables):
        run = stack(variables={"token": "Sentinel-Var-9"}, secret_variables=secret_variables)
        for res in run.resources:
            for text in plaintext(res.inputs):
                assert not any(s in text for s in SENTINELS), f"{res.name}: {text}"
        assert not any(s in json.dumps(run.outputs, default=str) for s in SENTINELS)
        assert not any(s in json.dumps(unwrap(release(run).inputs)["values"]) for s in SENTINELS)

    def test_plain_variables_may_sit_in_the_stack_file(self):
        cfg = parse_stack({"airflow": json.dumps({"dags": GIT}), "variables": '{"environment": "dev"}'})
        assert cfg.variables == {"environment": "dev"}

    def test_a_bad_secret_value_is_named_by_its_key_but_never_shown(self):
        with pytest.raises(ConfigError) as err:
            parse_stack(
                {"airflow": json.dumps({"dags": GIT}), "connections": '{"w": "Sentinel-Pw-4711 no scheme"}'},
                {"connections"},
            )
        assert "connections.w" in str(err.value) and "Sentinel" not in str(err.value)
        with pytest.raises(ConfigError) as err:
            parse_stack({"airflow": json.dumps({"dags": GIT}), "variables": "Sentinel-Var-9 {"}, {"variables"})
        assert "'variables'" in str(err.value) and "Sentinel" not in str(err.value)

    @pytest.mark.parametrize(
        ("key", "value", "fragment"),
        [
            ("connections", {"kubernetes_default": "kubernetes://"}, "'spark' config"),
            ("connections", {"KUBERNETES_DEFAULT": "kubernetes://"}, "'spark' config"),
            ("variables", {"spark_executor_service_account": "x"}, "spark.jobNamespaces and spark.serviceAccounts"),
        ],
    )
    def test_an_id_the_platform_sets_cannot_be_declared_again(self, key, value, fragment):
        values_ = {"airflow": json.dumps({"dags": GIT}), "spark": "{}", key: json.dumps(value)}
        with pytest.raises(ConfigError, match=fragment):
            parse_stack(values_, {"connections"} if key == "connections" else set())

    def test_without_spark_the_same_id_is_the_users(self):
        connections, _ = environment(stack({"kubernetes_default": "kubernetes://?in_cluster=true"}))
        assert connections["kubernetes_default"] == "kubernetes://?in_cluster=true"


class TestPools:
    POOLS = {"etl": {"slots": 8, "description": "Nightly ETL"}, "default_pool": {"slots": 64, "includeDeferred": True}}

    def test_pools_are_imported_by_a_job_after_the_release_from_a_configmap(self, tmp_path):
        run = run_stack({"dags": GIT, "pools": self.POOLS})
        (cm,) = of_type(run, "core/v1:ConfigMap")
        data = json.loads(unwrap(cm.inputs)["data"]["pools.json"])
        # Airflow's `pools import` format: every pool needs slots and description.
        assert data == {
            "default_pool": {"slots": 64, "description": "", "include_deferred": True},
            "etl": {"slots": 8, "description": "Nightly ETL", "include_deferred": False},
        }
        (job,) = [j for j in of_type(run, "batch/v1:Job") if j.name == "airflow-import-pools"]
        assert release(run).urn in job.dependencies and cm.urn in job.dependencies
        pod = unwrap(job.inputs)["spec"]["template"]["spec"]
        assert pod["containers"][0]["args"][-1] == "exec airflow pools import /opt/airflow/pools/pools.json"
        assert {"name": "pools", "configMap": {"name": "airflow-pulumi-pools"}} in pod["volumes"]
        result = preview(ROOT, "test", tmp_path, run_checkov=False, program_run=run)
        assert [p.message for p in result.problems] == []

    def test_changed_pools_are_a_new_job_and_unchanged_pools_the_same(self):
        a = parse_airflow({"dags": GIT, "pools": self.POOLS})
        b = parse_airflow({"dags": GIT, "pools": {**self.POOLS, "etl": {"slots": 9}}})
        again = parse_airflow({"dags": GIT, "pools": dict(reversed(list(self.POOLS.items())))})
        name = import_pools_job(a, a.pools)["metadata"]["name"]
        assert name.startswith("airflow-import-pools-")
        assert import_pools_job(b, b.pools)["metadata"]["name"] != name
        assert import_pools_job(again, again.pools)["metadata"]["name"] == name
        assert pools_file(again.pools) == pools_file(a.pools)

    def test_no_pools_no_job(self):
        run = run_stack({"dags": GIT})
        assert [j.name for j in of_type(run, "batch/v1:Job")] == ["airflow-migrate"]  # the schema's, always
        assert of_type(run, "core/v1:ConfigMap") == []


def revisions(run: ProgramRun, path: str) -> dict[str, str]:
    node: Any = values(run)
    for part in path.split("."):
        node = node.get(part, {})
    return {k: v for k, v in (node.get("podAnnotations") or {}).items() if k.endswith("-revision")}


class TestChangedSecretsRestartPods:
    AIRFLOW = {"dags": GIT, "executor": "CeleryExecutor", "database": {"mode": "external"}}

    def run(self, connections: dict[str, Any], db: str = DB_URL, **airflow: Any) -> ProgramRun:
        return run_stack(
            {**self.AIRFLOW, **airflow}, secrets={"databaseUrl": db, "connections": json.dumps(connections)}
        )

    def test_a_changed_connection_restarts_the_airflow_pods_and_nothing_else_changes(self):
        before = self.run({"w": "postgresql://u:one@h/db"})
        after = self.run({"w": "postgresql://u:two@h/db"})
        for path in ("scheduler", "apiServer", "triggerer", "dagProcessor", "workers.celery"):
            a, b = revisions(before, path), revisions(after, path)
            assert set(a) == {
                "airflow-k8s/fernet-key-revision",
                "airflow-k8s/metadata-revision",
                "airflow-k8s/broker-url-revision",
                "airflow-k8s/environment-revision",
            }
            assert {k for k in a if a[k] != b[k]} == {"airflow-k8s/environment-revision"}, path
        assert revisions(before, "pgbouncer") == revisions(after, "pgbouncer")

    def test_a_new_database_password_restarts_airflow_and_pgbouncer(self):
        before = self.run({"w": "postgresql://u:one@h/db"})
        after = self.run({"w": "postgresql://u:one@h/db"}, db=DB_URL.replace("s3cr%40t-db", "n3w-pw"))
        a, b = revisions(before, "scheduler"), revisions(after, "scheduler")
        assert {k for k in a if a[k] != b[k]} == {"airflow-k8s/metadata-revision"}
        assert revisions(before, "pgbouncer") != revisions(after, "pgbouncer")

    def test_scaling_restarts_nothing_and_no_annotation_carries_secret_material(self):
        one = self.run({"w": "postgresql://u:one@h/db"})
        more = self.run({"w": "postgresql://u:one@h/db"}, scheduler={"replicas": 3})
        assert revisions(one, "scheduler") == revisions(more, "scheduler")
        assert all(v.isdigit() for v in revisions(one, "scheduler").values())
