"""The node scenario's `enforce` part, offline: kube-router's leftovers are recognised (and only
its own chains go when the part ends, kube-proxy's stay), the part's stack is one the platform
accepts, its probe pods cannot be adopted or served, the Pod Security refusal it compares with is
the one the docs show, and the task pods' database credentials are told apart by where they are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.platform.config import parse_stack
from e2e.harness import ROOT
from e2e.node import cleanup, part_enforce, reach_matrix
from e2e.node.parts import Part, set_secrets
from tests.test_node import FOLDER
from tests.test_node_checks import CLEAN

KUBE_ROUTER_SAVE = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-ROUTER-FORWARD - [0:0]
:KUBE-NWPLCY-ABCDEF - [0:0]
:KUBE-POD-FW-123456 - [0:0]
-A FORWARD -m comment --comment "kube-router netpol" -j KUBE-ROUTER-FORWARD
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-ROUTER-FORWARD -d 10.88.0.7/32 -j KUBE-POD-FW-123456
-A KUBE-POD-FW-123456 -j KUBE-NWPLCY-ABCDEF
COMMIT
"""


class TestKubeRoutersLeftovers:
    def test_only_kube_routers_chains_go_when_the_part_ends(self):
        (plan,) = cleanup.firewall_plan(KUBE_ROUTER_SAVE, cleanup.KUBE_ROUTER_CHAINS)
        assert plan.chains == ["KUBE-ROUTER-FORWARD", "KUBE-NWPLCY-ABCDEF", "KUBE-POD-FW-123456"]
        assert plan.delete_rules == ['-D FORWARD -m comment --comment "kube-router netpol" -j KUBE-ROUTER-FORWARD']

    def test_the_nodes_sweep_takes_kube_routers_chains_with_the_rest(self):
        (plan,) = cleanup.firewall_plan(KUBE_ROUTER_SAVE)
        assert {"KUBE-ROUTER-FORWARD", "KUBE-FORWARD", "KUBE-POD-FW-123456"} <= set(plan.chains)

    def test_kube_routers_ipsets_are_leftovers_and_others_are_not(self):
        view = cleanup.MachineView(**{**CLEAN.__dict__, "ipsets": ["KUBE-DST-ABC", "kube-router-local-ips", "f2b"]})
        assert cleanup.leftovers(view, FOLDER) == ["ipset KUBE-DST-ABC", "ipset kube-router-local-ips"]

    def test_a_machine_without_ipsets_is_clean(self):
        assert cleanup.leftovers(CLEAN, FOLDER) == []


class TestThePartsStack:
    def test_the_dev_stack_with_the_parts_team_and_network_policies_parses(self):
        dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
        config = part_enforce.stack({k: v for k, v in dev.items() if k.startswith("airflow-k8s:")})
        assert config["airflow-k8s:airflow"]["networkPolicies"] == {"enabled": True}
        values = {k.split(":", 1)[1]: v for k, v in config.items()}
        values.update(part_enforce.stack_secrets())
        stack = parse_stack(values, frozenset(part_enforce.stack_secrets()))
        team, other = stack.teams
        assert (team.namespace, team.service_account, team.pod_security) == (
            part_enforce.TEAM_NAMESPACE,
            f"{part_enforce.TEAM}-tasks",
            "restricted",
        )
        assert team.secrets == (part_enforce.TEAM_SECRET,)
        # The second team, whose namespace the task is refused in: the first team's account is not there.
        assert other.namespace == part_enforce.OTHER_NAMESPACE and other.secrets == ()
        assert f"{other.namespace}/{team.service_account}" in part_enforce.REFUSED_ACCOUNT

    def test_the_part_runs_in_ci_before_the_comeback_and_the_git_switch(self):
        from e2e.node.scenario import PARTS, TRIAL_PARTS

        names = [p.name for p in PARTS]
        assert names.count("enforce") == 1 and "enforce" not in [p.name for p in TRIAL_PARTS]
        assert names.index("enforce") < names.index("comeback") < names.index("git") == len(names) - 1
        assert all(isinstance(p, Part) for p in (*PARTS, *TRIAL_PARTS))


class TestProbePods:
    OWNER = {"metadata": {"name": "enforce-probes", "uid": "u-1"}}

    def test_a_probe_has_the_labels_and_account_of_what_it_stands_for(self):
        pod = reach_matrix.probe_pod("p", "airflow", {"component": "scheduler"}, "airflow-scheduler", self.OWNER)
        assert pod["metadata"]["labels"]["component"] == "scheduler"
        assert pod["spec"]["serviceAccountName"] == "airflow-scheduler"

    def test_a_probe_is_owned_so_no_controller_adopts_it_and_never_ready_so_no_service_sends_it_traffic(self):
        pod = reach_matrix.probe_pod("p", "airflow", {}, None, self.OWNER)
        (owner,) = pod["metadata"]["ownerReferences"]
        assert owner["controller"] is True and owner["kind"] == "ConfigMap"
        assert pod["spec"]["containers"][0]["readinessProbe"]["exec"]["command"] == ["false"]

    def test_a_probe_is_admitted_at_restricted(self):
        pod = reach_matrix.probe_pod("p", "t", {}, None, self.OWNER)
        container = pod["spec"]["containers"][0]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}

    def test_controller_labels_are_not_copied(self):
        pod = {"metadata": {"labels": {"component": "scheduler", "pod-template-hash": "abc"}}}
        assert reach_matrix._source_labels(pod) == {"component": "scheduler"}


class TestThePromisedRefusal:
    def test_the_docs_show_the_api_servers_answer_from_violates_on(self):
        text = part_enforce.documented_refusal()
        assert text.startswith('violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false')
        assert "runAsNonRoot != true" in text and "\n" not in text

    def test_docs_without_the_answer_are_refused(self, tmp_path: Path):
        doc = tmp_path / "dags.md"
        doc.write_text("# nothing here\n")
        with pytest.raises(Exception, match="shows no Pod Security refusal"):
            part_enforce.documented_refusal(doc)


class TestDatabaseCredentials:
    SECRETS = {"airflow-pulumi-metadata", "airflow-pulumi-metadata-async"}

    def _pod(self, env: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> dict[str, Any]:
        return {"spec": {"containers": [{"name": "base", "env": env}], "volumes": volumes}}

    def test_a_connection_in_env_is_exposed(self):
        env: list[dict[str, Any]] = [
            {"name": "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "value": "postgresql://a:b@db/airflow"},
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "airflow-pulumi-metadata", "key": "connection"}}},
        ]
        exposed, files = part_enforce.database_credentials(self._pod(env, []), self.SECRETS)
        assert exposed == ["base: env AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "base: env X"]
        assert files == []

    def test_a_projected_metadata_secret_is_a_file_and_the_command_reading_it_carries_nothing(self):
        env = [{"name": "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD", "value": "cat /s/sql-alchemy-conn"}]
        volume = {"name": "s", "projected": {"sources": [{"secret": {"name": "airflow-pulumi-metadata"}}]}}
        exposed, files = part_enforce.database_credentials(self._pod(env, [volume]), self.SECRETS)
        assert exposed == []
        assert files == ["volume s: Secret airflow-pulumi-metadata"]

    def test_the_task_pods_stand_in_without_credentials_carries_none(self):
        from components.airflow.values.secret_files import TASK_POD_DATABASE

        env = [{"name": k, "value": v} for k, v in TASK_POD_DATABASE.items()]
        assert part_enforce.database_credentials(self._pod(env, []), self.SECRETS) == ([], [])

    def test_a_pod_without_them_has_none(self):
        assert part_enforce.database_credentials(self._pod([{"name": "A", "value": "1"}], []), self.SECRETS) == ([], [])


class FakePulumi:
    """`pulumi config set --secret KEY -- VALUE` as the CLI does it: the key encrypted in the stack file."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.calls: list[tuple[str, ...]] = []

    def run(self, *args: str) -> None:
        self.calls.append(args)
        assert "set-after-stack-init" not in self.file.read_text()  # the stand-in never meets pulumi
        doc = yaml.safe_load(self.file.read_text())
        doc["config"][f"airflow-k8s:{args[3]}"] = {"secure": "v1:ciphertext"}
        self.file.write_text(yaml.safe_dump(doc))


class FakeDeployment:
    def __init__(self, project: Path, config: dict[str, Any]) -> None:
        self.project, self.stack, self.config = project, "dev", config
        self.pulumi = FakePulumi(project / "Pulumi.dev.yaml")

    def write(self) -> None:
        (self.project / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": self.config}))


class TestSecretKeysOfParts:
    def test_a_parts_secret_is_set_encrypted_its_stand_in_never_reaches_pulumi_and_later_writes_keep_it(
        self, tmp_path: Path
    ):
        config = part_enforce.stack({"airflow-k8s:airflow": {}})
        d = FakeDeployment(tmp_path, config)
        d.write()
        assert set_secrets([part_enforce.PART], d) == ["teamSecrets"]  # type: ignore[arg-type]
        ((*command, value),) = d.pulumi.calls
        assert command == ["config", "set", "--secret", "teamSecrets", "--"]
        assert json.loads(value) == part_enforce.stack_secrets()["teamSecrets"]
        assert d.config["airflow-k8s:teamSecrets"] == {"secure": "v1:ciphertext"}
        d.write()
        assert "v1:ciphertext" in (tmp_path / "Pulumi.dev.yaml").read_text()

    def test_parts_without_secrets_set_nothing(self, tmp_path: Path):
        d = FakeDeployment(tmp_path, {})
        assert set_secrets([Part("x", lambda r: None)], d) == []  # type: ignore[arg-type]
        assert d.pulumi.calls == []


class TestTaskLogs:
    def test_every_field_of_a_log_entry_is_read_an_exceptions_detail_included(self):
        answer = {
            "content": [
                {"event": "Task failed with exception", "error_detail": [{"exc_value": 'pods is forbidden: User "x"'}]}
            ]
        }
        assert part_enforce._strings(answer) == ["Task failed with exception", 'pods is forbidden: User "x"']


class TestTheRefusalInATaskLog:
    """Found on the node: the operator lists the namespace's pods before it creates one, so the
    refusal in the task log may name `list`, not `create`."""

    def test_a_refused_list_or_create_of_pods_is_recognised(self):
        import re

        from e2e.node.part_enforce import REFUSED_PODS

        sa = 'User "system:serviceaccount:airflow:airflow-worker"'
        assert re.search(REFUSED_PODS, f'{sa} cannot list resource "pods" in API group "" in the namespace "default"')
        assert re.search(REFUSED_PODS, f'{sa} cannot create resource "pods" in API group ""')
        assert not re.search(REFUSED_PODS, f'{sa} cannot list resource "secrets"')

    def test_the_refusal_is_recognised_inside_the_kubernetes_clients_exception_text(self):
        """The task log holds the client's ApiException text, which shows the response body as a bytes
        literal: the quotes arrive escaped."""
        import re

        from e2e.node.part_enforce import REFUSED_PODS

        message = (
            'pods is forbidden: User \\"system:serviceaccount:airflow:airflow-worker\\" cannot list resource '
            '\\"pods\\" in API group \\"\\" in the namespace \\"default\\"'
        )
        body = ('{"kind":"Status","status":"Failure","message":"' + message + '","code":403}').encode()
        # kubernetes.client.exceptions.ApiException.__str__: the body (bytes) formatted with "{0}"
        text = f"(403)\nReason: Forbidden\nHTTP response headers: {{}}\nHTTP response body: {body!r}\n"
        assert '\\\\"pods\\\\"' in text  # the escaping the first regex missed
        assert re.search(REFUSED_PODS, text)
        assert not re.search(REFUSED_PODS, text.replace("pods", "secrets"))


class TestTheTeamSecretRead:
    def test_the_part_expects_exactly_what_the_team_dag_prints_of_the_token(self, capsys, monkeypatch):
        import ast

        from e2e.node.airflow_steps import NODE_DAGS

        source = (NODE_DAGS / "example_team_pod.py").read_text()
        [read] = [
            node.value
            for node in ast.parse(source).body
            if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == ["READ"]
        ]
        monkeypatch.setenv("TEAM_TOKEN", "s3cret-value")
        exec(ast.literal_eval(read), {})  # the pod's `python -c`
        printed = capsys.readouterr().out.strip()
        assert printed == part_enforce.secret_digest("s3cret-value")
        assert "s3cret-value" not in printed
