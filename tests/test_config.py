"""Bad stack config is rejected before any resource is declared, with a message that helps."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml

from components import ConfigError
from components.airflow.config.airflow import parse_airflow, parse_database_url
from components.core.reader import quantity_value
from components.platform.config import parse_stack
from tests.helpers import DB_URL, KNOWN_HOSTS, ROOT, SSH_KEY, run_stack

TEST_CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUXh0Ai9rWq3YyQ2Ck7Z\n-----END CERTIFICATE-----\n"

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}


def airflow(**overrides: Any) -> dict[str, Any]:
    return {"dags": GIT, **overrides}


# (case id, airflow config, secrets, fragments the message must contain)
BAD_AIRFLOW: list[tuple[str, dict[str, Any], dict[str, str], list[str]]] = [
    ("namespace-uppercase", airflow(namespace="Airflow"), {}, ["airflow.namespace", "'Airflow'", "DNS-1123"]),
    ("namespace-not-string", airflow(namespace=42), {}, ["airflow.namespace", "expected a string"]),
    ("namespace-too-long", airflow(namespace="a" * 64), {}, ["airflow.namespace", "at most 63"]),
    ("release-name-underscore", airflow(releaseName="my_airflow"), {}, ["airflow.releaseName", "'my_airflow'"]),
    ("release-name-too-long", airflow(releaseName="a" * 31), {}, ["airflow.releaseName", "at most 30"]),
    ("create-namespace-not-bool", airflow(createNamespace="yes"), {}, ["airflow.createNamespace", "true or false"]),
    (
        "unknown-top-key",
        airflow(executer="CeleryExecutor"),
        {},
        ["airflow.executer", "unknown key", "Did you mean 'executor'?"],
    ),
    (
        "unknown-nested-key",
        airflow(scheduler={"replica": 2}),
        {},
        ["airflow.scheduler.replica", "Did you mean 'replicas'?"],
    ),
    (
        "executor-unknown",
        airflow(executor="DaskExecutor"),
        {},
        ["airflow.executor", "'DaskExecutor'", "LocalExecutor, CeleryExecutor, KubernetesExecutor"],
    ),
    (
        "executor-ck-on-3",
        airflow(executor="CeleryKubernetesExecutor"),
        {},
        ["airflow.executor", "removed in Airflow 3", "CeleryExecutor,KubernetesExecutor"],
    ),
    (
        "executor-list-on-2",
        airflow(version="2.11.0", executor="CeleryExecutor,KubernetesExecutor"),
        {},
        ["needs Airflow 3", "CeleryKubernetesExecutor"],
    ),
    ("executor-duplicated", airflow(executor="CeleryExecutor,CeleryExecutor"), {}, ["only once"]),
    ("executor-not-string", airflow(executor=["CeleryExecutor"]), {}, ["airflow.executor", "expected a string"]),
    ("version-old", airflow(version="2.9.3"), {}, ["airflow.version", "'2.9.3'", "2.11.x and 3.x"]),
    ("version-not-semver", airflow(version="3.2"), {}, ["airflow.version", "semantic version"]),
    (
        "chart-version-not-semver",
        airflow(chart={"version": "latest"}),
        {},
        ["airflow.chart.version", "'latest'", "semantic version"],
    ),
    (
        "chart-repo-not-url",
        airflow(chart={"repository": "airflow.apache.org"}),
        {},
        ["airflow.chart.repository", "http(s)://"],
    ),
    (
        "chart-path-and-repo",
        airflow(chart={"path": "x.tgz", "repository": "https://a.b"}),
        {},
        ["airflow.chart.path", "not both"],
    ),
    (
        "scheduler-replicas-zero",
        airflow(scheduler={"replicas": 0}),
        {},
        ["airflow.scheduler.replicas", "0", "from 1 to 10"],
    ),
    ("scheduler-replicas-negative", airflow(scheduler={"replicas": -1}), {}, ["airflow.scheduler.replicas", "-1"]),
    (
        "scheduler-replicas-string",
        airflow(scheduler={"replicas": "two"}),
        {},
        ["airflow.scheduler.replicas", "'two'", "whole number"],
    ),
    (
        "scheduler-replicas-bool",
        airflow(scheduler={"replicas": True}),
        {},
        ["airflow.scheduler.replicas", "whole number"],
    ),
    (
        "workers-replicas-too-many",
        airflow(workers={"replicas": 500}),
        {},
        ["airflow.workers.replicas", "from 0 to 200"],
    ),
    (
        "celery-without-workers",
        airflow(executor="CeleryExecutor", workers={"replicas": 0}),
        {},
        ["airflow.workers.replicas", "at least one Celery worker"],
    ),
    (
        "cpu-not-quantity",
        airflow(scheduler={"resources": {"requests": {"cpu": "one"}}}),
        {},
        ["airflow.scheduler.resources.requests.cpu", "'one'", "CPU quantity"],
    ),
    (
        "memory-not-quantity",
        airflow(apiServer={"resources": {"limits": {"memory": "2 GB"}}}),
        {},
        ["airflow.apiServer.resources.limits.memory", "'2 GB'"],
    ),
    (
        "resources-unknown-kind",
        airflow(scheduler={"resources": {"requests": {"gpu": "1"}}}),
        {},
        ["airflow.scheduler.resources.requests.gpu", "unknown key"],
    ),
    (
        "limit-below-request",
        airflow(scheduler={"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}),
        {},
        ["airflow.scheduler.resources.limits.memory", "at least the request"],
    ),
    (
        "pdb-both",
        airflow(
            scheduler={"replicas": 2, "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1, "minAvailable": 1}}
        ),
        {},
        ["minAvailable", "not both"],
    ),
    (
        "pdb-blocks-drain",
        airflow(scheduler={"replicas": 2, "podDisruptionBudget": {"enabled": True, "minAvailable": 2}}),
        {},
        ["airflow.scheduler.podDisruptionBudget.minAvailable", "drains would block"],
    ),
    (
        "pdb-bad-percent",
        airflow(scheduler={"podDisruptionBudget": {"maxUnavailable": "150%"}}),
        {},
        ["maxUnavailable", "'150%'", "percentage"],
    ),
    (
        "webserver-on-3",
        airflow(webserver={"replicas": 2}),
        {},
        ["airflow.webserver", "no webserver", "rename 'airflow.webserver' to 'airflow.apiServer'"],
    ),
    (
        "api-server-on-2",
        airflow(version="2.11.0", apiServer={"replicas": 2}),
        {},
        ["airflow.apiServer", "no apiServer"],
    ),
    (
        "dag-processor-off-on-3",
        airflow(dagProcessor={"enabled": False}),
        {},
        ["airflow.dagProcessor.enabled", "always runs"],
    ),
    (
        "flower-replicas",
        airflow(executor="CeleryExecutor", flower={"enabled": True, "replicas": 2}),
        {},
        ["airflow.flower.replicas", "unknown key"],
    ),
    ("flower-without-celery", airflow(flower={"enabled": True}), {}, ["airflow.flower.enabled", "Celery"]),
    (
        "dags-mode-unknown",
        {"dags": {"mode": "s3"}},
        {},
        ["airflow.dags.mode", "'s3'", "gitSync, gitBundle, hostPath, persistentVolumeClaim, image"],
    ),
    (
        "git-sync-without-repo",
        {"dags": {"mode": "gitSync", "gitSync": {}}},
        {},
        ["airflow.dags.gitSync.repo", "required"],
    ),
    (
        "git-sync-bad-url",
        {"dags": {"mode": "gitSync", "gitSync": {"repo": "github.com/org/dags"}}},
        {},
        ["airflow.dags.gitSync.repo", "https:// URL"],
    ),
    (
        "git-ssh-without-key",
        {"dags": {"mode": "gitSync", "gitSync": {"repo": "git@github.com:o/d.git", "knownHosts": KNOWN_HOSTS}}},
        {},
        ["airflow.dags.gitSync.auth", "gitSshKey", "pulumi config set --secret gitSshKey"],
    ),
    (
        "git-ssh-without-known-hosts",
        {"dags": {"mode": "gitSync", "gitSync": {"repo": "git@github.com:o/d.git"}}},
        {"gitSshKey": SSH_KEY},
        ["airflow.dags.gitSync.knownHosts", "host keys"],
    ),
    (
        "git-token-auth-without-token",
        {"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/o/d.git", "auth": "token"}}},
        {},
        ["airflow.dags.gitSync.auth", "gitToken"],
    ),
    (
        "git-ssh-auth-on-https",
        {"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/o/d.git", "auth": "ssh"}}},
        {"gitSshKey": SSH_KEY},
        ["needs an SSH repository URL"],
    ),
    (
        "git-period-bad",
        {"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/o/d.git", "period": "often"}}},
        {},
        ["airflow.dags.gitSync.period", "Go duration"],
    ),
    (
        "token-set-but-unused",
        {"dags": {"mode": "hostPath", "hostPath": {"path": "/dags"}}},
        {"gitToken": "abc"},
        ["gitToken", "not use git-sync"],
    ),
    (
        "settings-of-other-mode",
        {"dags": {"mode": "hostPath", "hostPath": {"path": "/d"}, "gitSync": {"repo": "x"}}},
        {},
        ["airflow.dags.gitSync", "only the settings of the selected mode"],
    ),
    (
        "host-path-without-path",
        {"dags": {"mode": "hostPath", "hostPath": {}}},
        {},
        ["airflow.dags.hostPath.path", "required"],
    ),
    (
        "host-path-relative",
        {"dags": {"mode": "hostPath", "hostPath": {"path": "dags"}}},
        {},
        ["airflow.dags.hostPath.path", "absolute path"],
    ),
    (
        "host-path-bad-size",
        {"dags": {"mode": "hostPath", "hostPath": {"path": "/d", "size": "big"}}},
        {},
        ["airflow.dags.hostPath.size", "'big'"],
    ),
    (
        "claim-without-name",
        {"dags": {"mode": "persistentVolumeClaim", "persistentVolumeClaim": {}}},
        {},
        ["airflow.dags.persistentVolumeClaim.claimName", "required"],
    ),
    ("image-mode-stock-image", {"dags": {"mode": "image"}}, {}, ["airflow.dags.mode", "your own image"]),
    (
        "external-db-without-url",
        airflow(database={"mode": "external"}),
        {},
        ["airflow.database.mode", "databaseUrl", "pulumi config set --secret databaseUrl"],
    ),
    ("db-url-but-bundled", airflow(), {"databaseUrl": DB_URL}, ["airflow.database.mode", "ignored"]),
    (
        "db-url-mysql",
        airflow(database={"mode": "external"}),
        {"databaseUrl": "mysql://u:p@h/db"},
        ["databaseUrl", "'mysql'", "postgresql"],
    ),
    (
        "db-url-no-password",
        airflow(database={"mode": "external"}),
        {"databaseUrl": "postgresql://u@h/db"},
        ["databaseUrl", "lacks: password"],
    ),
    (
        "db-url-bad-sslmode",
        airflow(database={"mode": "external"}),
        {"databaseUrl": "postgresql://u:p@h/db?sslmode=always"},
        ["sslmode", "allowed sslmode: disable, allow, prefer, require"],
    ),
    (
        "db-url-verify-full-without-a-ca",
        airflow(database={"mode": "external"}),
        {"databaseUrl": "postgresql://u:s3cr3t@h/db?sslmode=verify-full"},
        [
            "databaseUrl",
            "sslmode=verify-full",
            "failed to load CA",
            "set airflow.database.caCertificate",
            "sslmode=require",
        ],
    ),
    (
        "db-url-verify-ca-without-a-ca",
        airflow(database={"mode": "external"}),
        {"databaseUrl": "postgresql://u:s3cr3t@h/db?sslmode=verify-ca"},
        ["databaseUrl", "sslmode=verify-ca", "set airflow.database.caCertificate", "sslmode=require"],
    ),
    (
        "db-ca-with-an-sslmode-that-does-not-verify",
        airflow(database={"mode": "external", "caCertificate": TEST_CA}),
        {"databaseUrl": "postgresql://u:s3cr3t@h/db?sslmode=require"},
        ["airflow.database.caCertificate", "sslmode=require", "would not check", "sslmode=verify-full"],
    ),
    (
        "db-ca-on-the-bundled-database",
        airflow(database={"caCertificate": TEST_CA}),
        {},
        ["airflow.database.caCertificate", "-----BEGIN CERTIFICATE-----", "bundled Postgres", "'external'"],
    ),
    (
        "db-ca-not-a-certificate",
        airflow(database={"mode": "external", "caCertificate": "rds-ca-2019-root.pem"}),
        {"databaseUrl": "postgresql://u:s3cr3t@h/db?sslmode=verify-full"},
        ["airflow.database.caCertificate", "'rds-ca-2019-root.pem", "PEM certificates", "put its text here"],
    ),
    (
        "db-storage-on-external",
        airflow(database={"mode": "external", "storageSize": "10Gi"}),
        {"databaseUrl": DB_URL},
        ["airflow.database.storageSize", "bundled"],
    ),
    (
        "pgbouncer-replicas-zero",
        airflow(database={"pgbouncer": {"enabled": True, "replicas": 0}}),
        {},
        ["airflow.database.pgbouncer.replicas"],
    ),
    (
        "ssh-key-not-a-key",
        {"dags": {"mode": "gitSync", "gitSync": {"repo": "git@github.com:o/d.git", "knownHosts": KNOWN_HOSTS}}},
        {"gitSshKey": "hunter2"},
        ["gitSshKey", "private key"],
    ),
    ("admin-bad-email", airflow(admin={"email": "nobody"}), {}, ["airflow.admin.email", "e-mail"]),
    (
        "image-pull-policy",
        airflow(image={"pullPolicy": "Sometimes"}),
        {},
        ["airflow.image.pullPolicy", "Always, IfNotPresent, Never"],
    ),
    ("extra-values-not-object", airflow(extraValues=["a"]), {}, ["airflow.extraValues", "expected an object"]),
    ("airflow-not-object", "CeleryExecutor", {}, ["airflow", "expected an object"]),  # type: ignore[list-item]
]


class TestBadAirflowConfig:
    @pytest.mark.parametrize(
        ("raw", "secrets", "fragments"), [c[1:] for c in BAD_AIRFLOW], ids=[c[0] for c in BAD_AIRFLOW]
    )
    def test_is_rejected_with_a_message_naming_the_key_value_and_what_is_allowed(self, raw, secrets, fragments):
        values: dict[str, Any] = {"airflow": json.dumps(raw), **secrets}
        with pytest.raises(ConfigError) as err:
            parse_stack(values, set(secrets))
        for fragment in fragments:
            assert fragment in str(err.value)

    def test_a_database_password_is_never_shown_in_an_error(self):
        with pytest.raises(ConfigError) as err:
            parse_database_url("mysql://user:topsecret@host/db")
        assert "topsecret" not in str(err.value)

    @pytest.mark.parametrize(
        ("raw", "secrets", "fragments"), [c[1:] for c in BAD_AIRFLOW[:6]], ids=[c[0] for c in BAD_AIRFLOW[:6]]
    )
    def test_the_program_fails_before_declaring_any_resource(self, raw, secrets, fragments):
        with pytest.raises(ConfigError) as err:
            run_stack(raw, secrets=secrets)
        assert err.value.declared_before_error == []  # type: ignore[attr-defined]


class TestStackKeys:
    def test_an_unknown_top_level_key_is_rejected_with_a_suggestion(self):
        with pytest.raises(ConfigError, match=r"airflow-k8s:airfow.*Did you mean 'airflow'\?"):
            parse_stack({"airfow": "{}"})

    def test_credentials_must_be_set_as_secrets(self):
        with pytest.raises(
            ConfigError, match=r"airflow-k8s:databaseUrl.*must be stored encrypted.*--secret databaseUrl"
        ):
            parse_stack({"airflow": json.dumps(airflow(database={"mode": "external"})), "databaseUrl": DB_URL}, set())

    def test_a_secret_object_is_rejected(self):
        with pytest.raises(ConfigError, match="must not be a secret"):
            parse_stack({"airflow": "{}"}, {"airflow"})

    def test_structured_config_must_be_an_object(self):
        with pytest.raises(ConfigError, match="expected an object"):
            parse_stack({"airflow": "not json"})

    @pytest.mark.parametrize(
        ("cluster", "fragment"),
        [
            ({"storageClasses": "standard"}, "cluster.storageClasses"),
            ({"storageClasses": ["Standard"]}, "cluster.storageClasses[0]"),
            ({"persistentVolumeClaims": ["dags"]}, "namespace/name"),
            ({"kubernetesVersion": "1.20"}, "cluster.kubernetesVersion"),
            ({"storageclasses": []}, "Did you mean 'storageClasses'?"),
        ],
    )
    def test_bad_cluster_facts_are_rejected(self, cluster, fragment):
        with pytest.raises(ConfigError) as err:
            parse_stack({"airflow": json.dumps(airflow()), "cluster": json.dumps(cluster)})
        assert fragment in str(err.value)


class TestGoodConfig:
    def test_defaults_are_a_working_airflow_3_with_kubernetes_executor(self):
        cfg = parse_airflow(airflow())
        assert (cfg.version, cfg.executor, cfg.namespace, cfg.release_name) == (
            "3.2.0",
            "KubernetesExecutor",
            "airflow",
            "airflow",
        )
        assert cfg.database.mode == "bundled" and not cfg.database.pgbouncer.enabled
        assert cfg.chart.version == "1.21.0" and cfg.chart.repository == "https://airflow.apache.org"

    def test_an_external_database_turns_pgbouncer_on_by_default(self):
        cfg = parse_airflow(airflow(database={"mode": "external"}), parse_stack_secrets(DB_URL))
        assert cfg.database.pgbouncer.enabled

    def test_the_database_url_is_split_and_unquoted(self):
        url = parse_database_url(DB_URL)
        assert (url.user, url.password, url.host, url.port, url.database, url.sslmode) == (
            "airflow",
            "s3cr@t-db",
            "db.internal",
            5432,
            "airflow",
            "require",
        )

    @pytest.mark.parametrize(
        ("text", "value"), [("500m", "0.5"), ("2", "2"), ("1Gi", "1073741824"), ("1.5G", "1500000000"), ("1e3", "1000")]
    )
    def test_quantities_compare_by_value(self, text, value):
        assert str(quantity_value(text).normalize()) == str(type(quantity_value(text))(value).normalize())


def parse_stack_secrets(database_url: str):
    from components.airflow.config.airflow import StackSecrets

    return StackSecrets(database_url=database_url)


class TestStackFiles:
    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_stack_file_config_parses(self, stack):
        from components.offline.program import load_stack_config

        project, config, secret_keys, _ = load_stack_config(ROOT, stack, env={})
        short = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith(f"{project}:")}
        parse_stack(short, {k.split(":", 1)[1] for k in secret_keys})

    def test_pulumi_yaml_validates_against_pulumis_project_schema(self):
        schema = json.loads((ROOT.parent / "shared" / "schemas" / "pulumi-project.json").read_text())
        project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
        jsonschema.validate(project, schema)
        assert project["runtime"]["name"] == "python"
        assert project["runtime"]["options"]["toolchain"] == "pip"
