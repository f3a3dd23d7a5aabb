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
            obj["metadata"].update({"uid": "u", "resourceVersion": "7", "annotations": HELM})
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
                config_map("helm-elsewhere", namespace="other", annotations=HELM),
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

    def test_predicted_objects_and_what_helm_or_pulumi_made_in_the_namespaces_are_found(self):
        kube = self.cluster()
        predicted = [
            config_map("predicted-plain"),
            config_map("predicted-but-missing"),
            {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": meta("crd-never-installed")},
        ]
        live = live_objects(kube, predicted, [NS])
        assert self.names(live) == [
            "ClusterRole/ours",
            "ConfigMap/by-helm",
            "ConfigMap/by-pulumi-label",
            "ConfigMap/by-pulumi-ssa",
            "ConfigMap/predicted-plain",
            "Deployment/web",
            "HorizontalPodAutoscaler/web",
            "Namespace/airflow",
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
