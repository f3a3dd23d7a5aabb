"""e2e.fidelity: the offline preview's prediction against what the cluster really holds (which
objects are predicted, which live ones are read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.offline import preview as preview_module
from components.offline.checks import Problem
from components.offline.preview import Source
from e2e.fidelity import PredictionError, compare, live_objects, predicted_objects
from e2e.kube import ApiResource
from tests.fake_kube import FakeKube
from tests.fidelity_objects import HELM, NS, config_map, container, meta, pod_spec, workload
from tests.helpers import ROOT

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
