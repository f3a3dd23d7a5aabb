"""Cloud identity: ServiceAccount annotations and pod labels per component, remote logging with
no keys, the Spark pods, and a stack that sets an identity and static keys for the same bucket."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components import ConfigError
from components.core.reader import Node
from components.offline.program import unwrap
from components.platform.config import parse_stack
from tests.helpers import connections_files, docs_text, of_type, releases, render_release, run_stack, values
from tests.test_readme import documented

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
BOTH = {"executor": "CeleryExecutor,KubernetesExecutor", "dags": GIT}
ROLE = "arn:aws:iam::123456789012:role/airflow"
TASK_ROLE = "arn:aws:iam::123456789012:role/airflow-tasks"
GSA = "airflow@my-project.iam.gserviceaccount.com"
CLIENT = "11111111-2222-3333-4444-555555555555"
TENANT = "66666666-7777-8888-9999-000000000000"
S3_LOGS = {"mode": "remote", "remote": {"target": "s3", "baseLogFolder": "s3://logs/airflow", "workloadIdentity": True}}
AIRFLOW_ACCOUNTS = {
    "airflow-scheduler",
    "airflow-api-server",
    "airflow-triggerer",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-worker-kubernetes",
}


def accounts(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o["metadata"] for o in objects if o["kind"] == "ServiceAccount"}


def airflow_objects(run) -> list[dict[str, Any]]:
    (res,) = [r for r in releases(run) if unwrap(r.inputs)["name"] == "airflow"]
    return render_release(res)


class TestServiceAccounts:
    def test_aws_every_airflow_account_gets_its_role_and_task_pods_their_own(self):
        identity = {"provider": "aws", "default": ROLE, "components": {"taskPods": TASK_ROLE}}
        sas = accounts(airflow_objects(run_stack(BOTH, extra={"identity": identity})))
        for name in AIRFLOW_ACCOUNTS - {"airflow-worker-kubernetes"}:
            assert sas[name]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE, name
        assert sas["airflow-worker-kubernetes"]["annotations"]["eks.amazonaws.com/role-arn"] == TASK_ROLE
        # Postgres, Redis, StatefulSets of others, jobs: no cloud identity
        for name in ("airflow-redis", "airflow-statsd", "airflow-create-user-job"):
            assert "eks.amazonaws.com/role-arn" not in (sas[name].get("annotations") or {}), name

    def test_gke_accounts_name_the_google_service_account(self):
        sas = accounts(airflow_objects(run_stack(BOTH, extra={"identity": {"provider": "gcp", "default": GSA}})))
        assert {
            n for n, m in sas.items() if (m.get("annotations") or {}).get("iam.gke.io/gcp-service-account") == GSA
        } == (AIRFLOW_ACCOUNTS)

    def test_azure_accounts_name_the_client_and_the_pods_carry_the_use_label(self):
        identity = {"provider": "azure", "default": CLIENT, "azureTenantId": TENANT, "labels": {"team": "data"}}
        objects = airflow_objects(run_stack(BOTH, extra={"identity": identity}))
        sas = accounts(objects)
        for name in AIRFLOW_ACCOUNTS:
            assert sas[name]["annotations"]["azure.workload.identity/client-id"] == CLIENT
            assert sas[name]["annotations"]["azure.workload.identity/tenant-id"] == TENANT
        pods = {
            o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"]
            for o in objects
            if o["kind"] in ("Deployment", "StatefulSet")
        }
        for name in ("airflow-scheduler", "airflow-api-server", "airflow-worker", "airflow-triggerer"):
            assert pods[name]["azure.workload.identity/use"] == "true", name
            assert pods[name]["team"] == "data"
        assert "azure.workload.identity/use" not in pods["airflow-redis"]
        (config,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "airflow-config"]
        assert 'azure.workload.identity/use: "true"' in config["data"]["pod_template_file.yaml"]

    def test_only_listed_components_get_an_identity_without_a_default(self):
        identity = {"provider": "aws", "components": {"taskPods": TASK_ROLE}}
        sas = accounts(airflow_objects(run_stack(BOTH, extra={"identity": identity})))
        tagged = {n for n, m in sas.items() if "eks.amazonaws.com/role-arn" in (m.get("annotations") or {})}
        assert tagged == {"airflow-worker-kubernetes"}

    def test_without_an_identity_no_account_is_annotated(self):
        for meta in accounts(airflow_objects(run_stack(BOTH))).values():
            assert not any(k.startswith(("eks.", "iam.gke.", "azure.")) for k in meta.get("annotations") or {})


class TestRemoteLoggingWithoutKeys:
    def test_s3_logs_through_the_pods_role_need_no_connection(self):
        run = run_stack(BOTH, extra={"identity": {"provider": "aws", "default": ROLE}, "logs": S3_LOGS})
        logging = values(run)["config"]["logging"]
        assert logging["remote_base_log_folder"] == "s3://logs/airflow"
        assert logging["remote_log_conn_id"] == ""  # boto3's default credential chain (IRSA)
        assert "airflow-pulumi-environment" not in {
            unwrap(r.inputs)["metadata"]["name"] for r in of_type(run, "v1:Secret")
        }

    def test_gcs_logs_through_workload_identity_need_no_connection(self):
        logs = {"mode": "remote", "remote": {"target": "gcs", "baseLogFolder": "gs://logs/a", "workloadIdentity": True}}
        run = run_stack(BOTH, extra={"identity": {"provider": "gcp", "default": GSA}, "logs": logs})
        assert values(run)["config"]["logging"]["remote_log_conn_id"] == ""

    def test_wasb_logs_get_a_connection_with_the_account_url_and_no_credentials(self):
        folder = "wasb://logs@airflowlogs.blob.core.windows.net/airflow"
        logs = {"mode": "remote", "remote": {"target": "wasb", "baseLogFolder": folder, "workloadIdentity": True}}
        run = run_stack(BOTH, extra={"identity": {"provider": "azure", "default": CLIENT}, "logs": logs})
        assert values(run)["config"]["logging"]["remote_log_conn_id"] == "wasb_logs"
        conns, _ = connections_files(run)
        assert conns["wasb_logs"] == {"conn_type": "wasb", "host": "https://airflowlogs.blob.core.windows.net"}


class TestSpark:
    def test_the_spark_driver_and_executor_accounts_get_their_identities(self):
        identity = {"provider": "aws", "default": ROLE, "components": {"sparkDriver": TASK_ROLE}}
        run = run_stack(BOTH, extra={"identity": identity, "spark": {}})
        sas = {
            unwrap(r.inputs)["metadata"]["name"]: unwrap(r.inputs)["metadata"] for r in of_type(run, "ServiceAccount")
        }
        assert sas["spark-driver"]["annotations"]["eks.amazonaws.com/role-arn"] == TASK_ROLE
        assert sas["spark-executor"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE


def parse(identity: dict[str, Any], **extra: Any):
    return parse_stack({"airflow": json.dumps(BOTH), "identity": identity, **extra}, set(extra) & {"logsConnection"})


class TestIdentityConfig:
    def test_an_identity_next_to_static_keys_for_the_same_bucket_is_refused_naming_what_to_drop(self):
        logs = {"mode": "remote", "remote": {"target": "s3", "baseLogFolder": "s3://logs/airflow"}}
        with pytest.raises(ConfigError) as err:
            parse({"provider": "aws", "default": ROLE}, logs=logs, logsConnection="aws://AKIA:secret@")
        assert err.value.key == "logsConnection"
        message = str(err.value)
        assert "drop logsConnection" in message and "workloadIdentity: true" in message
        assert "drop identity.default" in message
        assert "secret@" not in message and "AKIA" not in message

    def test_static_keys_for_logs_of_another_cloud_than_the_identity_are_allowed(self):
        logs = {"mode": "remote", "remote": {"target": "s3", "baseLogFolder": "s3://logs/airflow"}}
        assert parse({"provider": "gcp", "default": GSA}, logs=logs, logsConnection="aws://k:s@").identity.enabled

    @pytest.mark.parametrize(
        ("identity", "extra", "key", "fragment"),
        [
            ({"provider": "aws", "default": "airflow-role"}, {}, "identity.default", "IAM role ARN"),
            ({"provider": "gcp", "default": ROLE}, {}, "identity.default", "service account e-mail"),
            ({"provider": "azure", "components": {"workers": "nope"}}, {}, "identity.components.workers", "GUID"),
            ({"provider": "ibm", "default": ROLE}, {}, "identity.provider", "allowed: aws, gcp, azure"),
            ({"provider": "aws"}, {}, "identity.default", "needs a value"),
            (
                {"provider": "aws", "default": ROLE, "components": {"flower": ROLE}},
                {},
                "identity.components.flower",
                "unknown",
            ),
            (
                {"provider": "aws", "default": ROLE, "annotations": {"eks.amazonaws.com/role-arn": ROLE}},
                {},
                "identity.annotations.eks.amazonaws.com/role-arn",
                "not by hand",
            ),
            (
                {"provider": "aws", "default": ROLE, "azureTenantId": TENANT},
                {},
                "identity.azureTenantId",
                "only for provider 'azure'",
            ),
            (
                {"provider": "aws", "default": ROLE, "components": {"sparkDriver": ROLE}},
                {},
                "identity.components.sparkDriver",
                "no Spark pods",
            ),
            (
                {"provider": "gcp", "default": GSA},
                {"logs": S3_LOGS},
                "logs.remote.workloadIdentity",
                "reaches gcs only",
            ),
            (
                {"provider": "aws", "components": {"scheduler": ROLE}},
                {"logs": S3_LOGS},
                "identity.components.apiServer",
                "without an identity these could not",
            ),
        ],
    )
    def test_bad_identity_settings_are_refused_naming_the_key(self, identity, extra, key, fragment):
        with pytest.raises(ConfigError) as err:
            parse(identity, **extra)
        assert err.value.key == key
        assert fragment in str(err.value)

    def test_every_identity_key_is_documented_in_the_readme(self):
        Node.asked.clear()
        parse(
            {
                "provider": "azure",
                "default": CLIENT,
                "azureTenantId": TENANT,
                "annotations": {"a": "b"},
                "labels": {"c": "d"},
                "components": {"workers": CLIENT},
            }
        )
        keys = sorted({k for k in Node.asked if k.startswith("identity")})
        assert len(keys) >= 10
        assert [k for k in keys if not documented(k)] == []


def test_the_readme_explains_each_cloud():
    readme = docs_text()
    for text in ("eks.amazonaws.com/role-arn", "iam.gke.io/gcp-service-account", "azure.workload.identity/client-id"):
        assert text in readme
