"""Kubernetes' own validation in the preview: every object as a server-side dry run to a local
kube-apiserver (components/offline/dry_run.py), each refusal under the stack key that produced it.

Each case is Pulumi.dev.yaml with one thing wrong. The stack edge refuses every one of them first
(tests/test_api_server_rules.py); here that rule is switched off, so that the API server judges what
the program renders. Monitoring and Spark are left out of the broken stacks (a few seconds each); the
whole dev and prod stacks go through the dry run clean.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.core import names
from components.core.reader import ConfigError
from components.offline.checks import Item, Problem
from components.offline.control_plane import kubeconfig
from components.offline.dry_run import Target, dry_run, preview_dry_run, stack_key
from components.offline.local_apiserver import binaries, emulated, local_folder, local_server, stop_local
from components.offline.preview import PreviewResult, preview
from components.offline.program import load_stack_config, run_program
from tests.helpers import ROOT

SHARED = ROOT.parent / "shared"
REQUIRED = os.environ.get("AIRFLOW_K8S_E2E") == "required"
VERSION = "1.31"  # what the dev stack targets (cluster.kubernetesVersion's default)


@pytest.fixture(scope="module", autouse=True)
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One local API server for the module, in a runtime folder of its own (never the user's), stopped
    at the end."""
    if not (SHARED / "tools").is_dir() or not (SHARED / "charts").is_dir():
        if REQUIRED:
            pytest.fail("../shared/tools and ../shared/charts are needed for the dry run (AIRFLOW_K8S_E2E=required)")
        pytest.skip("no ../shared beside the repository: no local kube-apiserver and charts")
    with pytest.MonkeyPatch.context() as mp:
        runtime = tmp_path_factory.mktemp("runtime")
        runtime.chmod(0o700)
        mp.setenv("XDG_RUNTIME_DIR", str(runtime))
        mp.setenv("AIRFLOW_K8S_APISERVER_IDLE", "300")
        binaries(ROOT)  # found, or the module fails here with what was looked for
        try:
            yield
        finally:
            stop_local(VERSION)


def dev() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    return doc


def light(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Pulumi.dev.yaml without monitoring and Spark, with `change` applied to its config."""
    doc = dev()
    config = doc["config"]
    del config["airflow-k8s:spark"]
    config["airflow-k8s:monitoring"] = {"mode": "off"}
    change(config)
    return doc


def run_of(tmp_path: Path, doc: dict[str, Any]) -> Any:
    stack_file = tmp_path / "Pulumi.case.yaml"
    stack_file.write_text(yaml.safe_dump(doc))
    project, config, secret_keys, _ = load_stack_config(ROOT, "dev", stack_file=stack_file)
    return run_program(ROOT, "dev", config=config, secret_keys=secret_keys, project=project)


def previewed(tmp_path: Path, doc: dict[str, Any], stack: str = "dev") -> PreviewResult:
    return preview(
        ROOT, stack, tmp_path / "out", program_run=run_of(tmp_path, doc), run_checkov=False, dry_run=Target("local")
    )


def refused(result: PreviewResult) -> list[Problem]:
    assert result.dry_run is not None and result.dry_run.ran, result.dry_run
    return [p for p in result.problems if p.rule == "api-server"]


def airflow(config: dict[str, Any]) -> dict[str, Any]:
    section: dict[str, Any] = config["airflow-k8s:airflow"]
    return section


def task_pods(**settings: Any) -> Callable[[dict[str, Any]], None]:
    return lambda config: airflow(config).setdefault("taskPods", {}).update(settings)


def maintenance_schedule(schedule: str) -> Callable[[dict[str, Any]], None]:
    return lambda config: config["airflow-k8s:maintenance"]["backup"].update(schedule=schedule)


def passthrough_labels(key: str, raw: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (raw or {}).items()}


def no_rule(*_args: Any, **_kwargs: Any) -> None:
    return None


# Each case: (id, the change to Pulumi.dev.yaml, the edge rule switched off (module, attribute, stand-in),
# the key the edge names, the key the API server's refusal is reported under, a fragment of its message).
CASES: list[tuple[str, Callable[[dict[str, Any]], None], tuple[Any, str, Any], str, str, str]] = [
    (
        "cron-day-of-week-7",
        maintenance_schedule("0 3 * * 7"),
        ("components.airflow.config.maintenance", "schedule", lambda key, value: value),
        "maintenance.backup.schedule",
        "maintenance.backup.schedule",
        "spec.schedule",
    ),
    (
        "cron-arabic-indic-digit",
        maintenance_schedule("\u0663 2 * * *"),
        ("components.airflow.config.maintenance", "schedule", lambda key, value: value),
        "maintenance.backup.schedule",
        "maintenance.backup.schedule",
        "spec.schedule",
    ),
    (
        "toleration-equal-without-key",
        task_pods(tolerations=[{"operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]),
        (names, "toleration", no_rule),
        "airflow.taskPods.tolerations[0].operator",
        "airflow.taskPods.tolerations[0].operator",
        "operator must be Exists when `key` is empty",
    ),
    (
        "node-selector-key",
        task_pods(nodeSelector={"disk type": "ssd"}),
        (names, "label_map", passthrough_labels),
        "airflow.taskPods.nodeSelector.disk type",
        "airflow.taskPods.nodeSelector.disk type",
        "nodeSelector",
    ),
    (
        "annotation-key",
        lambda config: airflow(config).update(
            ingress={"enabled": True, "host": "airflow.example.com", "annotations": {"nginx/ingress proxy": "1"}}
        ),
        (names, "annotation_map", passthrough_labels),
        "airflow.ingress.annotations.nginx/ingress proxy",
        "airflow.ingress.annotations.nginx/ingress proxy",
        "metadata.annotations",
    ),
    (
        "two-mounts-at-one-path",
        task_pods(
            extraVolumes=[{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}],
            extraVolumeMounts=[{"name": "a", "mountPath": "/data"}, {"name": "b", "mountPath": "/data"}],
        ),
        ("components.airflow.config.airflow", "same_mount_path", lambda mounts, path: None),
        "airflow.taskPods.extraVolumeMounts[1].mountPath",
        "airflow.taskPods.extraVolumeMounts[1].mountPath",
        "must be unique",
    ),
    (
        "secret-over-1-mib",
        lambda config: config.update({"airflow-k8s:variables": {"big": "x" * (1024 * 1024), "small": "y"}}),
        ("components.platform.environment", "check_secret_size", no_rule),
        "variables.big",
        "variables.big",
        "Too long",
    ),
    (
        "limit-range-default-request-above-default-limit",
        lambda config: config.update(
            {
                "airflow-k8s:teams": [
                    {"name": "data", "limits": {"default": {"cpu": "200m"}, "defaultRequest": {"cpu": "1"}}}
                ]
            }
        ),
        ("components.platform.guards", "check_limit_range", no_rule),
        "teams[0].limits.default.cpu",
        "teams[0].limits.defaultRequest.cpu",
        "is greater than default limit value 200m",
    ),
]


class TestWhatTheApiServerRefusesIsReportedUnderItsStackKey:
    @pytest.mark.parametrize(
        ("name", "change", "rule", "edge_key", "key", "fragment"), CASES, ids=[c[0] for c in CASES]
    )
    def test_the_stack_edge_refuses_it_and_without_that_rule_the_api_server_does(
        self, tmp_path, monkeypatch, name, change, rule, edge_key, key, fragment
    ):
        doc = light(change)
        with pytest.raises(ConfigError) as err:
            run_of(tmp_path, doc)
        assert err.value.key == edge_key, str(err.value)

        module, attribute, stand_in = rule
        monkeypatch.setattr(importlib.import_module(module) if isinstance(module, str) else module, attribute, stand_in)
        problems = refused(previewed(tmp_path, doc))
        assert problems, f"{name}: the API server accepted it"
        for problem in problems:
            assert problem.message.startswith(f"stack key {key}: "), problem
            assert "kube-apiserver v1.34.4 as Kubernetes 1.31 refuses it" in problem.message
        assert any(fragment in p.message for p in problems), [p.message for p in problems]
        if name == "secret-over-1-mib":
            assert all("xxxx" not in p.message for p in problems)

    def test_two_mount_paths_the_api_server_takes_for_two_are_one_path_to_the_runtime_and_refused_at_the_edge(
        self, tmp_path
    ):
        # "/data" and "/data/" pass the API server's check (it compares the text); the container runtime
        # mounts both at /data and the pod never starts. That is the one rule written for this class.
        change = task_pods(
            extraVolumes=[{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}],
            extraVolumeMounts=[{"name": "a", "mountPath": "/data"}, {"name": "b", "mountPath": "/data/"}],
        )
        with pytest.raises(ConfigError) as err:
            run_of(tmp_path, light(change))
        assert err.value.key == "airflow.taskPods.extraVolumeMounts[1].mountPath"
        assert "extraVolumeMounts[0] mounts at the same path" in str(err.value)


class TestCleanStacks:
    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_the_project_stacks_pass_the_dry_run_whole(self, tmp_path, stack):
        doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
        result = previewed(tmp_path, doc, stack)
        assert refused(result) == []
        assert result.dry_run is not None
        assert result.dry_run.server.startswith("kube-apiserver v1.34.4 as Kubernetes")
        summary = json.loads((tmp_path / "out" / stack / "summary.json").read_text())
        assert summary["dryRun"] == {"ran": True, "server": result.dry_run.server, "note": "", "refused": 0}

    def test_a_pod_that_names_no_service_account_is_judged_under_its_namespaces_default_one(self):
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "team-without-accounts"},
            "spec": {"containers": [{"name": "c", "image": "registry.example.com/app:1"}]},
        }
        kube = local_server(ROOT, VERSION)
        assert dry_run(kube, [Item("s", pod)], [], {}, local=True) == []
        pod["spec"]["tolerations"] = [{"operator": "Equal", "value": "gpu"}]
        [problem] = dry_run(kube, [Item("s", pod)], [], {}, local=True)
        assert 'spec.tolerations[0].operator: Invalid value: "Equal"' in problem.message

    def test_a_second_preview_reuses_the_running_server(self):
        first = local_server(ROOT, VERSION)
        second = local_server(ROOT, VERSION)
        assert first.server == second.server

    def test_two_checkouts_never_share_a_server(self, tmp_path):
        here, there = local_folder(VERSION), local_folder(VERSION, tmp_path / "other-clone" / "components")
        assert here.folder != there.folder
        assert here.folder == local_folder(VERSION).folder


class TestAUsersCluster:
    def test_with_a_kubeconfig_context_the_cluster_judges_and_nothing_is_created_there(self, tmp_path, monkeypatch):
        local = local_server(ROOT, VERSION)  # stands in for a user's cluster, reached through a kubeconfig
        pki = local_folder(VERSION).pki
        # What an earlier deployment left: the namespace and the task pods' ServiceAccount (admission looks
        # it up before validation; where it is missing, the pod is left out and the output says so).
        local.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "airflow"}})
        account = {"name": "airflow-worker-kubernetes", "namespace": "airflow"}
        local.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": account})
        (tmp_path / "kubeconfig").write_text(kubeconfig(local.server, pki))
        doc = light(task_pods(tolerations=[{"operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]))
        monkeypatch.setattr(names, "toleration", no_rule)
        target = Target("cluster", "e2e", tmp_path / "kubeconfig")
        result = preview(
            ROOT, "dev", tmp_path / "out", program_run=run_of(tmp_path, doc), run_checkov=False, dry_run=target
        )
        problems = refused(result)
        assert problems and {p.message.split(":")[0] for p in problems} == {
            "stack key airflow.taskPods.tolerations[0].operator"
        }, problems
        assert result.dry_run is not None and "context e2e" in result.dry_run.server
        assert local.read("v1", "ConfigMap", "airflow-config", "airflow") is None  # a dry run stores nothing

    def test_an_unknown_context_is_a_problem_not_a_skip(self, tmp_path):
        (tmp_path / "kubeconfig").write_text(kubeconfig("https://127.0.0.1:9", tmp_path))
        outcome = preview_dry_run(ROOT, Target("cluster", "nope", tmp_path / "kubeconfig"), "1.31.0", [], [], {})
        assert not outcome.ran
        assert [p.message for p in outcome.problems] == [
            f"no dry run: no context 'nope' in {tmp_path / 'kubeconfig'}; it has: e2e"
        ]


class TestStackKeys:
    CONFIG = {
        "airflow-k8s:airflow": json.dumps({"taskPods": {"tolerations": [{"operator": "Equal", "value": "1"}]}}),
        "airflow-k8s:maintenance": json.dumps({"backup": {"keep": 1}}),
    }

    def test_a_quoted_value_wins_over_an_equal_one_elsewhere(self):
        obj = {"kind": "Pod", "spec": {"tolerations": [{"operator": "Equal", "value": "1"}]}}
        key = stack_key(
            self.CONFIG, obj, "spec.tolerations[0].operator", 'Invalid value: "Equal": operator must be Exists'
        )
        assert key == "airflow.taskPods.tolerations[0].operator"

    def test_a_refusal_no_config_value_is_in_has_no_key(self):
        obj = {"kind": "ConfigMap", "data": {"a": "chart default"}}
        assert stack_key(self.CONFIG, obj, "data", "Too long") is None


class TestVersions:
    @pytest.mark.parametrize(
        ("target", "used", "noted"),
        [("1.31.0", "1.31", False), ("1.34.4", "1.34", False), ("1.27.0", "1.31", True), ("1.35.0", "1.34", True)],
    )
    def test_the_local_server_emulates_the_stack_version_or_the_closest_it_can_and_says_so(self, target, used, noted):
        minor, note = emulated(target)
        assert minor == used
        assert bool(note) is noted


class TestStopping:
    def test_a_stopped_server_leaves_no_store_behind_in_its_checkouts_folder(self):
        local_server(ROOT, VERSION)
        folder = local_folder(VERSION).folder
        assert (folder / "etcd").is_dir()
        stop_local(VERSION)
        assert not (folder / "etcd").exists()
