"""Production invariants of the prod stack, on its offline preview, and spreading across nodes.

Prod must survive losing a node and a node drain: at least two schedulers and two
api-servers, a PodDisruptionBudget for every replicated Airflow component, PgBouncer in
front of the database, and every replicated component spread over nodes by a constraint
that really selects its pods.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from components.airflow.config.airflow import parse_airflow
from components.airflow.values.spread import REVISION_LABELS, spread_values
from components.offline.preview import PreviewResult, preview
from tests.helpers import ROOT, release, render_release, run_stack

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
WORKLOADS = ("Deployment", "StatefulSet")


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> PreviewResult:
    return preview(ROOT, "prod", tmp_path_factory.mktemp("prod"), run_checkov=False)


def by_kind(objects: list[dict[str, Any]], *kinds: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] in kinds}


def airflow_workloads(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: o
        for name, o in by_kind(objects, *WORKLOADS).items()
        if o["spec"]["template"]["metadata"]["labels"].get("tier") == "airflow"
    }


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Does a LabelSelector (matchLabels and matchExpressions) select these labels?"""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value, op = labels.get(expr["key"]), expr["operator"]
        if (op == "In" and value not in expr["values"]) or (op == "NotIn" and value in expr["values"]):
            return False
        if (op == "Exists" and value is None) or (op == "DoesNotExist" and value is not None):
            return False
    return True


def spread_of(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(workload["spec"]["template"]["spec"].get("topologySpreadConstraints") or [])


class TestProductionInvariants:
    def test_the_preview_has_no_problem(self, prod):
        assert [p.message for p in prod.problems] == []

    def test_at_least_two_schedulers_and_two_api_servers(self, prod):
        workloads = by_kind(prod.objects, *WORKLOADS)
        assert workloads["airflow-scheduler"]["spec"]["replicas"] >= 2
        assert workloads["airflow-api-server"]["spec"]["replicas"] >= 2

    def test_every_replicated_airflow_component_has_a_disruption_budget_selecting_its_pods(self, prod):
        budgets = by_kind(prod.objects, "PodDisruptionBudget")
        # A KEDA-scaled workload (the Celery workers) has no replicas of its own: its maximum counts.
        scaled = {
            o["spec"]["scaleTargetRef"]["name"]: o["spec"]["maxReplicaCount"]
            for o in prod.objects
            if o["kind"] == "ScaledObject"
        }
        replicas = {
            n: w["spec"].get("replicas") or scaled.get(n, 1) for n, w in airflow_workloads(prod.objects).items()
        }
        replicated = {n: w for n, w in airflow_workloads(prod.objects).items() if replicas[n] > 1}
        assert set(replicated) >= {"airflow-scheduler", "airflow-api-server", "airflow-worker", "airflow-pgbouncer"}
        for name, workload in replicated.items():
            labels = workload["spec"]["template"]["metadata"]["labels"]
            covering = [b for b in budgets.values() if selects(b["spec"]["selector"], labels)]
            assert len(covering) == 1, name
            (budget,) = covering
            assert (
                budget["spec"].get("maxUnavailable", 0) >= 1 or budget["spec"].get("minAvailable", 0) < replicas[name]
            ), name

    def test_pgbouncer_fronts_the_database_with_two_replicas(self, prod):
        workloads = by_kind(prod.objects, *WORKLOADS)
        assert workloads["airflow-pgbouncer"]["spec"]["replicas"] >= 2
        secrets = {o["metadata"]["name"] for o in prod.objects if o["kind"] == "Secret"}
        assert "airflow-pulumi-pgbouncer-config" in secrets
        assert not any(name.startswith("airflow-postgresql") for name in workloads)

    def test_every_replicated_component_is_spread_over_nodes_by_a_constraint_that_selects_its_pods(self, prod):
        for name, workload in airflow_workloads(prod.objects).items():
            if (workload["spec"].get("replicas") or 1) < 2:
                continue
            constraints = spread_of(workload)
            assert constraints, f"{name} is not spread"
            labels = workload["spec"]["template"]["metadata"]["labels"]
            for c in constraints:
                assert selects(c["labelSelector"], labels), name
                assert c["topologyKey"] == "kubernetes.io/hostname"
                assert c["whenUnsatisfiable"] == "DoNotSchedule"  # Pulumi.prod.yaml
                assert c["maxSkew"] == 1
                assert c["matchLabelKeys"] == list(REVISION_LABELS)

    def test_a_constraint_selects_no_pod_of_another_component_or_release(self, prod):
        workloads = airflow_workloads(prod.objects)
        for name, workload in workloads.items():
            for c in spread_of(workload):
                others = [
                    other
                    for other, w in workloads.items()
                    if other != name and selects(c["labelSelector"], w["spec"]["template"]["metadata"]["labels"])
                ]
                assert others == [], name
                assert c["labelSelector"]["matchLabels"]["release"] == "airflow"


class TestSpread:
    @pytest.mark.parametrize(
        ("version", "executor"),
        [
            ("3.2.0", "CeleryExecutor,KubernetesExecutor"),
            ("3.2.0", "LocalExecutor"),
            ("2.11.0", "CeleryKubernetesExecutor"),
        ],
    )
    def test_each_constraint_selects_its_own_component_in_the_render(self, version, executor):
        run = run_stack(
            {"version": version, "executor": executor, "dags": GIT, "database": {"pgbouncer": {"enabled": True}}}
        )
        objects = render_release(release(run))
        spread = airflow_workloads(objects)
        expected = {"airflow-scheduler", "airflow-triggerer", "airflow-pgbouncer"}
        expected.add("airflow-api-server" if version.startswith("3") else "airflow-webserver")
        if "Celery" in executor:
            expected.add("airflow-worker")
        if version.startswith("3"):
            expected.add("airflow-dag-processor")
        constrained = {name for name, w in spread.items() if spread_of(w)}
        assert constrained == expected
        for name in constrained:
            (c,) = spread_of(spread[name])
            assert selects(c["labelSelector"], spread[name]["spec"]["template"]["metadata"]["labels"]), name
            assert c["whenUnsatisfiable"] == "ScheduleAnyway"  # the default: one laptop node still schedules

    def test_task_pods_are_not_spread_and_never_counted(self):
        run = run_stack({"executor": "CeleryExecutor,KubernetesExecutor", "dags": GIT})
        objects = render_release(release(run))
        template = next(
            o["data"]["pod_template_file.yaml"]
            for o in objects
            if o["kind"] == "ConfigMap" and "pod_template_file.yaml" in o.get("data", {})
        )
        pod = next(d for d in yaml.safe_load_all(template) if d)
        assert not pod["spec"].get("topologySpreadConstraints")
        # Task pods carry the Celery workers' labels but no revision hash label, so the
        # workers' constraint (matchLabelKeys) never counts them.
        assert pod["metadata"]["labels"]["component"] == "worker"
        assert not set(REVISION_LABELS) & set(pod["metadata"]["labels"])

    def test_the_zone_key_skew_and_policy_come_from_config(self):
        cfg = parse_airflow(
            {
                "dags": GIT,
                "spread": {
                    "topologyKey": "topology.kubernetes.io/zone",
                    "maxSkew": 2,
                    "whenUnsatisfiable": "DoNotSchedule",
                },
            }
        )
        (c,) = spread_values(cfg)["scheduler"]["topologySpreadConstraints"]
        assert (c["topologyKey"], c["maxSkew"], c["whenUnsatisfiable"]) == (
            "topology.kubernetes.io/zone",
            2,
            "DoNotSchedule",
        )
        assert c["nodeTaintsPolicy"] == "Honor"

    def test_spreading_off_renders_no_constraint(self):
        run = run_stack({"dags": GIT, "spread": {"enabled": False}})
        assert all(not spread_of(w) for w in airflow_workloads(render_release(release(run))).values())

    def test_scaling_a_component_does_not_change_its_pod_template(self):
        one = parse_airflow({"dags": GIT, "scheduler": {"replicas": 1}})
        four = parse_airflow({"dags": GIT, "scheduler": {"replicas": 4}})
        assert spread_values(one) == spread_values(four)
