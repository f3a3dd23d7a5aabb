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
from e2e import checks, harness, run, tools
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
        assert tools.resolve("kwok", tmp_path, build_missing=False, shared=False).origin == "missing"
        (bin_dir / "kwok.version").write_text(f"sigs.k8s.io/kwok@{tools.KWOK_VERSION}\n")
        assert tools.resolve("kwok", tmp_path, build_missing=False, shared=False).origin == "cache"

    def test_the_shared_tools_come_after_path_through_their_install_script(self, tmp_path, monkeypatch):
        shared = tmp_path / "shared"
        (shared / "bin").mkdir(parents=True)
        (shared / "bin" / "kwok").write_text("")
        (shared / "bin" / "kwok.version").write_text(f"sigs.k8s.io/kwok@{tools.KWOK_VERSION}\n")
        (shared / "install.sh").write_text(f"echo unpacking >&2\necho {shared / 'bin'}\n")
        monkeypatch.setenv("PATH", "/usr/bin:/bin")
        monkeypatch.setenv("AIRFLOW_K8S_SHARED_TOOLS", str(shared))
        monkeypatch.setattr(tools, "_installed", {})
        found = tools.resolve("kwok", tmp_path / "cache", build_missing=False)
        assert (found.origin, found.path) == ("shared tools", shared / "bin" / "kwok")

    def test_without_the_install_script_its_cache_folder_is_used(self, tmp_path, monkeypatch):
        bin_dir = tmp_path / "tools-cache" / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "pulumi").write_text("")
        monkeypatch.setenv("PATH", "")
        monkeypatch.setenv("AIRFLOW_K8S_SHARED_TOOLS", str(tmp_path / "absent"))
        monkeypatch.setenv("AIRFLOW_K8S_TOOLS_CACHE", str(tmp_path / "tools-cache"))
        monkeypatch.setattr(tools, "_installed", {})
        found = tools.resolve("pulumi", tmp_path / "cache", build_missing=False)
        assert (found.origin, found.path) == ("tools cache", bin_dir / "pulumi")

    def test_a_language_host_without_its_exec_shim_beside_it_is_passed_over(self, tmp_path, monkeypatch):
        (tmp_path / "pulumi-language-python").write_text("")
        (tmp_path / "pulumi-language-python").chmod(0o755)
        monkeypatch.setenv("PATH", str(tmp_path))
        monkeypatch.setenv("AIRFLOW_K8S_SHARED_TOOLS", str(tmp_path / "absent"))
        monkeypatch.setenv("AIRFLOW_K8S_TOOLS_CACHE", str(tmp_path / "absent"))
        monkeypatch.setattr(tools, "_installed", {})
        found = tools.resolve("pulumi-language-python", tmp_path / "cache", build_missing=False)
        assert found.origin == "missing"
        assert "has no pulumi-language-python-exec beside it" in found.error
        (tmp_path / "pulumi-language-python-exec").write_text("")
        assert tools.resolve("pulumi-language-python", tmp_path / "cache", build_missing=False).origin == "PATH"

    def test_a_stamped_binary_of_another_version_is_passed_over(self, tmp_path, monkeypatch):
        (tmp_path / "kwok").write_text("")
        (tmp_path / "kwok").chmod(0o755)
        (tmp_path / "kwok.version").write_text("sigs.k8s.io/kwok@v0.1.0\n")
        monkeypatch.setenv("PATH", str(tmp_path))
        monkeypatch.setenv("AIRFLOW_K8S_SHARED_TOOLS", str(tmp_path / "absent"))
        monkeypatch.setenv("AIRFLOW_K8S_TOOLS_CACHE", str(tmp_path / "absent"))
        monkeypatch.setattr(tools, "_installed", {})
        found = tools.resolve("kwok", tmp_path / "cache", build_missing=False)
        assert "is sigs.k8s.io/kwok@v0.1.0, not the pinned" in found.error

    def test_providers_are_never_built_from_the_module_proxy_and_the_reason_is_given(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PATH", "")
        monkeypatch.setenv("AIRFLOW_K8S_SHARED_TOOLS", str(tmp_path / "absent"))
        monkeypatch.setenv("AIRFLOW_K8S_TOOLS_CACHE", str(tmp_path / "absent"))
        monkeypatch.setattr(tools, "_installed", {})
        monkeypatch.setattr(tools, "build", lambda *a: pytest.fail("a provider build was attempted"))
        for name in ("pulumi-resource-kubernetes", "pulumi-resource-random"):
            found = tools.resolve(name, tmp_path / "cache")
            assert found.origin == "missing"
            assert "schema-embed.json" in found.error

    def test_the_random_provider_version_is_stamped_where_the_provider_reads_it(self):
        ldflags = tools.TOOLS["pulumi-resource-random"].ldflags
        assert "github.com/pulumi/pulumi-random/provider/v4/pkg/version.Version=v4.21.1" in ldflags

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
        config = harness.e2e_config({"repository": "http://127.0.0.1:8879", "version": "1.21.0"}, "1.34")
        dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
        assert config["airflow-k8s:airflow"]["executor"] == dev["airflow-k8s:airflow"]["executor"]
        parsed = parse_stack({k.split(":", 1)[1]: v for k, v in config.items()})
        assert parsed.airflow.chart.repository == "http://127.0.0.1:8879"
        assert parsed.cluster.kubernetes_version == "1.34"

    def test_a_local_chart_path_is_accepted_too(self):
        config = harness.e2e_config({"path": str(CHARTS / "airflow-1.21.0.tgz")}, "1.34")
        parsed = parse_stack({k.split(":", 1)[1]: v for k, v in config.items()})
        assert parsed.airflow.chart.path == str(CHARTS / "airflow-1.21.0.tgz")

    def test_the_replica_change_is_a_valid_config(self):
        config = harness.e2e_config({"repository": "http://127.0.0.1:8879", "version": "1.21.0"}, "1.34")
        harness.set_replicas(config, "scheduler", 2)
        parsed = parse_stack({k.split(":", 1)[1]: v for k, v in config.items()})
        assert parsed.airflow.scheduler.replicas == 2

    def test_the_project_copy_runs_the_program_in_the_harness_python(self, tmp_path):
        project = harness.copy_project(tmp_path / "p")
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
        steps = harness.Steps(lines.append)
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
        assert summary.splitlines()[-1] == (
            "e2e: 1 passed, 1 failed, 1 skipped (checks of cluster state); "
            "setup and tooling steps apart: 0 ok, 0 failed, 0 not run"
        )

    def test_setup_and_tooling_steps_are_counted_apart_from_the_checks(self):
        steps = harness.Steps(lambda line: None)
        for name in ("tool pulumi", "start a control plane", "stack init"):
            with steps.step(name, setup=True):
                pass
        with steps.step("pulumi up: workloads Available"):
            pass
        with pytest.raises(RuntimeError), steps.step("copy the project", setup=True):
            raise RuntimeError("disk full")
        steps.skipped("node up", "no root", setup=True)
        summary = steps.summary()
        assert summary.splitlines()[-1] == (
            "e2e: 1 passed, 0 failed, 0 skipped (checks of cluster state); "
            "setup and tooling steps apart: 3 ok, 1 failed, 1 not run"
        )
        kinds = {line.split()[0]: line.split()[-3] for line in summary.splitlines()[1:-2] if len(line.split()) > 3}
        assert kinds["tool"] == "setup" and kinds["pulumi"] == "check"

    def test_run_sh_still_finds_the_summary_line(self):
        import re

        pattern = re.search(r"grep -E '(\^e2e: [^']+)'", (ROOT / "run.sh").read_text())
        assert pattern is not None
        steps = harness.Steps(lambda line: None)
        with steps.step("check"):
            pass
        assert re.match(pattern.group(1), steps.summary().splitlines()[-1])

    def test_a_run_whose_steps_checked_nothing_fails(self, monkeypatch, tmp_path):
        from e2e import tools as e2e_tools

        lines: list[str] = []

        def only_setup(opts, steps):
            with steps.step("tool pulumi", setup=True):
                pass
            return {}, {}

        monkeypatch.setattr(run, "resolve_tools", only_setup)
        monkeypatch.setattr(e2e_tools, "CLUSTER_TOOLS", ())
        monkeypatch.setattr(e2e_tools, "PULUMI_TOOLS", ())
        monkeypatch.setattr(run, "kwok_stage_files", lambda cache: [])
        opts = run.Options(cache=tmp_path, scenarios=(), chart_source="path", charts=tmp_path)
        assert run.run(opts, echo=lines.append) == 1
        assert "e2e: FAILED: no check of cluster state ran (only setup and tooling steps)" in lines


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
    assert harness.Pulumi(tmp_path / "pulumi", tmp_path, {}, tmp_path).summary(proc) == "+ 24 created"


def test_the_summary_ends_at_the_blank_line_after_the_resources_block(tmp_path):
    out = (
        "Resources:\n    + 1 to create\n\nUpdating (e2e):\n@ updating....\n\nResources:\n"
        "    ~ 1 updated\n    24 unchanged\n\nDuration: 18s\n\nwarning: something later\n"
    )
    proc = subprocess.CompletedProcess(["pulumi", "up"], 0, stdout=out, stderr="")
    assert harness.Pulumi(tmp_path / "pulumi", tmp_path, {}, tmp_path).summary(proc) == "~ 1 updated; 24 unchanged"


class TestScenarioHelpers:
    def test_a_random_replacement_in_a_plan_is_named_and_an_update_is_not(self):
        plan = {
            "steps": [
                {
                    "op": "replace",
                    "urn": "urn:pulumi:e2e::p::x$random:index/randomBytes:RandomBytes::airflow-fernet-key",
                },
                {
                    "op": "update",
                    "urn": "urn:pulumi:e2e::p::airflow-k8s:index:AirflowRelease$kubernetes:helm.sh/v3:Release::r",
                },
                {"op": "delete", "urn": "urn:pulumi:e2e::p::random:index/randomPassword:RandomPassword::pw"},
            ]
        }
        assert [p.split()[0] for p in checks.random_replacements(plan)] == ["delete", "replace"]
        assert checks.plan_ops(plan) == {"replace": 1, "update": 1, "delete": 1}

    def test_a_daemonset_short_of_available_pods_is_reported(self):
        ds = {
            "kind": "DaemonSet",
            "metadata": {"name": "exporter"},
            "status": {"desiredNumberScheduled": 2, "numberAvailable": 1},
        }
        assert checks.workload_problems([ds]) == ["DaemonSet/exporter: 1/2 available"]

    def test_every_stack_chart_comes_from_the_local_repository_with_the_webhooks_off(self):
        from e2e import scenarios

        stack_harness = scenarios.Harness(
            harness.Steps(),
            {},
            ROOT,
            [],
            lambda name: {"repository": "http://127.0.0.1:1", "version": scenarios.CHART_VERSIONS[name]},
            CHARTS,
        )
        config = scenarios.dev_config(stack_harness, ("airflow", "logs", "cluster", "spark", "monitoring"))
        assert config["airflow-k8s:spark"]["extraValues"]["webhook"] == {"enable": False}
        install = config["airflow-k8s:monitoring"]["install"]
        assert install["extraValues"]["prometheusOperator"]["admissionWebhooks"] == {"enabled": False}
        assert install["chart"]["version"] == "88.5.3"
        parsed = parse_stack({k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("airflow-k8s:")})
        assert parsed.spark.enabled and parsed.monitoring.install is not None
        assert config["kubernetes:enableSecretMutable"] is True  # as in Pulumi.dev.yaml: a rotation needs it

    def test_a_protected_resource_is_read_from_the_destroy_error(self):
        from e2e import scenarios

        line = 'error: resource "urn:pulumi:e2e::p::x$kubernetes:core/v1:Secret::fernet-secret" cannot be deleted'
        assert scenarios._protected_urn(line) == "fernet-secret"
        assert scenarios._protected_urn("error: update failed") is None

    def test_every_scenario_of_the_issue_runs_by_default_and_every_stack_file_after_them(self):
        assert set(run.PULUMI_SCENARIOS) == {
            "pulumi",
            "platform",
            "upgrade",
            "comeback",
            "identity",
            "tenants",
            "stop",
            "moved",
            "examples",
            "node",
            "node-prod",
        }
        assert run.repository_stacks() == ["dev", "prod"]


class TestCiRunsTheEngine:
    def test_ci_requires_the_end_to_end_run(self):
        ci = (ROOT / ".ci" / "run").read_text()
        assert "AIRFLOW_K8S_E2E=required" in ci and "./run.sh test" in ci

    def test_the_test_command_runs_the_e2e_run_and_prints_its_own_summary_line(self):
        script = (ROOT / "run.sh").read_text()
        test_job = script.split("  test)", 1)[1].split(";;", 1)[0]
        assert "python -m e2e" in test_job and "e2e: SKIPPED" in test_job and "=== summary" in test_job


class TestIdentityRefusal:
    def test_a_refusal_names_the_key_what_is_lost_and_the_way_forward(self):
        from e2e import scenarios

        line = (
            "components.core.reader.ConfigError: config key 'airflow.releaseName': 'b' is not valid; changing it loses "
            "data: the bundled Postgres volume would be left behind. Fix: keep airflow.releaseName 'a'."
        )
        assert scenarios.refusal_lines(f"    error: Program failed\n    {line}\n", "releaseName") == [line]

    def test_diff_lines_identifiers_and_a_bare_protect_refusal_are_no_refusal(self):
        from e2e import scenarios

        text = (
            '~ releaseName: "airflow" => "b"\n~ migrateDatabaseJob: "a-job"\nrun-airflow-migrations\n'
            'error: unable to replace resource "urn:...::airflow-fernet-key-secret" as it is protected (releaseName)\n'
        )
        assert scenarios.refusal_lines(text, "releaseName") == []


class TestOperatorWrittenSecrets:
    KEDA: dict[str, Any] = {
        "kind": "Deployment",
        "metadata": {"name": "keda-operator-metrics-apiserver"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "m", "args": ["--enable-cert-rotation=true", "--cert-secret-name=kedaorg-certs"]}
                    ],
                    "volumes": [{"name": "certs", "secret": {"secretName": "kedaorg-certs"}}],
                }
            }
        },
    }

    def test_a_certificate_secret_the_keda_operator_writes_itself_is_not_reported_missing(self):
        from e2e import checks

        assert checks.missing_secrets([self.KEDA], {}) == []

    def test_without_cert_rotation_the_same_reference_is_reported_missing(self):
        import copy

        from e2e import checks

        plain = copy.deepcopy(self.KEDA)
        plain["spec"]["template"]["spec"]["containers"][0]["args"] = []
        assert checks.missing_secrets([plain], {}) == [
            "Deployment/keda-operator-metrics-apiserver needs Secret kedaorg-certs, which does not exist"
        ]
