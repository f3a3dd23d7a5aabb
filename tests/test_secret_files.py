"""Airflow's secrets as files: what each component mounts, and the contract with Airflow itself.

`tests_dags/fixtures/secret_files.json` is what AirflowRelease hands an Airflow 3 scheduler
(its `*_CMD` variables and `[secrets]` options, sample contents for each file). The test
below keeps it equal to what the code renders; tests_dags/test_secret_files.py runs Airflow's
own configuration parser and secrets backend over it. Update it after an intended change:
`python -m tests.test_secret_files`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.airflow.config.airflow import parse_airflow
from components.airflow.values.chart import chart_values
from components.airflow.values.secret_files import (
    SECRETS_DIR,
    TASK_POD_DATABASE,
    connections_file,
    secret_files,
    secrets_backend_config,
    variables_file,
)
from components.offline.checks.references import _mounted_files
from tests.helpers import DB_URL, file_commands, release, render_release, run_stack, values as release_values
from tests.test_airflow_release import executor_cases

FIXTURE = Path(__file__).resolve().parent.parent / "tests_dags" / "fixtures" / "secret_files.json"
GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
SAMPLES = {
    "fernet-key": "qv0hFxG8n0ZbOq3v6m2n7eYcSg6xGdXoO4FJk2WcZ9s=",
    # A driver the DAG virtualenv has (in memory): Airflow builds its engine from this at import time.
    "sql-alchemy-conn": "sqlite://",
    # Its async twin, as Airflow 3 reads it ([database] sql_alchemy_conn_async); aiosqlite is installed.
    "sql-alchemy-conn-async": "sqlite+aiosqlite://",
    "api-secret-key": "api-secret-sample",
    "jwt-secret": "jwt-secret-sample",
    "celery-broker-url": "redis://:pw@airflow-redis:6379/0",
}
CONNECTIONS = {
    "warehouse": "postgresql://etl:pw@warehouse:5432/dw",
    "kubernetes_default": '{"conn_type": "kubernetes", "extra": {"in_cluster": true}}',
}
VARIABLES = {"environment": "prod", "buckets": '["a", "b"]'}


def contract() -> dict[str, Any]:
    cfg = parse_airflow({"dags": GIT, "executor": "CeleryExecutor"})
    values = chart_values(cfg, connections_secret="airflow-pulumi-environment")
    env = values["env"] + values["scheduler"].get("env", [])
    files = {f.path: SAMPLES[f.file] for f in secret_files(cfg, "scheduler")}
    return {
        "env": env,
        "config": values["config"]["secrets"],
        "files": files,
        "connections.json": connections_file(CONNECTIONS),
        "variables.json": variables_file(VARIABLES),
        "secrets_dir": SECRETS_DIR,
    }


def test_the_airflow_contract_fixture_is_what_the_release_renders():
    assert json.loads(FIXTURE.read_text()) == contract(), "run `python -m tests.test_secret_files` after a change"


def test_the_contract_reads_every_secret_the_chart_would_put_in_the_environment():
    options = {e["name"].removesuffix("_CMD") for e in contract()["env"]}
    assert options == {
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CELERY__BROKER_URL",
    }
    assert contract()["config"] == secrets_backend_config()["secrets"]


@pytest.mark.parametrize(
    ("mount", "volume", "expected"),
    [
        (
            {"name": "s", "mountPath": "/run/s"},
            {"name": "s", "projected": {"sources": [{"secret": {"name": "a", "items": [{"key": "k", "path": "f"}]}}]}},
            {"/run/s/f"},
        ),
        ({"name": "s", "mountPath": "/run/s"}, {"name": "s", "secret": {"secretName": "a"}}, {"/run/s/"}),
        (
            {"name": "s", "mountPath": "/etc/f.ini", "subPath": "f.ini"},
            {"name": "s", "secret": {"secretName": "a", "items": [{"key": "k", "path": "f.ini"}]}},
            {"/etc/f.ini"},
        ),
        ({"name": "t", "mountPath": "/tmp"}, {"name": "t", "emptyDir": {}}, {"/tmp/"}),
    ],
)
def test_the_preview_knows_which_files_a_mount_provides(mount, volume, expected):
    assert _mounted_files({"volumeMounts": [mount]}, {"volumes": [volume]}) == expected


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload the chart renders, and the KubernetesExecutor pod template."""
    specs = [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet", "Job")
    ]
    for o in objects:
        if "pod_template_file.yaml" in o.get("data", {}):
            pod = next(d for d in yaml.safe_load_all(o["data"]["pod_template_file.yaml"]) if d)
            specs.append(("pod-template", pod["spec"]))
    return specs


# The chart gives these containers their secrets only through the environment.
CHART_ONLY_ENV_SECRETS = {("airflow-redis", "redis"), ("airflow-pgbouncer", "metrics-exporter")}


class TestEveryExecutor:
    @pytest.mark.parametrize(("version", "executor"), executor_cases())
    def test_no_airflow_container_gets_a_secret_through_its_environment(self, version, executor):
        run = run_stack(
            {"version": version, "executor": executor, "dags": GIT, "database": {"mode": "external"}},
            secrets={"databaseUrl": DB_URL},
        )
        for name, spec in pod_specs(render_release(release(run))):
            for container in spec["containers"] + spec.get("initContainers", []):
                if (name, container["name"]) in CHART_ONLY_ENV_SECRETS:
                    continue
                assert not [e for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})], (
                    name,
                    container["name"],
                )
                assert not [e for e in container.get("envFrom", []) if "secretRef" in e], (name, container["name"])

    @pytest.mark.parametrize(("version", "executor"), executor_cases())
    def test_every_file_airflow_reads_is_mounted_and_every_root_filesystem_is_read_only(self, version, executor):
        run = run_stack({"version": version, "executor": executor, "dags": GIT})
        seen = 0
        for name, spec in pod_specs(render_release(release(run))):
            if name == "airflow-postgresql":
                continue  # the bundled (laptop) Postgres: Bitnami's image rewrites its own conf directory
            for container in spec["containers"] + spec.get("initContainers", []):
                assert container["securityContext"].get("readOnlyRootFilesystem") is True, (name, container["name"])
                files = _mounted_files(container, spec)
                for option, path in file_commands(container).items():
                    assert path in files, (name, container["name"], option)
                    seen += 1
        assert seen > 10

    def test_the_root_filesystem_stays_writable_when_asked(self):
        run = run_stack({"dags": GIT, "readOnlyRootFilesystem": False})
        values_ = release_values(run)
        assert "readOnlyRootFilesystem" not in values_["securityContexts"]["containers"]
        assert "readOnlyRootFilesystem" not in values_["dags"]["gitSync"]["securityContexts"]["container"]
        # What only ever writes to its volumes stays read-only.
        assert values_["statsd"]["securityContexts"]["container"]["readOnlyRootFilesystem"] is True


def _pod_template(run: Any) -> dict[str, Any]:
    [spec] = [spec for name, spec in pod_specs(render_release(release(run))) if name == "pod-template"]
    return spec


class TestTaskPodsAndTheMetadataDatabase:
    """Airflow 3's tasks talk to the execution API: the KubernetesExecutor's pods get no way into the
    metadata database (no file of its Secrets, no command reading one), only a credential-less stand-in
    that keeps Airflow from falling back to SQLite when it is imported."""

    @pytest.mark.parametrize("executor", ["KubernetesExecutor", "CeleryExecutor,KubernetesExecutor"])
    def test_airflow_3_task_pods_mount_no_metadata_secret_and_read_a_stand_in(self, executor):
        run = run_stack(
            {"executor": executor, "dags": GIT, "database": {"mode": "external"}}, secrets={"databaseUrl": DB_URL}
        )
        spec = _pod_template(run)
        sources = [s for v in spec["volumes"] for s in (v.get("projected") or {}).get("sources", [])]
        secrets_ = {s["secret"]["name"] for s in sources if "secret" in s}
        assert secrets_, "the pod template mounts no projected Secret at all"
        assert not [n for n in secrets_ if "metadata" in n], secrets_
        [base] = [c for c in spec["containers"] if c["name"] == "base"]
        env = {e["name"]: e.get("value") for e in base["env"]}
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == TASK_POD_DATABASE["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"].startswith("postgresql+asyncpg://")
        assert "@" not in "".join(TASK_POD_DATABASE.values())  # no user, no password
        assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in file_commands(base)  # shadowed: never run
        assert "AIRFLOW__CORE__FERNET_KEY" in file_commands(base)  # the other files stay
        assert env["CONNECTION_CHECK_MAX_COUNT"] == "0"  # the entrypoint does not wait for the stand-in

    def test_the_scheduler_and_the_workers_still_read_the_database_from_their_files(self):
        run = run_stack({"executor": "CeleryExecutor,KubernetesExecutor", "dags": GIT})
        for name, spec in pod_specs(render_release(release(run))):
            if name.endswith(("-scheduler", "-worker")):
                [main] = [c for c in spec["containers"] if c["name"] in ("scheduler", "worker")]
                assert file_commands(main)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("/sql-alchemy-conn")

    def test_airflow_2_task_pods_keep_the_connection_they_run_tasks_with(self):
        spec = _pod_template(run_stack({"version": "2.11.0", "executor": "KubernetesExecutor", "dags": GIT}))
        [base] = [c for c in spec["containers"] if c["name"] == "base"]
        assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in {e["name"] for e in base["env"]}
        assert file_commands(base)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("/sql-alchemy-conn")

    def test_of_literal_database_urls_only_the_credential_less_stand_in_passes(self):
        from components.airflow.values.invariants import rendered_problems

        stand_in = TASK_POD_DATABASE["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        pod: dict[str, Any] = {
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {
                        "name": "c",
                        "env": [{"name": "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "value": "postgresql://u:pw@db/x"}],
                    }
                ]
            },
        }
        assert any("to a literal value" in m for _, _, m in rendered_problems([("s", pod)]))
        pod["spec"]["containers"][0]["env"][0]["value"] = stand_in
        assert not any("to a literal value" in m for _, _, m in rendered_problems([("s", pod)]))


def test_a_pinned_digest_names_the_airflow_image_in_every_pod_and_job():
    digest = "sha256:" + "ab" * 32
    run = run_stack(
        {
            "dags": GIT,
            "executor": "CeleryExecutor,KubernetesExecutor",
            "image": {"digest": digest},
            "fernetKey": {"generation": 2, "rotate": True},
        }
    )
    images = {
        c["image"]
        for _, spec in pod_specs(render_release(release(run)))
        for c in spec["containers"] + spec.get("initContainers", [])
        if c["image"].startswith("apache/airflow")
    }
    # The chart names the pod template's image by tag: it gets `<tag>@<digest>`, which runs the digest.
    assert images == {f"apache/airflow@{digest}", f"apache/airflow:3.2.0@{digest}"}
    from components.offline.program import unwrap
    from tests.helpers import of_type

    jobs = of_type(run, "batch/v1:Job")
    assert {"airflow-migrate", "airflow-rotate-fernet-key"} <= {j.name for j in jobs}
    for job in jobs:
        assert unwrap(job.inputs)["spec"]["template"]["spec"]["containers"][0]["image"] == f"apache/airflow@{digest}"


def test_extra_env_from_extra_values_joins_ours_instead_of_replacing_it():
    extra = {"env": [{"name": "TZ", "value": "UTC"}], "scheduler": {"env": [{"name": "EXTRA", "value": "1"}]}}
    cfg = parse_airflow({"dags": GIT, "extraValues": extra})
    values = chart_values(cfg)
    assert [e["name"] for e in values["env"]][-1] == "TZ"
    assert [e["name"] for e in values["env"]].count("AIRFLOW__CORE__FERNET_KEY_CMD") == 1
    assert [e["name"] for e in values["scheduler"]["env"]] == ["AIRFLOW__API_AUTH__JWT_SECRET_CMD", "EXTRA"]


def test_a_stack_without_connections_may_bring_its_own_secrets_backend():
    from components.platform.config import parse_stack

    vault = {"config": {"secrets": {"backend": "airflow.providers.hashicorp.secrets.vault.VaultBackend"}}}
    cfg = parse_stack({"airflow": json.dumps({"dags": GIT, "extraValues": vault})})
    assert cfg.airflow.extra_values == vault
    # Theirs, alone: no LocalFilesystemBackend (nor its kwargs) when nothing is declared.
    assert chart_values(cfg.airflow)["config"]["secrets"] == vault["config"]["secrets"]


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(contract(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")
