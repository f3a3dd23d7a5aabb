# Longer than 600 lines: one test class per concern of Monitoring (modes, rules and dashboard, install
# mode), sharing the rendered stacks.
"""Monitoring: ServiceMonitors, alert rules and the Grafana dashboard, proven in the offline preview."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import ConfigError
from components.airflow.config.airflow import parse_airflow
from components.core.reader import Node
from components.monitoring.config import parse_monitoring
from components.monitoring.statsd_names import (
    exported_metrics,
    grafana_query_to_promql,
    metric_names,
    parse_mappings,
    unknown_airflow_metrics,
)
from components.monitoring.values import (
    Target,
    airflow_values,
    alerts,
    dashboard,
    dashboard_queries,
    prometheus_rule,
    rules_file,
    stack_values,
)
from components.offline import checks
from components.offline.preview import PreviewResult, preview
from components.offline.program import ProgramRun, secret_paths, unwrap
from components.offline.render import chart_files, crds_of, find_chart
from components.platform.config import parse_cluster, parse_stack
from tests.helpers import DB_URL, ROOT, of_type, render_release, run_stack
from tests.test_readme import documented

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
CATALOGUE = ROOT.parent / "shared" / "airflow" / "metrics_template.yaml"
INSTALL = {"mode": "install"}

# The alerts the issue asks for (plus the ones that guard them), by Airflow setup.
REQUIRED_ALERTS = {
    "AirflowSchedulerHeartbeatMissing",
    "AirflowDagImportErrors",
    "AirflowTaskFailureRateHigh",
    "AirflowExecutorSlotsExhausted",
    "AirflowPoolStarving",
    "AirflowZombieTasksKilled",
}


# --------------------------------------------------------------------------- helpers


def mapping_text() -> str:
    """The StatsD mapping file as the chart archive ships it (not an extracted copy)."""
    archive = find_chart(ROOT, "airflow", "1.21.0")
    return chart_files(archive)["airflow/files/statsd-mappings.yml"].decode()


@pytest.fixture(scope="module")
def known() -> dict[int, set[str]]:
    """Metric names the chart's StatsD exporter produces, for Airflow 3 and Airflow 2."""
    mapping, catalogue = mapping_text(), CATALOGUE.read_text()
    return {major: set(exported_metrics(mapping, catalogue, airflow_major=major)) for major in (2, 3)}


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PreviewResult]:
    out = tmp_path_factory.mktemp("monitoring")
    return {stack: preview(ROOT, stack, out, run_checkov=False) for stack in ("dev", "prod")}


def run(monitoring: dict[str, Any], airflow: dict[str, Any] | None = None, **kwargs: Any) -> ProgramRun:
    return run_stack(airflow or {"dags": GIT}, extra={"monitoring": monitoring}, **kwargs)


def previewed(tmp_path: Path, monitoring: dict[str, Any], airflow: dict[str, Any] | None = None, **kwargs: Any):
    return preview(ROOT, "test", tmp_path, run_checkov=False, program_run=run(monitoring, airflow, **kwargs))


def objects(result: PreviewResult, kind: str, source: str | None = None) -> list[dict[str, Any]]:
    return [o for s in result.sources if source is None or s.name == source for o in s.objects if o.get("kind") == kind]


def one(result: PreviewResult, kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects(result, kind) if o["metadata"]["name"] == name]
    return found


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def target(airflow: dict[str, Any] | None = None, operator: bool = True, secrets: Any = None) -> Target:
    cfg = parse_airflow(airflow or {"dags": GIT}, secrets)
    return Target(cfg, cfg.namespace, cfg.release_name, operator=operator)


def all_rule_exprs(result: PreviewResult) -> list[str]:
    return [
        r["expr"]
        for o in objects(result, "PrometheusRule", "monitoring-alerts")
        for g in o["spec"]["groups"]
        for r in g["rules"]
    ]


def board_of(result: PreviewResult) -> dict[str, Any]:
    (cm,) = objects(result, "ConfigMap", "monitoring-dashboard")
    (text,) = cm["data"].values()
    return dict(json.loads(text))


def bad(monitoring: dict[str, Any], airflow: dict[str, Any] | None = None, production: bool = True) -> str:
    with pytest.raises(ConfigError) as err:
        parse_monitoring(monitoring, production=production, airflow=parse_airflow(airflow or {"dags": GIT}))
    return str(err.value)


def documented_key(key: str) -> bool:
    """A key is in the DOCS's reference; `resources` sub-keys are the shared `<component>.resources` rows."""
    nested = re.match(r"^(monitoring\..+\.resources)\.(.+)$", key)
    if nested:
        return documented(nested.group(1)) and documented(f"<component>.resources.{nested.group(2)}")
    return documented(key)


# --------------------------------------------------------------------------- config


class TestConfig:
    def test_monitoring_is_off_unless_configured(self):
        stack = parse_stack({"airflow": json.dumps({"dags": GIT})})
        assert stack.monitoring.mode == "off" and not stack.monitoring.enabled
        assert airflow_values(stack.monitoring, stack.airflow) == {}

    def test_install_defaults_follow_the_cluster_environment(self):
        prod = parse_monitoring(INSTALL, production=True).install
        laptop = parse_monitoring(INSTALL, production=False).install
        assert prod is not None and laptop is not None
        assert (prod.persistence, prod.alertmanager.enabled, prod.control_plane) == (True, True, ())
        assert (laptop.persistence, laptop.alertmanager.enabled, laptop.control_plane) == (False, False, ("coreDns",))
        assert prod.chart.version == "88.5.3"
        assert prod.chart.repository == "https://prometheus-community.github.io/helm-charts"

    def test_retention_size_defaults_to_85_percent_of_a_persistent_volume(self):
        install = parse_monitoring({**INSTALL, "install": {"prometheus": {"storageSize": "10Gi"}}}).install
        assert install is not None and install.retention_size == "8704MB"
        ephemeral = parse_monitoring({**INSTALL, "install": {"persistence": False}}).install
        assert ephemeral is not None and ephemeral.retention_size is None

    def test_a_local_chart_path_replaces_the_repository(self):
        install = parse_monitoring({**INSTALL, "install": {"chart": {"path": "charts/kps.tgz"}}}).install
        assert install is not None and install.chart.path == "charts/kps.tgz"
        values = stack_values(install)
        assert values["fullnameOverride"] == "monitoring"

    @pytest.mark.parametrize(
        ("monitoring", "fragments"),
        [
            ({"mode": "on"}, ["monitoring.mode", "'on'", "allowed: off, install, existing, annotations"]),
            ({"mode": "existing", "install": {}}, ["monitoring.install", "only the settings of the selected mode"]),
            (
                {**INSTALL, "install": {"controlPlane": ["etcd"]}},
                ["monitoring.install.controlPlane[0]", "'etcd'", "allowed: coreDns, kubeProxy"],
            ),
            (
                {**INSTALL, "install": {"controlPlane": ["coreDns", "coreDns"]}},
                ["monitoring.install.controlPlane", "only once"],
            ),
            (
                {**INSTALL, "install": {"prometheus": {"retention": "two weeks"}}},
                ["monitoring.install.prometheus.retention", "'two weeks'", "Prometheus duration"],
            ),
            (
                {**INSTALL, "install": {"prometheus": {"retentionSize": "60GB", "storageSize": "50Gi"}}},
                ["monitoring.install.prometheus.retentionSize", "'60GB'", "below the volume size (50Gi)"],
            ),
            (
                {**INSTALL, "install": {"persistence": False, "storageClass": "fast"}},
                ["monitoring.install.storageClass", "only used with persistence: true"],
            ),
            (
                {**INSTALL, "install": {"releaseName": "kube-prometheus-stack-global"}},
                ["monitoring.install.releaseName", "at most 26 characters"],
            ),
            (
                {**INSTALL, "install": {"prometheus": {"retension": "1d"}}},
                ["monitoring.install.prometheus.retension", "unknown key", "Did you mean 'retention'?"],
            ),
            (
                {
                    **INSTALL,
                    "install": {
                        "prometheus": {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}
                    },
                },
                ["monitoring.install.prometheus.resources.limits.memory", "at least the request"],
            ),
            (
                {**INSTALL, "install": {"chart": {"path": "kps.tgz", "repository": "https://example.com"}}},
                ["monitoring.install.chart.path", "either chart.path or chart.repository"],
            ),
            (
                {**INSTALL, "install": {"extraValues": {"grafana": {"adminPassword": "hunter2"}}}},
                ["monitoring.install.extraValues.grafana.adminPassword", "generates"],
            ),
            (
                {**INSTALL, "install": {"extraValues": {"fullnameOverride": "prom"}}},
                ["monitoring.install.extraValues.fullnameOverride", "releaseName"],
            ),
            ({"mode": "existing", "existing": {"labels": {}}}, ["monitoring.existing.labels", "give the labels"]),
            (
                {"mode": "existing", "existing": {"labels": {"release": "Not valid!"}}},
                ["monitoring.existing.labels.release", "not a Kubernetes label value"],
            ),
            ({"alerts": {"taskFailureRatio": 1.5}}, ["monitoring.alerts.taskFailureRatio", "above 0 and below 1"]),
            ({"alerts": {"taskFailureRatio": "high"}}, ["monitoring.alerts.taskFailureRatio", "'high'"]),
            ({"alerts": {"labels": {"severity": "page"}}}, ["monitoring.alerts.labels.severity", "set by the rules"]),
            ({"alerts": {"labels": {"team-name": "data"}}}, ["monitoring.alerts.labels.team-name", "Prometheus label"]),
            ({"dashboard": {"enabled": "yes"}}, ["monitoring.dashboard.enabled", "true or false"]),
            ({"mode": "annotations", "annotations": {"pod": True}}, ["monitoring.annotations.pod", "'pods'"]),
        ],
    )
    def test_bad_values_are_rejected_naming_key_value_and_what_is_allowed(self, monitoring, fragments):
        message = bad(monitoring)
        for fragment in fragments:
            assert fragment in message

    def test_a_grafana_password_in_extra_values_is_never_shown(self):
        assert "hunter2" not in bad({**INSTALL, "install": {"extraValues": {"grafana": {"adminPassword": "hunter2"}}}})

    def test_monitoring_needs_the_charts_statsd_exporter(self):
        message = bad(INSTALL, airflow={"dags": GIT, "statsd": {"enabled": False}})
        assert "monitoring.mode" in message and "airflow.statsd.enabled is false" in message

    def test_kube_prometheus_stack_gets_a_namespace_of_its_own(self):
        message = bad({**INSTALL, "install": {"namespace": "airflow"}})
        assert "monitoring.install.namespace" in message and "namespace of its own" in message

    def test_the_program_fails_before_declaring_any_resource(self):
        with pytest.raises(ConfigError) as err:
            run({"mode": "install", "install": {"prometheus": {"retention": "forever"}}})
        assert err.value.declared_before_error == []  # type: ignore[attr-defined]
        assert "monitoring.install.prometheus.retention" in str(err.value)

    def test_monitoring_must_not_be_a_secret(self):
        with pytest.raises(ConfigError, match="must not be a secret"):
            parse_stack({"airflow": json.dumps({"dags": GIT}), "monitoring": "{}"}, {"monitoring"})

    @pytest.mark.parametrize("pod", ["k8s-app=kube-dns", "kube-system/", "kube-system/k8s-app", "Kube/a=b"])
    def test_a_declared_cluster_pod_names_its_namespace_and_labels(self, pod):
        with pytest.raises(ConfigError, match=r"cluster\.pods\[0\]"):
            parse_cluster({"pods": [pod]})

    def test_every_monitoring_key_the_parser_reads_is_in_the_readme(self):
        Node.asked.clear()
        full = {
            "alerts": {"enabled": True, "labels": {"team": "data"}, "taskFailureRatio": 0.3},
            "dashboard": {"enabled": True},
        }
        install = {
            "namespace": "mon",
            "createNamespace": True,
            "releaseName": "mon",
            "chart": {"version": "88.5.3", "repository": "https://prometheus-community.github.io/helm-charts"},
            "persistence": True,
            "storageClass": "fast",
            "controlPlane": ["coreDns"],
            "nodeExporter": True,
            "prometheus": {
                "retention": "7d",
                "retentionSize": "10GB",
                "storageSize": "20Gi",
                "scrapeInterval": "30s",
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
            },
            "grafana": {"adminUser": "admin", "storageSize": "1Gi", "resources": {}},
            "alertmanager": {"enabled": True, "retention": "120h", "storageSize": "1Gi", "resources": {}},
            "extraValues": {},
        }
        parse_monitoring({**full, "mode": "install", "install": install})
        parse_monitoring({**full, "mode": "existing", "existing": {"labels": {"a": "b"}, "dashboardNamespace": "x"}})
        parse_monitoring({**full, "mode": "annotations", "annotations": {"pods": True}})
        parse_cluster({"pods": ["kube-system/k8s-app=kube-dns"]})
        keys = {re.sub(r"\[\d+\]", "", k) for k in Node.asked if k.startswith("monitoring")}
        assert len(keys) > 40
        assert sorted(k for k in keys if not documented_key(k)) == []
        assert documented("cluster.pods")


# --------------------------------------------------------------------------- metric names


class TestStatsdMapping:
    def test_the_mapping_comes_from_the_chart_archive(self):
        mappings = parse_mappings(mapping_text())
        assert len(mappings) >= 20
        assert any(m.match == "airflow.pool.starving_tasks.*" for m in mappings)

    def test_mapped_and_plain_names_are_known_and_per_value_names_are_not(self, known):
        names = known[3]
        for name in (
            "airflow_scheduler_heartbeat",  # regex mapping
            "airflow_pool_starving_tasks",  # glob mapping, pool as a label
            "airflow_task_duration_sum",  # a timer's summary series
            "airflow_ti_failures",  # no mapping: the StatsD name, dots turned into underscores
            "airflow_dag_processing_import_errors",
        ):
            assert name in names
        assert not any("zzvariable" in n for n in names)
        assert "airflow_dag_processing_last_num_of_db_queries" not in names  # templated, unmapped
        assert "airflow_zombies_killed" not in names and "airflow_zombies_killed" in known[2]

    def test_a_rule_on_an_unmapped_metric_is_caught(self, known):
        exprs = [
            "max(airflow_dag_processing_last_num_of_db_queries) > 100",  # only exists per DAG file
            "sum(rate(airflow_ti_failed[5m])) > 0",  # misspelt
            "sum(rate(airflow_scheduler_heartbeat[5m])) > 0",  # fine
        ]
        found = unknown_airflow_metrics(exprs, known[3])
        assert [name for name, _ in found] == ["airflow_dag_processing_last_num_of_db_queries", "airflow_ti_failed"]

    def test_an_unmapped_metric_in_our_own_rules_would_be_caught(self, known):
        rule = prometheus_rule(target(), parse_monitoring(INSTALL))
        rule["spec"]["groups"][0]["rules"][0]["expr"] = "absent(airflow_scheduler_heartbeats)"
        exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
        assert unknown_airflow_metrics(exprs, known[3]) == [
            ("airflow_scheduler_heartbeats", "absent(airflow_scheduler_heartbeats)")
        ]

    @pytest.mark.parametrize("expr", ["rate(airflow_ti_failures[5m]", "rat(airflow_ti_failures[5m])", "x > > 1"])
    def test_an_expression_that_does_not_parse_is_an_error(self, expr):
        with pytest.raises(ValueError):
            metric_names(expr)

    def test_grafana_variables_become_plain_promql(self):
        assert grafana_query_to_promql("rate(x[$__rate_interval])") == "rate(x[5m])"
        assert grafana_query_to_promql('label_values(up{a="b"}, job)') == 'up{a="b"}'


# --------------------------------------------------------------------------- rules and dashboard


def setups() -> list[tuple[str, dict[str, Any], Any, bool]]:
    celery = {"dags": GIT, "executor": "CeleryExecutor", "database": {"mode": "external"}}
    return [
        ("kubernetes-executor", {"dags": GIT}, None, True),
        ("celery-pgbouncer", celery, DB_URL, True),
        ("hybrid", {"dags": GIT, "executor": "CeleryExecutor,KubernetesExecutor"}, None, True),
        ("airflow-2-ck", {"dags": GIT, "version": "2.11.0", "executor": "CeleryKubernetesExecutor"}, None, True),
        ("annotations", {"dags": GIT, "executor": "CeleryExecutor"}, None, False),
    ]


class TestRulesAndDashboard:
    @pytest.mark.parametrize(("case", "airflow", "db", "operator"), setups(), ids=[s[0] for s in setups()])
    def test_every_rule_and_query_parses_and_reads_only_mapped_airflow_metrics(
        self, known, case, airflow, db, operator
    ):
        from components.airflow.config.airflow import StackSecrets

        t = target(airflow, operator, StackSecrets(database_url=db))
        rules = [a.expr for a in alerts(t)]
        queries = dashboard_queries(dashboard(t))
        for expr in rules + queries:
            metric_names(grafana_query_to_promql(expr))  # raises if it does not parse
        assert unknown_airflow_metrics(rules + queries, known[t.airflow.major]) == []

    def test_alerts_cover_what_operators_need_with_summary_and_runbook(self):
        found = alerts(target({"dags": GIT, "executor": "CeleryExecutor"}))
        names = {a.name for a in found}
        assert names >= REQUIRED_ALERTS | {"AirflowNoCeleryWorker", "AirflowDagProcessorHeartbeatMissing"}
        for alert in found:
            assert alert.summary and alert.runbook and alert.description
            assert alert.severity in ("critical", "warning")

    def test_the_celery_alert_needs_celery_workers(self):
        assert "AirflowNoCeleryWorker" not in {a.name for a in alerts(target())}
        hybrid = {"dags": GIT, "executor": "CeleryExecutor,KubernetesExecutor", "workers": {"replicas": 0}}
        assert "AirflowNoCeleryWorker" not in {a.name for a in alerts(target(hybrid))}

    def test_the_triggerer_alert_needs_a_triggerer(self):
        assert "AirflowTriggererHeartbeatMissing" in {a.name for a in alerts(target())}
        off = {"dags": GIT, "triggerer": {"enabled": False}}
        assert "AirflowTriggererHeartbeatMissing" not in {a.name for a in alerts(target(off))}

    def test_airflow_2_counts_zombies_under_their_airflow_2_name(self):
        (zombies,) = [a for a in alerts(target({"dags": GIT, "version": "2.11.0"})) if "Zombie" in a.name]
        assert "airflow_zombies_killed" in metric_names(zombies.expr)

    def test_per_value_series_are_selected_not_the_collapsed_tagged_one(self):
        (pool,) = [a for a in alerts(target()) if a.name == "AirflowPoolStarving"]
        assert 'pool!=""' in pool.expr

    def test_configured_labels_are_on_every_alert(self):
        cfg = parse_monitoring({**INSTALL, "alerts": {"labels": {"team": "data"}}})
        rule = prometheus_rule(target(), cfg)
        assert all(r["labels"]["team"] == "data" for g in rule["spec"]["groups"] for r in g["rules"])
        assert all(r["labels"]["namespace"] == "airflow" for g in rule["spec"]["groups"] for r in g["rules"])

    def test_the_dashboard_covers_health_runs_durations_queues_executor_and_resources(self):
        board = dashboard(target())
        rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
        assert rows == [
            "Scheduler health",
            "DAG runs and task outcomes",
            "Durations",
            "Queues and pools",
            "Executor slots",
            "Resource use (all pods of the namespace)",
        ]
        panels = [p for p in board["panels"] if p["type"] != "row"]
        assert all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in panels)
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
        assert len(board["uid"]) <= 40

    def test_cluster_metrics_are_ones_kube_prometheus_stack_itself_queries(self, stacks):
        """Non-Airflow metrics (cAdvisor, kube-state-metrics) must exist: the chart's own rules
        and dashboards query each of them."""
        chart_text = json.dumps(
            [o for s in stacks["prod"].sources if s.name == "monitoring-release" for o in s.objects]
        )
        chart_names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", chart_text))
        ours = {
            n
            for e in all_rule_exprs(stacks["prod"]) + dashboard_queries(board_of(stacks["prod"]))
            for n in metric_names(grafana_query_to_promql(e))
            if not n.startswith("airflow_")
        }
        assert ours and ours <= chart_names | {"up"}


# --------------------------------------------------------------------------- install mode (dev, prod)


class TestInstallMode:
    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_the_stack_previews_with_zero_problems(self, stacks, stack):
        assert [p.message for p in stacks[stack].problems] == []

    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_the_service_monitor_selects_the_statsd_service_on_a_port_it_has(self, stacks, stack):
        result = stacks[stack]
        monitor = one(result, "ServiceMonitor", "airflow-statsd")
        services = [
            s
            for s in objects(result, "Service", "airflow-release")
            if s["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
            and matches(monitor["spec"]["selector"], s["metadata"]["labels"])
        ]
        assert [s["metadata"]["name"] for s in services] == ["airflow-statsd"]
        ports = {p["name"]: p["port"] for p in services[0]["spec"]["ports"]}
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["statsd-scrape"]
        assert ports["statsd-scrape"] == 9102

    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_monitors_and_rules_carry_the_labels_the_prometheus_selects_on(self, stacks, stack):
        result = stacks[stack]
        (prom,) = objects(result, "Prometheus")
        ours = [m for m in objects(result, "ServiceMonitor") if m["metadata"]["namespace"] == "airflow"]
        assert len(ours) == (2 if stack == "prod" else 1)
        for monitor in ours:
            assert matches(prom["spec"]["serviceMonitorSelector"], monitor["metadata"]["labels"])
        (rule,) = objects(result, "PrometheusRule", "monitoring-alerts")
        assert matches(prom["spec"]["ruleSelector"], rule["metadata"]["labels"])
        assert prom["spec"]["serviceMonitorNamespaceSelector"] == {} and prom["spec"]["ruleNamespaceSelector"] == {}

    def test_pgbouncers_exporter_is_monitored_when_pgbouncer_is_on(self, stacks):
        monitor = one(stacks["prod"], "ServiceMonitor", "airflow-pgbouncer")
        service = one(stacks["prod"], "Service", "airflow-pgbouncer")
        assert matches(monitor["spec"]["selector"], service["metadata"]["labels"])
        assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert not [m for m in objects(stacks["dev"], "ServiceMonitor") if m["metadata"]["name"] == "airflow-pgbouncer"]

    def test_the_rule_and_monitors_validate_against_the_charts_crds(self, stacks):
        crds = crds_of(find_chart(ROOT, "kube-prometheus-stack", "88.5.3"))
        ours = [
            checks.Item(s.name, o)
            for s in stacks["prod"].sources
            if s.name.startswith("monitoring-") and s.kind == "resource"
            for o in s.objects
            if o["kind"] in ("ServiceMonitor", "PrometheusRule")
        ]
        assert {i.obj["kind"] for i in ours} == {"ServiceMonitor", "PrometheusRule"}
        assert checks.crd_problems(ours, crds) == []
        broken = copy.deepcopy(ours)
        broken[0].obj["spec"]["endpoints" if broken[0].obj["kind"] == "ServiceMonitor" else "groups"][0][
            "intervall"
        ] = 1
        assert any("intervall" in p.message for p in checks.crd_problems(broken, crds))

    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_the_dashboard_is_labelled_for_the_grafana_sidecar(self, stacks, stack):
        result = stacks[stack]
        grafana = one(result, "Deployment", "monitoring-grafana")
        (sidecar,) = [
            c for c in grafana["spec"]["template"]["spec"]["containers"] if c["name"] == "grafana-sc-dashboard"
        ]
        env = {e["name"]: e.get("value") for e in sidecar["env"]}
        (cm,) = objects(result, "ConfigMap", "monitoring-dashboard")
        assert cm["metadata"]["labels"][env["LABEL"]] == env["LABEL_VALUE"]
        assert env["NAMESPACE"] == "ALL" or cm["metadata"]["namespace"] == grafana["metadata"]["namespace"]
        assert board_of(result)["title"] == result.run.outputs["grafanaDashboard"] == "Airflow / airflow / airflow"

    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_grafanas_admin_password_is_generated_kept_secret_and_never_a_helm_value(self, stacks, stack):
        result = stacks[stack]
        (release,) = [r for r in result.run.resources if r.name == "monitoring-release"]
        values = unwrap(release.inputs)["values"]
        assert secret_paths(release.inputs) == []
        assert "adminPassword" not in values.get("grafana", {})
        admin = values["grafana"]["admin"]
        secret = one(result, "Secret", admin["existingSecret"])
        assert set(secret["stringData"]) == {admin["userKey"], admin["passwordKey"]}
        assert secret["stringData"][admin["passwordKey"]] == "[secret]"
        assert "grafanaAdminPassword" in result.run.secret_outputs
        assert not [s for s in objects(result, "Secret", "monitoring-release") if "grafana" in s["metadata"]["name"]]

    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_outputs_name_services_the_chart_creates(self, stacks, stack):
        result = stacks[stack]
        services = {s["metadata"]["name"] for s in objects(result, "Service", "monitoring-release")}
        outputs = result.run.outputs
        assert outputs["monitoringNamespace"] == "monitoring"
        assert {outputs["grafanaServiceName"], outputs["prometheusServiceName"]} <= services
        assert (outputs["alertmanagerServiceName"] in services) == (stack == "prod")
        assert outputs["grafanaPortForward"] == "kubectl port-forward -n monitoring svc/monitoring-grafana 3000:80"

    def test_dev_is_light(self, stacks):
        result = stacks["dev"]
        (prom,) = objects(result, "Prometheus")
        assert prom["spec"]["retention"] == "1d"
        assert "storage" not in prom["spec"] and "retentionSize" not in prom["spec"]
        assert prom["spec"]["resources"]["limits"]["memory"] == "1Gi"
        assert objects(result, "Alertmanager") == []
        assert not [c for c in objects(result, "PersistentVolumeClaim") if c["metadata"]["namespace"] == "monitoring"]

    def test_prod_keeps_its_volumes(self, stacks):
        result = stacks["prod"]
        (prom,) = objects(result, "Prometheus")
        (am,) = objects(result, "Alertmanager")
        for spec in (prom["spec"], am["spec"]):
            assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
        assert prom["spec"]["storage"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "50Gi"
        assert prom["spec"]["retentionSize"] == "43520MB"
        assert am["spec"]["storage"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "2Gi"
        (claim,) = [r for r in result.run.resources if r.name == "monitoring-grafana-claim"]
        assert claim.retain_on_delete
        grafana = one(result, "Deployment", "monitoring-grafana")
        assert grafana["spec"]["strategy"]["type"] == "Recreate"
        volumes = {v["name"]: v for v in grafana["spec"]["template"]["spec"]["volumes"]}
        assert volumes["storage"]["persistentVolumeClaim"]["claimName"] == claim.inputs["metadata"]["name"]

    def test_control_plane_scraping_is_a_choice_dev_scrapes_core_dns_prod_nothing(self, stacks):
        def kube_system(result: PreviewResult) -> list[str]:
            return sorted(
                s["metadata"]["name"] for s in objects(result, "Service") if s["metadata"]["namespace"] == "kube-system"
            )

        assert kube_system(stacks["dev"]) == ["monitoring-coredns"]
        assert kube_system(stacks["prod"]) == []

    def test_a_control_plane_service_without_its_pods_declared_is_caught(self, tmp_path):
        install = {"mode": "install", "install": {"controlPlane": ["kubeScheduler"], "persistence": False}}
        missing = previewed(tmp_path, install)
        found = [p.message for p in missing.problems]
        assert len(found) == 1 and "component=kube-scheduler" in found[0]
        declared = previewed(
            tmp_path, install, cluster={"pods": ["kube-system/component=kube-scheduler,tier=control-plane"]}
        )
        assert declared.problems == []

    def test_the_release_installs_the_pinned_chart_from_its_repository(self, stacks):
        (release,) = [r for r in stacks["prod"].run.resources if r.name == "monitoring-release"]
        inputs = unwrap(release.inputs)
        assert (inputs["chart"], inputs["version"]) == ("kube-prometheus-stack", "88.5.3")
        assert inputs["repositoryOpts"]["repo"] == "https://prometheus-community.github.io/helm-charts"
        assert inputs["namespace"] == "monitoring" and inputs["name"] == "monitoring"
        monitors = of_type(stacks["prod"].run, "ServiceMonitor")
        assert monitors and all(release.urn in m.dependencies for m in monitors)


class TestComponent:
    def test_children_are_named_after_the_component_parented_to_it_and_use_its_provider(self):
        run_ = run_stack(program="monitoring_with_provider")
        (component,) = of_type(run_, "airflow-k8s:index:Monitoring")
        children = [r for r in run_.resources if r.parent == component.urn]
        assert {c.name for c in children} >= {
            "monitoring-namespace",
            "monitoring-grafana-admin-password",
            "monitoring-grafana-admin-secret",
            "monitoring-grafana-claim",
            "monitoring-release",
            "monitoring-statsd-monitor",
            "monitoring-alerts",
            "monitoring-dashboard",
        }
        kube = [c for c in children if c.type.startswith("kubernetes:")]
        assert kube and all("pulumi:providers:kubernetes::laptop::" in c.provider for c in kube)

    def test_settings_given_as_a_mapping_are_validated_like_stack_config(self):
        from components import Monitoring

        with pytest.raises(ConfigError, match=r"monitoring\.mode"):
            Monitoring("m", {"settings": {"mode": "yes"}, "airflow_settings": {"dags": GIT}})


# --------------------------------------------------------------------------- other modes


class TestExistingOperator:
    def test_monitors_rules_and_dashboard_without_a_chart_and_with_the_configured_labels(self, tmp_path):
        mode = {"mode": "existing", "existing": {"labels": {"prometheus": "main"}}}
        result = previewed(tmp_path, mode, {"dags": GIT, "executor": "CeleryExecutor"})
        assert result.problems == []
        assert not [s for s in result.sources if s.detail.get("chart") == "kube-prometheus-stack"]
        for kind in ("ServiceMonitor", "PrometheusRule"):
            (obj,) = objects(
                result, kind, "monitoring-statsd-monitor" if kind == "ServiceMonitor" else "monitoring-alerts"
            )
            assert obj["metadata"]["labels"]["prometheus"] == "main"
        (cm,) = objects(result, "ConfigMap", "monitoring-dashboard")
        assert cm["metadata"]["namespace"] == "airflow"
        assert "AirflowNoCeleryWorker" in {r["alert"] for r in all_rule_exprs_full(result)}
        assert "grafanaServiceName" in result.run.outputs and result.run.outputs["grafanaServiceName"] is None


def all_rule_exprs_full(result: PreviewResult) -> list[dict[str, Any]]:
    return [r for o in objects(result, "PrometheusRule") for g in o["spec"]["groups"] for r in g["rules"]]


class TestAnnotations:
    def test_the_statsd_and_pgbouncer_services_and_pods_carry_scrape_annotations(self):
        airflow = {"dags": GIT, "executor": "CeleryExecutor", "database": {"mode": "external"}}
        run_ = run({"mode": "annotations", "annotations": {"pods": True}}, airflow, secrets={"databaseUrl": DB_URL})
        (release,) = [r for r in run_.resources if r.name == "airflow-release"]
        rendered = render_release(release)
        for component, port in (("statsd", "9102"), ("pgbouncer", "9127")):
            (service,) = [
                o for o in rendered if o["kind"] == "Service" and o["metadata"]["name"] == f"airflow-{component}"
            ]
            annotations = service["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/path"] == "/metrics"
            (deploy,) = [
                o for o in rendered if o["kind"] == "Deployment" and o["metadata"]["name"] == f"airflow-{component}"
            ]
            pod = deploy["spec"]["template"]["metadata"]["annotations"]
            assert (pod["prometheus.io/scrape"], pod["prometheus.io/port"]) == ("true", port)
            names = {
                p["containerPort"] for c in deploy["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])
            }
            assert int(port) in names
        assert service["metadata"]["annotations"]["prometheus.io/port"] == "9127"

    def test_without_pod_annotations_only_the_services_are_annotated(self):
        run_ = run({"mode": "annotations"})
        (release,) = [r for r in run_.resources if r.name == "airflow-release"]
        rendered = render_release(release)
        (deploy,) = [o for o in rendered if o["kind"] == "Deployment" and o["metadata"]["name"] == "airflow-statsd"]
        assert "prometheus.io/scrape" not in (deploy["spec"]["template"]["metadata"].get("annotations") or {})
        (service,) = [o for o in rendered if o["kind"] == "Service" and o["metadata"]["name"] == "airflow-statsd"]
        assert service["metadata"]["annotations"]["prometheus.io/port"] == "9102"

    def test_rules_ship_as_a_rule_file_with_namespace_scoped_queries(self, tmp_path, known):
        result = previewed(tmp_path, {"mode": "annotations"})
        assert result.problems == []
        assert objects(result, "ServiceMonitor") == [] and objects(result, "PrometheusRule") == []
        (cm,) = objects(result, "ConfigMap", "monitoring-alert-rules")
        groups = yaml.safe_load(cm["data"]["airflow-alerts.yaml"])["groups"]
        exprs = [r["expr"] for g in groups for r in g["rules"]]
        assert {r["alert"] for g in groups for r in g["rules"]} >= REQUIRED_ALERTS
        assert unknown_airflow_metrics(exprs, known[3]) == []
        assert all("service=" not in e for e in exprs)
        assert (
            rules_file(target(operator=False), parse_monitoring({"mode": "annotations"}))
            == cm["data"]["airflow-alerts.yaml"]
        )


class TestOff:
    def test_off_declares_only_grafanas_key_material_and_exports_nothing_of_it(self):
        run_ = run({"mode": "off"})
        # The Grafana admin password stays declared, so switching monitoring off and on never re-rolls it.
        assert [r.name for r in run_.resources if r.name.startswith("monitoring")] == [
            "monitoring",
            "monitoring-grafana-admin-password",
        ]
        assert not [k for k in run_.outputs if k.startswith("grafana")]
