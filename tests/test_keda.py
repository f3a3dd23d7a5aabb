"""KEDA: Celery workers that scale to zero through the chart's ScaledObject, KEDA installed by
KedaOperator or already in the cluster, validated against KEDA's own CRDs."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from components import ConfigError
from components.core.reader import Node
from components.keda.config import KedaConfig, parse_keda
from components.offline.checks import Item, crd_problems
from components.offline.preview import preview
from components.offline.program import unwrap
from components.offline.render import crds_of, find_chart
from components.platform.config import parse_stack
from tests.helpers import DB_URL, ROOT, of_type, releases, render_release, run_stack, secrets_by_name
from tests.test_readme import documented

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
CELERY = {"executor": "CeleryExecutor", "dags": GIT}
EXTERNAL = {**CELERY, "database": {"mode": "external"}}
INSTALL = {
    "mode": "install",
    "workers": {"minReplicas": 0, "maxReplicas": 7, "pollingInterval": 15, "cooldownPeriod": 120},
}
KEDA_CRDS = crds_of(find_chart(ROOT, "keda", "2.20.2"))


def airflow_release(run):
    return next(r for r in releases(run) if unwrap(r.inputs)["name"] == "airflow")


def keda_release(run):
    return next(r for r in releases(run) if unwrap(r.inputs)["name"] == "keda")


def rendered(run) -> list[dict[str, Any]]:
    return render_release(airflow_release(run))


def one(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


def worker(objects) -> dict[str, Any]:
    (found,) = [
        o for o in objects if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == "airflow-worker"
    ]
    return dict(found)


def pod_specs(objects):
    for o in objects:
        spec = o.get("spec", {})
        template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
        if template:
            yield o, template["spec"]


@pytest.fixture(scope="module")
def pgbouncer_run():
    return run_stack(EXTERNAL, secrets={"databaseUrl": DB_URL}, extra={"keda": INSTALL})


class TestScaledObject:
    def test_the_chart_renders_one_scaled_object_with_the_configured_bounds_polling_and_cooldown(self, pgbouncer_run):
        scaled = one(rendered(pgbouncer_run), "ScaledObject")
        spec = scaled["spec"]
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 7)
        assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (15, 120)
        assert spec["scaleTargetRef"]["name"] == "airflow-worker"
        assert spec["triggers"][0]["type"] == "postgresql"
        assert "FROM task_instance" in spec["triggers"][0]["metadata"]["query"]

    def test_the_scaled_object_is_valid_against_kedas_own_crd_and_a_broken_one_is_not(self, pgbouncer_run):
        scaled = one(rendered(pgbouncer_run), "ScaledObject")
        assert crd_problems([Item("airflow-release", scaled)], KEDA_CRDS) == []
        broken = copy.deepcopy(scaled)
        broken["spec"]["minReplicaCount"] = "zero"
        problems = crd_problems([Item("airflow-release", broken)], KEDA_CRDS)
        assert problems and "minReplicaCount" in problems[0].message

    def test_with_pgbouncer_keda_polls_through_pgbouncer_on_the_connection_the_chart_expects(self, pgbouncer_run):
        objects = rendered(pgbouncer_run)
        trigger = one(objects, "ScaledObject")["spec"]["triggers"][0]["metadata"]
        # chart 1.21.0: usePgbouncer true -> AIRFLOW_CONN_AIRFLOW_DB, the metadata connection
        assert trigger["connectionFromEnv"] == "AIRFLOW_CONN_AIRFLOW_DB"
        container = worker(objects)["spec"]["template"]["spec"]["containers"][0]
        assert container["name"] == one(objects, "ScaledObject")["spec"]["scaleTargetRef"]["envSourceContainerName"]
        (env,) = [e for e in container["env"] if e["name"] == "AIRFLOW_CONN_AIRFLOW_DB"]
        ref = env["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "airflow-pulumi-metadata", "key": "connection"}
        connection = unwrap(secrets_by_name(pgbouncer_run)[ref["name"]].inputs)["stringData"][ref["key"]]
        assert "@airflow-pgbouncer.airflow:6543/airflow-metadata" in connection
        # no KEDA_DB_CONN (a direct connection around PgBouncer) anywhere
        assert "KEDA_DB_CONN" not in str(objects)

    def test_the_worker_process_unsets_the_variable_before_airflow_starts(self, pgbouncer_run):
        container = worker(rendered(pgbouncer_run))["spec"]["template"]["spec"]["containers"][0]
        script = container["args"][2]
        assert script.startswith("unset AIRFLOW_CONN_AIRFLOW_DB\n")
        assert script.rstrip().endswith("airflow celery worker")

    def test_no_other_pod_gets_the_database_url_as_an_environment_variable(self, pgbouncer_run):
        for obj, spec in pod_specs(rendered(pgbouncer_run)):
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                names = {e["name"] for e in container.get("env", [])}
                if obj["metadata"]["name"] == "airflow-worker" and container["name"] == "worker":
                    continue
                assert "AIRFLOW_CONN_AIRFLOW_DB" not in names, (obj["metadata"]["name"], container["name"])

    def test_with_a_kubernetes_executor_next_to_celery_task_pods_get_no_database_variable(self):
        run = run_stack({**CELERY, "executor": "CeleryExecutor,KubernetesExecutor"}, extra={"keda": INSTALL})
        template = one(rendered(run), "ConfigMap", "airflow-config")["data"]["pod_template_file.yaml"]
        assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD" in template
        assert "AIRFLOW_CONN_AIRFLOW_DB" not in template
        one(rendered(run), "ScaledObject")

    def test_the_replicas_are_left_to_keda(self, pgbouncer_run):
        assert "replicas" not in worker(rendered(pgbouncer_run))["spec"]

    def test_the_pgbouncer_policy_admits_the_keda_operator_from_its_namespace(self, pgbouncer_run):
        policy = one(rendered(pgbouncer_run), "NetworkPolicy", "airflow-pgbouncer-policy")
        peers = [p for rule in policy["spec"]["ingress"] for p in rule["from"]]
        assert {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}},
            "podSelector": {"matchLabels": {"app": "keda-operator"}},
        } in peers

    def test_without_keda_the_workers_keep_fixed_replicas_and_the_charts_command(self):
        objects = rendered(run_stack({**CELERY, "workers": {"replicas": 2}}))
        assert not [o for o in objects if o["kind"] == "ScaledObject"]
        spec = worker(objects)["spec"]
        assert spec["replicas"] == 2
        assert "unset" not in spec["template"]["spec"]["containers"][0]["args"][2]


class TestKedaOperator:
    def test_keda_is_installed_in_its_own_restricted_namespace_from_the_pinned_chart(self, pgbouncer_run):
        inputs = unwrap(keda_release(pgbouncer_run).inputs)
        assert (inputs["chart"], inputs["version"], inputs["namespace"]) == ("keda", "2.20.2", "keda")
        assert inputs["repositoryOpts"]["repo"] == "https://kedacore.github.io/charts"
        (ns,) = [r for r in of_type(pgbouncer_run, "core/v1:Namespace") if r.name == "keda-namespace"]
        assert unwrap(ns.inputs)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    def test_the_airflow_release_waits_for_keda_whose_crds_its_scaled_object_needs(self, pgbouncer_run):
        assert keda_release(pgbouncer_run).urn in airflow_release(pgbouncer_run).dependencies

    def test_keda_renders_its_crds_operator_and_webhooks(self, pgbouncer_run):
        objects = render_release(keda_release(pgbouncer_run))
        kinds = {o["kind"] for o in objects}
        assert {"CustomResourceDefinition", "APIService", "ValidatingWebhookConfiguration"} <= kinds
        assert "scaledobjects.keda.sh" in {o["metadata"]["name"] for o in objects}

    def test_the_webhooks_switch_off_for_a_control_plane_where_no_webhook_answers(self):
        run = run_stack(CELERY, extra={"keda": {**INSTALL, "install": {"webhooks": False}}})
        objects = render_release(keda_release(run))
        assert "ValidatingWebhookConfiguration" not in {o["kind"] for o in objects}
        assert "keda-admission-webhooks" not in {o["metadata"]["name"] for o in objects}

    def test_keda_pods_run_restricted(self, pgbouncer_run):
        for obj, spec in pod_specs(render_release(keda_release(pgbouncer_run))):
            assert spec["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for c in spec["containers"]:
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert c["resources"]["requests"]

    def test_an_existing_keda_declares_no_operator_and_the_preview_validates_against_the_archives_crds(self, tmp_path):
        run = run_stack(CELERY, extra={"keda": {"mode": "existing", "existing": {"namespace": "autoscaling"}}})
        assert [unwrap(r.inputs)["name"] for r in releases(run)] == ["airflow"]
        assert not [r for r in run.resources if r.type.endswith("KedaOperator")]
        result = preview(ROOT, "test", tmp_path, run_checkov=False, program_run=run)
        assert [p for p in result.problems if p.rule == "crd"] == []
        assert any(o["kind"] == "ScaledObject" for o in result.objects)

    def test_the_prod_stack_scales_workers_from_zero_and_dev_stays_fixed(self):
        import yaml

        prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
        dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
        assert prod["airflow-k8s:keda"]["mode"] == "install"
        assert prod["airflow-k8s:keda"]["workers"]["minReplicas"] == 0
        assert "airflow-k8s:keda" not in dev


def parse(keda: dict[str, Any], airflow: dict[str, Any] | None = None) -> KedaConfig:
    stack = parse_stack({"airflow": airflow or CELERY, "keda": keda}, set())
    return stack.keda


class TestKedaConfig:
    def test_keda_is_off_by_default(self):
        assert parse_stack({"airflow": CELERY}, set()).keda.enabled is False

    @pytest.mark.parametrize(
        ("keda", "airflow", "key", "fragment"),
        [
            ({"mode": "install"}, {"dags": GIT}, "keda.mode", "the executor is KubernetesExecutor"),
            ({"mode": "autoscale"}, None, "keda.mode", "allowed: off, install, existing"),
            (
                {"mode": "install", "workers": {"minReplicas": 5, "maxReplicas": 2}},
                None,
                "keda.workers.minReplicas",
                "must not exceed keda.workers.maxReplicas (2)",
            ),
            ({"mode": "install", "workers": {"maxReplicas": 0}}, None, "keda.workers.maxReplicas", "1"),
            ({"mode": "install", "workers": {"pollingInterval": 0}}, None, "keda.workers.pollingInterval", "1"),
            ({"mode": "install", "workers": {"cooldownPeriod": -1}}, None, "keda.workers.cooldownPeriod", "0"),
            (
                {"mode": "install", "install": {"namespace": "airflow"}},
                None,
                "keda.install.namespace",
                "namespace of its own",
            ),
            (
                {"mode": "install", "install": {"namespace": "kube-system"}},
                None,
                "keda.install.namespace",
                "not a system or shared one",
            ),
            ({"mode": "existing", "install": {}}, None, "keda.install", "only the settings of the selected mode"),
            (
                {"mode": "install", "install": {"extraValues": {"crds": {"install": False}}}},
                None,
                "keda.install.extraValues.crds",
                "CRDs come with the chart",
            ),
            (
                {"mode": "install", "install": {"extraValues": {"webhooks": {"enabled": False}}}},
                None,
                "keda.install.extraValues.webhooks",
                "keda.install.webhooks",
            ),
            ({"mode": "install", "install": {"webhook": False}}, None, "keda.install.webhook", "unknown"),
        ],
    )
    def test_bad_keda_settings_are_refused_naming_the_key(self, keda, airflow, key, fragment):
        with pytest.raises(ConfigError) as err:
            parse(keda, airflow)
        assert err.value.key == key
        assert fragment in str(err.value)

    def test_parse_keda_checks_the_airflow_settings_it_scales(self):
        from components.airflow.config.airflow import parse_airflow

        with pytest.raises(ConfigError, match="runs no Celery workers"):
            parse_keda({"mode": "existing"}, parse_airflow({"dags": GIT}))

    def test_every_keda_key_is_documented_in_the_readme(self):
        Node.asked.clear()
        parse(
            {
                **INSTALL,
                "install": {"resources": {"operator": {"requests": {"cpu": "1"}}, "metricsServer": {}, "webhooks": {}}},
            }
        )
        parse({"mode": "existing", "existing": {"namespace": "keda"}})
        # `resources` objects have the documented shape of every component's (requests/limits, cpu/memory)
        keys = sorted({k for k in Node.asked if k.startswith("keda") and not re.search(r"resources\.\w+\.", k)})
        assert len(keys) > 10
        assert [k for k in keys if not documented(k)] == []
