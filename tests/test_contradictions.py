"""Contradictions between capabilities: one model (components/platform/contradictions.py), one test.

Each case is a stack whose settings are each valid alone and never work together; it is refused
naming the key to change. Its fixed twin, the same stack with that one thing changed, loads clean.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.core.reader import ConfigError
from components.platform.config import parse_stack
from tests.helpers import DB_URL

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
LAPTOP = {"environment": "laptop"}
HOST_DAGS = {"mode": "hostPath", "hostPath": {"path": "/data/dags"}}
HOST_LOGS = {"mode": "hostPath", "hostPath": {"path": "/data/logs"}}
S3_LOGS: dict[str, Any] = {"mode": "remote", "remote": {"target": "s3", "baseLogFolder": "s3://logs/airflow"}}
INGRESS = {"enabled": True, "host": "airflow.example.com"}
TLS_INGRESS = {**INGRESS, "tls": {"issuer": "letsencrypt"}}
CELERY_FLOWER = {"executor": "CeleryExecutor", "flower": {"enabled": True}}


def stack(airflow: dict[str, Any] | None = None, secrets: dict[str, str] | None = None, **keys: Any) -> dict[str, Any]:
    return {"values": {"airflow": {"dags": GIT, **(airflow or {})}, **keys}, "secrets": secrets or {}}


def external(host: str, **airflow: Any) -> dict[str, Any]:
    url = DB_URL.replace("db.internal:5432", f"{host}:6543")
    return stack({"database": {"mode": "external"}, **airflow}, secrets={"databaseUrl": url})


# (id, the stack, the key named, a fragment of the message, the fixed twin)
CASES: list[tuple[str, dict[str, Any], str, str, dict[str, Any]]] = [
    (
        "database-url-at-our-own-pgbouncer",
        external("airflow-pgbouncer.airflow.svc.cluster.local"),
        "databaseUrl",
        "PgBouncer would connect to itself",
        external("db.internal"),
    ),
    (
        "logs-inside-the-dag-folder",
        stack({"dags": HOST_DAGS}, cluster=LAPTOP, logs={"mode": "hostPath", "hostPath": {"path": "/data/dags/logs"}}),
        "logs.hostPath.path",
        "into the DAG folder",
        stack({"dags": HOST_DAGS}, cluster=LAPTOP, logs=HOST_LOGS),
    ),
    (
        "dags-read-from-the-logs-claim",
        stack(
            {"dags": {"mode": "persistentVolumeClaim", "persistentVolumeClaim": {"claimName": "airflow-logs"}}},
            logs={"mode": "dynamic", "dynamic": {"storageClass": "efs"}},
        ),
        "airflow.dags.persistentVolumeClaim.claimName",
        "into the DAG folder",
        stack(
            {"dags": {"mode": "persistentVolumeClaim", "persistentVolumeClaim": {"claimName": "dags"}}},
            logs={"mode": "dynamic", "dynamic": {"storageClass": "efs"}},
        ),
    ),
    (
        "dag-and-log-volumes-on-two-nodes",
        stack(
            {"dags": {"mode": "hostPath", "hostPath": {"path": "/data/dags", "node": "node-a"}}},
            cluster=LAPTOP,
            logs={"mode": "hostPath", "hostPath": {"path": "/data/logs", "node": "node-b"}},
        ),
        "logs.hostPath.node",
        "none could be scheduled",
        stack(
            {"dags": {"mode": "hostPath", "hostPath": {"path": "/data/dags", "node": "node-a"}}},
            cluster=LAPTOP,
            logs={"mode": "hostPath", "hostPath": {"path": "/data/logs", "node": "node-a"}},
        ),
    ),
    (
        "read-only-log-mount",
        stack(
            logs={
                "mode": "nfs",
                "nfs": {"server": "nfs.internal", "path": "/logs", "mountOptions": ["nfsvers=4.1", "ro"]},
            }
        ),
        "logs.nfs.mountOptions",
        "mounted read-only",
        stack(
            logs={"mode": "nfs", "nfs": {"server": "nfs.internal", "path": "/logs", "mountOptions": ["nfsvers=4.1"]}}
        ),
    ),
    (
        "task-pods-under-a-uid-that-cannot-write-the-logs",
        stack(
            {"taskPods": {"securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000}}},
            logs={"mode": "dynamic", "dynamic": {"storageClass": "efs"}},
        ),
        "airflow.taskPods.securityContext.runAsUser",
        "could not write its log",
        stack(
            {"taskPods": {"securityContext": {"runAsUser": 1000, "runAsGroup": 0}}},
            logs={"mode": "dynamic", "dynamic": {"storageClass": "efs"}},
        ),
    ),
    (
        "task-env-turns-off-remote-logging",
        stack(
            {"taskPods": {"env": {"AIRFLOW__LOGGING__REMOTE_LOGGING": "False"}}},
            logs={**S3_LOGS, "remote": {**S3_LOGS["remote"], "workloadIdentity": True}},
        ),
        "airflow.taskPods.env.AIRFLOW__LOGGING__REMOTE_LOGGING",
        "override it in task pods only",
        stack(
            {"taskPods": {"env": {"TZ": "UTC"}}},
            logs={**S3_LOGS, "remote": {**S3_LOGS["remote"], "workloadIdentity": True}},
        ),
    ),
    (
        "logs-connection-of-another-cloud",
        stack(
            logs=S3_LOGS, secrets={"logsConnection": "google-cloud-platform://?extra__google_cloud_platform__project=p"}
        ),
        "logsConnection",
        "cannot reach a s3 log folder",
        stack(logs=S3_LOGS, secrets={"logsConnection": "aws://?region_name=eu-west-1"}),
    ),
    (
        "scrape-interval-longer-than-the-alert-windows",
        stack(monitoring={"mode": "install", "install": {"prometheus": {"scrapeInterval": "5m"}}}),
        "monitoring.install.prometheus.scrapeInterval",
        "fire forever",
        stack(monitoring={"mode": "install", "install": {"prometheus": {"scrapeInterval": "1m"}}}),
    ),
    (
        "ingress-prefix-without-a-base-url",
        stack({"ingress": {**INGRESS, "path": "/airflow"}}),
        "airflow.ingress.path",
        "https://airflow.example.com/airflow",
        stack(
            {
                "ingress": {**INGRESS, "path": "/airflow"},
                "extraValues": {"config": {"api": {"base_url": "https://airflow.example.com/airflow"}}},
            }
        ),
    ),
    (
        "base-url-of-another-prefix",
        stack({"ingress": INGRESS, "extraValues": {"config": {"api": {"base_url": "https://airflow.example.com/ui"}}}}),
        "airflow.extraValues.config.api.base_url",
        "is not the ingress path '/'",
        stack({"ingress": INGRESS, "extraValues": {"config": {"api": {"base_url": "https://airflow.example.com/"}}}}),
    ),
    (
        "flower-and-the-ui-on-one-path",
        stack({**CELERY_FLOWER, "ingress": {**INGRESS, "path": "/", "flower": {"path": "/"}}}),
        "airflow.ingress.flower.path",
        "one host and path",
        stack({**CELERY_FLOWER, "ingress": {**INGRESS, "path": "/", "flower": {"path": "/flower"}}}),
    ),
    (
        "flower-on-a-host-the-certificate-does-not-cover",
        stack({**CELERY_FLOWER, "ingress": {**TLS_INGRESS, "flower": {"host": "flower.example.com"}}}),
        "airflow.ingress.flower.host",
        "one TLS Secret",
        stack({**CELERY_FLOWER, "ingress": {**TLS_INGRESS, "flower": {"path": "/flower"}}}),
    ),
    (
        "team-in-the-namespace-of-an-operator-reading-secrets-cluster-wide",
        stack(
            {"executor": "CeleryExecutor"},
            keda={"mode": "install", "install": {"namespace": "autoscaling"}},
            teams=[{"name": "data", "namespace": "autoscaling"}],
        ),
        "teams[0].namespace",
        "keda.install.namespace already puts KEDA in this namespace",
        stack(
            {"executor": "CeleryExecutor"},
            keda={"mode": "install", "install": {"namespace": "autoscaling"}},
            teams=[{"name": "data"}],
        ),
    ),
    (
        "connection-scheme-airflow-parses-to-an-empty-type",
        stack(secrets={"connections": json.dumps({"gcp": "google_cloud_platform://?extra__project=p"})}),
        "connections.gcp",
        "the type would be empty",
        stack(secrets={"connections": json.dumps({"gcp": "google-cloud-platform://?extra__project=p"})}),
    ),
]


def parse(case: dict[str, Any]):
    values = {k: json.dumps(v) for k, v in case["values"].items()}
    return parse_stack({**values, **case["secrets"]}, set(case["secrets"]))


class TestContradictions:
    @pytest.mark.parametrize(("name", "bad", "key", "fragment", "good"), CASES, ids=[c[0] for c in CASES])
    def test_settings_that_never_work_together_are_refused_naming_the_key_to_change(
        self, name, bad, key, fragment, good
    ):
        with pytest.raises(ConfigError) as err:
            parse(bad)
        assert err.value.key == key, str(err.value)
        assert fragment in str(err.value)
        for secret in bad["secrets"].values():
            assert secret not in str(err.value)

    @pytest.mark.parametrize(("name", "bad", "key", "fragment", "good"), CASES, ids=[c[0] for c in CASES])
    def test_the_fixed_twin_loads_clean(self, name, bad, key, fragment, good):
        parse(good)
