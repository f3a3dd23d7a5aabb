"""Objects for the fidelity tests: as the preview predicts them, and the API server's additions."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from e2e.fidelity import compare

NS = "airflow"
HELM = {"meta.helm.sh/release-name": "airflow", "meta.helm.sh/release-namespace": NS}


def meta(name: str, namespace: str | None = NS, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, **extra}
    if namespace is not None:
        out["namespace"] = namespace
    return out


def container(name: str, image: str = "apache/airflow:3.2.1", env=("A", "B"), mounts=("/opt/airflow/logs",)):
    return {
        "name": name,
        "image": image,
        "env": [{"name": e, "value": "x"} for e in env],
        "volumeMounts": [{"name": f"v{i}", "mountPath": m} for i, m in enumerate(mounts)],
    }


def pod_spec(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {"containers": list(containers), "initContainers": list(init)}


def workload(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    api = "batch/v1" if kind in ("Job", "CronJob") else "apps/v1"
    template = {"metadata": {"labels": {"app": name}}, "spec": spec}
    body: dict[str, Any] = (
        {"jobTemplate": {"spec": {"template": template}}, "schedule": "@daily"}
        if kind == "CronJob"
        else {"template": template}
    )
    return {"apiVersion": api, "kind": kind, "metadata": meta(name), "spec": body}


def config_map(name: str, namespace: str | None = NS, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, namespace, **extra), "data": {}}


def scheduler(kind: str = "Deployment", **changes: Any) -> dict[str, Any]:
    main = container("scheduler", **changes)
    return workload(kind, "airflow-scheduler", pod_spec(main, init=(container("wait-for-migrations"),)))


def rich_scheduler() -> dict[str, Any]:
    """A workload with what the server defaults left out, as the chart renders it."""
    main = container("scheduler")
    main.update(
        {
            "args": ["bash", "-c", "exec airflow scheduler"],
            "env": [
                {"name": "A", "value": "x"},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "AIRFLOW__CORE__FERNET_KEY", "valueFrom": {"secretKeyRef": {"name": "fernet", "key": "k"}}},
            ],
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            "resources": {"limits": {"cpu": "1000m", "memory": "1Gi"}},
            "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 60},
            "readinessProbe": {"httpGet": {"port": 8080}},
        }
    )
    spec = pod_spec(main)
    spec["volumes"] = [
        {"name": "config", "configMap": {"name": "airflow-config"}},
        {"name": "logs", "hostPath": {"path": "/data/logs"}},
        {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
    ]
    spec["serviceAccountName"] = "airflow-scheduler"
    obj = workload("Deployment", "airflow-api-server", spec)
    obj["spec"]["replicas"] = 1
    return obj


RBAC = "rbac.authorization.k8s.io/v1"
SERVER_DEFAULTED: list[dict[str, Any]] = [
    {**config_map("airflow-cfg"), "data": {"airflow.cfg": "[core]\nexecutor = KubernetesExecutor\n"}},
    {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta("scheduler"),
        "spec": {"podSelector": {"matchLabels": {"c": "s"}}, "ingress": [{"ports": [{"port": 8793}]}]},
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta("web"),
        "spec": {"ports": [{"name": "http", "port": 8080}]},
    },
    {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta("logs"),
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1024Mi"}}},
    },
    {
        "apiVersion": RBAC,
        "kind": "Role",
        "metadata": meta("launcher"),
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "create"]}],
    },
    {
        "apiVersion": RBAC,
        "kind": "RoleBinding",
        "metadata": meta("launcher"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "launcher"},
        "subjects": [{"kind": "ServiceAccount", "name": "airflow-worker", "namespace": NS}],
    },
    rich_scheduler(),
    {  # a Helm hook, kept after it ran: compared like any other object
        **workload("Job", "airflow-run-migrations", pod_spec(container("migrate"))),
        "metadata": meta("airflow-run-migrations", annotations={"helm.sh/hook": "post-install"}),
    },
    workload("CronJob", "airflow-cleanup", pod_spec(container("cleanup"))),
    {
        **workload("StatefulSet", "airflow-worker", {**pod_spec(container("worker")), "nodeSelector": {"pool": "a"}}),
    },
    {"apiVersion": "v1", "kind": "Secret", "metadata": meta("fernet"), "stringData": {"fernet-key": "placeholder"}},
    {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta("airflow-worker", annotations={"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/w"}),
        "automountServiceAccountToken": False,
    },
    {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": meta(NS, namespace=None, labels={"pod-security.kubernetes.io/enforce": "restricted"}),
    },
    {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta("web"),
        "spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "web"}},
    },
    {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": meta("airflow"),
        "spec": {"groups": [{"name": "airflow", "rules": [{"alert": "SchedulerDown", "expr": "up == 0"}]}]},
    },
    {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": meta("limits"),
        "spec": {"limits": [{"type": "Container", "default": {"memory": "1024Mi", "cpu": "500m"}}]},
    },
]
for _obj in SERVER_DEFAULTED:
    if _obj["kind"] == "CronJob":
        _obj["spec"]["jobTemplate"]["spec"]["ttlSecondsAfterFinished"] = 600
    if _obj["kind"] == "StatefulSet":
        _obj["spec"]["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "logs"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Gi"}}},
            }
        ]


def server_defaults(by_kind: dict[str, dict[str, Any]]) -> None:
    """Fill in what the API server defaults, as a live object read back carries it."""
    by_kind["NetworkPolicy"]["spec"]["policyTypes"] = ["Ingress"]
    by_kind["NetworkPolicy"]["spec"]["ingress"][0]["ports"][0]["protocol"] = "TCP"
    port = by_kind["Service"]["spec"]["ports"][0]
    port.update(protocol="TCP", targetPort=8080)
    by_kind["Service"]["spec"].update(type="ClusterIP", clusterIP="10.0.0.7", sessionAffinity="None")
    by_kind["PersistentVolumeClaim"]["spec"].update(
        resources={"requests": {"storage": "1Gi"}},
        storageClassName="standard",
        volumeName="pvc-123",
        volumeMode="Filesystem",
    )
    by_kind["Role"]["rules"][0]["verbs"] = ["create", "get"]
    by_kind["RoleBinding"]["subjects"][0]["apiGroup"] = ""
    deployment_obj = by_kind["Deployment"]
    spec = deployment_obj["spec"]["template"]["spec"]
    main = spec["containers"][0]
    main.update(terminationMessagePath="/dev/termination-log", terminationMessagePolicy="File")
    main["env"][1]["valueFrom"]["fieldRef"]["apiVersion"] = "v1"
    main["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}
    main["livenessProbe"].update(timeoutSeconds=1, successThreshold=1, failureThreshold=3)
    main["readinessProbe"] = {
        "httpGet": {"port": 8080, "scheme": "HTTP", "path": "/"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    spec["volumes"][0]["configMap"]["defaultMode"] = 420
    spec["volumes"][1]["hostPath"]["type"] = ""
    spec["volumes"][2]["projected"]["defaultMode"] = 420
    spec["volumes"][2]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] = 3600
    spec.update(
        serviceAccount="airflow-scheduler",
        securityContext={},
        dnsPolicy="ClusterFirst",
        restartPolicy="Always",
        schedulerName="default-scheduler",
        terminationGracePeriodSeconds=30,
    )
    deployment_obj["spec"].update(revisionHistoryLimit=10, progressDeadlineSeconds=600)
    job = by_kind["Job"]
    job["spec"].update(backoffLimit=6, completions=1, parallelism=1, completionMode="NonIndexed", suspend=False)
    job["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}
    job["spec"]["template"]["metadata"]["labels"].update(
        {"batch.kubernetes.io/controller-uid": "u-1", "controller-uid": "u-1", "job-name": "x"}
    )
    job["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    cron = by_kind["CronJob"]["spec"]
    cron.update(concurrencyPolicy="Allow", suspend=False, successfulJobsHistoryLimit=3, failedJobsHistoryLimit=1)
    cron["jobTemplate"]["spec"]["backoffLimit"] = 6
    claim = by_kind["StatefulSet"]["spec"]["volumeClaimTemplates"][0]
    claim.update(apiVersion="v1", kind="PersistentVolumeClaim", status={"phase": "Pending"})
    claim["spec"].update(volumeMode="Filesystem", resources={"requests": {"storage": "100Gi"}})
    by_kind["StatefulSet"]["spec"].update(podManagementPolicy="OrderedReady", replicas=1)
    secret = by_kind["Secret"]
    secret.update(type="Opaque", data={"fernet-key": "Z2VuZXJhdGVk"})  # written as stringData, read as data
    del secret["stringData"]
    by_kind["ServiceAccount"]["secrets"] = []
    namespace = by_kind["Namespace"]
    namespace["metadata"]["labels"]["kubernetes.io/metadata.name"] = NS
    namespace["spec"] = {"finalizers": ["kubernetes"]}
    by_kind["HorizontalPodAutoscaler"]["spec"].update(
        minReplicas=1,
        scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        behavior={"scaleDown": {"stabilizationWindowSeconds": 300}},
    )
    by_kind["PrometheusRule"]["spec"]["groups"][0]["interval"] = "30s"  # a CRD schema's default
    by_kind["LimitRange"]["spec"]["limits"][0]["default"] = {"memory": "1Gi", "cpu": "500m"}  # canonical
    by_kind["LimitRange"]["spec"]["limits"][0]["defaultRequest"] = {"memory": "1Gi", "cpu": "500m"}


def changed(kind: str, change: Callable[[dict[str, Any]], None]) -> list[str]:
    """The differences compare() reports when `change` is made to the live copy of one object."""
    predicted = copy.deepcopy([o for o in SERVER_DEFAULTED if o["kind"] == kind])
    live = copy.deepcopy(predicted)
    change(live[0])
    return compare(predicted, live)


def main_container(obj: dict[str, Any]) -> dict[str, Any]:
    container_: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
    return container_
