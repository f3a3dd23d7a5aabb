"""The last settings hand-made setups need: task images, a team's Pod Security level, the hostPath
logs StorageClass, Spark's account names, and Airflow 3's git DAG bundle beside git-sync.

Each is validated with an error naming the key, rendered, and documented in the DOCS.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from components import ConfigError
from components.core.reader import Node
from components.offline.preview import preview
from components.offline.program import unwrap
from components.platform.config import parse_stack
from dagcheck import platform
from dagcheck.__main__ import main as dags_check
from tests.helpers import (
    KNOWN_HOSTS,
    ROOT,
    SSH_KEY,
    connections_files,
    docs_text,
    of_type,
    release,
    render_release,
    run_stack,
    secrets_by_name,
    values,
)
from tests.test_readme import documented

HOST_DAGS = {"mode": "hostPath", "hostPath": {"path": "/d"}}
LAPTOP = {"environment": "laptop", "storageClasses": ["standard"]}
HTTPS_BUNDLE: dict[str, Any] = {
    "mode": "gitBundle",
    "gitBundle": {"repo": "https://github.com/example/dags.git", "subdir": "dags"},
}
# A certificate's shape (the parser checks PEM framing, git reads the contents).
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUXh0Ai9rWq3YyQ2Ck7Z\n-----END CERTIFICATE-----\n"
SSH_BUNDLE: dict[str, Any] = {
    "mode": "gitBundle",
    "gitBundle": {"repo": "git@github.com:example/dags.git", "knownHosts": KNOWN_HOSTS, "trackingRef": "v1.2.0"},
}


def stack(**values: Any) -> Any:
    raw = {"airflow": {"dags": HOST_DAGS}, "cluster": LAPTOP, **values}
    return parse_stack({k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}, set())


def error_of(**values: Any) -> str:
    with pytest.raises(ConfigError) as info:
        stack(**values)
    return str(info.value)


class TestTaskImages:
    def test_images_reach_dags_as_the_variables_k8s_conventions_reads(self):
        images = {"python": "registry.example.com/mirror/python:3.13.7-slim-bookworm", "task": "team/task:1.0.0"}
        run = run_stack({"dags": HOST_DAGS}, cluster=LAPTOP, extra={"taskImages": images})
        _, variables = connections_files(run)
        assert variables["k8s_image_python"] == images["python"]
        assert variables["k8s_image_task"] == images["task"]

    def test_a_digest_pins_an_image(self):
        digest = "sha256:" + "a" * 64
        assert stack(taskImages={"task": f"registry.example.com/t@{digest}"}).task_images["task"].endswith(digest)

    @pytest.mark.parametrize(
        ("images", "fragments"),
        [
            ({"python": "python"}, ["taskImages.python", "'python'", "has no tag", "pinned by tag"]),
            ({"python": "python:latest"}, ["taskImages.python", "'python:latest'", "is ':latest'"]),
            ({"Python": "python:3.13"}, ["taskImages.Python", "lower-case letters", "python, no_python, task"]),
            ({"python": "not an image"}, ["taskImages.python", "is not an image reference"]),
            ({"python": 3}, ["taskImages.python", "expected a string"]),
        ],
    )
    def test_an_unpinned_or_bad_image_is_refused(self, images, fragments):
        message = error_of(taskImages=images)
        for fragment in fragments:
            assert fragment in message

    def test_setting_the_same_variable_in_variables_is_refused(self):
        message = error_of(taskImages={"python": "python:3.13"}, variables={"k8s_image_python": "x:1"})
        assert "variables.k8s_image_python" in message and "taskImages.python" in message


class TestTeamPodSecurity:
    TEAMS = [
        {"name": "analytics"},
        {"name": "vendor", "podSecurity": {"level": "baseline", "reason": "vendor image runs as root (OPS-12)"}},
    ]

    def test_restricted_by_default_baseline_with_its_reason_on_the_namespace(self):
        run = run_stack({"dags": HOST_DAGS}, cluster=LAPTOP, extra={"teams": self.TEAMS})
        metadata = [unwrap(r.inputs)["metadata"] for r in of_type(run, "core/v1:Namespace")]
        namespaces = {m["name"]: m for m in metadata}
        analytics, vendor = namespaces["analytics-tasks"], namespaces["vendor-tasks"]
        assert analytics["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        assert "annotations" not in analytics
        assert vendor["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
        # What `restricted` would refuse is still warned about and audited.
        assert vendor["labels"]["pod-security.kubernetes.io/warn"] == "restricted"
        assert vendor["labels"]["pod-security.kubernetes.io/audit"] == "restricted"
        assert vendor["annotations"] == {"airflow-k8s/pod-security-reason": "vendor image runs as root (OPS-12)"}

    @pytest.mark.parametrize(
        ("pod_security", "fragments"),
        [
            ({"level": "baseline"}, ["teams[0].podSecurity.reason", "needs a stated reason", "runs as root"]),
            ({"level": "baseline", "reason": "  "}, ["teams[0].podSecurity.reason", "needs a stated reason"]),
            ({"level": "privileged", "reason": "x"}, ["teams[0].podSecurity.level", "'privileged'", "baseline"]),
            ({"reason": "why"}, ["teams[0].podSecurity.reason", "only taken for level 'baseline'"]),
            ({"levle": "baseline"}, ["teams[0].podSecurity.levle"]),
        ],
    )
    def test_bad_levels_and_missing_reasons_are_refused(self, pod_security, fragments):
        message = error_of(teams=[{"name": "a", "podSecurity": pod_security}])
        for fragment in fragments:
            assert fragment in message


class TestLogsStorageClass:
    LOGS: dict[str, Any] = {"mode": "hostPath", "hostPath": {"path": "/data/airflow-logs"}}

    def test_a_class_the_cluster_has_is_adopted_not_declared(self, tmp_path):
        logs = {**self.LOGS, "hostPath": {**self.LOGS["hostPath"], "storageClass": "local-storage"}}
        cluster = {**LAPTOP, "storageClasses": ["standard", "local-storage"]}
        run = run_stack({"dags": HOST_DAGS}, cluster=cluster, extra={"logs": logs})
        assert of_type(run, "storage.k8s.io/v1:StorageClass") == []
        (pv,) = [r for r in of_type(run, "core/v1:PersistentVolume") if "logs" in r.name]
        (pvc,) = [r for r in of_type(run, "core/v1:PersistentVolumeClaim") if "logs" in r.name]
        assert unwrap(pv.inputs)["spec"]["storageClassName"] == "local-storage"
        assert unwrap(pvc.inputs)["spec"]["storageClassName"] == "local-storage"
        assert preview(ROOT, "test", tmp_path, run_checkov=False, program_run=run).problems == []

    def test_a_named_class_the_cluster_lacks_is_declared_under_that_name(self):
        logs = {**self.LOGS, "hostPath": {**self.LOGS["hostPath"], "storageClass": "manual"}}
        run = run_stack({"dags": HOST_DAGS}, cluster=LAPTOP, extra={"logs": logs})
        (sc,) = of_type(run, "storage.k8s.io/v1:StorageClass")
        assert unwrap(sc.inputs)["metadata"]["name"] == "manual"
        assert sc.name == "airflow-logs-storage-class"  # the same resource: only its class name is chosen

    def test_unset_keeps_the_class_of_each_namespace_and_release(self):
        (sc,) = of_type(run_stack({"dags": HOST_DAGS}, cluster=LAPTOP, extra={"logs": self.LOGS}), "v1:StorageClass")
        assert unwrap(sc.inputs)["metadata"]["name"] == "airflow-airflow-logs-local"

    def test_a_bad_class_name_is_refused(self):
        message = error_of(logs={**self.LOGS, "hostPath": {**self.LOGS["hostPath"], "storageClass": "Local_Storage"}})
        assert "logs.hostPath.storageClass" in message and "'Local_Storage'" in message


class TestSparkAccounts:
    SPARK = {"serviceAccounts": {"driver": "etl-spark-driver", "executor": "etl-spark-executor"}}

    def test_dags_that_read_the_variables_follow_renamed_accounts(self, tmp_path, capsys):
        stack_file = _stack_file(tmp_path, spark=self.SPARK)
        assert dags_check([str(ROOT / "dags"), "--stack", "t", "--stack-file", str(stack_file)]) == 0
        assert "0 error(s), 0 warning(s), 0 note(s)" in capsys.readouterr().out

    def test_dags_that_name_the_default_accounts_are_flagged(self, tmp_path, capsys):
        stack_file = _stack_file(tmp_path, spark=self.SPARK)
        fixed = ROOT / "tests_dags" / "tutorial" / "fixed"
        assert dags_check([str(fixed), "--stack", "t", "--stack-file", str(stack_file)]) == 1
        out = capsys.readouterr().out
        assert "spec.driver.serviceAccount is 'spark-driver': the stack grants Spark drivers 'etl-spark-driver'" in out
        assert "spec.executor.serviceAccount is 'spark-executor'" in out

    def test_the_variables_carry_the_names(self):
        variables = platform.delivered_variables(stack(spark=self.SPARK))
        assert variables["spark_driver_service_account"] == "etl-spark-driver"


def _stack_file(tmp_path: Path, **config: Any) -> Path:
    lines = ["config:", "  airflow-k8s:airflow: " + json.dumps({"dags": HOST_DAGS})]
    lines += [f"  airflow-k8s:cluster: {json.dumps(LAPTOP)}"]
    lines += [f"  airflow-k8s:{k}: {json.dumps(v)}" for k, v in config.items()]
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class TestGitBundle:
    def test_a_token_bundle_is_the_dag_processors_bundle_with_its_connection_as_a_file(self):
        run = run_stack({"dags": HTTPS_BUNDLE}, cluster=LAPTOP, secrets={"gitToken": "s3cr3t-token"})
        [bundle] = values(run)["dagProcessor"]["dagBundleConfigList"]
        assert bundle == {
            "name": "dags",
            "classpath": "airflow.providers.git.bundles.git.GitDagBundle",
            "kwargs": {"git_conn_id": "dags_git", "tracking_ref": "main", "refresh_interval": 60, "subdir": "dags"},
        }
        assert values(run)["dags"]["gitSync"] == {"enabled": False}
        connections, _ = connections_files(run)
        assert connections["dags_git"] == {
            "conn_type": "git",
            "host": "https://github.com/example/dags.git",
            "login": "git",
            "password": "s3cr3t-token",
        }
        assert "s3cr3t-token" not in json.dumps(values(run))  # never in the Helm values
        config = {o["metadata"]["name"]: o for o in render_release(release(run)) if o["kind"] == "ConfigMap"}
        rendered = config["airflow-config"]["data"]["airflow.cfg"]
        assert '"classpath":"airflow.providers.git.bundles.git.GitDagBundle"' in rendered

    def test_an_ssh_bundle_checks_host_keys_from_a_file_beside_its_connection(self):
        run = run_stack({"dags": SSH_BUNDLE}, cluster=LAPTOP, secrets={"gitSshKey": SSH_KEY})
        connections, _ = connections_files(run)
        assert connections["dags_git"]["extra"] == {
            "private_key": SSH_KEY,
            "known_hosts_file": "/opt/airflow/secrets/git-known-hosts",
            "strict_host_key_checking": "yes",
        }
        data = unwrap(secrets_by_name(run)["airflow-pulumi-environment"].inputs)["stringData"]
        assert data["git-known-hosts"] == KNOWN_HOSTS + "\n"
        objects = render_release(release(run))
        processor = next(
            o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("processor")
        )
        volumes = {v["name"]: v for v in processor["spec"]["template"]["spec"]["volumes"]}
        paths = [
            i["path"] for s in volumes["airflow-k8s-secrets"]["projected"]["sources"] for i in s["secret"]["items"]
        ]
        assert "git-known-hosts" in paths and "connections.json" in paths

    def test_a_private_cas_certificate_is_a_file_git_is_pointed_at_in_every_airflow_pod_and_task_pod(self):
        dags = {**HTTPS_BUNDLE, "gitBundle": {**HTTPS_BUNDLE["gitBundle"], "caCertificate": CA_PEM}}
        run = run_stack({"dags": dags}, cluster=LAPTOP, secrets={"gitToken": "t"})
        data = unwrap(secrets_by_name(run)["airflow-pulumi-environment"].inputs)["stringData"]
        assert data["git-ca.crt"] == CA_PEM.strip() + "\n"
        objects = render_release(release(run))
        processor = next(
            o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("processor")
        )
        pod = processor["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        paths = [
            i["path"] for s in volumes["airflow-k8s-secrets"]["projected"]["sources"] for i in s["secret"]["items"]
        ]
        assert "git-ca.crt" in paths
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["GIT_SSL_CAINFO"] == "/opt/airflow/secrets/git-ca.crt"
        template = next(
            o for o in objects if o["kind"] == "ConfigMap" and "pod_template_file.yaml" in o.get("data", {})
        )
        assert "GIT_SSL_CAINFO" in template["data"]["pod_template_file.yaml"]  # task pods fetch the bundle too

    def test_without_a_ca_git_keeps_the_systems_certificate_authorities(self):
        run = run_stack({"dags": HTTPS_BUNDLE}, cluster=LAPTOP, secrets={"gitToken": "t"})
        assert "GIT_SSL_CAINFO" not in json.dumps(values(run))
        data = unwrap(secrets_by_name(run)["airflow-pulumi-environment"].inputs)["stringData"]
        assert "git-ca.crt" not in data

    @pytest.mark.parametrize(
        ("dags", "secrets"),
        [(HTTPS_BUNDLE, {"gitToken": "t"}), (SSH_BUNDLE, {"gitSshKey": SSH_KEY})],
        ids=["token", "ssh"],
    )
    def test_the_offline_preview_of_a_bundle_stack_finds_no_problem(self, tmp_path, dags, secrets):
        run = run_stack(
            {"dags": dags, "executor": "CeleryExecutor,KubernetesExecutor"}, cluster=LAPTOP, secrets=secrets
        )
        assert preview(ROOT, "test", tmp_path, run_checkov=False, program_run=run).problems == []

    @pytest.mark.parametrize(
        ("airflow", "secrets", "fragments"),
        [
            ({"version": "2.11.0", "dags": HTTPS_BUNDLE}, {}, ["airflow.dags.mode", "Airflow 3 feature", "gitSync"]),
            (
                {"dags": {**SSH_BUNDLE, "gitBundle": {"repo": "git@github.com:example/dags.git"}}},
                {"gitSshKey": SSH_KEY},
                ["airflow.dags.gitBundle.knownHosts", "SSH git bundle needs the server's host keys"],
            ),
            ({"dags": HTTPS_BUNDLE}, {"gitSshKey": SSH_KEY}, ["gitSshKey", "git-sync or a git bundle over SSH"]),
            (
                {"dags": {"mode": "gitBundle", "gitBundle": {"repo": "https://h/x.git", "auth": "token"}}},
                {},
                ["airflow.dags.gitBundle.auth", "needs the secret config key 'gitToken'"],
            ),
            (
                {"dags": {**HTTPS_BUNDLE, "gitBundle": {**HTTPS_BUNDLE["gitBundle"], "subdir": "../etc"}}},
                {},
                ["airflow.dags.gitBundle.subdir", "inside the repository"],
            ),
            (
                {"dags": {**HTTPS_BUNDLE, "gitBundle": {**HTTPS_BUNDLE["gitBundle"], "refreshInterval": 1}}},
                {},
                ["airflow.dags.gitBundle.refreshInterval"],
            ),
            ({"dags": {**HTTPS_BUNDLE, "gitSync": {"repo": "https://h/x.git"}}}, {}, ["airflow.dags.gitSync"]),
            (
                {"dags": {**SSH_BUNDLE, "gitBundle": {**SSH_BUNDLE["gitBundle"], "caCertificate": CA_PEM}}},
                {"gitSshKey": SSH_KEY},
                ["airflow.dags.gitBundle.caCertificate", "only used with an https:// repository", "knownHosts"],
            ),
            (
                {"dags": {**HTTPS_BUNDLE, "gitBundle": {**HTTPS_BUNDLE["gitBundle"], "caCertificate": "ca.crt"}}},
                {},
                ["airflow.dags.gitBundle.caCertificate", "'ca.crt ...'", "expected one or more PEM certificates"],
            ),
        ],
    )
    def test_bad_bundles_are_refused_naming_the_key(self, airflow, secrets, fragments):
        raw = {"airflow": json.dumps(airflow), "cluster": json.dumps(LAPTOP), **secrets}
        with pytest.raises(ConfigError) as info:
            parse_stack(raw, set(secrets))
        for fragment in fragments:
            assert fragment in str(info.value)
        assert SSH_KEY.splitlines()[1] not in str(info.value)  # a pasted key is never echoed

    def test_a_declared_connection_with_the_bundles_id_is_refused(self):
        raw = {
            "airflow": json.dumps({"dags": HTTPS_BUNDLE}),
            "cluster": json.dumps(LAPTOP),
            "connections": json.dumps({"dags_git": "git://x"}),
        }
        with pytest.raises(ConfigError, match=r"connections\.dags_git.*airflow\.dags\.gitBundle\.connectionId"):
            parse_stack(raw, {"connections"})


def test_every_new_key_is_documented_in_the_readme():
    Node.asked.clear()
    teams = [{"name": "v", "podSecurity": {"level": "baseline", "reason": "root image"}}]
    logs = {"mode": "hostPath", "hostPath": {"path": "/l", "storageClass": "manual"}}
    stack(teams=teams, logs=logs, taskImages={"python": "python:3.13"})
    bundle = {
        "mode": "gitBundle",
        "gitBundle": {
            **SSH_BUNDLE["gitBundle"],
            "name": "b",
            "subdir": "d",
            "refreshInterval": 30,
            "username": "git",
            "connectionId": "c",
            "auth": "ssh",
        },
    }
    https = {"mode": "gitBundle", "gitBundle": {**HTTPS_BUNDLE["gitBundle"], "caCertificate": CA_PEM}}
    parse_stack({"airflow": json.dumps({"dags": https}), "cluster": json.dumps(LAPTOP)}, set())
    parse_stack(
        {"airflow": json.dumps({"dags": bundle}), "cluster": json.dumps(LAPTOP), "gitSshKey": SSH_KEY}, {"gitSshKey"}
    )
    keys = {k.split("[")[0] + k[k.index("]") + 1 :] if "[" in k else k for k in Node.asked}
    wanted = sorted(
        k for k in keys if k.startswith(("teams.podSecurity", "logs.hostPath", "taskImages", "airflow.dags.gitBundle"))
    )
    assert len(wanted) >= 14
    assert [k for k in wanted if not documented(k)] == []
    assert "`taskImages.<role>`" in docs_text()


class TestMigrationGuide:
    GUIDE = ROOT / "docs" / "migration.md"
    DOCS = docs_text()

    def test_the_readme_links_the_guide(self):
        assert "(docs/migration.md)" in self.DOCS

    def test_every_stack_key_the_guide_names_is_in_the_config_reference(self):
        text = self.GUIDE.read_text()
        table = text[text.index("## 2.") : text.index("## 3.")]
        # The right-hand column: the stack keys that replace each chart value.
        right = " ".join(line.rsplit("|", 2)[1] for line in table.splitlines() if line.startswith("| "))
        named = set(re.findall(r"`((?:airflow|logs|teams|spark|cluster|taskImages)\.[A-Za-z0-9_.<>]+)`", right))
        assert len(named) > 20
        reference = set(re.findall(r"^\| `([^`]+)`", self.DOCS, flags=re.MULTILINE))
        unknown = sorted(k for k in named if not any(r == k or r.startswith(k + ".") for r in reference))
        unknown = [k for k in unknown if not (k.startswith("airflow.") and documented(k))]
        assert unknown == []

    def test_it_starts_with_dags_check_and_covers_the_keys_to_adopt(self):
        text = self.GUIDE.read_text()
        assert text.index("./run.sh dags-check") < text.index("## 2.")
        for needle in ("previousFernetKeys", "databaseUrl", "logs.hostPath.storageClass", "kubectl apply"):
            assert needle in text
