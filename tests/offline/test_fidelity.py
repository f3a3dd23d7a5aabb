"""The preview renders with the Helm that deploys (v3.20) and the target cluster's capabilities.

A probe chart, made here, prints what Helm tells its templates: `.Capabilities.KubeVersion`,
`.Capabilities.APIVersions.Has` for a built-in API, a CRD's API and an API the cluster
does not serve, and `.Release.IsUpgrade`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.offline.helm import (
    HELM_VERSION,
    Capabilities,
    builtin_api_versions,
    crd_api_versions,
    helm_binary,
    normalize_kube_version,
)
from components.offline.preview import preview, stack_capabilities
from components.offline.program import load_stack_config, run_program, whole_numbers
from components.offline.render import HelmRenderError, HelmValuesError, render, render_chart
from tests.helpers import ROOT, project_copy, run_stack

PROBE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: probe
data:
  kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}
  kubeMinor: {{ .Capabilities.KubeVersion.Minor | quote }}
  policyV1: {{ .Capabilities.APIVersions.Has "policy/v1" | quote }}
  pdbKind: {{ .Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget" | quote }}
  monitoring: {{ .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" | quote }}
  serviceMonitor: {{ .Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor" | quote }}
  spark: {{ .Capabilities.APIVersions.Has "sparkoperator.k8s.io/v1beta2" | quote }}
  certManager: {{ .Capabilities.APIVersions.Has "cert-manager.io/v1" | quote }}
  upgrade: {{ .Release.IsUpgrade | quote }}
  install: {{ .Release.IsInstall | quote }}
  port: {{ .Values.port | quote }}
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chart = tmp_path_factory.mktemp("charts") / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("port: 1\n")
    (chart / "templates" / "probe.yaml").write_text(PROBE)
    return chart


def probed(
    chart: Path, capabilities: Capabilities | None = None, values: dict[str, Any] | None = None
) -> dict[str, str]:
    (only,) = render(chart, values or {}, "probe", "default", capabilities)
    return dict(only.obj["data"])


class TestTheHelmThatDeploys:
    def test_the_renderer_is_helm_v3_20(self):
        import subprocess

        out = subprocess.run([helm_binary(), "version", "--template", "{{.Version}}"], capture_output=True, text=True)
        assert out.stdout.strip() == HELM_VERSION

    def test_helm_checks_the_charts_values_schema(self):
        archive = ROOT.parent / "shared" / "charts" / "airflow-1.21.0.tgz"
        with pytest.raises(HelmValuesError, match="additional properties 'replica' not allowed"):
            render(archive, {"scheduler": {"replica": 2}}, "airflow", "airflow")

    def test_a_template_failure_is_a_render_error_with_helms_message(self, tmp_path):
        chart = tmp_path / "failing"
        (chart / "templates").mkdir(parents=True)
        (chart / "Chart.yaml").write_text("apiVersion: v2\nname: failing\nversion: 0.1.0\n")
        (chart / "templates" / "x.yaml").write_text('{{ fail "set .Values.needed" }}\n')
        with pytest.raises(HelmRenderError, match=r"set \.Values\.needed"):
            render(chart, {}, "failing", "default")


class TestCapabilities:
    def test_the_kube_version_is_the_one_given(self, probe):
        data = probed(probe, Capabilities.for_cluster("1.29"))
        assert data["kubeVersion"] == "v1.29.0" and data["kubeMinor"] == "29"

    def test_built_in_apis_of_the_version_are_served_by_group_version_and_kind(self, probe):
        data = probed(probe, Capabilities.for_cluster("1.31"))
        assert data["policyV1"] == "true" and data["pdbKind"] == "true"

    def test_a_crd_api_is_absent_unless_installed_or_declared(self, probe):
        assert probed(probe, Capabilities.for_cluster("1.31"))["monitoring"] == "false"
        declared = probed(probe, Capabilities.for_cluster("1.31", {"monitoring.coreos.com/v1"}))
        assert declared["monitoring"] == "true"

    def test_a_release_renders_as_an_install_or_as_an_upgrade(self, probe):
        assert probed(probe, Capabilities.for_cluster("1.31"))["upgrade"] == "false"
        again = probed(probe, Capabilities.for_cluster("1.31", is_upgrade=True))
        assert (again["upgrade"], again["install"]) == ("true", "false")

    def test_the_versions_served_follow_the_kubernetes_release(self):
        assert "flowcontrol.apiserver.k8s.io/v1beta3" in builtin_api_versions("1.31")
        assert "flowcontrol.apiserver.k8s.io/v1beta3" not in builtin_api_versions("1.33")
        assert not any("alpha" in v for v in builtin_api_versions("1.31"))

    def test_kube_versions_get_a_patch_number(self):
        assert normalize_kube_version("1.31") == "1.31.0"
        assert normalize_kube_version("v1.34.4") == "1.34.4"
        with pytest.raises(ValueError, match="not a Kubernetes version"):
            normalize_kube_version("latest")

    def test_a_crd_adds_each_served_version_with_its_kind(self):
        crd = {
            "kind": "CustomResourceDefinition",
            "spec": {
                "group": "keda.sh",
                "names": {"kind": "ScaledObject"},
                "versions": [{"name": "v1alpha1", "served": True}, {"name": "v0", "served": False}],
            },
        }
        assert crd_api_versions([crd]) == {"keda.sh/v1alpha1", "keda.sh/v1alpha1/ScaledObject"}


class TestTheStacksCapabilities:
    def test_a_stack_installing_the_prometheus_operator_serves_its_apis(self, probe):
        run = run_program(ROOT, "dev")  # dev installs kube-prometheus-stack and the Spark operator
        caps = stack_capabilities(ROOT, run, None)
        data = probed(probe, caps)
        assert (data["monitoring"], data["serviceMonitor"], data["spark"]) == ("true", "true", "true")
        assert data["certManager"] == "false"

    def test_the_kubernetes_version_comes_from_the_cluster_config(self, probe):
        run = run_stack(
            {"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}},
            cluster={"kubernetesVersion": "1.29"},
        )
        assert probed(probe, stack_capabilities(ROOT, run, None))["kubeVersion"] == "v1.29.0"
        assert probed(probe, stack_capabilities(ROOT, run, "1.33"))["kubeVersion"] == "v1.33.0"

    def test_api_versions_the_cluster_declares_are_served(self, probe):
        run = run_stack(
            {"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}},
            cluster={"apiVersions": ["cert-manager.io/v1", "cert-manager.io/v1/Certificate"]},
        )
        assert probed(probe, stack_capabilities(ROOT, run, None))["certManager"] == "true"

    def test_a_release_of_the_previous_preview_renders_as_an_upgrade(self, tmp_path):
        first = preview(ROOT, "dev", tmp_path, run_checkov=False)
        assert {s.name: s.detail["isUpgrade"] for s in first.sources if s.kind == "release"} == {
            "airflow-release": False,
            "monitoring-release": False,
            "spark-release": False,
        }
        again = preview(ROOT, "dev", tmp_path, run_checkov=False)
        assert all(s.detail["isUpgrade"] for s in again.sources if s.kind == "release")
        fresh = preview(ROOT, "dev", tmp_path, run_checkov=False, releases_exist=False)
        assert not any(s.detail["isUpgrade"] for s in fresh.sources if s.kind == "release")


class TestValuesAsTheProgramGaveThem:
    def test_whole_numbers_from_the_wire_become_integers(self):
        assert whole_numbers({"port": 8793.0, "ratio": 0.5, "list": [1.0, "a"]}) == {
            "port": 8793,
            "ratio": 0.5,
            "list": [1, "a"],
        }

    def test_an_integer_value_reaches_the_chart_as_an_integer(self, probe):
        assert probed(probe, values={"port": 8793})["port"] == "8793"

    def test_the_recorded_inputs_carry_integers(self):
        run = run_program(ROOT, "prod")
        ports = [
            port["port"]
            for res in run.resources
            if res.type.endswith("NetworkPolicy")
            for rule in (res.inputs.get("spec") or {}).get("ingress") or []
            for port in rule.get("ports") or []
            if "port" in port
        ]
        assert ports and all(isinstance(p, int) for p in ports if not isinstance(p, str))


class TestSecureObjectPlaceholders:
    def stack(self, tmp_path: Path, config: dict[str, Any]) -> Path:
        root = tmp_path / "project"
        root.mkdir()
        (root / "Pulumi.yaml").write_text("name: airflow-k8s\nruntime: python\n")
        (root / "Pulumi.test.yaml").write_text(json.dumps({"config": config}))
        return root

    def test_secure_team_secrets_get_one_placeholder_per_declared_secret(self, tmp_path):
        root = self.stack(
            tmp_path,
            {
                "airflow-k8s:teams": [{"name": "data", "secrets": ["warehouse"]}],
                "airflow-k8s:teamSecrets": {"secure": "v1:abc"},
            },
        )
        _, config, secret_keys, origin = load_stack_config(root, "test", env={})
        shaped = json.loads(config["airflow-k8s:teamSecrets"])
        assert list(shaped) == ["data"] and list(shaped["data"]) == ["warehouse"]
        assert origin["airflow-k8s:teamSecrets"] == "placeholder"
        assert "airflow-k8s:teamSecrets" in secret_keys

    def test_secure_connections_and_variables_get_an_empty_object(self, tmp_path):
        root = self.stack(
            tmp_path, {"airflow-k8s:connections": {"secure": "v1:abc"}, "airflow-k8s:variables": {"secure": "v1:x"}}
        )
        _, config, _, _ = load_stack_config(root, "test", env={})
        assert json.loads(config["airflow-k8s:connections"]) == {}
        assert json.loads(config["airflow-k8s:variables"]) == {}

    def test_a_stack_with_secure_team_secrets_and_connections_previews(self, tmp_path):
        project = project_copy(
            tmp_path,
            {
                "test": {
                    "config": {
                        "kubernetes:context": "test-cluster",
                        "airflow-k8s:airflow": {
                            "dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
                        },
                        "airflow-k8s:teams": [{"name": "data", "secrets": ["warehouse"]}],
                        "airflow-k8s:teamSecrets": {"secure": "v1:abc"},
                        "airflow-k8s:connections": {"secure": "v1:abc"},
                        "airflow-k8s:previousFernetKeys": {"secure": "v1:abc"},
                    }
                }
            },
        )
        result = preview(project, "test", tmp_path / "out", run_checkov=False)
        assert [p.message for p in result.problems] == []
        assert result.run.placeholders["airflow-k8s:teamSecrets"] == "placeholder"
        secret = next(o for o in result.objects if o["kind"] == "Secret" and o["metadata"]["name"] == "warehouse")
        assert secret["metadata"]["namespace"] != "airflow"


def test_render_chart_separates_the_crds_helm_installs_first():
    archive = ROOT.parent / "shared" / "charts" / "spark-operator-2.5.2.tgz"
    rendered = render_chart(archive, {}, "spark", "spark-operator")
    assert {c["spec"]["names"]["kind"] for c in rendered.crds} >= {"SparkApplication", "ScheduledSparkApplication"}
    assert not any(r.obj["kind"] == "CustomResourceDefinition" for r in rendered.objects)
