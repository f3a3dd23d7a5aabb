"""The offline preview: dev and prod are clean, and every validation rule catches its broken case."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import ConfigError
from components.offline.__main__ import main, parser
from components.offline.chart_archives import ChartNotFoundError
from components.offline.preview import PreviewResult, preview, table
from components.offline.program import load_stack_config, run_program
from components.offline.render import CLUSTER_SCOPED
from tests.helpers import ROOT, project_copy, run_stack

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PreviewResult]:
    out = tmp_path_factory.mktemp("preview")
    return {stack: preview(ROOT, stack, out, run_checkov=stack == "prod") for stack in ("dev", "prod")}


def broken(tmp_path: Path, airflow: dict[str, Any], **kwargs: Any) -> PreviewResult:
    run = run_stack(airflow, **kwargs)
    return preview(ROOT, "test", tmp_path, run_checkov=False, program_run=run)


def messages(result: PreviewResult, rule: str) -> list[str]:
    return [p.message for p in result.problems if p.rule == rule]


class TestStacks:
    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_the_stack_previews_with_zero_problems(self, stacks, stack):
        assert [p.message for p in stacks[stack].problems] == []

    def test_the_dev_inventory_is_what_a_laptop_needs(self, stacks):
        kinds = {(o["kind"], o["metadata"]["name"]) for o in stacks["dev"].objects}
        for expected in [
            ("Namespace", "airflow"),
            ("Deployment", "airflow-api-server"),
            ("Deployment", "airflow-scheduler"),
            ("Deployment", "airflow-dag-processor"),
            ("StatefulSet", "airflow-triggerer"),
            ("StatefulSet", "airflow-postgresql"),
            ("Job", "airflow-create-user"),
            ("Secret", "airflow-pulumi-fernet-key"),
            ("Secret", "airflow-pulumi-metadata"),
            ("ServiceAccount", "airflow-worker-kubernetes"),
        ]:
            assert expected in kinds
        assert any(k[0] == "Job" and k[1].startswith("airflow-migrate-") for k in kinds)
        assert not any(k[0] == "StatefulSet" and k[1] == "airflow-redis" for k in kinds)

    def test_the_prod_inventory_is_highly_available(self, stacks):
        objects = {(o["kind"], o["metadata"]["name"]): o for o in stacks["prod"].objects}
        assert objects[("Deployment", "airflow-scheduler")]["spec"]["replicas"] == 2
        assert objects[("Deployment", "airflow-api-server")]["spec"]["replicas"] == 2
        assert objects[("Deployment", "airflow-pgbouncer")]["spec"]["replicas"] == 2
        assert {k[1] for k in objects if k[0] == "PodDisruptionBudget"} >= {
            "airflow-scheduler-pdb",
            "airflow-api-server-pdb",
            "airflow-pgbouncer-pdb",
        }
        assert ("Deployment", "airflow-flower") in objects
        assert ("StatefulSet", "airflow-redis") in objects
        assert not any(k[1] == "airflow-postgresql" for k in objects)

    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_every_namespaced_object_carries_its_namespace(self, stacks, stack):
        # Airflow's, and those of other components (the Spark Operator and its job namespaces, ...).
        declared = {o["metadata"]["name"] for o in stacks[stack].objects if o["kind"] == "Namespace"}
        assert "airflow" in declared
        declared |= {"default", "kube-system", "kube-public", "kube-node-lease"}  # every cluster has them
        for obj in stacks[stack].objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                assert obj["metadata"]["namespace"] in declared, (obj["kind"], obj["metadata"]["name"])

    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_files_and_summary_are_written(self, stacks, stack):
        result = stacks[stack]
        summary = json.loads((result.out_dir / "summary.json").read_text())
        assert summary["objects"] == len(result.objects)
        assert summary["problems"] == []
        assert sum(summary["objectsByKind"].values()) == len(result.objects)
        release = next(s for s in summary["sources"] if s["name"] == "airflow-release")
        assert release["chart"] == "airflow" and release["version"] == "1.21.0"
        assert release["archive"] == "airflow-1.21.0.tgz"
        assert set(summary["timings"]) >= {"program", "render", "schema", "references"}
        files = sorted(p.relative_to(result.out_dir).as_posix() for p in result.out_dir.rglob("*.yaml"))
        assert "releases/airflow-release.yaml" in files
        assert "resources/airflow-fernet-key-secret.yaml" in files
        assert summary["outputs"]["adminPassword"] == "[secret]"

    def test_secret_values_are_never_written(self, stacks):
        result = stacks["prod"]
        secret = yaml.safe_load((result.out_dir / "resources" / "airflow-metadata-secret.yaml").read_text())
        assert secret["stringData"] == {"connection": "[secret]"}
        async_secret = yaml.safe_load((result.out_dir / "resources" / "airflow-metadata-async-secret.yaml").read_text())
        assert async_secret["stringData"] == {"async-connection": "[secret]"}
        text = "".join(p.read_text() for p in result.out_dir.rglob("*.yaml"))
        assert "PREVIEW-PLACEHOLDER" not in text
        assert result.run.outputs["adminPassword"] not in text

    def test_secure_values_are_placeholders_and_reported_as_such(self, stacks):
        assert stacks["prod"].run.placeholders == {
            "airflow-k8s:databaseUrl": "placeholder",
            "airflow-k8s:gitSshKey": "placeholder",
        }

    def test_checkov_findings_are_counted_in_the_summary_as_accepted_and_new(self, stacks):
        checkov = json.loads((stacks["prod"].out_dir / "summary.json").read_text())["checkov"]
        assert checkov["ran"] is True
        assert checkov["passed"] > 0 and checkov["accepted"] > 0
        assert checkov["new"] == 0 and checkov["newFindings"] == []
        assert checkov["failed"] == checkov["accepted"]
        assert (stacks["prod"].out_dir / "checkov.json").exists()

    def test_the_checkov_report_is_compact(self, stacks):
        report = stacks["prod"].out_dir / "checkov.json"
        assert report.stat().st_size < 200_000
        payload = json.loads(report.read_text())
        assert set(payload["results"]) == {"failed_checks", "skipped_checks"}
        assert all("code_block" not in c for c in payload["results"]["skipped_checks"])

    def test_integers_stay_integers_in_resource_files(self, stacks):
        text = "".join(p.read_text() for p in (stacks["prod"].out_dir / "resources").glob("*.yaml"))
        assert "port: 8793\n" in text
        assert ".0\n" not in "".join(line for line in text.splitlines(keepends=True) if "port" in line)

    def test_the_values_handed_to_each_release_are_written_with_secrets_masked(self, stacks):
        values_dir = stacks["prod"].out_dir / "values"
        assert sorted(p.name for p in values_dir.glob("*.yaml")) == [
            "airflow-release.yaml",
            "keda-release.yaml",
            "monitoring-release.yaml",
            "spark-release.yaml",
        ]
        airflow = yaml.safe_load((values_dir / "airflow-release.yaml").read_text())
        assert airflow["executor"] == "CeleryExecutor"
        assert "PREVIEW-PLACEHOLDER" not in (values_dir / "airflow-release.yaml").read_text()

    def test_the_prod_releases_render_with_the_stacks_kubernetes_version_and_crds(self, stacks):
        caps = json.loads((stacks["prod"].out_dir / "summary.json").read_text())["capabilities"]
        assert caps["kubeVersion"] == "1.31.0"
        assert "monitoring.coreos.com/v1" in caps["apiVersions"]
        assert "monitoring.coreos.com/v1/ServiceMonitor" in caps["apiVersions"]
        # KEDA ships its CRDs as templates (templates/crds/), not under crds/: known all the same.
        assert "keda.sh/v1alpha1/ScaledObject" in caps["apiVersions"]
        assert "sparkoperator.k8s.io/v1beta2" in caps["apiVersions"]


class TestDiff:
    def test_a_one_option_change_in_airflow_cfg_shows_as_that_one_line(self, stacks, tmp_path):
        out = tmp_path / "preview"
        (out / "dev").mkdir(parents=True)
        shutil.copy(stacks["dev"].out_dir / "state.json", out / "dev" / "state.json")
        project, config, secret_keys, _ = load_stack_config(ROOT, "dev")
        airflow = json.loads(config["airflow-k8s:airflow"])
        airflow.setdefault("extraValues", {})["config"] = {"core": {"load_examples": "True"}}
        config["airflow-k8s:airflow"] = json.dumps(airflow)
        run = run_program(ROOT, "dev", config=config, secret_keys=secret_keys, project=project)
        result = preview(ROOT, "dev", out, run_checkov=False, program_run=run, releases_exist=False)
        lines = table(result, show_diff=True).splitlines()
        at = next(i for i, line in enumerate(lines) if "v1/ConfigMap" in line and "airflow/airflow-config " in line)
        assert lines[at].rstrip().endswith("update")
        field, hunk, removed, added, after = (line.strip() for line in lines[at + 1 : at + 6])
        assert re.fullmatch(r'~ data\["airflow\.cfg"\]: 1 of \d+ lines changed', field)
        assert re.fullmatch(r"@@ line \d+ in \[core\]", hunk)
        assert (removed, added) == ("- load_examples = False", "+ load_examples = True")
        assert not after.startswith(("- ", "+ ", "@@"))  # nothing else of the file


class TestBrokenCases:
    def test_an_unknown_chart_value_key_is_caught_by_the_charts_schema(self, tmp_path):
        result = broken(tmp_path, {"dags": GIT, "extraValues": {"schedulr": {"replicas": 2}}})
        (message,) = messages(result, "values-schema")
        assert "unknown chart value key 'schedulr' (did you mean 'scheduler'?)" in message

    def test_an_unknown_nested_chart_value_key_is_caught_by_the_charts_schema(self, tmp_path):
        result = broken(tmp_path, {"dags": GIT, "extraValues": {"scheduler": {"replica": 2}}})
        (message,) = messages(result, "values-schema")
        assert "additional properties 'replica' not allowed" in message

    def test_a_secret_reference_to_a_missing_key_is_caught(self, tmp_path):
        env = [{"name": "BROKEN", "valueFrom": {"secretKeyRef": {"name": "airflow-pulumi-fernet-key", "key": "nope"}}}]
        result = broken(tmp_path, {"dags": GIT, "extraValues": {"scheduler": {"env": env}}})
        found = messages(result, "secret-ref")
        assert found
        assert all("references key 'nope'" in m and "airflow-pulumi-fernet-key" in m for m in found)

    def test_a_binding_to_a_missing_service_account_is_caught(self, tmp_path):
        result = broken(
            tmp_path,
            {"dags": GIT, "extraValues": {"scheduler": {"serviceAccount": {"create": False, "name": "ghost"}}}},
        )
        found = messages(result, "rbac-subject")
        assert found and all("ServiceAccount airflow/ghost" in m for m in found)

    def test_a_service_selecting_nothing_is_caught(self, tmp_path):
        service = {
            "kind": "Service",
            "metadata": {"name": "orphan", "namespace": "airflow"},
            "spec": {"selector": {"component": "nothing"}, "ports": [{"name": "http", "port": 80}]},
        }
        result = broken(tmp_path, {"dags": GIT}, program="extra_objects", extra={"objects": json.dumps([service])})
        (message,) = messages(result, "service-selector")
        assert "Service/airflow/orphan" in message and "component=nothing" in message

    def test_a_service_monitor_on_a_missing_port_is_caught(self, tmp_path):
        monitor = {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "statsd", "namespace": "airflow"},
            "spec": {
                "selector": {"matchLabels": {"component": "statsd", "release": "airflow"}},
                "endpoints": [{"port": "metrics"}],
            },
        }
        result = broken(tmp_path, {"dags": GIT}, program="extra_objects", extra={"objects": json.dumps([monitor])})
        (message,) = messages(result, "servicemonitor")
        assert "port 'metrics'" in message
        assert messages(result, "crd") == []

    def test_a_custom_resource_with_an_unknown_field_is_caught_by_its_crd(self, tmp_path):
        monitor = {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "statsd", "namespace": "airflow"},
            "spec": {
                "selector": {"matchLabels": {"component": "statsd"}},
                "endpoints": [{"port": "statsd-scrape", "intervall": "30s"}],
            },
        }
        result = broken(tmp_path, {"dags": GIT}, program="extra_objects", extra={"objects": json.dumps([monitor])})
        (message,) = messages(result, "crd")
        assert "intervall" in message

    def test_a_claim_on_an_undeclared_storage_class_is_caught(self, tmp_path):
        result = broken(
            tmp_path, {"dags": GIT, "database": {"storageClass": "fast-ssd"}}, cluster={"storageClasses": ["standard"]}
        )
        found = messages(result, "storage-class")
        assert found and "fast-ssd" in found[0]

    def test_an_existing_claim_must_be_declared_in_cluster_config(self, tmp_path):
        dags = {"mode": "persistentVolumeClaim", "persistentVolumeClaim": {"claimName": "team-dags"}}
        assert any("team-dags" in m for m in messages(broken(tmp_path, {"dags": dags}), "pvc-ref"))
        declared = broken(tmp_path, {"dags": dags}, cluster={"persistentVolumeClaims": ["airflow/team-dags"]})
        assert messages(declared, "pvc-ref") == []

    def test_a_chart_version_nowhere_to_be_had_stops_the_preview_with_one_line(self, tmp_path):
        with pytest.raises(ChartNotFoundError) as err:
            broken(tmp_path, {"dags": GIT, "chart": {"version": "9.9.9"}})
        message = str(err.value)
        assert message.startswith(
            "chart airflow 9.9.9 is not on this machine and not pinned in components/charts-lock.json, so not fetched."
        )
        assert "put airflow-9.9.9.tgz in a folder and set AIRFLOW_K8S_CHARTS to that folder" in message
        assert "\n" not in message


class TestCommand:
    def test_the_command_exits_zero_and_prints_its_tree(self, tmp_path, capsys):
        assert main(["--stack", "dev", "--out", str(tmp_path), "--root", str(ROOT), "--no-checkov"]) == 0
        out = capsys.readouterr().out
        assert "airflow-release" in out and "0 problems" in out
        assert "Type" in out and "Plan" in out and "Outputs:" in out
        assert " +   pulumi:pulumi:Stack" in out

    def test_the_stack_can_be_given_as_the_first_argument(self, tmp_path, capsys):
        assert main(["prod", "--out", str(tmp_path), "--root", str(ROOT), "--no-checkov"]) == 0
        assert "Offline preview of stack 'prod'" in capsys.readouterr().out

    def test_help_lists_the_options(self, capsys):
        with pytest.raises(SystemExit) as exit_info:
            main(["--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        for option in ("--diff", "--no-checkov", "--installed", "--fresh", "--kube-version", "--api-versions"):
            assert option in out

    @pytest.mark.parametrize(
        ("argv", "expected"),
        [
            (
                ["--kube-version", "banana"],
                "error: argument --kube-version: 'banana' is not a Kubernetes version: expected major.minor from "
                "1.27 to 1.35, e.g. 1.31 or v1.34.4",
            ),
            (
                ["--kube-version", "1.99"],
                "error: argument --kube-version: Kubernetes 1.99 is not supported: expected 1.27 to 1.35",
            ),
            (["--kube-version", "1.26.3"], "Kubernetes 1.26.3 is not supported: expected 1.27 to 1.35"),
            (
                ["--api-versions", "cert-manager.io/v1,not a version!!"],
                "error: argument --api-versions: 'not a version!!' is not an API version: expected 'group/version' "
                "or 'group/version/Kind'",
            ),
            (["--frobnicate"], "error: unrecognized arguments: --frobnicate"),
            (["dev", "--stack", "prod"], "error: two stacks given: dev and --stack prod"),
        ],
    )
    def test_a_bad_flag_is_one_line_and_exit_2(self, argv, expected, capsys):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        out, err = capsys.readouterr()
        (line,) = err.splitlines()
        assert expected in line and line.endswith("(./run.sh preview --help lists the options)")
        assert out == ""

    def test_flags_are_read_into_their_values(self):
        args = parser().parse_args(["--kube-version", "v1.34.4", "--api-versions", "cert-manager.io/v1, a.io/v1/Kind"])
        assert args.kube_version == "v1.34.4"
        assert args.api_versions == {"cert-manager.io/v1", "a.io/v1/Kind"}
        assert parser().parse_args([]).api_versions == set()

    def test_a_missing_stack_file_is_a_clear_error(self, tmp_path, capsys):
        assert main(["--stack", "staging", "--out", str(tmp_path), "--root", str(ROOT)]) == 2
        assert "no stack file Pulumi.staging.yaml; stacks here: dev, prod" in capsys.readouterr().err

    def test_a_broken_stack_exits_non_zero(self, tmp_path, capsys):
        dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
        dev["config"]["airflow-k8s:airflow"]["extraValues"] = {"schedulr": {}}
        root = project_copy(tmp_path, {"dev": dev})
        assert main(["--stack", "dev", "--out", str(tmp_path / "out"), "--root", str(root), "--no-checkov"]) == 1
        assert "PROBLEM [values-schema]" in capsys.readouterr().out


class TestRunSh:
    @pytest.mark.parametrize("flag", ["--help", "-h", "help"])
    def test_help_prints_the_jobs_and_exits_zero(self, flag):
        done = subprocess.run(["bash", str(ROOT / "run.sh"), flag], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("usage: ./run.sh JOB [options]")
        for job in ("preview [STACK] [options]", "test", "bench", "e2e", "dags-check"):
            assert f"\n  {job}" in done.stdout

    def test_an_unknown_job_is_named_and_exits_2_with_the_usage(self):
        done = subprocess.run(["bash", str(ROOT / "run.sh"), "deploy"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2
        assert done.stderr.startswith("error: unknown job 'deploy'\nusage: ./run.sh JOB [options]")


class TestRendering:
    def test_rendering_one_release_never_changes_the_next_one(self, tmp_path):
        external = broken(
            tmp_path, {"dags": GIT, "database": {"mode": "external"}}, secrets={"databaseUrl": "postgresql://a:b@h/db"}
        )
        assert not any(o["metadata"]["name"] == "airflow-postgresql" for o in external.objects)
        bundled = broken(tmp_path, {"dags": GIT})
        assert any(
            o["kind"] == "StatefulSet" and o["metadata"]["name"] == "airflow-postgresql" for o in bundled.objects
        )


class TestProjectFiles:
    def test_pulumi_uses_the_virtualenv_run_sh_creates(self):
        import jsonschema

        project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
        schema = json.loads((ROOT.parent / "shared" / "schemas" / "pulumi-project.json").read_text())
        jsonschema.validate(project, schema)
        assert project["runtime"]["options"]["virtualenv"] == ".venv"
        assert "venv .venv " in (ROOT / "run.sh").read_text()

    def test_the_dev_stack_names_its_laptop_context(self):
        dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
        assert dev["kubernetes:context"] == "minikube"

    def test_the_prod_stack_names_its_cluster(self):
        prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
        assert prod["kubernetes:context"]
        assert prod["airflow-k8s:cluster"]["environment"] == "production"


class TestProductionTarget:
    def prod_without(self, *keys: str) -> tuple[dict[str, str], set[str], str]:
        project, config, secret_keys, _ = load_stack_config(ROOT, "prod")
        return {k: v for k, v in config.items() if k not in keys}, secret_keys, project

    def test_prod_without_a_context_or_kubeconfig_is_refused_before_any_resource(self):
        config, secret_keys, project = self.prod_without("kubernetes:context")
        with pytest.raises(ConfigError) as err:
            run_program(ROOT, "prod", config=config, secret_keys=secret_keys, project=project)
        assert err.value.key == "kubernetes:context"
        assert "must name the cluster it deploys to" in str(err.value)
        assert "pulumi config set kubernetes:context" in str(err.value)
        assert err.value.declared_before_error == []  # type: ignore[attr-defined]

    def test_a_kubeconfig_names_the_cluster_as_well(self):
        config, secret_keys, project = self.prod_without("kubernetes:context")
        config["kubernetes:kubeconfig"] = "/etc/prod/kubeconfig"
        run = run_program(
            ROOT, "prod", config=config, secret_keys=secret_keys | {"kubernetes:kubeconfig"}, project=project
        )
        assert any(r.type == "kubernetes:helm.sh/v3:Release" for r in run.resources)

    def test_the_preview_of_prod_without_a_context_is_an_error_not_a_table(self, tmp_path, capsys):
        prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
        del prod["config"]["kubernetes:context"]
        root = project_copy(tmp_path, {"prod": prod})
        assert main(["prod", "--out", str(tmp_path / "out"), "--root", str(root), "--no-checkov"]) == 2
        assert "config key 'kubernetes:context'" in capsys.readouterr().err

    def test_a_laptop_stack_may_use_the_current_context(self):
        config = {
            "airflow-k8s:airflow": json.dumps({"dags": GIT}),
            "airflow-k8s:cluster": json.dumps({"environment": "laptop"}),
        }
        run = run_program(ROOT, "test", config=config, secret_keys=set(), project="airflow-k8s")
        assert any(r.type == "kubernetes:helm.sh/v3:Release" for r in run.resources)
