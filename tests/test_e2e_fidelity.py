"""e2e.fidelity: the offline preview's prediction against what the cluster really holds."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components.offline import preview as preview_module
from components.offline.checks import Problem
from components.offline.preview import Source
from e2e.fidelity import PredictionError, compare, live_objects, predicted_objects
from e2e.kube import ApiResource
from tests.fake_kube import FakeKube
from tests.helpers import ROOT

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


class TestCompareFindsEveryDifferenceThatChangesBehaviour:
    """Each difference the issue lists, made on the live side, is reported (the rest matching)."""

    CASES: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
        (
            "privileged",
            "Deployment",
            lambda o: main_container(o)["securityContext"].update(privileged=True),
            "securityContext",
        ),
        (
            "default-service-account",
            "Deployment",
            lambda o: o["spec"]["template"]["spec"].pop("serviceAccountName"),
            "pod serviceAccountName",
        ),
        (
            "host-path-root",
            "Deployment",
            lambda o: o["spec"]["template"]["spec"]["volumes"][1]["hostPath"].update(path="/"),
            "volume.logs",
        ),
        (
            "fernet-key-as-a-plain-value",
            "Deployment",
            lambda o: main_container(o)["env"][2].update(value="a-fernet-key", valueFrom=None),
            "env.AIRFLOW__CORE__FERNET_KEY",
        ),
        ("five-replicas", "Deployment", lambda o: o["spec"].update(replicas=5), "replicas: 1 predicted, 5 live"),
        ("args", "Deployment", lambda o: main_container(o).update(args=["bash", "-c", "sleep infinity"]), "args"),
        (
            "resources",
            "Deployment",
            lambda o: main_container(o)["resources"]["limits"].update(memory="16Gi"),
            "resources",
        ),
        ("probes", "Deployment", lambda o: main_container(o).pop("livenessProbe"), "livenessProbe"),
        (
            "configmap-data",
            "ConfigMap",
            lambda o: o["data"].update({"airflow.cfg": "executor = CeleryExecutor"}),
            "data.airflow.cfg",
        ),
        ("rbac-rules", "Role", lambda o: o["rules"][0]["verbs"].append("delete"), "rules"),
        ("rbac-subjects", "RoleBinding", lambda o: o["subjects"][0].update(name="default"), "binding"),
        (
            "allow-all-network-policy",
            "NetworkPolicy",
            lambda o: o["spec"].update(podSelector={}, ingress=[{}]),
            "spec.podSelector",
        ),
        ("service-ports", "Service", lambda o: o["spec"]["ports"][0].update(targetPort=9999), "spec.ports"),
        (
            "hook-job-run-as-root",
            "Job",
            lambda o: o["spec"]["template"]["spec"].update(securityContext={"runAsUser": 0}),
            "pod securityContext",
        ),
        ("job-retries", "Job", lambda o: o["spec"].update(backoffLimit=100), "spec.job backoffLimit"),
        (
            "template-labels",
            "Job",
            lambda o: o["spec"]["template"]["metadata"]["labels"].update(app="api-server"),
            "pod template labels.app",
        ),
        ("cron-schedule", "CronJob", lambda o: o["spec"].update(schedule="* * * * *"), "spec.schedule"),
        ("cron-suspended", "CronJob", lambda o: o["spec"].update(suspend=True), "spec.suspend"),
        (
            "tolerations",
            "StatefulSet",
            lambda o: o["spec"]["template"]["spec"].update(tolerations=[{"operator": "Exists"}]),
            "pod tolerations",
        ),
        (
            "node-selector",
            "StatefulSet",
            lambda o: o["spec"]["template"]["spec"].update(nodeSelector={"pool": "b"}),
            "pod nodeSelector",
        ),
        (
            "token-mounted",
            "StatefulSet",
            lambda o: o["spec"]["template"]["spec"].update(automountServiceAccountToken=True, hostPID=True),
            "pod hostPID",
        ),
        (
            "container-port",
            "StatefulSet",
            lambda o: main_container(o).update(ports=[{"containerPort": 22}]),
            "container worker ports",
        ),
        (
            "claim-template-size",
            "StatefulSet",
            lambda o: o["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"].update(storage="1Gi"),
            "volumeClaimTemplate.logs",
        ),
        ("secret-keys", "Secret", lambda o: o["stringData"].update({"extra": "x"}), "secret.keys"),
        ("secret-type", "Secret", lambda o: o.update(type="kubernetes.io/tls"), "secret.type"),
        (
            "service-account-identity",
            "ServiceAccount",
            lambda o: o["metadata"]["annotations"].update({"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/admin"}),
            "serviceAccount.identity",
        ),
        (
            "service-account-token",
            "ServiceAccount",
            lambda o: o.pop("automountServiceAccountToken"),
            "serviceAccount.automountServiceAccountToken",
        ),
        (
            "pod-security-level",
            "Namespace",
            lambda o: o["metadata"]["labels"].update({"pod-security.kubernetes.io/enforce": "privileged"}),
            "namespace.podSecurity",
        ),
        (
            "autoscaler-bounds",
            "HorizontalPodAutoscaler",
            lambda o: o["spec"].update(maxReplicas=50),
            "spec.maxReplicas",
        ),
        (
            "custom-resource-field",
            "PrometheusRule",
            lambda o: o["spec"]["groups"][0]["rules"][0].update(expr="vector(0)"),
            "spec.groups[0].rules[0].expr",
        ),
        (
            "custom-resource-list",
            "PrometheusRule",
            lambda o: o["spec"]["groups"][0]["rules"].clear(),
            "spec.groups[0].rules: 1 items predicted, 0 live",
        ),
        (
            "limit-range-quantity",
            "LimitRange",
            lambda o: o["spec"]["limits"][0]["default"].update(memory="64Gi"),
            "spec.limits[0].default.memory",
        ),
        (
            "claim-size",
            "PersistentVolumeClaim",
            lambda o: o["spec"]["resources"]["requests"].update(storage="1Mi"),
            "spec.size",
        ),
    ]

    @pytest.mark.parametrize(("name", "kind", "change", "reported"), CASES, ids=[c[0] for c in CASES])
    def test_the_difference_is_reported(self, name, kind, change, reported):
        differences = changed(kind, change)
        assert differences and any(reported in d for d in differences), differences

    def test_replicas_an_autoscaler_sets_are_not_compared(self):
        predicted = copy.deepcopy([o for o in SERVER_DEFAULTED if o["kind"] == "Deployment"])
        scaler = {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": meta("workers"),
            "spec": {"scaleTargetRef": {"name": "airflow-api-server"}},
        }
        live = copy.deepcopy([*predicted, scaler])
        live[0]["spec"]["replicas"] = 4
        assert compare([*predicted, scaler], live) == []


class TestCompareFindsNothingOnAMatch:
    def test_the_same_objects_compare_equal_whatever_the_server_added(self):
        predicted = [config_map("airflow-config"), scheduler(), *SERVER_DEFAULTED]
        live = copy.deepcopy(predicted)
        for obj in live:
            obj["metadata"].update(
                uid="u",
                resourceVersion="7",
                generation=2,
                creationTimestamp="2026-12-07T04:00:00Z",
                managedFields=[{"manager": "pulumi-kubernetes-2c0f", "operation": "Apply", "fieldsV1": {}}],
                annotations={**obj["metadata"].get("annotations", {}), **HELM},
            )
            obj["status"] = {"observedGeneration": 2}
        live[1]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
        live[1]["status"] = {"availableReplicas": 1}
        server_defaults({o["kind"]: o for o in live[2:]})
        assert compare(predicted, live) == []

    def test_the_order_of_containers_env_and_mounts_does_not_matter(self):
        predicted = workload("Deployment", "d", pod_spec(container("a", env=("X", "Y")), container("b")))
        live = workload("Deployment", "d", pod_spec(container("b"), container("a", env=("Y", "X"))))
        assert compare([predicted], [live]) == []


class TestCompareReportsEachKindOfDifference:
    def test_a_predicted_object_the_cluster_lacks(self):
        assert compare([config_map("a"), config_map("b")], [config_map("a")]) == [
            "missing ConfigMap airflow/b: predicted, not in the cluster"
        ]

    def test_an_object_nobody_predicted(self):
        extra = config_map("surprise", annotations=HELM)
        assert compare([], [extra]) == [
            "extra ConfigMap airflow/surprise: in the cluster (made by Helm release airflow), not predicted"
        ]

    def test_another_namespace_is_another_object(self):
        assert compare([config_map("a")], [config_map("a", namespace="other")]) == [
            "missing ConfigMap airflow/a: predicted, not in the cluster",
            "extra ConfigMap other/a: in the cluster (made by unknown), not predicted",
        ]

    def test_another_name_or_kind_is_another_object(self):
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": meta("a")}
        assert compare([config_map("a")], [config_map("b"), secret]) == [
            "missing ConfigMap airflow/a: predicted, not in the cluster",
            "extra ConfigMap airflow/b: in the cluster (made by unknown), not predicted",
            "extra Secret airflow/a: in the cluster (made by unknown), not predicted",
        ]

    @pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"])
    def test_every_pod_template_kind_is_compared_image_env_names_and_mounts(self, kind):
        predicted = scheduler(kind)
        live = scheduler(kind, image="apache/airflow:3.2.0", env=("A", "C"), mounts=("/opt/airflow/dags",))
        assert compare([predicted], [live]) == [
            f"{kind} airflow/airflow-scheduler container scheduler: "
            "image apache/airflow:3.2.1 predicted, apache/airflow:3.2.0 live",
            f"{kind} airflow/airflow-scheduler container scheduler: env names differ (predicted only: B; live only: C)",
            f"{kind} airflow/airflow-scheduler container scheduler: "
            "volume mount paths differ (predicted only: /opt/airflow/logs; live only: /opt/airflow/dags)",
        ]

    def test_init_containers_are_compared_too(self):
        predicted = workload("Job", "migrate", pod_spec(container("main"), init=(container("init", env=("A",)),)))
        live = workload("Job", "migrate", pod_spec(container("main"), init=(container("init", env=()),)))
        assert compare([predicted], [live]) == [
            "Job airflow/migrate initContainer init: env names differ (predicted only: A)"
        ]

    def test_a_container_on_one_side_only(self):
        predicted = workload("Deployment", "d", pod_spec(container("a"), container("sidecar")))
        live = workload("Deployment", "d", pod_spec(container("a"), container("other")))
        assert compare([predicted], [live]) == [
            "Deployment airflow/d container sidecar: predicted, not in the live template",
            "Deployment airflow/d container other: in the live template, not predicted",
        ]


class TestCompareKnowsHowHelmAndKubernetesWork:
    def test_a_hook_deleted_once_it_succeeded_may_be_gone_but_a_kept_hook_may_not(self):
        hook = {"helm.sh/hook": "pre-install", "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded"}
        kept = {"helm.sh/hook": "post-install", "helm.sh/hook-delete-policy": "before-hook-creation"}
        predicted = [config_map("gone-hook", annotations=hook), config_map("kept-hook", annotations=kept)]
        assert compare(predicted, []) == ["missing ConfigMap airflow/kept-hook: predicted, not in the cluster"]

    def test_a_cluster_scoped_object_the_preview_put_in_a_namespace_is_the_same_object(self):
        predicted = {"apiVersion": "example.com/v1", "kind": "ClusterThing", "metadata": meta("t")}
        live = {"apiVersion": "example.com/v1", "kind": "ClusterThing", "metadata": meta("t", namespace=None)}
        assert compare([predicted], [live]) == []


# --- live_objects --------------------------------------------------------------------------------


def deployment(name: str, namespace: str = NS, **metadata: Any) -> dict[str, Any]:
    obj = workload("Deployment", name, pod_spec(container("c")))
    obj["metadata"].update(namespace=namespace, **metadata)
    return obj


class TestLiveObjects:
    def cluster(self) -> FakeKube:
        pulumi_label = {"app.kubernetes.io/managed-by": "pulumi"}
        return FakeKube(
            [
                config_map("predicted-plain"),  # no marks at all: found because it is predicted
                deployment("web", annotations=HELM),
                config_map("by-helm", annotations=HELM),
                config_map("by-pulumi-label", labels=pulumi_label),
                config_map(
                    "by-pulumi-ssa", managedFields=[{"manager": "pulumi-kubernetes-2c0f", "operation": "Apply"}]
                ),
                config_map("by-nobody"),
                config_map("kube-root-ca.crt"),
                config_map("helm-elsewhere", namespace="kube-system", annotations=HELM),  # our release's
                config_map(
                    "other-release",
                    namespace="other",
                    annotations={"meta.helm.sh/release-name": "x", "meta.helm.sh/release-namespace": "other"},
                ),
                # Made by hand: an allow-all policy and a grant in our namespace count; elsewhere not.
                {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("allow-all")},
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "NetworkPolicy",
                    "metadata": meta("theirs", namespace="other"),
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": meta("grant-ours", namespace=None),
                    "subjects": [{"kind": "ServiceAccount", "name": "airflow-worker", "namespace": NS}],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": meta("system:grant", namespace=None),
                    "subjects": [{"kind": "ServiceAccount", "name": "x", "namespace": "kube-system"}],
                },
                {  # Helm's record of the release, written through the provider (its field manager)
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "helm.sh/release.v1",
                    "metadata": meta(
                        "sh.helm.release.v1.airflow.v1",
                        labels={"owner": "helm", "name": "airflow", "version": "1"},
                        managedFields=[{"manager": "pulumi-kubernetes-2c0f"}],
                    ),
                },
                # What controllers make, with the marks they copy from their owners.
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta("web-1", annotations=HELM)},
                {"apiVersion": "v1", "kind": "Pod", "metadata": meta("web-1-x", annotations=HELM)},
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": meta(
                        "cleanup-123",
                        labels=pulumi_label,
                        ownerReferences=[{"kind": "CronJob", "name": "cleanup", "controller": True}],
                    ),
                },
                {
                    "apiVersion": "autoscaling/v2",
                    "kind": "HorizontalPodAutoscaler",
                    "metadata": meta("web", annotations=HELM),
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": meta("ours", namespace=None, annotations=HELM),
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": meta(
                        "theirs",
                        namespace=None,
                        annotations={"meta.helm.sh/release-name": "x", "meta.helm.sh/release-namespace": "x"},
                    ),
                },
                {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(NS, namespace=None, labels=pulumi_label)},
            ],
            extra=(ApiResource("example.com/v1", "widgets", "Widget", True),),
        )

    def names(self, objects: list[dict[str, Any]]) -> list[str]:
        return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)

    def test_predicted_objects_what_our_releases_or_pulumi_made_anywhere_and_hand_made_grants_are_found(self):
        kube = self.cluster()
        predicted = [
            config_map("predicted-plain"),
            config_map("predicted-but-missing"),
            {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": meta("crd-never-installed")},
        ]
        live = live_objects(kube, predicted, [NS])
        assert self.names(live) == [
            "ClusterRole/ours",
            "ClusterRoleBinding/grant-ours",
            "ConfigMap/by-helm",
            "ConfigMap/by-pulumi-label",
            "ConfigMap/by-pulumi-ssa",
            "ConfigMap/helm-elsewhere",
            "ConfigMap/predicted-plain",
            "Deployment/web",
            "HorizontalPodAutoscaler/web",
            "Namespace/airflow",
            "NetworkPolicy/allow-all",
        ]
        assert all(o.get("apiVersion") and o.get("kind") for o in live)

    def test_the_found_objects_compare_against_a_prediction(self):
        kube = self.cluster()
        predicted = [config_map("predicted-plain"), config_map("by-helm"), deployment("web")]
        differences = compare(predicted, live_objects(kube, predicted, [NS]))
        assert "extra ConfigMap airflow/by-pulumi-label: in the cluster (made by Pulumi), not predicted" in differences
        assert not any("predicted-plain" in d or "by-helm" in d or "Deployment" in d for d in differences)


# --- predicted_objects ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dev() -> list[dict[str, Any]]:
    return predicted_objects(ROOT, "dev")


class TestPredictedObjects:
    def test_the_dev_stack_predicts_pulumi_objects_chart_objects_and_chart_crds(self, dev):
        keys = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in dev}
        assert ("Namespace", None, "airflow") in keys  # declared by the program
        assert ("Deployment", "airflow", "airflow-scheduler") in keys  # rendered from the Airflow chart
        assert ("CustomResourceDefinition", None, "servicemonitors.monitoring.coreos.com") in keys  # chart crds/

    def test_pod_templates_inside_config_maps_are_not_objects_of_their_own(self, dev):
        assert not [o for o in dev if o["kind"] == "Pod"]

    def test_a_stack_the_preview_cannot_render_is_an_error_not_an_empty_prediction(self, monkeypatch, tmp_path):
        class Result:
            problems = [Problem("chart", "airflow-release", "Release/airflow", "chart archive airflow-9.9.9.tgz")]
            sources = [Source("airflow-release", "release", "kubernetes:helm.sh/v3:Release")]

        monkeypatch.setattr(preview_module, "preview", lambda *a, **k: Result())
        with pytest.raises(PredictionError, match=r"Release/airflow: chart archive airflow-9\.9\.9\.tgz"):
            predicted_objects(tmp_path, "dev")

    def test_helm_test_hooks_are_not_predicted(self, monkeypatch, tmp_path):
        test_pod = config_map("test-connection", annotations={"helm.sh/hook": "test"})

        class Result:
            problems: list[Problem] = []
            sources = [Source("r", "release", "kubernetes:helm.sh/v3:Release", [config_map("kept"), test_pod])]

        monkeypatch.setattr(preview_module, "preview", lambda *a, **k: Result())
        assert [o["metadata"]["name"] for o in predicted_objects(Path(tmp_path), "dev")] == ["kept"]


class TestCompareKnowsWhatTheServerFillsIn:
    def test_a_host_network_pods_host_ports_default_to_its_container_ports(self):
        spec = {**pod_spec(container("exporter")), "hostNetwork": True}
        spec["containers"][0]["ports"] = [{"name": "metrics", "containerPort": 9100}]
        predicted = workload("DaemonSet", "node-exporter", spec)
        live = copy.deepcopy(predicted)
        live["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(hostPort=9100, protocol="TCP")
        assert compare([predicted], [live]) == []
        live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostPort"] = 22
        assert [d for d in compare([predicted], [live]) if "ports" in d]

    def test_a_service_account_token_secrets_keys_are_written_by_kubernetes(self):
        token = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": meta("operator-token"),
        }
        live = {**copy.deepcopy(token), "data": {"ca.crt": "x", "namespace": "eA==", "token": "dA=="}}
        assert compare([token], [live]) == []
        assert compare([token], [{**live, "type": "Opaque"}]) != []


class TestCompareReadsVolumesAsTheServerKeepsThem:
    def test_a_volume_without_a_class_reads_back_without_the_empty_class(self):
        volume: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": meta("dags", namespace=None),
            "spec": {"capacity": {"storage": "1Gi"}, "storageClassName": "", "hostPath": {"path": "/data/dags"}},
        }
        live = copy.deepcopy(volume)
        del live["spec"]["storageClassName"]
        live["spec"].update(persistentVolumeReclaimPolicy="Retain", volumeMode="Filesystem")
        live["spec"]["hostPath"]["type"] = ""
        assert compare([volume], [live]) == []
        live["spec"]["storageClassName"] = "fast"
        assert compare([volume], [live]) == ["PersistentVolume dags spec.storageClassName: null predicted, 'fast' live"]


class TestTheTamperedSchedulerOfTheIssue:
    """The live scheduler tried by hand against the old check (which found 0 differences): each of
    its seven changes is reported, read through live_objects as the e2e step reads the cluster."""

    def predicted(self) -> list[dict[str, Any]]:
        scheduler_ = rich_scheduler()
        scheduler_["metadata"]["name"] = "airflow-scheduler"
        cfg = {**config_map("airflow-config"), "data": {"airflow.cfg": "[core]\nexecutor = KubernetesExecutor\n"}}
        deny = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("airflow-scheduler-policy"),
            "spec": {"podSelector": {"matchLabels": {"component": "scheduler"}}, "policyTypes": ["Ingress"]},
        }
        return [scheduler_, cfg, deny]

    def tampered(self) -> list[dict[str, Any]]:
        scheduler_, cfg, deny = copy.deepcopy(self.predicted())
        pod = scheduler_["spec"]["template"]["spec"]
        main = pod["containers"][0]
        main["securityContext"]["privileged"] = True
        del pod["serviceAccountName"]  # runs under `default`
        pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
        main["volumeMounts"].append({"name": "host", "mountPath": "/host"})
        main["env"][2] = {"name": "AIRFLOW__CORE__FERNET_KEY", "value": "cGxhaW4ta2V5LXBsYWluLWtleS1wbGFpbi1rZXktMTI="}
        scheduler_["spec"]["replicas"] = 5
        cfg["data"]["airflow.cfg"] = "[core]\nexecutor = CeleryExecutor\n"
        allow_all = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("allow-all"),  # made by hand: no Helm or Pulumi mark
            "spec": {"podSelector": {}, "ingress": [{}], "egress": [{}], "policyTypes": ["Ingress", "Egress"]},
        }
        for obj in (scheduler_, cfg, deny):
            obj["metadata"]["annotations"] = {**obj["metadata"].get("annotations", {}), **HELM}
        return [scheduler_, cfg, deny, allow_all]

    def test_each_of_the_seven_changes_is_reported(self):
        predicted = self.predicted()
        differences = compare(predicted, live_objects(FakeKube(self.tampered()), predicted, [NS]))
        expected = {
            "privileged": "container scheduler securityContext",
            "the default service account": "pod serviceAccountName: 'airflow-scheduler' predicted, 'default' live",
            "hostPath /": 'volume.host: live, not predicted ({"hostPath": {"path": "/"}})',
            "the mount of it": "volume mount paths differ (live only: /host)",
            "the Fernet key as a plain value": "env.AIRFLOW__CORE__FERNET_KEY",
            "five replicas": "replicas: 1 predicted, 5 live",
            "another executor": "ConfigMap airflow/airflow-config data.airflow.cfg",
            "an allow-all NetworkPolicy": "extra NetworkPolicy airflow/allow-all: in the cluster (made by unknown)",
        }
        missed = [what for what, text in expected.items() if not any(text in d for d in differences)]
        assert missed == [], differences
        assert len(differences) >= len(expected)

    def test_the_plain_fernet_key_is_not_printed(self):
        predicted = self.predicted()
        differences = compare(predicted, live_objects(FakeKube(self.tampered()), predicted, [NS]))
        assert differences and not any("cGxhaW4ta2V5" in d for d in differences), differences

    def test_the_untampered_cluster_has_no_difference(self):
        predicted = self.predicted()
        live = copy.deepcopy(predicted)
        for obj in live:
            obj["metadata"]["annotations"] = {**obj["metadata"].get("annotations", {}), **HELM}
        server_defaults({"Deployment": live[0], **{k: o for o in SERVER_DEFAULTED if (k := o["kind"]) != "Deployment"}})
        found = live_objects(FakeKube(live), predicted, [NS])
        assert len(found) == 3 and compare(predicted, found) == []
