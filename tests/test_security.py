"""Access, team isolation and hardening: ingress, task namespaces, NetworkPolicies, pod security, checkov."""

from __future__ import annotations

import fnmatch
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import ConfigError
from components.offline import checks
from components.offline.policy import Finding
from components.offline.preview import PreviewResult, preview
from components.offline.program import secret_paths
from components.offline.reachability import Network, Peer, pods, selector_matches
from components.offline.render import find_chart, render
from components.platform.config import parse_stack
from tests.helpers import ROOT, of_type, project_copy, run_stack

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
CLUSTER = {"ingressClasses": ["nginx"], "storageClasses": ["standard"]}
INGRESS = {
    "enabled": True,
    "host": "airflow.example.com",
    "className": "nginx",
    "tls": {"issuer": "letsencrypt"},
    "auth": {
        "url": "https://auth.example.com/oauth2/auth",
        "signin": "https://auth.example.com/oauth2/start?rd=$escaped_request_uri",
        "responseHeaders": ["X-Auth-Request-User", "X-Auth-Request-Email"],
    },
}
TEAMS = [
    {
        "name": "analytics",
        "quota": {"cpu": "8", "memory": "16Gi", "pods": 40},
        "egress": [{"cidr": "10.20.0.0/16", "ports": [5432]}],
        "secrets": ["warehouse"],
    },
    {"name": "ml", "namespace": "ml-tasks", "allowExec": True},
]
TEAM_SECRETS = {"analytics": {"warehouse": {"password": "s3cret-warehouse"}}}
WILDCARD_FREE = ("airflow-release", "airflow-", "team-", "spark-")


def secured_run(**airflow: Any):
    config = {"executor": "CeleryExecutor,KubernetesExecutor", "dags": GIT, "flower": {"enabled": True}, **airflow}
    return run_stack(
        config,
        cluster=CLUSTER,
        extra={"teams": TEAMS},
        secrets={"teamSecrets": json.dumps(TEAM_SECRETS)},
    )


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> PreviewResult:
    out = tmp_path_factory.mktemp("secured")
    return preview(ROOT, "test", out, run_checkov=False, program_run=secured_run(ingress=INGRESS))


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> PreviewResult:
    return preview(ROOT, "prod", tmp_path_factory.mktemp("prod"), run_checkov=True)


def objects(result: PreviewResult, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
    return [
        o
        for o in result.objects
        if o["kind"] == kind and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


class TestIngress:
    def test_the_ui_ingress_carries_host_class_tls_and_external_auth(self, secured):
        assert secured.problems == []
        (ui,) = [o for o in objects(secured, "Ingress") if o["metadata"]["name"] == "airflow-ingress"]
        assert ui["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "airflow-api-server"
        notes = ui["metadata"]["annotations"]
        assert notes["cert-manager.io/cluster-issuer"] == "letsencrypt"
        assert notes["nginx.ingress.kubernetes.io/auth-url"] == "https://auth.example.com/oauth2/auth"
        assert notes["nginx.ingress.kubernetes.io/auth-signin"].startswith("https://auth.example.com/oauth2/start")
        assert notes["nginx.ingress.kubernetes.io/auth-response-headers"] == "X-Auth-Request-User,X-Auth-Request-Email"
        assert ui["spec"]["ingressClassName"] == "nginx"
        assert ui["spec"]["tls"] == [{"hosts": ["airflow.example.com"], "secretName": "airflow-ui-tls"}]
        assert ui["spec"]["rules"][0]["host"] == "airflow.example.com"

    def test_flower_gets_its_own_path_behind_the_same_protection(self, secured):
        (flower,) = [o for o in objects(secured, "Ingress") if "flower" in o["metadata"]["name"]]
        assert flower["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/flower"
        assert "nginx.ingress.kubernetes.io/auth-url" in flower["metadata"]["annotations"]

    def test_airflow_2_exposes_the_webserver(self, tmp_path):
        run = run_stack(
            {"version": "2.11.0", "dags": GIT, "ingress": {"enabled": True, "host": "af.example.com"}}, cluster=CLUSTER
        )
        result = preview(ROOT, "test", tmp_path, run_checkov=False, program_run=run)
        (ui,) = objects(result, "Ingress")
        assert ui["metadata"]["name"] == "airflow-ingress"
        backend = ui["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["name"] == "airflow-webserver"
        assert result.problems == []

    def test_an_existing_tls_secret_must_be_declared(self, tmp_path):
        ingress = {"enabled": True, "host": "af.example.com", "className": "nginx", "tls": {"secretName": "af-tls"}}
        run = run_stack({"dags": GIT, "ingress": ingress}, cluster=CLUSTER)
        result = preview(ROOT, "test", tmp_path, run_checkov=False, program_run=run)
        assert [p.message for p in result.problems if p.rule == "ingress"] == [
            "Ingress/airflow/airflow-ingress uses TLS Secret airflow/af-tls, which is not declared in the "
            "stack or in cluster.secrets (and no cert-manager issuer annotation would create it)"
        ]
        declared = run_stack({"dags": GIT, "ingress": ingress}, cluster={**CLUSTER, "secrets": ["airflow/af-tls"]})
        assert preview(ROOT, "test", tmp_path, run_checkov=False, program_run=declared).problems == []

    def test_no_ingress_by_default(self):
        assert not [r for r in of_type(run_stack({"dags": GIT}), "Ingress")]


class TestTaskNamespaces:
    def test_each_team_gets_an_isolated_namespace_with_quota_limits_and_its_own_account(self, secured):
        ns = {o["metadata"]["name"]: o for o in objects(secured, "Namespace")}
        for name in ("analytics-tasks", "ml-tasks"):
            labels = ns[name]["metadata"]["labels"]
            assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
            assert labels["airflow-k8s/tasks-for"] == "airflow"
            (sa,) = objects(secured, "ServiceAccount", name)
            assert sa["automountServiceAccountToken"] is False
            (quota,) = objects(secured, "ResourceQuota", name)
            (limits,) = objects(secured, "LimitRange", name)
            assert limits["spec"]["limits"][0]["default"] == {"cpu": "500m", "memory": "512Mi"}
        (quota,) = objects(secured, "ResourceQuota", "analytics-tasks")
        assert quota["spec"]["hard"] == {"requests.cpu": "8", "requests.memory": "16Gi", "pods": "40"}

    def test_the_launcher_role_grants_exactly_what_kubernetes_pod_operator_needs(self, secured):
        (analytics,) = objects(secured, "Role", "analytics-tasks")
        (ml,) = objects(secured, "Role", "ml-tasks")
        base = [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "delete", "patch"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
        ]
        assert analytics["rules"] == base
        assert ml["rules"] == [*base, {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]}]

    def test_the_launcher_is_bound_to_the_airflow_task_accounts_that_exist(self, secured):
        accounts = {o["metadata"]["name"] for o in objects(secured, "ServiceAccount", "airflow")}
        for ns in ("analytics-tasks", "ml-tasks"):
            (binding,) = objects(secured, "RoleBinding", ns)
            subjects = {(s["namespace"], s["name"]) for s in binding["subjects"]}
            assert subjects == {("airflow", "airflow-worker"), ("airflow", "airflow-worker-kubernetes")}
            assert {s[1] for s in subjects} <= accounts

    def test_a_teams_secrets_live_in_its_namespace_only_and_stay_secret(self, secured):
        located = [
            (o["metadata"]["namespace"], o["metadata"]["name"])
            for o in objects(secured, "Secret")
            if o["metadata"]["name"] == "warehouse"
        ]
        assert located == [("analytics-tasks", "warehouse")]
        (res,) = [r for r in secured.run.resources if r.name == "team-analytics-secret-warehouse"]
        assert secret_paths(res.inputs) == ["stringData"]
        assert "s3cret-warehouse" not in "".join(p.read_text() for p in secured.out_dir.rglob("*.yaml"))


def network_of(result: PreviewResult) -> tuple[Network, Callable[[str], Peer]]:
    """The stack's network, and a lookup of peers by pod name, EXTERNAL name or "team:<namespace>"
    (a task pod a team's KubernetesPodOperator would launch there)."""
    net = Network.of(result.objects, {"kube-system": {}, "ingress-nginx": {}, "elsewhere": {}, "monitoring": {}})
    known = {**{p.name.split("/")[-1]: p for p in pods(result.objects)}, **EXTERNAL}

    def peer(name: str) -> Peer:
        return Peer(name, name.split(":")[1], {"app": "etl"}) if name.startswith("team:") else known[name]

    return net, peer


EXTERNAL = {
    "ingress": Peer("ingress-nginx controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}),
    "prometheus": Peer("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}),
    "stranger": Peer("a pod of another app", "elsewhere", {"app": "other"}),
    "dns": Peer("kube-dns", "kube-system", {"k8s-app": "kube-dns"}),
    "internet": Peer("an internet host", ip="93.184.216.34"),
    "warehouse": Peer("the warehouse database", ip="10.20.1.5"),
}


class TestNetworkPolicies:
    def test_every_network_policy_selects_pods_it_is_meant_for(self, secured):
        templates = pods(secured.objects)
        for policy in objects(secured, "NetworkPolicy"):
            selector = policy["spec"]["podSelector"]
            ns = policy["metadata"]["namespace"]
            if not selector:
                continue  # the whole namespace, including pods launched later
            selected = [p.name for p in templates if p.namespace == ns and selector_matches(selector, p.labels)]
            assert selected, f"NetworkPolicy {ns}/{policy['metadata']['name']} selects no pod"

    @pytest.mark.parametrize(
        ("src", "dst", "port", "protocol"),
        [
            ("placeholder-name", "airflow-api-server", 8080, "TCP"),  # KubernetesExecutor task pod -> execution API
            ("airflow-worker", "airflow-api-server", 8080, "TCP"),  # Celery task -> execution API
            ("airflow-api-server", "airflow-worker", 8793, "TCP"),  # UI fetches live task logs
            ("airflow-api-server", "airflow-triggerer", 8794, "TCP"),
            ("airflow-scheduler", "airflow-redis", 6379, "TCP"),
            ("airflow-worker", "airflow-statsd", 9125, "UDP"),
            ("ingress", "airflow-api-server", 8080, "TCP"),
            ("ingress", "airflow-flower", 5555, "TCP"),
            ("team:analytics-tasks", "airflow-api-server", 8080, "TCP"),
            ("team:analytics-tasks", "dns", 53, "UDP"),
            ("team:analytics-tasks", "warehouse", 5432, "TCP"),
        ],
    )
    def test_the_flows_airflow_needs_are_allowed(self, secured, src, dst, port, protocol):
        net, peer = network_of(secured)
        assert net.explain(peer(src), peer(dst), port, protocol) is None

    @pytest.mark.parametrize(
        ("src", "dst", "port", "protocol"),
        [
            ("stranger", "airflow-api-server", 8080, "TCP"),
            ("stranger", "airflow-redis", 6379, "TCP"),
            ("stranger", "airflow-worker", 8793, "TCP"),
            ("team:analytics-tasks", "airflow-redis", 6379, "TCP"),
            ("team:analytics-tasks", "internet", 443, "TCP"),
            ("team:ml-tasks", "warehouse", 5432, "TCP"),
            ("stranger", "team:analytics-tasks", 8080, "TCP"),
        ],
    )
    def test_everything_else_is_denied(self, secured, src, dst, port, protocol):
        net, peer = network_of(secured)
        assert net.explain(peer(src), peer(dst), port, protocol) is not None

    def test_prometheus_may_scrape_statsd_when_monitoring_is_installed(self, prod):
        net, peer = network_of(prod)
        assert net.explain(peer("prometheus"), peer("airflow-statsd"), 9102) is None
        assert net.explain(peer("stranger"), peer("airflow-statsd"), 9102) is not None

    def test_the_charts_policies_alone_would_cut_airflow_3_off_from_its_api(self):
        """Why network_values and the log-serving policy exist: the chart's defaults deny these flows."""
        archive = find_chart(ROOT, "airflow", "1.21.0")
        rendered = [r.obj for r in render(archive, {"networkPolicies": {"enabled": True}}, "airflow", "airflow")]
        net, peers = Network.of(rendered), {p.name.split("/")[-1]: p for p in pods(rendered)}
        assert net.explain(peers["airflow-worker"], peers["airflow-api-server"], 8080) is not None
        assert net.explain(peers["airflow-api-server"], peers["airflow-worker"], 8793) is not None


class TestPodSecurity:
    @pytest.mark.parametrize("stack", ["secured", "prod"])
    def test_every_airflow_pod_runs_non_root_without_privileges(self, request, stack):
        result = request.getfixturevalue(stack)
        for obj in result.objects:
            if (
                obj["kind"] not in ("Deployment", "StatefulSet", "Job", "Pod")
                or obj["metadata"].get("namespace") != "airflow"
            ):
                continue
            spec = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
            pod_ctx = spec.get("securityContext") or {}
            name = obj["metadata"]["name"]
            assert pod_ctx.get("runAsNonRoot") is True or pod_ctx.get("runAsUser", 0) > 0, name
            assert (pod_ctx.get("seccompProfile") or {}).get("type") == "RuntimeDefault", name
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                ctx = container.get("securityContext") or {}
                assert ctx.get("allowPrivilegeEscalation") is False, (name, container["name"])
                assert ctx.get("capabilities", {}).get("drop") == ["ALL"], (name, container["name"])
                assert (ctx.get("runAsUser") or pod_ctx.get("runAsUser")) not in (None, 0), (name, container["name"])

    def test_airflow_containers_run_as_uid_50000(self, secured):
        for name in ("airflow-scheduler", "airflow-api-server", "airflow-worker", "airflow-dag-processor"):
            (obj,) = [
                o
                for o in secured.objects
                if o["metadata"]["name"] == name and o["kind"] in ("Deployment", "StatefulSet")
            ]
            assert obj["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 50000
        (pod,) = objects(secured, "Pod")
        assert pod["spec"]["securityContext"]["runAsUser"] == 50000

    def test_pods_that_never_call_the_kubernetes_api_get_no_token(self, prod):
        accounts = {o["metadata"]["name"]: o for o in objects(prod, "ServiceAccount", "airflow")}
        for name in (
            "dag-processor",
            "flower",
            "statsd",
            "redis",
            "pgbouncer",
            "create-user-job",
        ):
            assert accounts[f"airflow-{name}"]["automountServiceAccountToken"] is False, name
        (scheduler,) = [
            o for o in objects(prod, "Deployment", "airflow") if o["metadata"]["name"] == "airflow-scheduler"
        ]
        spec = scheduler["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert any(v["name"] == "kube-api-access" and "projected" in v for v in spec["volumes"])


class TestRbac:
    @pytest.mark.parametrize("stack", ["secured", "prod"])
    def test_no_binding_to_broad_built_in_roles_anywhere(self, request, stack):
        result = request.getfixturevalue(stack)
        for obj in result.objects:
            if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
                assert obj["roleRef"]["name"] not in ("cluster-admin", "admin", "edit"), obj["metadata"]["name"]

    @pytest.mark.parametrize("stack", ["secured", "prod"])
    def test_no_wildcard_grants_in_the_airflow_release_or_our_objects(self, request, stack):
        result = request.getfixturevalue(stack)
        for source in result.sources:
            if source.name.startswith("monitoring"):
                continue  # kube-prometheus-stack's operator role; see security/checkov-allowlist.yaml
            for obj in source.objects:
                for rule in obj.get("rules") or [] if obj["kind"] in ("Role", "ClusterRole") else []:
                    assert "*" not in rule.get("verbs", []) and "*" not in rule.get("resources", []), (
                        source.name,
                        obj["metadata"]["name"],
                    )

    @pytest.mark.parametrize("stack", ["secured", "prod"])
    def test_every_subject_and_role_exists(self, request, stack):
        result = request.getfixturevalue(stack)
        assert [p for p in result.problems if p.rule.startswith("rbac")] == []


def bad(airflow: dict[str, Any] | None = None, teams: Any = None) -> str:
    values: dict[str, Any] = {"airflow": json.dumps(airflow or {"dags": GIT})}
    if teams is not None:
        values["teams"] = json.dumps(teams)
    with pytest.raises(ConfigError) as err:
        parse_stack(values)
    return str(err.value)


class TestBadConfig:
    def test_tls_without_a_host(self):
        message = bad({"dags": GIT, "ingress": {"enabled": True, "tls": {"issuer": "letsencrypt"}}})
        assert "airflow.ingress.host" in message and "TLS needs a host" in message

    def test_an_auth_url_that_is_not_https(self):
        message = bad(
            {"dags": GIT, "ingress": {"enabled": True, "host": "a.example.com", "auth": {"url": "http://auth/x"}}}
        )
        assert "airflow.ingress.auth.url" in message and "'http://auth/x'" in message and "https://" in message

    def test_a_signin_page_that_is_not_https(self):
        auth = {"url": "https://auth.example.com/x", "signin": "auth.example.com/start"}
        assert "airflow.ingress.auth.signin" in bad(
            {"dags": GIT, "ingress": {"enabled": True, "host": "a.example.com", "auth": auth}}
        )

    def test_both_an_issuer_and_a_secret(self):
        tls = {"issuer": "le", "secretName": "tls"}
        assert "not both" in bad({"dags": GIT, "ingress": {"enabled": True, "host": "a.example.com", "tls": tls}})

    @pytest.mark.parametrize("namespace", ["kube-system", "default", "kube-public", "kube-anything"])
    def test_a_team_namespace_clashing_with_a_system_namespace(self, namespace):
        message = bad(teams=[{"name": "etl", "namespace": namespace}])
        assert "teams[0].namespace" in message and f"'{namespace}'" in message and "system namespace" in message

    def test_a_team_in_the_airflow_namespace(self):
        assert "platform already uses" in bad(teams=[{"name": "etl", "namespace": "airflow"}])

    def test_two_teams_in_one_namespace(self):
        message = bad(teams=[{"name": "a", "namespace": "shared"}, {"name": "b", "namespace": "shared"}])
        assert "teams[1].namespace" in message and "teams[0] already uses" in message

    def test_an_egress_rule_that_is_not_a_cidr(self):
        assert "expected a CIDR" in bad(teams=[{"name": "a", "egress": [{"cidr": "10.0.0.300/8"}]}])

    def test_a_team_secret_without_a_value(self):
        assert "teamSecrets" in bad(teams=[{"name": "a", "secrets": ["db"]}])


def findings(result: PreviewResult) -> list[Finding]:
    """Every failed check of a preview's scan: accepted (the allow-list, as checkov's baseline) and new."""
    assert result.policy is not None, "checkov did not run"
    return result.policy.accepted + result.policy.new


ALLOWLIST = yaml.safe_load((ROOT / "security" / "checkov-allowlist.yaml").read_text())["entries"]


@pytest.fixture(scope="module")
def dev_scanned(tmp_path_factory: pytest.TempPathFactory) -> PreviewResult:
    return preview(ROOT, "dev", tmp_path_factory.mktemp("dev"), run_checkov=True)


class TestCheckovGate:
    def test_every_allow_list_entry_says_why(self):
        for entry in ALLOWLIST:
            assert entry["check"].startswith(("CKV_", "CKV2_")) and entry["resources"]
            assert len(entry.get("reason", "").split()) >= 8, entry["check"]
            assert set(entry.get("stacks") or []) <= {"dev", "prod"}, entry["check"]

    @pytest.mark.parametrize("stack", ["prod", "dev_scanned"])
    def test_the_stack_has_no_new_checkov_finding(self, request, stack):
        result = request.getfixturevalue(stack)
        assert findings(result), "checkov found nothing: did it run?"
        assert [f"{f.check_id} {f.key}" for f in result.policy.new] == []
        assert [p for p in result.problems if p.rule == "checkov"] == []

    def test_a_new_finding_fails_the_preview_and_names_the_check(self, tmp_path):
        entries = [e for e in ALLOWLIST if e["check"] != "CKV_K8S_43"]  # drop one acceptance
        prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
        project = project_copy(tmp_path, {"prod": prod}, ("requirements-checkov.txt",))
        (project / "security").mkdir()
        (project / "security" / "checkov-allowlist.yaml").write_text(yaml.safe_dump({"entries": entries}))
        result = preview(project, "prod", tmp_path / "out", run_checkov=True)
        new = [p for p in result.problems if p.rule == "checkov"]
        assert new and all("CKV_K8S_43" in p.message for p in new)
        assert result.checkov["new"] == len(new) and result.checkov["accepted"] > 0

    def test_no_allow_list_entry_outlives_its_finding(self, prod, dev_scanned):
        stale = set(prod.policy.stale) & set(dev_scanned.policy.stale)
        unused = [
            f"{e['check']} {pattern}"
            for e in ALLOWLIST
            for pattern in e["resources"]
            if not any(
                e["check"] == f.check_id and fnmatch.fnmatch(f.key, pattern)
                for f in findings(prod) + findings(dev_scanned)
            )
        ]
        assert (sorted(stale), unused) == ([], [])
        assert prod.policy.stale == [] and dev_scanned.policy.stale == []

    def test_an_unchanged_stack_reuses_its_last_scan(self, prod, tmp_path):
        again = preview(ROOT, "prod", prod.out_dir.parent, run_checkov=True)
        assert again.checkov["cached"] is True
        assert again.checkov["accepted"] == prod.checkov["accepted"] and again.checkov["new"] == 0

    def test_the_airflow_release_fails_fewer_than_a_third_of_the_checks_the_charts_defaults_fail(self, prod):
        ours = [f for f in findings(prod) if f.source == "airflow-release"]
        with tempfile.TemporaryDirectory() as tmp:
            archive = find_chart(ROOT, "airflow", "1.21.0")
            defaults = [r.obj for r in render(archive, {}, "airflow", "airflow")]
            (Path(tmp) / "airflow-defaults.yaml").write_text(yaml.safe_dump_all(defaults))
            _, failed_default, _ = checks.run_checkov(Path(tmp), Path(tmp) / "report.json")
        print(f"checkov failed checks: chart defaults {failed_default}, our prod Airflow release {len(ours)}")
        assert failed_default >= 90
        assert 3 * len(ours) < failed_default
        # Secrets reach Airflow as files and its root filesystem is read-only: no Airflow
        # container is left with either finding (Redis and the PgBouncer exporter keep theirs; the
        # KEDA-scaled worker's spec names the database for KEDA, its process unsets it: test_keda.py).
        assert {f.resource for f in ours if f.check_id == "CKV_K8S_35"} == {
            "StatefulSet.airflow.airflow-redis",
            "Deployment.airflow.airflow-pgbouncer",
            "Deployment.airflow.airflow-worker",
        }
        assert [f.resource for f in ours if f.check_id == "CKV_K8S_22"] == []


def test_every_teams_and_ingress_key_is_documented_in_the_readme():
    import re

    from components.core.reader import Node
    from tests.test_readme import documented

    Node.asked.clear()
    teams = [
        {
            "name": "a",
            "quota": {"cpu": "1", "memory": "1Gi", "limitsCpu": "2", "limitsMemory": "2Gi", "pods": 5},
            "limits": {"default": {"cpu": "1"}, "defaultRequest": {"memory": "1Gi"}, "max": {"cpu": "2"}},
            "allowExec": True,
            "egress": [{"cidr": "10.0.0.0/8", "ports": [443], "except": ["10.1.0.0/16"]}],
            "secrets": ["db"],
        }
    ]
    airflow = {"dags": GIT, "flower": {"enabled": True}, "executor": "CeleryExecutor", "ingress": INGRESS}
    airflow["ingress"] = {
        **INGRESS,
        "annotations": {"a": "b"},
        "path": "/",
        "controllerNamespace": "nginx",
        "flower": {"host": INGRESS["host"], "path": "/f"},  # one TLS certificate: one host
    }
    parse_stack(
        {
            "airflow": json.dumps(airflow),
            "teams": json.dumps(teams),
            "teamSecrets": json.dumps({"a": {"db": {"k": "v"}}}),
        },
        {"teamSecrets"},
    )
    keys = {
        re.sub(r"\[\d+\]", "", k)
        for k in Node.asked
        if k.startswith(("teams", "airflow.ingress", "airflow.networkPolicies"))
    }
    assert len(keys) > 30
    assert sorted(k for k in keys if not documented(k)) == []
