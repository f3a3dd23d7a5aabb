# Longer than 600 lines: one test class per concern of SparkOperator (chart values, RBAC, the
# connection, the example application, the stacks), sharing one rendered stack.
"""SparkOperator: the Spark Operator chart, least-privilege RBAC for Spark and Airflow, the
`kubernetes_default` connection, and the SparkPi example, proven in the offline preview."""

from __future__ import annotations

import copy
import json
import re
import runpy
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import ConfigError
from components.core.reader import Node
from components.offline.checks import Item, crd_problems
from components.offline.preview import PreviewResult, preview
from components.offline.program import ProgramRun, Registered, is_secret, unwrap
from components.offline.render import crds_of, find_chart, render
from components.platform.config import parse_stack
from components.spark.config import (
    DEFAULT_CHART_REPOSITORY,
    DEFAULT_CHART_VERSION,
    DEFAULT_DRIVER_SERVICE_ACCOUNT,
    DEFAULT_EXECUTOR_SERVICE_ACCOUNT,
    DEFAULT_JOB_NAMESPACE,
    SparkConfig,
    parse_spark,
)
from components.spark.values import (
    AIRFLOW_SUBMITTER_RULES,
    DRIVER_RULES,
    SUBMITTER_ROLE,
    VARIABLE_DRIVER_SERVICE_ACCOUNT,
    VARIABLE_EXECUTOR_SERVICE_ACCOUNT,
    VARIABLE_JOB_NAMESPACE,
    chart_values,
)
from tests.helpers import (
    ROOT,
    connections_files,
    of_type,
    releases,
    render_release,
    run_stack,
    secret_file_sources,
    secrets_by_name,
)
from tests.test_readme import DOCS, documented

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
MANIFEST = ROOT / "dags" / "spark" / "spark-pi.yaml"
DAG_FILE = ROOT / "dags" / "spark_pi.py"
SPARK_ARCHIVE = find_chart(ROOT, "spark-operator", DEFAULT_CHART_VERSION)
BROAD_ROLES = {"edit", "admin", "cluster-admin"}
RBAC_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}

# Two job namespaces: one the stack creates, one that exists already (declared to the preview).
TWO_JOB_NAMESPACES = {"jobNamespaces": ["spark-jobs", {"name": "analytics", "create": False}]}
EXISTING = {"namespaces": ["analytics"]}


def spark_stack(
    spark: dict[str, Any] | None = None,
    *,
    cluster: dict[str, Any] | None = None,
    **airflow: Any,
) -> ProgramRun:
    """The real __main__.py with Airflow (git-sync DAGs) and the given `spark` config."""
    return run_stack({"dags": GIT, **airflow}, cluster=cluster, extra={"spark": {} if spark is None else spark})


def previewed(tmp: Path, run: ProgramRun) -> PreviewResult:
    return preview(ROOT, "test", tmp, run_checkov=False, program_run=run)


def spark_release(run: ProgramRun) -> Registered:
    (found,) = [r for r in releases(run) if unwrap(r.inputs)["chart"] != "airflow"]
    return found


def airflow_release(run: ProgramRun) -> Registered:
    (found,) = [r for r in releases(run) if unwrap(r.inputs)["chart"] == "airflow"]
    return found


def objects_of(result: PreviewResult, kind: str) -> list[dict[str, Any]]:
    return [o for o in result.objects if o["kind"] == kind]


def by_ns_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects}


def verbs_by_resource(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, over all rules."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule.get("apiGroups", [""]):
            for resource in rule.get("resources", []):
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def wildcards(rule: dict[str, Any]) -> list[str]:
    fields = ("verbs", "resources", "apiGroups", "nonResourceURLs")
    return [f"{field}: *" for field in fields if "*" in rule.get(field, [])]


@pytest.fixture(scope="module")
def default_preview(tmp_path_factory: pytest.TempPathFactory) -> PreviewResult:
    return previewed(tmp_path_factory.mktemp("spark-default"), spark_stack())


@pytest.fixture(scope="module")
def two_namespaces(tmp_path_factory: pytest.TempPathFactory) -> PreviewResult:
    run = spark_stack(TWO_JOB_NAMESPACES, cluster=EXISTING, executor="CeleryExecutor")
    return previewed(tmp_path_factory.mktemp("spark-two"), run)


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PreviewResult]:
    out = tmp_path_factory.mktemp("spark-stacks")
    return {stack: preview(ROOT, stack, out, run_checkov=False) for stack in ("dev", "prod")}


# --------------------------------------------------------------------------- config


BAD_SPARK: list[tuple[str, dict[str, Any], list[str]]] = [
    ("job-namespaces-empty", {"jobNamespaces": []}, ["spark.jobNamespaces", "[]", "at least one job namespace"]),
    (
        "job-namespace-invalid",
        {"jobNamespaces": ["Spark_Jobs"]},
        ["spark.jobNamespaces[0]", "'Spark_Jobs'", "DNS-1123 label"],
    ),
    (
        "job-namespace-too-long",
        {"jobNamespaces": [{"name": "s" * 64}]},
        ["spark.jobNamespaces[0].name", "at most 63 characters"],
    ),
    (
        "job-namespace-twice",
        {"jobNamespaces": ["spark-jobs", {"name": "spark-jobs", "create": False}]},
        ["spark.jobNamespaces[1].name", "'spark-jobs'", "only once"],
    ),
    (
        "job-namespace-kube-system",
        {"jobNamespaces": ["kube-system"]},
        ["spark.jobNamespaces[0]", "'kube-system'", "not a system or shared namespace", "spark-jobs"],
    ),
    ("job-namespace-default", {"jobNamespaces": ["default"]}, ["spark.jobNamespaces[0]", "'default'"]),
    ("job-namespace-kube-prefix", {"jobNamespaces": ["kube-spark"]}, ["'kube-spark'", "kube-* namespace"]),
    (
        "job-namespace-is-airflows",
        {"jobNamespaces": ["airflow"]},
        ["spark.jobNamespaces[0]", "'airflow'", "must not be Airflow's namespace", "read Airflow's secrets"],
    ),
    (
        "job-namespace-is-the-operators",
        {"jobNamespaces": ["spark-operator"]},
        ["spark.jobNamespaces[0]", "the operator's own namespace"],
    ),
    ("job-namespaces-not-a-list", {"jobNamespaces": "spark-jobs"}, ["spark.jobNamespaces", "expected a list"]),
    ("job-namespace-a-number", {"jobNamespaces": [7]}, ["spark.jobNamespaces[0]", "a namespace name, or an object"]),
    (
        "job-namespace-unknown-key",
        {"jobNamespaces": [{"name": "a", "created": False}]},
        ["spark.jobNamespaces[0].created", "Did you mean 'create'?"],
    ),
    ("operator-namespace-is-airflows", {"namespace": "airflow"}, ["spark.namespace", "not Airflow's"]),
    ("operator-namespace-system", {"namespace": "kube-system"}, ["spark.namespace", "'kube-system'"]),
    ("release-name-too-long", {"releaseName": "s" * 31}, ["spark.releaseName", "at most 30 characters"]),
    ("chart-version-not-semver", {"chart": {"version": "2.5"}}, ["spark.chart.version", "semantic version"]),
    (
        "chart-path-and-repository",
        {"chart": {"path": "x.tgz", "repository": "https://a.b"}},
        ["spark.chart.path", "not both"],
    ),
    ("controller-replicas-zero", {"controller": {"replicas": 0}}, ["spark.controller.replicas", "from 1 to 10"]),
    (
        "webhook-limit-below-request",
        {"webhook": {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}}},
        ["spark.webhook.resources.limits.memory", "at least the request"],
    ),
    (
        "driver-is-executor",
        {"serviceAccounts": {"driver": "spark", "executor": "spark"}},
        ["spark.serviceAccounts.executor", "account of their own"],
    ),
    ("driver-is-default", {"serviceAccounts": {"driver": "default"}}, ["spark.serviceAccounts.driver", "'default'"]),
    (
        "extra-values-own-spark-section",
        {"extraValues": {"spark": {"jobNamespaces": [""]}}},
        ["spark.extraValues.spark", "owned by the typed keys"],
    ),
    ("unknown-key", {"jobNamespace": ["a"]}, ["spark.jobNamespace", "Did you mean 'jobNamespaces'?"]),
    ("enabled-not-bool", {"enabled": "yes"}, ["spark.enabled", "true or false"]),
]


class TestConfig:
    def test_defaults_are_an_operator_namespace_and_one_job_namespace_the_stack_creates(self):
        cfg = parse_spark({}, airflow_namespace="airflow")
        assert cfg.enabled and cfg.namespace == "spark-operator" and cfg.release_name == "spark-operator"
        assert cfg.job_namespace_names == (DEFAULT_JOB_NAMESPACE,) and cfg.job_namespaces[0].create
        assert (cfg.chart.version, cfg.chart.repository, cfg.chart.path) == (
            "2.5.2",
            "https://kubeflow.github.io/spark-operator",
            None,
        )
        assert (cfg.service_accounts.driver, cfg.service_accounts.executor) == ("spark-driver", "spark-executor")

    def test_job_namespaces_are_names_or_objects_with_a_create_flag(self):
        cfg = parse_spark(TWO_JOB_NAMESPACES)
        assert [(j.name, j.create) for j in cfg.job_namespaces] == [("spark-jobs", True), ("analytics", False)]
        assert cfg.default_job_namespace == "spark-jobs"

    def test_without_the_spark_key_there_is_no_operator_and_no_spark_connection(self):
        run = run_stack({"dags": GIT})
        assert parse_stack({"airflow": json.dumps({"dags": GIT})}).spark == SparkConfig(enabled=False)
        assert of_type(run, "SparkOperator") == []
        assert len(releases(run)) == 1
        for secret in secrets_by_name(run).values():
            assert "AIRFLOW_CONN_KUBERNETES_DEFAULT" not in json.dumps(unwrap(secret.inputs))

    def test_a_disabled_block_is_still_checked_and_deploys_nothing(self):
        run = spark_stack({"enabled": False})
        assert of_type(run, "SparkOperator") == []
        with pytest.raises(ConfigError, match="at least one job namespace"):
            spark_stack({"enabled": False, "jobNamespaces": []})

    @pytest.mark.parametrize(("raw", "fragments"), [c[1:] for c in BAD_SPARK], ids=[c[0] for c in BAD_SPARK])
    def test_bad_config_is_rejected_naming_the_key_the_value_and_what_is_allowed(self, raw, fragments):
        with pytest.raises(ConfigError) as err:
            parse_stack({"airflow": json.dumps({"dags": GIT}), "spark": json.dumps(raw)})
        for fragment in fragments:
            assert fragment in str(err.value)

    @pytest.mark.parametrize(
        "raw", [{"jobNamespaces": []}, {"jobNamespaces": ["Bad_Name"]}, {"jobNamespaces": ["airflow"]}]
    )
    def test_the_program_fails_before_declaring_any_resource(self, raw):
        with pytest.raises(ConfigError) as err:
            spark_stack(raw)
        assert err.value.declared_before_error == []  # type: ignore[attr-defined]

    def test_the_spark_object_must_not_be_a_secret(self):
        with pytest.raises(ConfigError, match="must not be a secret"):
            parse_stack({"airflow": "{}", "spark": "{}"}, {"spark"})

    def test_a_component_user_passing_airflows_namespace_as_an_output_is_stopped_too(self):
        with pytest.raises(Exception, match="also a Spark job namespace"):
            run_stack(
                {"dags": GIT, "namespace": "team-a"},
                program="spark_operator",
                extra={"spark": {"jobNamespaces": ["team-a"]}},
            )

    def test_a_component_user_composes_airflow_and_spark_from_mappings(self):
        run = run_stack(
            {"dags": GIT, "namespace": "team-a", "executor": "CeleryExecutor"},
            program="spark_operator",
            extra={"spark": {"namespace": "team-a-spark", "jobNamespaces": ["team-a-jobs"]}},
        )
        assert run.outputs["submitters"] == ["team-a/airflow-worker"]
        (component,) = of_type(run, "SparkOperator")
        children = [r for r in run.resources if r.parent == component.urn]
        assert children and all(r.name.startswith("team-spark-") for r in children)


class TestReadme:
    def test_every_spark_key_the_parser_reads_is_in_the_readme(self):
        Node.asked.clear()
        resources = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
        parse_spark(
            {
                "chart": {"path": "charts/spark-operator-2.5.2.tgz"},
                "jobNamespaces": [{"name": "a", "create": False}],
                "serviceAccounts": {},
                "controller": {"resources": resources},
                "webhook": {"resources": resources},
            }
        )
        parse_spark({})
        keys = {re.sub(r"\[\d+\]", "[]", k) for k in Node.asked if k.startswith("spark.")}
        assert len(keys) > 20

        def spark_documented(key: str) -> bool:
            match = re.match(r"^spark\.(controller|webhook)\.resources\.(.+)$", key)
            if match:
                return f"`<component>.resources.{match.group(2)}`" in DOCS
            return documented(key)

        assert sorted(k for k in keys if not spark_documented(k)) == []
        assert "`cluster.namespaces`" in DOCS


# --------------------------------------------------------------------------- the operator


def chart_defaults() -> dict[str, Any]:
    """The chart's own values.yaml (it ships no values.schema.json)."""
    import tarfile

    with tarfile.open(SPARK_ARCHIVE) as archive:
        member = archive.extractfile("spark-operator/values.yaml")
        assert member is not None
        loaded: dict[str, Any] = yaml.safe_load(member.read())
    return loaded


class TestOperatorRelease:
    def test_the_release_is_the_pinned_kubeflow_chart_in_its_own_namespace(self):
        run = spark_stack()
        inputs = unwrap(spark_release(run).inputs)
        assert (inputs["chart"], inputs["version"]) == ("spark-operator", DEFAULT_CHART_VERSION)
        assert inputs["repositoryOpts"] == {"repo": DEFAULT_CHART_REPOSITORY}
        assert (inputs["name"], inputs["namespace"]) == ("spark-operator", "spark-operator")
        assert inputs.get("createNamespace") is False and not inputs.get("skipCrds")
        namespaces = {unwrap(r.inputs)["metadata"]["name"]: r for r in of_type(run, "core/v1:Namespace")}
        assert set(namespaces) == {"airflow", "spark-operator", "spark-jobs"}
        assert namespaces["spark-jobs"].retain_on_delete and not namespaces["spark-operator"].retain_on_delete

    def test_the_version_and_a_local_chart_path_are_overridable(self):
        pinned = unwrap(spark_release(spark_stack({"chart": {"version": "2.5.3"}})).inputs)
        assert pinned["version"] == "2.5.3"
        local = unwrap(spark_release(spark_stack({"chart": {"path": "charts/spark-operator-2.5.2.tgz"}})).inputs)
        assert local["chart"] == "charts/spark-operator-2.5.2.tgz" and "repositoryOpts" not in local

    def test_the_release_waits_for_every_namespace_it_renders_into(self):
        run = spark_stack(TWO_JOB_NAMESPACES, cluster=EXISTING)
        (component,) = of_type(run, "SparkOperator")
        created = {r.urn for r in of_type(run, "core/v1:Namespace") if r.parent == component.urn}
        assert len(created) == 2  # the operator's and spark-jobs; analytics exists already
        assert created <= set(spark_release(run).dependencies)

    def test_the_operator_watches_exactly_the_job_namespaces_with_the_webhook_and_metrics_on(self, two_namespaces):
        objects = by_ns_name(objects_of(two_namespaces, "Deployment"))
        controller = objects[("spark-operator", "spark-operator-controller")]["spec"]["template"]
        container = controller["spec"]["containers"][0]
        assert "--namespaces=spark-jobs,analytics" in container["args"]
        assert "--enable-metrics=true" in container["args"] and "--leader-election=true" in container["args"]
        assert {"name": "metrics", "containerPort": 8080} in container["ports"]
        assert controller["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        webhook = objects[("spark-operator", "spark-operator-webhook")]["spec"]["template"]["spec"]
        assert "--namespaces=spark-jobs,analytics" in webhook["containers"][0]["args"]
        assert ("spark-operator", "spark-operator-webhook-svc") in by_ns_name(objects_of(two_namespaces, "Service"))
        for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            (config,) = objects_of(two_namespaces, kind)
            for hook in config["webhooks"]:
                assert hook["failurePolicy"] == "Fail"
                (expression,) = hook["namespaceSelector"]["matchExpressions"]
                assert expression == {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": ["spark-jobs", "analytics"],
                }
        assert objects_of(two_namespaces, "PodDisruptionBudget") == []  # one replica each by default

    def test_the_chart_ships_the_spark_crds_and_helm_installs_them(self, default_preview):
        summary = json.loads((default_preview.out_dir / "summary.json").read_text())
        (source,) = [s for s in summary["sources"] if s["name"] == "spark-release"]
        assert source["crds"] == [
            "scheduledsparkapplications.sparkoperator.k8s.io",
            "sparkapplications.sparkoperator.k8s.io",
            "sparkconnects.sparkoperator.k8s.io",
        ]
        assert source["archive"] == "spark-operator-2.5.2.tgz" and source["problems"] == 0
        (crd,) = [c for c in crds_of(SPARK_ARCHIVE) if c["spec"]["names"]["kind"] == "SparkApplication"]
        assert crd["spec"]["scope"] == "Namespaced"
        assert [v["name"] for v in crd["spec"]["versions"] if v["served"]] == ["v1beta2"]

    def test_the_default_operator_previews_with_zero_problems(self, default_preview):
        assert [p.message for p in default_preview.problems] == []
        kinds = {(o["kind"], o["metadata"]["name"]) for o in default_preview.objects}
        assert {
            ("Deployment", "spark-operator-controller"),
            ("Deployment", "spark-operator-webhook"),
            ("ServiceAccount", "spark-operator-controller"),
            ("ServiceAccount", "spark-operator-webhook"),
            ("Service", "spark-operator-webhook-svc"),
            ("MutatingWebhookConfiguration", "spark-operator-webhook"),
            ("ValidatingWebhookConfiguration", "spark-operator-webhook"),
        } <= kinds

    def test_two_replicas_get_disruption_budgets_and_resources_reach_the_pods(self, tmp_path):
        resources = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}
        run = spark_stack({"controller": {"replicas": 2, "resources": resources}, "webhook": {"replicas": 2}})
        result = previewed(tmp_path, run)
        assert result.problems == []
        controller = by_ns_name(objects_of(result, "Deployment"))[("spark-operator", "spark-operator-controller")]
        assert controller["spec"]["replicas"] == 2
        assert controller["spec"]["template"]["spec"]["containers"][0]["resources"] == resources
        budgets = {o["metadata"]["name"]: o["spec"] for o in objects_of(result, "PodDisruptionBudget")}
        assert budgets["spark-operator-controller-pdb"]["minAvailable"] == 1
        assert budgets["spark-operator-webhook-pdb"]["minAvailable"] == 1

    def test_extra_values_are_merged_last(self):
        values = chart_values(parse_spark({"extraValues": {"controller": {"workers": 20}}}))
        assert values["controller"]["workers"] == 20
        assert values["controller"]["replicas"] == 1

    def test_the_values_use_only_keys_the_chart_knows(self):
        def unknown(values: dict[str, Any], defaults: dict[str, Any], path: str = "") -> list[str]:
            out = []
            for key, value in values.items():
                if key not in defaults:
                    out.append(f"{path}{key}")
                elif isinstance(value, dict) and isinstance(defaults[key], dict) and defaults[key]:
                    # (an empty default, e.g. `resources: {}`, is free-form)
                    out += unknown(value, defaults[key], f"{path}{key}.")
            return out

        resources = {"requests": {"cpu": "1"}}
        cfg = parse_spark({"controller": {"replicas": 2, "resources": resources}, "webhook": {"resources": resources}})
        assert unknown(chart_values(cfg), chart_defaults()) == []
        assert unknown({"controller": {"replica": 2}}, chart_defaults()) == ["controller.replica"]


# --------------------------------------------------------------------------- RBAC


class TestRbac:
    def test_every_job_namespace_has_the_driver_and_submitter_roles_and_bindings(self, two_namespaces):
        roles = by_ns_name(objects_of(two_namespaces, "Role"))
        bindings = by_ns_name(objects_of(two_namespaces, "RoleBinding"))
        accounts = by_ns_name(objects_of(two_namespaces, "ServiceAccount"))
        for ns in ("spark-jobs", "analytics"):
            for name in (SUBMITTER_ROLE, DEFAULT_DRIVER_SERVICE_ACCOUNT):
                assert bindings[(ns, name)]["roleRef"] == {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": name,
                }
                assert (ns, name) in roles
            assert bindings[(ns, DEFAULT_DRIVER_SERVICE_ACCOUNT)]["subjects"] == [
                {"kind": "ServiceAccount", "name": "spark-driver", "namespace": ns}
            ]
            assert accounts[(ns, "spark-driver")]["automountServiceAccountToken"] is True
            assert accounts[(ns, "spark-executor")]["automountServiceAccountToken"] is False
            bound = {s["name"] for (n, _), b in bindings.items() if n == ns for s in b["subjects"]}
            assert "spark-executor" not in bound
            # The chart's controller and webhook get their Roles there too.
            assert (ns, "spark-operator-controller") in roles and (ns, "spark-operator-webhook") in roles
        assert two_namespaces.problems == []

    def test_the_submitter_role_grants_exactly_what_spark_kubernetes_operator_needs(self, two_namespaces):
        role = by_ns_name(objects_of(two_namespaces, "Role"))[("analytics", SUBMITTER_ROLE)]
        assert verbs_by_resource(role["rules"]) == {
            ("sparkoperator.k8s.io", "sparkapplications"): {"create", "get", "list", "watch", "patch", "delete"},
            ("sparkoperator.k8s.io", "sparkapplications/status"): {"get", "list", "watch"},
            ("", "pods"): {"get", "list", "watch", "patch", "delete"},
            ("", "pods/log"): {"get"},
            ("", "events"): {"list", "watch"},
        }
        assert role["rules"] == AIRFLOW_SUBMITTER_RULES

    def test_the_driver_role_is_narrower_than_the_charts_own_spark_role(self, two_namespaces):
        role = by_ns_name(objects_of(two_namespaces, "Role"))[("spark-jobs", "spark-driver")]
        ours = verbs_by_resource(role["rules"])
        assert ours == verbs_by_resource(DRIVER_RULES)
        # What the chart would have declared with spark.rbac.create (the same job namespace).
        values = copy.deepcopy(chart_values(parse_spark({})))
        values["spark"].update({"rbac": {"create": True}, "serviceAccount": {"create": True}})
        chart_objects = [r.obj for r in render(SPARK_ARCHIVE, values, "spark-operator", "spark-operator")]
        (chart_role,) = [
            o for o in chart_objects if o["kind"] == "Role" and o["metadata"]["name"] == "spark-operator-spark"
        ]
        theirs = verbs_by_resource(chart_role["rules"])
        for key, verbs in ours.items():
            assert verbs <= theirs[key], key
        assert sum(map(len, ours.values())) < sum(map(len, theirs.values()))
        assert not any("update" in verbs for verbs in ours.values())

    def test_no_rule_anywhere_has_a_wildcard_and_nothing_is_bound_to_a_broad_built_in_role(self, two_namespaces):
        rbac = [o for o in two_namespaces.objects if o["kind"] in RBAC_KINDS]
        assert len(rbac) >= 16
        for obj in rbac:
            for rule in obj.get("rules", []):
                assert wildcards(rule) == [], (obj["kind"], obj["metadata"]["name"], rule)
            if "roleRef" in obj:
                assert obj["roleRef"]["name"] not in BROAD_ROLES, obj["metadata"]["name"]

    def test_the_wildcard_check_would_catch_the_batch_schedulers_rule_which_stays_off(self):
        values = chart_values(parse_spark({"extraValues": {"controller": {"batchScheduler": {"enable": True}}}}))
        rendered = [r.obj for r in render(SPARK_ARCHIVE, values, "spark-operator", "spark-operator")]
        found = [w for o in rendered for rule in o.get("rules", []) for w in wildcards(rule)]
        assert "verbs: *" in found
        assert chart_values(parse_spark({}))["controller"]["batchScheduler"] == {"enable": False}

    def test_cluster_wide_grants_are_only_the_charts_two_on_cluster_scoped_objects(self, two_namespaces):
        cluster_roles = {o["metadata"]["name"]: o["rules"] for o in objects_of(two_namespaces, "ClusterRole")}
        webhook_configs = ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"]
        assert cluster_roles == {
            "spark-operator-controller": [
                {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["get"]}
            ],
            "spark-operator-webhook": [
                {
                    "apiGroups": ["admissionregistration.k8s.io"],
                    "resources": webhook_configs,
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["admissionregistration.k8s.io"],
                    "resources": webhook_configs,
                    "resourceNames": ["spark-operator-webhook"],
                    "verbs": ["get", "update"],
                },
            ],
        }
        bindings = objects_of(two_namespaces, "ClusterRoleBinding")
        assert {(b["roleRef"]["name"], b["subjects"][0]["namespace"]) for b in bindings} == {
            ("spark-operator-controller", "spark-operator"),
            ("spark-operator-webhook", "spark-operator"),
        }
        pulumi_declared = [s for s in two_namespaces.sources if s.kind == "resource"]
        assert not any(o["kind"].startswith("Cluster") for s in pulumi_declared for o in s.objects)

    def test_an_existing_job_namespace_must_be_declared_to_the_preview(self, tmp_path):
        result = previewed(tmp_path, spark_stack(TWO_JOB_NAMESPACES))
        found = [p.message for p in result.problems if p.rule == "namespace"]
        assert found and all("'analytics'" in m for m in found)
        assert not [p for p in result.problems if p.rule != "namespace"]

    def test_job_namespaces_enforce_baseline_and_the_operators_restricted_pod_security(self, default_preview):
        labels = {o["metadata"]["name"]: o["metadata"]["labels"] for o in objects_of(default_preview, "Namespace")}
        assert labels["spark-operator"]["pod-security.kubernetes.io/enforce"] == "restricted"
        assert labels["spark-jobs"]["pod-security.kubernetes.io/enforce"] == "baseline"
        assert labels["spark-jobs"]["pod-security.kubernetes.io/warn"] == "restricted"


# --------------------------------------------------------------------------- Airflow's accounts


def executor_cases() -> list[tuple[str, str]]:
    three = ["LocalExecutor", "CeleryExecutor", "KubernetesExecutor", "CeleryExecutor,KubernetesExecutor"]
    return [("3.2.0", e) for e in three] + [("2.11.0", "CeleryKubernetesExecutor")]


def task_accounts_in_rendered_chart(result: PreviewResult, executor: str) -> set[str]:
    """The accounts of the pods that run tasks, read from the rendered Airflow chart itself."""
    objects = by_ns_name([o for o in result.objects if o["kind"] in ("Deployment", "StatefulSet")])
    found = set()
    if "Local" in executor:
        found.add(objects[("airflow", "airflow-scheduler")]["spec"]["template"]["spec"]["serviceAccountName"])
    if "Celery" in executor:
        found.add(objects[("airflow", "airflow-worker")]["spec"]["template"]["spec"]["serviceAccountName"])
    if "Kubernetes" in executor:
        (pod,) = [p for s in result.sources if s.name.endswith(".pod-template") for p in s.objects]
        found.add(pod["spec"]["serviceAccountName"])
    return found


class TestAirflowSubjects:
    @pytest.mark.parametrize(("version", "executor"), executor_cases())
    def test_the_submitters_are_exactly_the_accounts_that_run_tasks_and_exist_in_the_chart(
        self, tmp_path, version, executor
    ):
        run = spark_stack(version=version, executor=executor)
        result = previewed(tmp_path, run)
        assert [p.message for p in result.problems] == []  # every subject and roleRef resolves
        (binding,) = [
            o
            for o in objects_of(result, "RoleBinding")
            if o["metadata"]["name"] == SUBMITTER_ROLE and o["metadata"]["namespace"] == "spark-jobs"
        ]
        subjects = {(s["namespace"], s["name"]) for s in binding["subjects"]}
        rendered_accounts = {
            (o["metadata"]["namespace"], o["metadata"]["name"])
            for s in result.sources
            if s.name == "airflow-release"
            for o in s.objects
            if o["kind"] == "ServiceAccount"
        }
        assert subjects <= rendered_accounts
        assert subjects == {("airflow", a) for a in task_accounts_in_rendered_chart(result, executor)}
        expected = 2 if executor.count("Executor") == 2 or executor == "CeleryKubernetesExecutor" else 1
        assert len(binding["subjects"]) == len(subjects) == expected
        assert run.outputs["sparkSubmitters"] == [f"airflow/{a}" for a in run.outputs["taskServiceAccounts"]]


# --------------------------------------------------------------------------- the connection


class TestConnection:
    def test_the_in_cluster_connection_and_the_variables_are_in_airflows_environment_secret(self):
        run = spark_stack({"jobNamespaces": ["etl", "ml"], "serviceAccounts": {"driver": "drv", "executor": "exe"}})
        secret = secrets_by_name(run)["airflow-pulumi-environment"]
        assert is_secret(secret.inputs["stringData"])  # the whole environment stays secret
        connections, variables = connections_files(run)
        assert connections["kubernetes_default"] == {"conn_type": "kubernetes", "extra": {"in_cluster": True}}
        assert {k: v for k, v in variables.items() if k.startswith("spark")} == {
            VARIABLE_JOB_NAMESPACE: "etl",
            VARIABLE_DRIVER_SERVICE_ACCOUNT: "drv",
            VARIABLE_EXECUTOR_SERVICE_ACCOUNT: "exe",
        }
        assert unwrap(secret.inputs)["metadata"]["namespace"] == "airflow"

    @pytest.mark.parametrize("executor", ["CeleryExecutor,KubernetesExecutor", "LocalExecutor"])
    def test_the_connection_reaches_every_airflow_pod_and_the_task_pod_template(self, executor):
        run = spark_stack(executor=executor)
        objects = render_release(airflow_release(run))
        reference = ("airflow-pulumi-environment", "connections.json")
        path = "/opt/airflow/secrets/connections.json"
        airflow_pods = [
            o
            for o in objects
            if o["kind"] in ("Deployment", "StatefulSet")
            and o["metadata"]["name"] not in ("airflow-statsd", "airflow-postgresql", "airflow-redis")
        ]
        assert {o["metadata"]["name"] for o in airflow_pods} >= {"airflow-scheduler", "airflow-api-server"}
        for obj in airflow_pods:
            spec = obj["spec"]["template"]["spec"]
            assert secret_file_sources(spec, spec["containers"][0]).get(path) == reference, obj["metadata"]
        if "Kubernetes" in executor:
            template = next(
                o["data"]["pod_template_file.yaml"] for o in objects if "pod_template_file.yaml" in o.get("data", {})
            )
            pod = next(d for d in yaml.safe_load_all(template) if d)
            assert secret_file_sources(pod["spec"], pod["spec"]["containers"][0]).get(path) == reference


# --------------------------------------------------------------------------- the example


_DELETE = object()


def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    return loaded


def crd_messages(obj: dict[str, Any]) -> list[str]:
    return [p.message for p in crd_problems([Item("dags/spark/spark-pi.yaml", obj)], crds_of(SPARK_ARCHIVE))]


def changed(tree: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(tree)
    node = out
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return out


@pytest.fixture
def dag_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Run dags/spark_pi.py with Airflow replaced by recorders (this virtualenv has no Airflow;
    tests_dags/ loads it with the real one). The platform's real k8s_conventions module is used."""
    captured: dict[str, Any] = {"tasks": []}

    class RecordingDag:
        def __init__(self, **kwargs: Any) -> None:
            captured["dag"] = kwargs

        def __enter__(self) -> RecordingDag:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    class RecordingSparkOperator:
        def __init__(self, **kwargs: Any) -> None:
            captured["tasks"].append(kwargs)

    def module(name: str, **attrs: Any) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, mod)
        return mod

    module("kubernetes")
    module("kubernetes.client", models=module("kubernetes.client.models"))
    module("pendulum", datetime=lambda *args, **kwargs: ("datetime", args, kwargs))
    module("airflow", DAG=RecordingDag)
    module("airflow.sdk", DAG=RecordingDag)
    for name in ("airflow.providers", "airflow.providers.cncf", "airflow.providers.cncf.kubernetes"):
        module(name)
    module("airflow.providers.cncf.kubernetes.operators")
    module(
        "airflow.providers.cncf.kubernetes.operators.spark_kubernetes", SparkKubernetesOperator=RecordingSparkOperator
    )
    before = sys.modules.pop("k8s_conventions", None)
    monkeypatch.syspath_prepend(str(ROOT / "dags"))
    try:
        runpy.run_path(str(DAG_FILE), run_name="spark_pi")
        yield captured
    finally:
        sys.modules.pop("k8s_conventions", None)
        if before is not None:
            sys.modules["k8s_conventions"] = before


def jinja_defaults(value: Any) -> Any:
    """Render `{{ var.value.get("name", "default") }}` as Airflow does when no Variable is set."""
    pattern = re.compile(r"\{\{ var\.value\.get\(\"([^\"]+)\", \"([^\"]*)\"\) \}\}")
    if isinstance(value, str):
        return pattern.sub(lambda m: m.group(2), value)
    if isinstance(value, dict):
        return {k: jinja_defaults(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jinja_defaults(v) for v in value]
    return value


BROKEN_MANIFESTS = [
    ("misspelt-field", "spec.executor.instance", 2, "unknown field 'spec.executor.instance'"),
    ("cores-as-string", "spec.driver.cores", "1", "field 'spec.driver.cores' must be integer"),
    ("unknown-type", "spec.type", "Kotlin", "field 'spec.type' must be one of"),
    ("no-spark-version", "spec.sparkVersion", _DELETE, "missing required field 'spec.sparkVersion'"),
    ("no-namespace", "metadata.namespace", _DELETE, "has no metadata.namespace"),
]


class TestExampleApplication:
    def test_the_manifest_is_valid_against_the_charts_sparkapplication_crd(self):
        app = manifest()
        assert (app["apiVersion"], app["kind"]) == ("sparkoperator.k8s.io/v1beta2", "SparkApplication")
        assert crd_messages(app) == []

    @pytest.mark.parametrize(
        ("path", "value", "fragment"), [c[1:] for c in BROKEN_MANIFESTS], ids=[c[0] for c in BROKEN_MANIFESTS]
    )
    def test_a_broken_variant_is_rejected_by_the_crd_schema(self, path, value, fragment):
        messages = crd_messages(changed(manifest(), path, value))
        assert messages and any(fragment in m for m in messages), messages

    def test_the_manifest_uses_the_stacks_default_namespace_and_accounts(self, stacks):
        app = manifest()
        dev = stacks["dev"].run.outputs
        assert app["metadata"]["namespace"] == dev["sparkJobNamespaces"][0] == DEFAULT_JOB_NAMESPACE
        assert app["spec"]["driver"]["serviceAccount"] == dev["sparkDriverServiceAccount"]
        assert app["spec"]["executor"]["serviceAccount"] == DEFAULT_EXECUTOR_SERVICE_ACCOUNT
        accounts = {
            (o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects_of(stacks["dev"], "ServiceAccount")
        }
        assert {("spark-jobs", "spark-driver"), ("spark-jobs", "spark-executor")} <= accounts

    def test_every_spark_container_is_restricted_by_its_security_context(self):
        for role in ("driver", "executor"):
            context = manifest()["spec"][role]["securityContext"]
            assert context["runAsNonRoot"] is True and context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}

    def test_the_dag_submits_the_manifest_in_cluster_with_namespace_and_accounts_from_variables(self, dag_run):
        assert dag_run["dag"]["dag_id"] == "spark_pi" and dag_run["dag"]["schedule"] is None
        (task,) = dag_run["tasks"]
        assert task["task_id"] == "spark_pi"
        assert task["kubernetes_conn_id"] == "kubernetes_default" and task["in_cluster"] is True
        assert task["namespace"] == '{{ var.value.get("spark_job_namespace", "spark-jobs") }}'
        spec = copy.deepcopy(task["template_spec"])
        assert spec["spec"]["driver"]["serviceAccount"] == (
            '{{ var.value.get("spark_driver_service_account", "spark-driver") }}'
        )
        assert spec["spec"]["executor"]["serviceAccount"] == (
            '{{ var.value.get("spark_executor_service_account", "spark-executor") }}'
        )
        assert "namespace" not in spec["metadata"]
        # Everything else is the manifest, unchanged.
        app = manifest()
        for role in ("driver", "executor"):
            del app["spec"][role]["serviceAccount"]
            del spec["spec"][role]["serviceAccount"]
        del app["metadata"]["namespace"]
        assert spec == app

    def test_the_dags_variable_names_and_defaults_are_the_stacks(self, dag_run):
        (task,) = dag_run["tasks"]
        text = json.dumps(task)
        for variable in (VARIABLE_JOB_NAMESPACE, VARIABLE_DRIVER_SERVICE_ACCOUNT, VARIABLE_EXECUTOR_SERVICE_ACCOUNT):
            assert f'\\"{variable}\\"' in text
        rendered = jinja_defaults(task)
        cfg = parse_spark({})
        assert rendered["namespace"] == cfg.default_job_namespace
        assert rendered["template_spec"]["spec"]["driver"]["serviceAccount"] == cfg.service_accounts.driver
        assert rendered["template_spec"]["spec"]["executor"]["serviceAccount"] == cfg.service_accounts.executor

    def test_the_application_the_dag_submits_is_valid_once_rendered(self, dag_run):
        (task,) = dag_run["tasks"]
        app = jinja_defaults(task["template_spec"])
        app["metadata"]["namespace"] = jinja_defaults(task["namespace"])  # what SparkKubernetesOperator sets
        assert crd_messages(app) == []


# --------------------------------------------------------------------------- the stacks


class TestStacks:
    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_the_stack_enables_spark_and_previews_with_zero_problems(self, stacks, stack):
        result = stacks[stack]
        assert [p.message for p in result.problems] == []
        outputs = result.run.outputs
        assert outputs["sparkJobNamespaces"] == ["spark-jobs"]
        assert outputs["sparkSubmitters"] == [f"airflow/{a}" for a in outputs["taskServiceAccounts"]]
        names = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in result.objects}
        assert {
            ("Namespace", "", "spark-operator"),
            ("Namespace", "", "spark-jobs"),
            ("Deployment", "spark-operator", "spark-operator-controller"),
            ("Deployment", "spark-operator", "spark-operator-webhook"),
            ("Role", "spark-jobs", SUBMITTER_ROLE),
            ("RoleBinding", "spark-jobs", SUBMITTER_ROLE),
            ("Role", "spark-jobs", "spark-driver"),
            ("ServiceAccount", "spark-jobs", "spark-executor"),
        } <= names

    def test_prod_runs_two_controllers_and_two_webhooks_with_budgets(self, stacks):
        deployments = by_ns_name(objects_of(stacks["prod"], "Deployment"))
        budgets = by_ns_name(objects_of(stacks["prod"], "PodDisruptionBudget"))
        for name in ("spark-operator-controller", "spark-operator-webhook"):
            assert deployments[("spark-operator", name)]["spec"]["replicas"] == 2
            assert budgets[("spark-operator", f"{name}-pdb")]["spec"]["minAvailable"] == 1

    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_every_operator_container_has_requests_and_a_memory_limit(self, stacks, stack):
        deployments = [
            o for o in objects_of(stacks[stack], "Deployment") if o["metadata"]["namespace"] == "spark-operator"
        ]
        assert len(deployments) == 2
        for obj in deployments:
            resources = obj["spec"]["template"]["spec"]["containers"][0]["resources"]
            assert set(resources["requests"]) == {"cpu", "memory"} and "memory" in resources["limits"]
