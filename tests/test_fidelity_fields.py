"""e2e.fidelity.compare and e2e.fidelity_fields: inside each object, what decides behaviour is
compared once what the API server adds is normalised; each difference the issue lists is found."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from e2e.fidelity import compare, live_objects
from tests.fake_kube import FakeKube
from tests.fidelity_objects import (
    HELM,
    NS,
    SERVER_DEFAULTED,
    changed,
    config_map,
    container,
    main_container,
    meta,
    pod_spec,
    rich_scheduler,
    scheduler,
    server_defaults,
    workload,
)


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

    def test_a_probes_zero_initial_delay_and_a_zero_host_port_read_back_omitted(self):
        spec = pod_spec(container("web"))
        spec["containers"][0].update(
            startupProbe={"httpGet": {"path": "/health", "port": 8080}, "initialDelaySeconds": 0},
            ports=[{"containerPort": 8080, "hostPort": 0}],
        )
        predicted = workload("Deployment", "web", spec)
        live = copy.deepcopy(predicted)
        main = live["spec"]["template"]["spec"]["containers"][0]
        del main["startupProbe"]["initialDelaySeconds"], main["ports"][0]["hostPort"]
        assert compare([predicted], [live]) == []
        main["startupProbe"]["initialDelaySeconds"] = 600
        assert [d for d in compare([predicted], [live]) if "startupProbe" in d]

    def test_a_lifecycle_hooks_http_scheme_defaults_to_http(self):
        spec = pod_spec(container("web"))
        spec["containers"][0]["lifecycle"] = {"preStop": {"httpGet": {"path": "/drain", "port": 8080}}}
        predicted = workload("Deployment", "web", spec)
        live = copy.deepcopy(predicted)
        live["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["httpGet"]["scheme"] = "HTTP"
        assert compare([predicted], [live]) == []
        live["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["httpGet"]["path"] = "/kill"
        assert [d for d in compare([predicted], [live]) if "lifecycle" in d]

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
