"""The end-to-end harness's own logic (no binaries, no cluster): what it builds, serves,
configures and asserts. The run itself is `python -m e2e` (README, "End-to-end run")."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any

import pytest
import yaml

from components.platform.config import parse_stack
from e2e import checks, run, tools
from e2e.charts import ChartRepository, index
from tests.helpers import ROOT

CHARTS = ROOT.parent / "shared" / "charts"

K8S_GOMOD = """module k8s.io/kubernetes

require k8s.io/api v0.0.0

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
)
"""

ETCD_GOMOD = """module go.etcd.io/etcd/server/v3

replace (
\tgo.etcd.io/etcd/api/v3 => ../api
\tgo.etcd.io/etcd/client/pkg/v3 => ../client/pkg
)

replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
"""


class TestBuildModules:
    def test_kubernetes_staging_modules_are_replaced_by_their_published_versions(self):
        assert tools._staging_replaces(K8S_GOMOD, "v1.34.4") == [
            "k8s.io/api => k8s.io/api v0.34.4",
            "k8s.io/client-go => k8s.io/client-go v0.34.4",
        ]

    def test_etcd_sibling_modules_are_replaced_by_the_same_version_and_forbidden_ones_are_dropped(self):
        assert tools._sibling_replaces(ETCD_GOMOD, "v3.6.5") == [
            "go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 v3.6.5",
            "go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 v3.6.5",
        ]

    def test_pulumi_pieces_are_pinned_to_the_python_sdks_in_requirements(self):
        pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line)
        assert tools.TOOLS["pulumi"].version == "v" + pins["pulumi"]
        assert tools.TOOLS["pulumi-language-python"].version == "v" + pins["pulumi"]
        assert tools.TOOLS["pulumi-resource-kubernetes"].version == "v" + pins["pulumi-kubernetes"]
        assert tools.TOOLS["pulumi-resource-random"].version == "v" + pins["pulumi-random"]

    def test_kubernetes_is_1_31_or_newer(self):
        minor = int(tools.KUBERNETES_VERSION.split(".")[1])
        assert minor >= 31

    def test_a_binary_on_path_is_used_as_it_is(self, tmp_path, monkeypatch):
        (tmp_path / "kwok").write_text("#!/bin/sh\n")
        (tmp_path / "kwok").chmod(0o755)
        monkeypatch.setenv("PATH", str(tmp_path))
        found = tools.resolve("kwok", tmp_path / "cache", build_missing=False)
        assert (found.origin, found.path) == ("PATH", tmp_path / "kwok")

    def test_a_cached_binary_is_reused_only_at_the_pinned_version(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PATH", "")
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "kwok").write_text("")
        (bin_dir / "kwok.version").write_text("sigs.k8s.io/kwok@v0.0.1\n")
        assert tools.resolve("kwok", tmp_path, build_missing=False).origin == "missing"
        (bin_dir / "kwok.version").write_text(f"sigs.k8s.io/kwok@{tools.KWOK_VERSION}\n")
        assert tools.resolve("kwok", tmp_path, build_missing=False).origin == "cache"

    def test_the_cache_folder_is_configurable_and_outside_the_repository(self, monkeypatch, tmp_path):
        monkeypatch.setenv("AIRFLOW_K8S_E2E_CACHE", str(tmp_path / "c"))
        assert tools.default_cache() == tmp_path / "c"
        monkeypatch.delenv("AIRFLOW_K8S_E2E_CACHE")
        assert ROOT not in tools.default_cache().parents


class TestLocalChartRepository:
    def test_the_index_lists_every_archive_with_its_digest_and_url(self):
        doc = index(CHARTS, "http://127.0.0.1:1")
        entry = doc["entries"]["airflow"][0]
        assert entry["version"] == "1.21.0"
        assert entry["urls"] == ["http://127.0.0.1:1/airflow-1.21.0.tgz"]
        assert len(entry["digest"]) == 64
        assert {"airflow", "spark-operator", "kube-prometheus-stack"} <= set(doc["entries"])

    def test_the_repository_serves_its_index_and_archives_on_loopback_only(self, tmp_path):
        repo = ChartRepository(CHARTS, tmp_path / "repo")
        url = repo.start()
        try:
            assert url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(url + "/index.yaml", timeout=10) as resp:
                served = yaml.safe_load(resp.read())
            archive_url = served["entries"]["airflow"][0]["urls"][0]
            with urllib.request.urlopen(archive_url, timeout=10) as resp:
                assert resp.read() == (CHARTS / "airflow-1.21.0.tgz").read_bytes()
        finally:
            repo.stop()


class TestStackShapedLikeDev:
    def test_the_e2e_config_is_dev_with_the_chart_from_the_local_repository(self):
        config = run.e2e_config({"repository": "http://127.0.0.1:8879", "version": "1.21.0"}, "1.34")
        dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
        assert config["airflow-k8s:airflow"]["executor"] == dev["airflow-k8s:airflow"]["executor"]
        parsed = parse_stack({k.split(":", 1)[1]: v for k, v in config.items()})
        assert parsed.airflow.chart.repository == "http://127.0.0.1:8879"
        assert parsed.cluster.kubernetes_version == "1.34"

    def test_a_local_chart_path_is_accepted_too(self):
        config = run.e2e_config({"path": str(CHARTS / "airflow-1.21.0.tgz")}, "1.34")
        parsed = parse_stack({k.split(":", 1)[1]: v for k, v in config.items()})
        assert parsed.airflow.chart.path == str(CHARTS / "airflow-1.21.0.tgz")

    def test_the_replica_change_is_a_valid_config(self):
        config = run.e2e_config({"repository": "http://127.0.0.1:8879", "version": "1.21.0"}, "1.34")
        run.set_replicas(config, "scheduler", 2)
        parsed = parse_stack({k.split(":", 1)[1]: v for k, v in config.items()})
        assert parsed.airflow.scheduler.replicas == 2

    def test_the_project_copy_runs_the_program_in_the_harness_python(self, tmp_path):
        project = run.copy_project(tmp_path / "p")
        doc = yaml.safe_load((project / "Pulumi.yaml").read_text())
        assert doc["runtime"]["options"]["virtualenv"] == sys.prefix
        assert (project / "components" / "airflow" / "component.py").exists()
        assert not list(project.glob("Pulumi.*.yaml"))


def deployment(name, available, replicas=1):
    return {
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
        "status": {
            "availableReplicas": available,
            "conditions": [{"type": "Available", "status": "True" if available == replicas else "False"}],
        },
    }


class TestWorkloadChecks:
    def test_a_deployment_short_of_replicas_is_reported(self):
        assert checks.workload_problems([deployment("s", 1, replicas=2)]) == ["Deployment/s: 1/2 available"]
        assert checks.workload_problems([deployment("s", 2, replicas=2)]) == []

    def test_an_unfinished_job_is_reported(self):
        job = {"kind": "Job", "metadata": {"name": "m"}, "status": {"conditions": [{"type": "Complete"}]}}
        assert checks.workload_problems([job]) == ["Job/m: not complete (succeeded=0)"]

    def test_a_statefulset_short_of_ready_replicas_is_reported(self):
        sts = {"kind": "StatefulSet", "metadata": {"name": "pg"}, "spec": {"replicas": 1}, "status": {}}
        assert checks.workload_problems([sts]) == ["StatefulSet/pg: 0/1 ready"]


OPTIONAL = {"name": "opt", "key": "k", "optional": True}


class TestSecretReferences:
    WORKLOAD = {
        "kind": "Deployment",
        "metadata": {"name": "scheduler"},
        "spec": {
            "template": {
                "spec": {
                    "volumes": [{"name": "c", "secret": {"secretName": "conf"}}],
                    "containers": [
                        {
                            "name": "s",
                            "env": [
                                {"name": "F", "valueFrom": {"secretKeyRef": {"name": "fernet", "key": "fernet-key"}}},
                                {"name": "O", "valueFrom": {"secretKeyRef": OPTIONAL}},
                            ],
                            "envFrom": [{"secretRef": {"name": "env"}}],
                        }
                    ],
                }
            }
        },
    }

    def test_every_missing_secret_and_key_is_named(self):
        secrets: dict[str, dict[str, Any]] = {"fernet": {"data": {"other": "eA=="}}, "env": {"data": {}}}
        assert checks.missing_secrets([self.WORKLOAD], secrets) == [
            "Deployment/scheduler needs Secret conf, which does not exist",
            "Deployment/scheduler needs key 'fernet-key' of Secret fernet, which it lacks",
        ]

    def test_optional_references_and_present_secrets_pass(self):
        secrets = {"fernet": {"data": {"fernet-key": "eA=="}}, "env": {}, "conf": {}}
        assert checks.missing_secrets([self.WORKLOAD], secrets) == []

    def test_cronjob_pod_templates_are_checked_too(self):
        cron = {
            "kind": "CronJob",
            "metadata": {"name": "cleanup"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"imagePullSecrets": [{"name": "pull"}]}}}}},
        }
        assert checks.missing_secrets([cron], {}) == ["CronJob/cleanup needs Secret pull, which does not exist"]


class TestSecretStability:
    def test_a_changed_or_vanished_secret_is_reported_and_a_new_one_is_not(self):
        before = checks.secret_fingerprints({"a": {"data": {"k": "MQ=="}}, "b": {"data": {"k": "Mg=="}}})
        after = checks.secret_fingerprints({"a": {"data": {"k": "Mw=="}}, "c": {"data": {}}})
        assert checks.changed_secrets(before, after) == ["Secret a data changed", "Secret b disappeared"]

    def test_helm_release_records_are_not_compared(self):
        assert checks.secret_fingerprints({"sh.helm.release.v1.airflow.v2": {"type": "helm.sh/release.v1"}}) == {}


class TestPlanAndState:
    def preview(self, *steps):
        return {"steps": [{"op": op, "urn": f"urn:pulumi:e2e::airflow-k8s::{t}::n"} for op, t in steps]}

    def test_a_release_update_is_allowed_and_a_replacement_is_not(self):
        release = "airflow-k8s:index:AirflowRelease$kubernetes:helm.sh/v3:Release"
        secret = "airflow-k8s:index:AirflowRelease$kubernetes:core/v1:Secret"
        allowed = ("kubernetes:helm.sh/v3:Release",)
        assert checks.plan_problems(self.preview(("update", release), ("same", secret)), allowed) == []
        problems = checks.plan_problems(self.preview(("replace", secret), ("create", "random:index/x:X")), allowed)
        assert [p.split()[0] for p in problems] == ["replace", "create"]

    def test_kubernetes_objects_are_identified_from_a_stack_export(self):
        export = {
            "deployment": {
                "resources": [
                    {
                        "type": "kubernetes:core/v1:Secret",
                        "retainOnDelete": True,
                        "outputs": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "f", "namespace": "a"}},
                    },
                    {"type": "kubernetes:helm.sh/v3:Release", "outputs": {"name": "airflow"}},
                    {"type": "random:index/randomBytes:RandomBytes", "outputs": {}},
                ]
            }
        }
        ids = [checks.kube_identity(r) for r in checks.state_resources(export)]
        assert ids == [("v1", "Secret", "a", "f"), None, None]


class TestStepReport:
    def test_each_step_is_printed_with_its_duration_and_a_failure_is_named(self):
        lines: list[str] = []
        steps = run.Steps(lines.append)
        with steps.step("first"):
            pass
        with pytest.raises(RuntimeError), steps.step("second"):
            raise RuntimeError("boom")
        steps.skipped("third", "missing: pulumi")
        assert lines[0] == "==> first" and lines[1].startswith("<== first: ok (")
        assert lines[3].startswith("<== second: FAILED after ")
        assert "third: NOT RUN (missing: pulumi)" in lines[4]
        summary = steps.summary()
        assert "second" in summary and "FAILED" in summary and "NOT RUN" in summary
        assert summary.splitlines()[-1] == "e2e: 1 passed, 1 failed, 1 skipped"


def test_secret_fingerprints_never_hold_secret_values():
    fp = checks.secret_fingerprints({"s": {"data": {"password": "c2VjcmV0"}}})
    assert "c2VjcmV0" not in json.dumps(fp)


def test_the_built_python_language_host_gets_its_exec_shim_from_the_pinned_sdk_module():
    host = tools.TOOLS["pulumi-language-python"]
    assert host.companions == (
        ("github.com/pulumi/pulumi/sdk/v3", tools.PULUMI_VERSION, "python/cmd/pulumi-language-python-exec"),
    )


def test_the_resources_block_of_pulumi_output_is_summarised_on_one_line(tmp_path):
    out = 'Updating (e2e)\n\nOutputs:\n    namespace: "airflow"\n\nResources:\n    + 24 created\n\nDuration: 1m2s\n'
    proc = subprocess.CompletedProcess(["pulumi", "up"], 0, stdout=out, stderr="")
    assert run.Pulumi(tmp_path / "pulumi", tmp_path, {}, tmp_path).summary(proc) == "+ 24 created"
