"""LogStorage: task logs that survive pods and reach every Airflow pod."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import ConfigError
from components.core.reader import Node
from components.offline.preview import PreviewResult, preview
from components.offline.program import secret_paths, unwrap
from components.platform.config import parse_stack
from tests.helpers import ROOT, connections_files, of_type, release, render_release, run_stack, secrets_by_name, values
from tests.test_readme import documented

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
LAPTOP = {"environment": "laptop", "storageClasses": ["standard"]}
HOST_PATH: dict[str, Any] = {
    "mode": "hostPath",
    "size": "5Gi",
    "hostPath": {"path": "/data/airflow-logs", "node": "minikube"},
}
NFS: dict[str, Any] = {
    "mode": "nfs",
    "size": "50Gi",
    "nfs": {"server": "nfs.internal", "path": "/exports/airflow-logs"},
}
DYNAMIC: dict[str, Any] = {"mode": "dynamic", "size": "100Gi", "dynamic": {"storageClass": "efs-sc"}}
S3: dict[str, Any] = {"mode": "remote", "remote": {"target": "s3", "baseLogFolder": "s3://team-logs/airflow"}}
AWS_CONN = "aws://?region_name=eu-west-1&role_arn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Flogs"

# Chart workloads that run Airflow code and therefore write task logs.
AIRFLOW_WORKLOADS = {"scheduler", "triggerer", "dag-processor", "api-server", "webserver", "worker"}


def run_logs(logs: dict[str, Any], airflow: dict[str, Any] | None = None, **kwargs: Any):
    return run_stack(airflow or {"dags": GIT}, extra={"logs": logs}, cluster=kwargs.pop("cluster", LAPTOP), **kwargs)


def preview_of(tmp_path: Path, run) -> PreviewResult:
    return preview(ROOT, "test", tmp_path, run_checkov=False, program_run=run)


def claims_mounted(pod_spec: dict[str, Any]) -> dict[str, str | None]:
    """volume name -> claim, for the claims a pod mounts at the chart's logs path."""
    volumes = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod_spec.get("volumes", [])}
    mounted: dict[str, str | None] = {}
    for container in pod_spec["containers"]:
        for mount in container.get("volumeMounts", []):
            if mount["mountPath"] == "/opt/airflow/logs":
                mounted[container["name"]] = volumes.get(mount["name"])
    return mounted


class TestModes:
    def test_host_path_declares_a_class_a_retained_volume_a_claim_and_fixes_ownership(self):
        run = run_logs(HOST_PATH)
        (sc,) = of_type(run, "storage.k8s.io/v1:StorageClass")
        (pv,) = of_type(run, "core/v1:PersistentVolume")
        (pvc,) = of_type(run, "core/v1:PersistentVolumeClaim")
        (job,) = [j for j in of_type(run, "batch/v1:Job") if j.name.endswith("-logs-permissions")]
        sc_in, pv_in, pvc_in = unwrap(sc.inputs), unwrap(pv.inputs), unwrap(pvc.inputs)
        assert sc_in["provisioner"] == "kubernetes.io/no-provisioner"
        assert sc_in["volumeBindingMode"] == "Immediate" and sc_in["reclaimPolicy"] == "Retain"
        assert pv_in["spec"]["accessModes"] == pvc_in["spec"]["accessModes"] == ["ReadWriteMany"]
        assert pv_in["spec"]["storageClassName"] == pvc_in["spec"]["storageClassName"] == sc_in["metadata"]["name"]
        assert pv_in["spec"]["hostPath"] == {"path": "/data/airflow-logs", "type": "DirectoryOrCreate"}
        assert pv_in["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert pv_in["metadata"]["annotations"] == {"pv.beta.kubernetes.io/gid": "0"}
        terms = pv_in["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert terms[0]["matchExpressions"][0]["values"] == ["minikube"]
        assert pvc_in["spec"]["volumeName"] == pv_in["metadata"]["name"]
        assert sc.retain_on_delete and pv.retain_on_delete and pvc.retain_on_delete
        command = unwrap(job.inputs)["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[-1] == "chown 50000:0 /opt/airflow/logs && chmod 2775 /opt/airflow/logs"

    def test_nfs_declares_a_retained_volume_on_the_server_and_its_claim(self):
        run = run_logs(NFS)
        (pv,) = of_type(run, "core/v1:PersistentVolume")
        (pvc,) = of_type(run, "core/v1:PersistentVolumeClaim")
        spec = unwrap(pv.inputs)["spec"]
        assert spec["nfs"] == {"server": "nfs.internal", "path": "/exports/airflow-logs"}
        assert spec["mountOptions"] == ["nfsvers=4.1", "hard"]
        assert spec["storageClassName"] == unwrap(pvc.inputs)["spec"]["storageClassName"] == ""
        assert pv.retain_on_delete and pvc.retain_on_delete
        assert not of_type(run, "StorageClass")

    def test_dynamic_declares_only_a_claim_on_the_named_class(self):
        run = run_logs(DYNAMIC, cluster={"storageClasses": ["efs-sc"]})
        (pvc,) = of_type(run, "core/v1:PersistentVolumeClaim")
        spec = unwrap(pvc.inputs)["spec"]
        assert spec == {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "efs-sc",
            "resources": {"requests": {"storage": "100Gi"}},
        }
        assert pvc.retain_on_delete
        assert not of_type(run, "PersistentVolume")

    def test_remote_s3_logging_configures_airflow_and_delivers_the_connection_as_a_secret(self):
        run = run_logs(S3, cluster={}, secrets={"logsConnection": AWS_CONN})
        vals = values(run)
        assert vals["config"]["logging"]["remote_logging"] == "True"
        assert vals["config"]["logging"]["remote_base_log_folder"] == "s3://team-logs/airflow"
        assert vals["config"]["logging"]["remote_log_conn_id"] == "aws_logs"
        assert vals["logs"]["persistence"] == {"enabled": False}
        connections, _ = connections_files(run)
        assert connections["aws_logs"] == AWS_CONN
        assert secret_paths(release(run).inputs) == []
        assert AWS_CONN not in json.dumps(unwrap(release(run).inputs))
        assert not of_type(run, "PersistentVolumeClaim")

    def test_remote_elasticsearch_uses_the_charts_secret_reference(self):
        run = run_logs(
            {"mode": "remote", "remote": {"target": "elasticsearch"}},
            cluster={},
            secrets={"logsConnection": "https://u:p@es:9200"},
        )
        vals = values(run)
        assert vals["elasticsearch"] == {"enabled": True, "secretName": "airflow-pulumi-elasticsearch"}
        data = unwrap(secrets_by_name(run)["airflow-pulumi-elasticsearch"].inputs)["stringData"]
        assert data == {"connection": "https://u:p@es:9200"}

    def test_workload_identity_needs_no_connection_secret(self):
        logs = {
            "mode": "remote",
            "remote": {"target": "gcs", "baseLogFolder": "gs://logs/airflow", "workloadIdentity": True},
        }
        vals = values(run_logs(logs, cluster={}))
        assert vals["config"]["logging"]["remote_log_conn_id"] == ""

    def test_on_a_shared_claim_one_groomer_the_schedulers_sweeps_every_components_logs(self):
        vals = values(run_logs({**HOST_PATH, "retention": {"days": 3, "frequencyMinutes": 30}}))
        groomer = vals["scheduler"]["logGroomerSidecar"]
        assert {k: groomer[k] for k in ("enabled", "retentionDays", "frequencyMinutes")} == {
            "enabled": True,
            "retentionDays": 3,
            "frequencyMinutes": 30,
        }
        assert vals["triggerer"]["logGroomerSidecar"]["enabled"] is False
        assert vals["dagProcessor"]["logGroomerSidecar"]["enabled"] is False
        objects = render_release(release(run_logs(HOST_PATH)))
        groomers = sorted(
            c["name"]
            for o in objects
            if o["kind"] in ("Deployment", "StatefulSet")
            for c in o["spec"]["template"]["spec"]["containers"]
            if c["name"].endswith("log-groomer")
        )
        assert groomers == ["scheduler-log-groomer"]

    def test_without_a_shared_claim_every_component_grooms_its_own_logs(self):
        vals = values(run_logs(S3, cluster={}, secrets={"logsConnection": AWS_CONN}))
        for component in ("scheduler", "triggerer", "dagProcessor"):
            assert vals[component]["logGroomerSidecar"]["enabled"] is True, component
        assert vals["workers"]["celery"]["logGroomerSidecar"]["enabled"] is True


class TestEveryPodMountsTheClaim:
    @pytest.mark.parametrize(
        ("version", "executor"),
        [
            ("3.2.0", "CeleryExecutor,KubernetesExecutor"),
            ("2.11.0", "CeleryKubernetesExecutor"),
            ("3.2.0", "LocalExecutor"),
        ],
    )
    @pytest.mark.parametrize("logs", [HOST_PATH, NFS], ids=["hostPath", "nfs"])
    def test_every_airflow_pod_and_the_task_pod_template_mount_the_logs_claim(self, tmp_path, version, executor, logs):
        run = run_logs(logs, {"version": version, "executor": executor, "dags": GIT})
        result = preview_of(tmp_path, run)
        assert [p.message for p in result.problems] == []
        seen = set()
        for obj in result.objects:
            if obj["kind"] in ("Deployment", "StatefulSet"):
                component = obj["spec"]["template"]["metadata"]["labels"].get("component")
                if component in AIRFLOW_WORKLOADS:
                    seen.add(component)
                    mounted = claims_mounted(obj["spec"]["template"]["spec"])
                    assert mounted and set(mounted.values()) == {"airflow-logs"}, obj["metadata"]["name"]
        expected = {"scheduler", "triggerer"}
        expected |= {"api-server", "dag-processor"} if version.startswith("3") else {"webserver"}
        if "Celery" in executor:
            expected.add("worker")
        assert seen == expected
        pods = [o for o in result.objects if o["kind"] == "Pod"]
        if "Kubernetes" in executor:
            (pod,) = pods
            assert set(claims_mounted(pod["spec"]).values()) == {"airflow-logs"}

    def test_volume_claim_and_class_agree_in_the_dev_preview(self, tmp_path):
        result = preview(ROOT, "dev", tmp_path, run_checkov=False)
        assert result.problems == []
        by_kind = {o["kind"]: o for o in result.objects if o["kind"] in ("StorageClass", "PersistentVolume")}
        claim = next(
            o
            for o in result.objects
            if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == "airflow-logs"
        )
        assert claim["spec"]["storageClassName"] == by_kind["StorageClass"]["metadata"]["name"]
        assert claim["spec"]["volumeName"] == by_kind["PersistentVolume"]["metadata"]["name"]
        assert claim["spec"]["accessModes"] == by_kind["PersistentVolume"]["spec"]["accessModes"] == ["ReadWriteMany"]


class TestTaskPodTemplate:
    def test_task_pod_settings_reach_the_charts_pod_template_and_it_stays_a_valid_pod(self, tmp_path):
        airflow = {
            "dags": GIT,
            "taskPods": {
                "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
                "nodeSelector": {"workload": "airflow-tasks"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "airflow", "effect": "NoSchedule"}],
                "env": {"TEAM": "data"},
                "extraVolumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
                "extraVolumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                "securityContext": {"runAsUser": 50000, "fsGroup": 0},
            },
        }
        result = preview_of(tmp_path, run_logs(HOST_PATH, airflow))
        assert result.problems == []
        (pod,) = [o for o in result.objects if o["kind"] == "Pod"]
        spec = pod["spec"]
        base = spec["containers"][0]
        assert base["resources"] == {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
        assert spec["nodeSelector"] == {"workload": "airflow-tasks"}
        assert spec["tolerations"][0]["key"] == "dedicated"
        assert {"name": "TEAM", "value": "data"} in base["env"]
        assert {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}} in spec["volumes"]
        assert {"name": "scratch", "mountPath": "/scratch"} in base["volumeMounts"]
        assert spec["securityContext"]["runAsUser"] == 50000
        assert set(claims_mounted(spec).values()) == {"airflow-logs"}


def bad(
    logs: Any,
    *,
    cluster: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    airflow: dict[str, Any] | None = None,
) -> str:
    secrets = secrets or {}
    raw = {
        "airflow": json.dumps(airflow or {"dags": GIT}),
        "logs": json.dumps(logs),
        "cluster": json.dumps(cluster if cluster is not None else LAPTOP),
        **secrets,
    }
    with pytest.raises(ConfigError) as err:
        parse_stack(raw, set(secrets))
    return str(err.value)


class TestBadConfig:
    def test_host_path_without_a_path(self):
        assert "logs.hostPath.path" in bad({"mode": "hostPath"}) and "required" in bad({"mode": "hostPath"})

    def test_host_path_in_production(self):
        message = bad(HOST_PATH, cluster={"environment": "production"})
        assert "logs.mode" in message and "'hostPath'" in message and "nfs, dynamic, remote" in message

    def test_host_path_dags_in_production(self):
        message = bad({}, cluster={}, airflow={"dags": {"mode": "hostPath", "hostPath": {"path": "/d"}}})
        assert "airflow.dags.mode" in message and "gitSync" in message

    def test_nfs_without_a_server(self):
        message = bad({"mode": "nfs", "nfs": {"path": "/exports"}})
        assert "logs.nfs.server" in message and "required" in message

    def test_nfs_with_a_relative_path(self):
        assert "absolute export path" in bad({"mode": "nfs", "nfs": {"server": "nfs", "path": "exports"}})

    def test_remote_without_a_target(self):
        message = bad({"mode": "remote", "remote": {}})
        assert "logs.remote.target" in message and "required" in message

    def test_remote_without_credentials(self):
        message = bad(S3)
        assert "logsConnection" in message and "workloadIdentity" in message

    def test_remote_folder_of_the_wrong_scheme(self):
        logs = {"mode": "remote", "remote": {"target": "s3", "baseLogFolder": "gs://bucket"}}
        assert "starting with s3://" in bad(logs, secrets={"logsConnection": "aws://"})

    def test_size_not_a_quantity(self):
        message = bad({**HOST_PATH, "size": "lots"})
        assert "logs.size" in message and "'lots'" in message and "storage size" in message

    def test_dynamic_without_a_class(self):
        assert "logs.dynamic.storageClass" in bad({"mode": "dynamic"})

    def test_settings_of_another_mode(self):
        assert "only the settings of the selected mode" in bad({**HOST_PATH, "nfs": {"server": "x"}})

    def test_a_connection_without_remote_logging(self):
        assert "logsConnection is set" in bad(HOST_PATH, secrets={"logsConnection": "aws://"})

    def test_unknown_retention_key(self):
        assert "Did you mean 'days'?" in bad({**HOST_PATH, "retention": {"day": 3}})

    @pytest.mark.parametrize(
        ("task_pods", "fragment"),
        [
            ({"tolerations": [{"operator": "Exists", "value": "x"}]}, "operator Exists takes no value"),
            ({"tolerations": [{"key": "a", "tolerationSeconds": 5}]}, "only applies with effect NoExecute"),
            (
                {"extraVolumeMounts": [{"name": "nope", "mountPath": "/x"}]},
                "airflow.taskPods.extraVolumeMounts[0].name",
            ),
            ({"extraVolumes": [{"name": "logs", "emptyDir": {}}]}, "the chart's own volume"),
            ({"extraVolumes": [{"name": "a", "emptyDir": {}, "hostPath": {"path": "/"}}]}, "exactly one volume source"),
            ({"env": {"1BAD": "x"}}, "environment variable name"),
            ({"securityContext": {"runAsUser": 0}}, "airflow.taskPods.securityContext.runAsUser"),
            ({"nodeSelector": {"bad key!": "x"}}, "label key"),
        ],
    )
    def test_bad_task_pod_settings(self, task_pods, fragment):
        assert fragment in bad({}, airflow={"dags": GIT, "taskPods": task_pods})


def test_every_logs_key_is_documented_in_the_readme():
    Node.asked.clear()
    for logs, secrets in [
        ({**HOST_PATH, "retention": {"enabled": True, "days": 3, "frequencyMinutes": 5}}, {}),
        (NFS | {"nfs": {**NFS["nfs"], "mountOptions": ["hard"]}}, {}),
        (DYNAMIC, {}),
        (
            {"mode": "remote", "remote": {**S3["remote"], "connectionId": "x", "deleteLocalLogs": True}},
            {"logsConnection": "aws://"},
        ),
    ]:
        airflow = {
            "dags": GIT,
            "taskPods": {
                "securityContext": {},
                "extraVolumeMounts": [{"name": "logs", "mountPath": "/l", "readOnly": True, "subPath": "a"}],
                "tolerations": [{"key": "k", "effect": "NoExecute", "tolerationSeconds": 1, "value": "v"}],
            },
        }
        parse_stack(
            {"airflow": json.dumps(airflow), "logs": json.dumps(logs), "cluster": json.dumps(LAPTOP), **secrets},
            set(secrets),
        )
    keys = {k for k in Node.asked if k.startswith(("logs", "airflow.taskPods", "cluster"))}
    keys = {k.split("[")[0] + k[k.index("]") + 1 :] if "[" in k else k for k in keys}
    missing = sorted(k for k in keys if not documented(k))
    assert missing == []


def test_the_dev_stack_uses_host_path_logs_and_prod_a_read_write_many_class():
    from components.offline.program import load_stack_config

    for stack, mode in (("dev", "hostPath"), ("prod", "dynamic")):
        project, config, _, _ = load_stack_config(ROOT, stack, env={})
        assert yaml.safe_load(config[f"{project}:logs"])["mode"] == mode
