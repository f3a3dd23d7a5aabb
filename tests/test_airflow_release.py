"""AirflowRelease under Pulumi mocks, with its chart rendered for real."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from components.airflow.values.chart import SecretNames
from components.core.reader import ConfigError
from components.offline.program import secret_paths, unwrap
from tests.helpers import (
    DB_URL,
    KNOWN_HOSTS,
    SSH_KEY,
    connections_files,
    inventory,
    of_type,
    release,
    releases,
    render_release,
    run_stack,
    secret_file_sources,
    secrets_by_name,
    values,
)

GIT_HTTPS = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}

# Every values key that names a Secret, and the key the chart reads from it.
SECRET_NAME_KEYS = {
    "fernetKeySecretName": "fernet-key",
    "apiSecretKeySecretName": "api-secret-key",
    "jwtSecretName": "jwt-secret",
    "webserverSecretKeySecretName": "webserver-secret-key",
    "data.metadataSecretName": "connection",
    "data.brokerUrlSecretName": "connection",
    "redis.passwordSecretName": "password",
    "pgbouncer.configSecretName": "pgbouncer.ini",
    "pgbouncer.metricsExporterSidecar.statsSecretName": "connection",
    "dags.gitSync.credentialsSecret": "GITSYNC_PASSWORD",
    "dags.gitSync.sshKeySecret": "gitSshKey",
}


def dig(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def executor_cases() -> list[tuple[str, str]]:
    three = ["LocalExecutor", "CeleryExecutor", "KubernetesExecutor", "CeleryExecutor,KubernetesExecutor"]
    two = ["LocalExecutor", "CeleryExecutor", "KubernetesExecutor", "CeleryKubernetesExecutor"]
    return [("3.2.0", e) for e in three] + [("2.11.0", e) for e in two]


class TestExecutors:
    @pytest.mark.parametrize(("version", "executor"), executor_cases())
    def test_each_executor_renders_with_its_components_and_no_chart_made_secret(self, version, executor):
        run = run_stack({"version": version, "executor": executor, "dags": GIT_HTTPS})
        objects = render_release(release(run))
        kinds = inventory(objects)
        assert not [o for o in objects if o["kind"] == "Secret"], "the chart must not generate any Secret"
        celery = "Celery" in executor
        assert (("StatefulSet", "airflow-redis") in kinds) is celery
        assert any(k[1] == "airflow-worker" for k in kinds if k[0] in ("Deployment", "StatefulSet")) is celery
        ui = "airflow-api-server" if version.startswith("3") else "airflow-webserver"
        assert ("Deployment", ui) in kinds
        assert ("Service", ui) in kinds
        assert run.outputs["uiServiceName"] == ui
        assert run.outputs["uiServicePort"] == 8080

    @pytest.mark.parametrize(("version", "executor"), executor_cases())
    def test_service_account_outputs_are_the_ones_the_chart_creates(self, version, executor):
        run = run_stack({"version": version, "executor": executor, "dags": GIT_HTTPS})
        rendered = {o["metadata"]["name"] for o in render_release(release(run)) if o["kind"] == "ServiceAccount"}
        assert set(run.outputs["serviceAccounts"].values()) == rendered
        assert run.outputs["taskServiceAccounts"]
        assert set(run.outputs["taskServiceAccounts"]) <= rendered

    @pytest.mark.parametrize(
        ("executor", "task_accounts"),
        [
            ("LocalExecutor", ["airflow-scheduler"]),
            ("CeleryExecutor", ["airflow-worker"]),
            ("KubernetesExecutor", ["airflow-worker-kubernetes"]),
            ("CeleryExecutor,KubernetesExecutor", ["airflow-worker", "airflow-worker-kubernetes"]),
        ],
    )
    def test_task_service_accounts_follow_the_executor(self, executor, task_accounts):
        run = run_stack({"executor": executor, "dags": GIT_HTTPS})
        assert run.outputs["taskServiceAccounts"] == task_accounts

    def test_kubernetes_executor_pods_use_the_worker_kubernetes_account(self):
        run = run_stack({"executor": "KubernetesExecutor", "dags": GIT_HTTPS})
        configmaps = [o for o in render_release(release(run)) if o["kind"] == "ConfigMap"]
        template = next(
            c["data"]["pod_template_file.yaml"] for c in configmaps if "pod_template_file.yaml" in c.get("data", {})
        )
        pod = next(d for d in yaml.safe_load_all(template) if d)
        assert pod["spec"]["serviceAccountName"] == "airflow-worker-kubernetes"


class TestSecrets:
    @pytest.mark.parametrize("version", ["3.2.0", "2.11.0"])
    def test_every_secret_the_chart_references_by_name_is_declared_with_its_key(self, version):
        run = run_stack(
            {
                "version": version,
                "executor": "CeleryExecutor",
                "database": {"mode": "external"},
                "dags": {
                    "mode": "gitSync",
                    "gitSync": {"repo": "git@github.com:org/dags.git", "knownHosts": KNOWN_HOSTS},
                },
            },
            secrets={"databaseUrl": DB_URL, "gitSshKey": SSH_KEY},
        )
        vals = values(run)
        declared = secrets_by_name(run)
        referenced = {k: dig(vals, k) for k in SECRET_NAME_KEYS if dig(vals, k)}
        expected = {
            "fernetKeySecretName",
            "data.metadataSecretName",
            "data.brokerUrlSecretName",
            "redis.passwordSecretName",
        }
        expected |= (
            {"apiSecretKeySecretName", "jwtSecretName"} if version.startswith("3") else {"webserverSecretKeySecretName"}
        )
        expected |= {
            "pgbouncer.configSecretName",
            "pgbouncer.metricsExporterSidecar.statsSecretName",
            "dags.gitSync.sshKeySecret",
        }
        assert expected <= set(referenced)
        for key, name in referenced.items():
            assert name in declared, f"{key} names {name}, which is not declared"
            string_data = unwrap(declared[name].inputs)["stringData"]
            assert SECRET_NAME_KEYS[key] in string_data

    def test_every_declared_secret_keeps_its_data_secret(self):
        run = run_stack({"executor": "CeleryExecutor", "dags": GIT_HTTPS})
        for name, res in secrets_by_name(run).items():
            assert secret_paths(res.inputs) == ["stringData"], name

    @pytest.mark.parametrize(
        "secrets",
        [{}, {"databaseUrl": DB_URL, "gitSshKey": SSH_KEY}],
        ids=["bundled-db", "external-db-and-ssh"],
    )
    def test_no_secret_value_appears_anywhere_in_the_release_inputs(self, secrets):
        airflow: dict[str, Any] = {"executor": "CeleryExecutor", "dags": GIT_HTTPS}
        if secrets:
            airflow["database"] = {"mode": "external"}
            airflow["dags"] = {
                "mode": "gitSync",
                "gitSync": {"repo": "git@github.com:o/d.git", "knownHosts": KNOWN_HOSTS},
            }
        run = run_stack(airflow, secrets=secrets)
        rel = release(run)
        assert secret_paths(rel.inputs) == []
        text = json.dumps(unwrap(rel.inputs))
        secret_values: list[str] = []
        for res in of_type(run, "core/v1:Secret"):
            secret_values += [v for v in unwrap(res.inputs)["stringData"].values() if len(v) >= 8]
        secret_values += ["s3cr@t-db", "s3cr%40t-db", "b3BlbnNzaC1rZXktdjEAAAAA"]
        assert secret_values
        for value in secret_values:
            assert value not in text

    def test_the_fernet_key_is_32_random_bytes_in_url_safe_base64(self):
        run = run_stack({"dags": GIT_HTTPS})
        key = unwrap(secrets_by_name(run)["airflow-pulumi-fernet-key"].inputs)["stringData"]["fernet-key"]
        assert len(key) == 44
        assert key.endswith("=")
        assert set(key) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")
        assert len(base64.urlsafe_b64decode(key)) == 32

    def test_secret_names_never_collide_with_the_charts_defaults(self):
        chart_defaults = {
            f"airflow-{s}"
            for s in (
                "fernet-key",
                "api-secret-key",
                "jwt-secret",
                "webserver-secret-key",
                "redis-password",
                "broker-url",
                "metadata",
                "result-backend",
                "pgbouncer-config",
                "pgbouncer-stats",
                "pgbouncer-certificates",
                "ssh-secret",
                "postgresql",
                "flower",
            )
        }
        names = SecretNames("airflow")
        ours = {getattr(names, p) for p in dir(SecretNames) if isinstance(getattr(SecretNames, p), property)}
        assert len(ours) == 17
        assert not ours & chart_defaults

    def test_the_admin_password_is_generated_secret_and_never_admin(self):
        run = run_stack({"dags": GIT_HTTPS})
        assert "adminPassword" in run.secret_outputs
        assert run.outputs["adminPassword"] not in ("admin", "")
        assert len(run.outputs["adminPassword"]) == 24
        job = next(
            o
            for o in render_release(release(run))
            if o["kind"] == "Job" and o["metadata"]["name"] == "airflow-create-user"
        )
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert "admin" not in container["args"][container["args"].index("--username") + 2 :]
        files = secret_file_sources(job["spec"]["template"]["spec"], container)
        assert files["/opt/airflow/secrets/admin-password"] == ("airflow-pulumi-admin", "password")
        assert '--password "$(cat /opt/airflow/secrets/admin-password)"' in container["args"][2]
        assert "-p" not in container["args"]
        assert not any("valueFrom" in e for e in container.get("env", []))

    def test_the_create_user_job_waits_for_the_migrations_before_creating_the_admin(self):
        run = run_stack({"dags": GIT_HTTPS, "image": {"tag": "3.2.1"}, "version": "3.2.1"})
        job = next(
            o
            for o in render_release(release(run))
            if o["kind"] == "Job" and o["metadata"]["name"] == "airflow-create-user"
        )
        pod = job["spec"]["template"]["spec"]
        (wait,) = pod["initContainers"]
        assert wait["name"] == "wait-for-airflow-migrations"
        assert wait["args"] == ["airflow", "db", "check-migrations", "--migration-wait-timeout=60"]
        assert wait["image"] == pod["containers"][0]["image"] == "apache/airflow:3.2.1"
        # the database connection from the Job's own secret files (never the admin password)
        files = secret_file_sources(pod, wait)
        assert files["/opt/airflow/secrets/sql-alchemy-conn"] == ("airflow-pulumi-metadata", "connection")
        assert "/opt/airflow/secrets/admin-password" not in {e["value"].removeprefix("cat ") for e in wait["env"]}

    def test_the_bundled_postgres_uses_a_generated_password_from_our_secret(self):
        run = run_stack({"dags": GIT_HTTPS})
        vals = values(run)
        assert vals["postgresql"]["auth"]["existingSecret"] == "airflow-pulumi-postgres"
        password = unwrap(secrets_by_name(run)["airflow-pulumi-postgres"].inputs)["stringData"]["postgres-password"]
        assert password != "postgres" and len(password) == 32
        connection = unwrap(secrets_by_name(run)["airflow-pulumi-metadata"].inputs)["stringData"]["connection"]
        assert (
            connection == f"postgresql://postgres:{password}@airflow-postgresql.airflow:5432/postgres?sslmode=disable"
        )
        statefulset = next(
            o
            for o in render_release(release(run))
            if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "airflow-postgresql"
        )
        env = {e["name"]: e for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "airflow-pulumi-postgres"

    def test_an_external_database_goes_through_pgbouncer_with_our_config(self):
        run = run_stack(
            {"executor": "CeleryExecutor", "database": {"mode": "external"}, "dags": GIT_HTTPS},
            secrets={"databaseUrl": DB_URL},
        )
        vals = values(run)
        assert vals["postgresql"] == {"enabled": False}
        assert vals["pgbouncer"]["enabled"] is True
        data = {n: unwrap(r.inputs)["stringData"] for n, r in secrets_by_name(run).items()}
        assert data["airflow-pulumi-metadata"]["connection"] == (
            "postgresql://airflow:s3cr%40t-db@airflow-pgbouncer.airflow:6543/airflow-metadata?sslmode=disable"
        )
        ini = data["airflow-pulumi-pgbouncer-config"]["pgbouncer.ini"]
        assert "airflow-metadata = host=db.internal dbname=airflow port=5432" in ini
        assert "server_tls_sslmode = require" in ini
        assert data["airflow-pulumi-pgbouncer-config"]["users.txt"] == '"airflow" "s3cr@t-db"\n'

    def test_random_inputs_do_not_depend_on_executor_or_version(self):
        def random_inputs(run):
            return {r.name: unwrap(r.inputs) for r in run.resources if r.type.startswith("random:")}

        a = random_inputs(run_stack({"executor": "KubernetesExecutor", "dags": GIT_HTTPS}))
        b = random_inputs(run_stack({"version": "2.11.0", "executor": "CeleryKubernetesExecutor", "dags": GIT_HTTPS}))
        assert a == b


class TestDagDelivery:
    def test_public_https_git_sync_needs_no_credentials(self):
        run = run_stack({"dags": GIT_HTTPS})
        git = values(run)["dags"]["gitSync"]
        assert git["enabled"] is True and git["repo"] == "https://github.com/example/dags.git"
        assert "credentialsSecret" not in git
        assert "airflow-pulumi-git-credentials" not in secrets_by_name(run)

    def test_https_git_sync_with_a_token_uses_a_credentials_secret(self):
        run = run_stack({"dags": GIT_HTTPS}, secrets={"gitToken": "ghp_exampletoken123"})
        git = values(run)["dags"]["gitSync"]
        assert git["credentialsSecret"] == "airflow-pulumi-git-credentials"
        data = unwrap(secrets_by_name(run)["airflow-pulumi-git-credentials"].inputs)["stringData"]
        assert data["GITSYNC_PASSWORD"] == data["GIT_SYNC_PASSWORD"] == "ghp_exampletoken123"
        assert data["GITSYNC_USERNAME"] == "git"
        objects = render_release(release(run))
        scheduler = next(
            o for o in objects if o["metadata"]["name"] == "airflow-dag-processor" and o["kind"] == "Deployment"
        )
        sync = next(c for c in scheduler["spec"]["template"]["spec"]["containers"] if c["name"] == "git-sync")
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in sync["env"] if "valueFrom" in e}
        assert refs == {"airflow-pulumi-git-credentials"}

    def test_ssh_git_sync_mounts_the_key_and_pins_known_hosts(self):
        run = run_stack(
            {
                "dags": {
                    "mode": "gitSync",
                    "gitSync": {"repo": "git@github.com:org/dags.git", "knownHosts": KNOWN_HOSTS},
                }
            },
            secrets={"gitSshKey": SSH_KEY},
        )
        git = values(run)["dags"]["gitSync"]
        assert git["sshKeySecret"] == "airflow-pulumi-git-ssh"
        assert git["knownHosts"] == KNOWN_HOSTS
        assert unwrap(secrets_by_name(run)["airflow-pulumi-git-ssh"].inputs)["stringData"]["gitSshKey"] == SSH_KEY
        objects = render_release(release(run))
        config = next(o for o in objects if o["kind"] == "ConfigMap" and "known_hosts" in o.get("data", {}))
        assert KNOWN_HOSTS in config["data"]["known_hosts"]

    def test_host_path_dags_get_a_retained_volume_and_claim(self):
        run = run_stack(
            {"dags": {"mode": "hostPath", "hostPath": {"path": "/data/dags", "node": "minikube"}}},
            cluster={"environment": "laptop"},
        )
        (pv,) = of_type(run, "core/v1:PersistentVolume")
        (pvc,) = of_type(run, "core/v1:PersistentVolumeClaim")
        assert pv.retain_on_delete and pvc.retain_on_delete
        spec = unwrap(pv.inputs)["spec"]
        assert spec["hostPath"]["path"] == "/data/dags"
        assert spec["persistentVolumeReclaimPolicy"] == "Retain"
        node_terms = spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
        assert node_terms["values"] == ["minikube"]
        claim = unwrap(pvc.inputs)
        assert claim["spec"]["volumeName"] == unwrap(pv.inputs)["metadata"]["name"] == "airflow-airflow-dags"
        assert values(run)["dags"]["persistence"] == {"enabled": True, "existingClaim": "airflow-dags"}
        objects = render_release(release(run))
        processor = next(
            o for o in objects if o["metadata"]["name"] == "airflow-dag-processor" and o["kind"] == "Deployment"
        )
        volumes = processor["spec"]["template"]["spec"]["volumes"]
        assert {"name": "dags", "persistentVolumeClaim": {"claimName": "airflow-dags"}} in volumes
        template = next(
            o["data"]["pod_template_file.yaml"] for o in objects if "pod_template_file.yaml" in o.get("data", {})
        )
        pod = next(d for d in yaml.safe_load_all(template) if d)
        assert {"name": "dags", "persistentVolumeClaim": {"claimName": "airflow-dags"}} in pod["spec"]["volumes"]

    def test_an_existing_claim_is_mounted_as_is(self):
        run = run_stack(
            {
                "dags": {
                    "mode": "persistentVolumeClaim",
                    "persistentVolumeClaim": {"claimName": "team-dags", "subPath": "dags"},
                }
            }
        )
        assert values(run)["dags"]["persistence"] == {"enabled": True, "existingClaim": "team-dags", "subPath": "dags"}
        assert not of_type(run, "PersistentVolumeClaim")

    def test_dags_baked_into_a_custom_image_use_that_image(self):
        run = run_stack(
            {
                "image": {"repository": "registry.example.com/airflow-dags", "tag": "2026.11.1"},
                "dags": {"mode": "image"},
            }
        )
        vals = values(run)
        assert vals["images"]["airflow"] == {
            "repository": "registry.example.com/airflow-dags",
            "tag": "2026.11.1",
            "pullPolicy": "IfNotPresent",
        }
        assert vals["dags"]["gitSync"] == {"enabled": False} and vals["dags"]["persistence"] == {"enabled": False}
        deployment = next(
            o
            for o in render_release(release(run))
            if o["kind"] == "Deployment" and o["metadata"]["name"] == "airflow-api-server"
        )
        assert (
            deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            == "registry.example.com/airflow-dags:2026.11.1"
        )


class TestChartValues:
    def test_helm_hooks_are_off_so_the_release_cannot_deadlock(self):
        vals = values(run_stack({"dags": GIT_HTTPS}))
        assert vals["createUserJob"]["useHelmHooks"] is False
        assert vals["migrateDatabaseJob"]["useHelmHooks"] is False

    def test_the_release_pins_the_official_chart_and_repository(self):
        inputs = unwrap(release(run_stack({"dags": GIT_HTTPS})).inputs)
        assert inputs["chart"] == "airflow"
        assert inputs["version"] == "1.21.0"
        assert inputs["repositoryOpts"] == {"repo": "https://airflow.apache.org"}
        assert inputs["name"] == "airflow" and inputs["namespace"] == "airflow"

    def test_a_local_chart_path_replaces_the_repository(self):
        inputs = unwrap(release(run_stack({"chart": {"path": "charts/airflow-1.21.0.tgz"}, "dags": GIT_HTTPS})).inputs)
        assert inputs["chart"] == "charts/airflow-1.21.0.tgz"
        assert "repositoryOpts" not in inputs

    def test_replicas_resources_and_budgets_reach_the_chart(self):
        run = run_stack(
            {
                "executor": "CeleryExecutor",
                "dags": GIT_HTTPS,
                "scheduler": {
                    "replicas": 2,
                    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
                    "podDisruptionBudget": {"enabled": True},
                },
                "workers": {"replicas": 4, "concurrency": 8},
            }
        )
        objects = {(o["kind"], o["metadata"]["name"]): o for o in render_release(release(run))}
        scheduler = objects[("Deployment", "airflow-scheduler")]
        assert scheduler["spec"]["replicas"] == 2
        container = next(c for c in scheduler["spec"]["template"]["spec"]["containers"] if c["name"] == "scheduler")
        assert container["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}}
        assert objects[("PodDisruptionBudget", "airflow-scheduler-pdb")]["spec"] == {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"tier": "airflow", "component": "scheduler", "release": "airflow"}},
        }
        assert objects[("StatefulSet", "airflow-worker")]["spec"]["replicas"] == 4
        assert values(run)["config"]["celery"]["worker_concurrency"] == 8

    def test_extra_values_are_deep_merged_last(self):
        vals = values(
            run_stack(
                {
                    "dags": GIT_HTTPS,
                    "scheduler": {"replicas": 2},
                    "extraValues": {
                        "scheduler": {"replicas": 3, "labels": {"team": "data"}},
                        "defaultAirflowTag": "3.2.0",
                    },
                }
            )
        )
        assert vals["scheduler"]["replicas"] == 3
        assert vals["scheduler"]["labels"] == {"team": "data"}
        assert vals["scheduler"]["serviceAccount"]["name"] == "airflow-scheduler"


class TestTwoInstances:
    def test_two_teams_in_one_stack_share_no_name_secret_or_cluster_object(self):
        run = run_stack(program="two_teams")
        urns = [r.urn for r in run.resources]
        assert len(urns) == len(set(urns))
        objects: list[dict[str, Any]] = []
        for res in run.resources:
            if res.type.startswith("kubernetes:core") or res.type.startswith("kubernetes:storage"):
                objects.append(unwrap(res.inputs) | {"kind": res.type.rsplit(":", 1)[1]})
        for rel in releases(run):
            objects += render_release(rel)
        keys = [(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects]
        duplicates = {k for k in keys if keys.count(k) > 1}
        assert duplicates == set()
        cluster_scoped = [
            k
            for k in keys
            if k[0] in ("PersistentVolume", "Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass")
        ]
        assert len(cluster_scoped) == len(set(cluster_scoped))
        assert run.outputs["team-a-serviceAccounts"]["scheduler"] == "team-a-scheduler"
        assert run.outputs["team-b-serviceAccounts"]["scheduler"] == "team-b-scheduler"

    def test_a_component_given_a_provider_hands_it_to_every_child(self):
        run = run_stack(program="with_provider")
        children = [
            r
            for r in run.resources
            if r.custom and r.type.startswith("kubernetes:") and r.type != "pulumi:providers:kubernetes"
        ]
        assert children
        for child in children:
            assert "pulumi:providers:kubernetes::laptop::" in child.provider, child.name

    def test_children_are_named_after_the_component_and_parented_to_it(self):
        run = run_stack({"dags": GIT_HTTPS})
        (component,) = of_type(run, "AirflowRelease")
        (platform,) = of_type(run, "AirflowPlatform")
        assert component.parent == platform.urn
        for res in run.resources:
            # The stack also declares Monitoring, whose Grafana key material exists in every mode.
            if res not in (component, platform) and not res.name.startswith("monitoring"):
                assert res.parent == component.urn
                assert res.name.startswith("airflow-")

    def test_secrets_given_as_outputs_stay_secret_and_reach_their_secrets(self):
        run = run_stack(program="outputs_as_secrets", secrets={"databaseUrl": DB_URL, "gitToken": "tok-123456789"})
        declared = secrets_by_name(run)
        assert secret_paths(release(run).inputs) == []
        assert (
            unwrap(declared["airflow-pulumi-git-credentials"].inputs)["stringData"]["GITSYNC_PASSWORD"]
            == "tok-123456789"
        )
        assert (
            "db.internal" in unwrap(declared["airflow-pulumi-pgbouncer-config"].inputs)["stringData"]["pgbouncer.ini"]
        )


class TestConnectionsAndVariables:
    def test_connections_and_variables_reach_every_airflow_container_as_files_from_one_secret(self):
        run = run_stack(program="connections")
        connections, variables = connections_files(run)
        assert set(connections) == {"kubernetes_default", "warehouse"}
        assert set(variables) == {"environment"}
        assert secret_paths(release(run).inputs) == []
        assert "hunter2" not in json.dumps(unwrap(release(run).inputs))
        objects = render_release(release(run))
        config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "airflow-config")
        assert "backend = airflow.secrets.local_filesystem.LocalFilesystemBackend" in config["data"]["airflow.cfg"]
        connections_file = ("airflow-pulumi-environment", "connections.json")
        for obj in objects:
            if obj["kind"] in ("Deployment", "StatefulSet") and obj["metadata"]["name"] != "airflow-postgresql":
                if obj["metadata"]["name"] == "airflow-statsd":
                    continue
                spec = obj["spec"]["template"]["spec"]
                files = secret_file_sources(spec, spec["containers"][0])
                assert files["/opt/airflow/secrets/connections.json"] == connections_file, obj["metadata"]["name"]
                assert not spec["containers"][0].get("envFrom"), obj["metadata"]["name"]
        template = next(
            o["data"]["pod_template_file.yaml"] for o in objects if "pod_template_file.yaml" in o.get("data", {})
        )
        pod = next(d for d in yaml.safe_load_all(template) if d)
        assert (
            secret_file_sources(pod["spec"], pod["spec"]["containers"][0])["/opt/airflow/secrets/connections.json"]
            == connections_file
        )

    def test_another_secrets_backend_next_to_declared_connections_is_rejected(self):
        from components.airflow.values.secret_files import check_one_secrets_backend

        with pytest.raises(ValueError, match=r"'extra_values.config.secrets.backend': 'my.Backend'.*LocalFilesystem"):
            check_one_secrets_backend([("extra_values", {"config": {"secrets": {"backend": "my.Backend"}}})])
        check_one_secrets_backend(
            [("extra_values", {"config": {"secrets": {}}}), ("airflow.extraValues", {"config": {"core": {}}})]
        )

    @pytest.mark.parametrize(
        ("settings", "logs", "owner"),
        [
            (
                {"dags": {"mode": "gitBundle", "gitBundle": {"repo": "https://github.com/example/dags.git"}}},
                None,
                "settings.dags.gitBundle.connectionId",
            ),
            (
                {"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}},
                {
                    "mode": "remote",
                    "remote": {"target": "s3", "baseLogFolder": "s3://logs/airflow", "connectionId": "dags_git"},
                },
                "logs.remote.connectionId",
            ),
        ],
        ids=["git-bundle", "remote-logging"],
    )
    def test_a_connection_airflow_release_sets_itself_is_not_declared_again(self, settings, logs, owner):
        from components.airflow.component import AirflowRelease

        args: dict[str, Any] = {"settings": settings, "connections": {"DAGS_GIT": "https://x:y@example.com"}}
        if logs is not None:
            args |= {"logs": logs, "logs_connection": "aws://"}
        with pytest.raises(ConfigError) as err:
            AirflowRelease.checked_args(args)  # type: ignore[arg-type]
        assert err.value.key == "connections.DAGS_GIT"
        assert f"already set by the '{owner}' config" in str(err.value)
        del args["connections"]
        AirflowRelease.checked_args(args)  # type: ignore[arg-type]

    def test_a_connection_id_airflow_cannot_read_back_is_rejected(self):
        from components.airflow.values.chart import airflow_environment

        with pytest.raises(ValueError, match="letters, digits and underscores"):
            airflow_environment({"my-conn": "x"}, {})
