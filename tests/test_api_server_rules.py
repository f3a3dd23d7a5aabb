"""What the Kubernetes API server (and the tools behind it) would refuse, refused offline at the edge.

Each class is one rule (components/core/names.py, cron.py, git_refs.py, durations.py and the
parsers that call them): its failing cases name the key, show the bad value and say what is
allowed; its fixed twins load clean.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from components.core.reader import ConfigError
from components.platform.config import parse_stack
from tests.helpers import KNOWN_HOSTS, ROOT, SSH_KEY

CORPUS = ROOT / "tests" / "bad_configs"

REPO = "https://github.com/example/dags.git"
GIT: dict[str, Any] = {"mode": "gitSync", "gitSync": {"repo": REPO}}
AIRFLOW: dict[str, Any] = {"dags": GIT}


def parse(
    extra: dict[str, Any] | None = None, airflow: dict[str, Any] | None = None, secrets: dict[str, str] | None = None
):
    values: dict[str, Any] = {"airflow": json.dumps(airflow if airflow is not None else AIRFLOW)}
    for key, value in (extra or {}).items():
        values[key] = value if isinstance(value, str) else json.dumps(value)
    values.update(secrets or {})
    return parse_stack(values, set(secrets or {}))


def refused(key: str, *fragments: str, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as err:
        parse(**kwargs)
    message = str(err.value)
    assert err.value.key == key, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def with_airflow(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(AIRFLOW)
    out.update(changes)
    return out


def git(**changes: Any) -> dict[str, Any]:
    return with_airflow(dags={"mode": "gitSync", "gitSync": {"repo": REPO, **changes}})


def task_pods(**settings: Any) -> dict[str, Any]:
    return with_airflow(taskPods=settings)


class TestCronSchedules:
    BAD = [
        ("day-of-week-7", "0 3 * * 7", "end of range (7) above maximum (6)"),
        ("arabic-indic-digit", "\u0663 2 * * *", "is not a number"),
        ("february-30", "0 0 30 2 *", "never fires"),
        ("april-and-june-31", "0 0 31 4,6 *", "never fires"),
        ("time-zone-inside", "CRON_TZ=UTC 0 3 * * *", "TZ="),
        ("six-fields", "0 0 3 * * *", "found 6 fields"),
        ("step-zero", "*/0 * * * *", "step of range should be a positive number"),
        ("month-name-typo", "0 3 * jab *", "'jab' is not a number"),
        ("every-without-unit", "@every 5", "unknown descriptor"),
    ]
    GOOD = [
        "0 0 29 2 *",
        "0 0 31 4,6 1",
        "*/15 * * * MON-FRI",
        "0 0 1 jan,jul *",
        "@every 6h",
        "@weekly",
        "5/10 * * * *",
    ]

    @pytest.mark.parametrize(("name", "schedule", "fragment"), BAD, ids=[b[0] for b in BAD])
    def test_a_schedule_the_api_server_refuses_or_that_never_fires_is_refused(self, name, schedule, fragment):
        message = refused(
            "maintenance.backup.schedule",
            fragment,
            repr(schedule),
            extra={"maintenance": {"backup": {"schedule": schedule}}},
        )
        assert "five fields" in message or "never fires" in message or "TZ" in message

    @pytest.mark.parametrize("schedule", GOOD)
    def test_its_fixed_twins_load_clean(self, schedule):
        assert parse({"maintenance": {"cleanup": {"schedule": schedule}}}).maintenance.cleanup.schedule == schedule


class TestTolerations:
    def test_a_toleration_without_a_key_and_operator_equal_is_refused(self):
        refused(
            "airflow.taskPods.tolerations[0].operator",
            "operator Exists",
            airflow=task_pods(tolerations=[{"operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]),
        )

    def test_a_toleration_key_or_value_that_is_not_a_name_is_refused(self):
        refused(
            "airflow.taskPods.tolerations[0].key",
            "'gpu nodes'",
            "toleration key",
            airflow=task_pods(tolerations=[{"key": "gpu nodes", "operator": "Exists"}]),
        )
        refused(
            "airflow.taskPods.tolerations[0].value",
            "at most 63",
            airflow=task_pods(tolerations=[{"key": "gpu", "value": "yes please", "effect": "NoSchedule"}]),
        )

    def test_its_fixed_twins_load_clean(self):
        stack = parse(
            airflow=task_pods(
                tolerations=[
                    {"operator": "Exists", "effect": "NoSchedule"},
                    {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
                ]
            )
        )
        assert len(stack.airflow.task_pods.tolerations) == 2


class TestLabelsAndAnnotations:
    def test_a_node_selector_key_or_value_that_is_not_a_name_is_refused(self):
        refused(
            "airflow.taskPods.nodeSelector.disk type", "label key", airflow=task_pods(nodeSelector={"disk type": "ssd"})
        )
        refused(
            "airflow.taskPods.nodeSelector.pool",
            "label value",
            "at most 63",
            airflow=task_pods(nodeSelector={"pool": "x" * 64}),
        )
        refused(
            "airflow.taskPods.nodeSelector.a/b/c",
            "label key",
            airflow=task_pods(nodeSelector={"a/b/c": "x"}),
        )

    def test_an_ingress_annotation_key_that_is_not_a_name_is_refused(self):
        ingress = {"enabled": True, "host": "airflow.example.com", "annotations": {"nginx/ingress proxy": "1"}}
        refused(
            "airflow.ingress.annotations.nginx/ingress proxy", "annotation key", airflow=with_airflow(ingress=ingress)
        )

    def test_annotations_over_256_kib_are_refused(self):
        ingress = {"enabled": True, "host": "airflow.example.com", "annotations": {"note": "x" * (256 * 1024)}}
        refused("airflow.ingress.annotations", "256 KiB", airflow=with_airflow(ingress=ingress))

    def test_an_identity_label_value_that_is_not_a_name_is_refused(self):
        identity = {
            "provider": "azure",
            "default": "11111111-2222-3333-4444-555555555555",
            "labels": {"team": "data team"},
        }
        refused("identity.labels.team", "label value", extra={"identity": identity})

    def test_a_name_with_a_trailing_newline_is_refused(self):
        refused("airflow.namespace", "'airflow\\n'", "DNS-1123", airflow=with_airflow(namespace="airflow\n"))

    def test_their_fixed_twins_load_clean(self):
        ingress = {
            "enabled": True,
            "host": "airflow.example.com",
            "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"},
        }
        airflow = with_airflow(
            taskPods={"nodeSelector": {"node.kubernetes.io/instance-type": "m5.large", "spot": True}}, ingress=ingress
        )
        stack = parse(airflow=airflow)
        assert stack.airflow.task_pods.node_selector == {"node.kubernetes.io/instance-type": "m5.large", "spot": "true"}


class TestLimitRanges:
    def test_a_default_request_above_the_default_limit_is_refused(self):
        teams = [{"name": "data", "limits": {"default": {"cpu": "200m"}, "defaultRequest": {"cpu": "1"}}}]
        refused("teams[0].limits.default.cpu", "refuses this LimitRange", "'200m'", extra={"teams": teams})

    def test_a_max_below_the_default_limit_we_apply_is_refused_saying_so(self):
        teams = [{"name": "data", "limits": {"max": {"memory": "256Mi"}}}]
        refused(
            "teams[0].limits.max.memory",
            "512Mi (applied when teams[0].limits.default is unset)",
            "'256Mi'",
            extra={"teams": teams},
        )

    def test_its_fixed_twins_load_clean(self):
        teams = [
            {"name": "data", "limits": {"max": {"memory": "256Mi"}, "default": {"memory": "256Mi"}}},
            {"name": "ml", "limits": {"default": {"cpu": "2"}, "defaultRequest": {"cpu": "1"}}},
        ]
        assert len(parse({"teams": teams}).teams) == 2


class TestMounts:
    def test_two_mounts_at_one_path_are_refused(self):
        pods = {
            "extraVolumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}],
            "extraVolumeMounts": [{"name": "a", "mountPath": "/data"}, {"name": "b", "mountPath": "/data"}],
        }
        refused(
            "airflow.taskPods.extraVolumeMounts[1].mountPath",
            "extraVolumeMounts[0]",
            "'/data'",
            airflow=task_pods(**pods),
        )

    def test_a_mount_where_the_dags_already_are_is_refused(self):
        pods = {
            "extraVolumes": [{"name": "a", "emptyDir": {}}],
            "extraVolumeMounts": [{"name": "a", "mountPath": "/opt/airflow/dags"}],
        }
        refused("airflow.taskPods.extraVolumeMounts[0].mountPath", "already mount the DAGs", airflow=task_pods(**pods))

    def test_its_fixed_twin_loads_clean(self):
        pods = {
            "extraVolumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}],
            "extraVolumeMounts": [{"name": "a", "mountPath": "/data/a"}, {"name": "b", "mountPath": "/data/b"}],
        }
        assert len(parse(airflow=task_pods(**pods)).airflow.task_pods.extra_volume_mounts) == 2


class TestSecretSizes:
    def test_variables_over_one_mib_are_refused_naming_the_largest_without_its_value(self):
        message = refused(
            "variables.big",
            "over 1 MiB",
            "largest entry",
            extra={"variables": {"big": "x" * (1024 * 1024), "small": "y"}},
        )
        assert "xxxx" not in message

    def test_a_team_secret_over_one_mib_is_refused(self):
        teams = [{"name": "data", "secrets": ["blob"]}]
        secret = json.dumps({"data": {"blob": {"file": "x" * (1024 * 1024 + 1)}}})
        refused("teamSecrets.data.blob", "1 MiB", extra={"teams": teams}, secrets={"teamSecrets": secret})

    def test_their_fixed_twins_load_clean(self):
        teams = [{"name": "data", "secrets": ["blob"]}]
        secret = json.dumps({"data": {"blob": {"file": "x" * 100_000}}})
        stack = parse({"teams": teams, "variables": {"big": "x" * 500_000}}, secrets={"teamSecrets": secret})
        assert len(stack.variables["big"]) == 500_000


class TestAbsurdAmounts:
    def test_cpu_no_node_has_is_refused(self):
        refused(
            "airflow.scheduler.resources.requests.cpu",
            "at most 1000 cores",
            "'2000000'",
            airflow=with_airflow(scheduler={"resources": {"requests": {"cpu": "2000000"}}}),
        )

    def test_memory_no_node_has_is_refused(self):
        refused(
            "airflow.workers.resources.limits.memory",
            "at most 64Ti",
            airflow=with_airflow(workers={"resources": {"limits": {"memory": "1Pi"}}}),
        )

    def test_its_fixed_twins_load_clean_and_a_namespace_quota_may_exceed_one_node(self):
        stack = parse(
            {"teams": [{"name": "data", "quota": {"cpu": "2000"}}]},
            airflow=with_airflow(scheduler={"resources": {"requests": {"cpu": "2"}}}),
        )
        assert stack.teams[0].quota["requests.cpu"] == "2000"


class TestNodeNames:
    def test_a_node_name_that_cannot_exist_is_refused(self):
        dags = {"mode": "hostPath", "hostPath": {"path": "/data/dags", "node": "Worker_1"}}
        refused(
            "airflow.dags.hostPath.node",
            "'Worker_1'",
            "DNS-1123 subdomains",
            airflow=with_airflow(dags=dags),
            extra={"cluster": {"environment": "laptop"}},
        )
        logs = {"mode": "hostPath", "hostPath": {"path": "/data/logs", "node": "node 2"}}
        refused("logs.hostPath.node", "'node 2'", extra={"cluster": {"environment": "laptop"}, "logs": logs})

    def test_its_fixed_twin_with_a_dotted_node_name_loads_clean(self):
        dags = {"mode": "hostPath", "hostPath": {"path": "/data/dags", "node": "ip-10-0-0-1.ec2.internal"}}
        logs = {"mode": "hostPath", "hostPath": {"path": "/data/logs", "node": "ip-10-0-0-1.ec2.internal"}}
        stack = parse({"cluster": {"environment": "laptop"}, "logs": logs}, airflow=with_airflow(dags=dags))
        assert stack.logs.node == "ip-10-0-0-1.ec2.internal"


class TestSubPaths:
    @pytest.mark.parametrize("path", ["../other-repo", "dags/../../etc", "/etc"])
    def test_a_git_sync_sub_path_that_climbs_out_of_the_repository_is_refused(self, path):
        refused("airflow.dags.gitSync.subPath", "inside the repository", airflow=git(subPath=path))

    def test_a_claim_or_mount_sub_path_that_climbs_out_is_refused(self):
        dags = {"mode": "persistentVolumeClaim", "persistentVolumeClaim": {"claimName": "dags", "subPath": "../x"}}
        refused("airflow.dags.persistentVolumeClaim.subPath", "inside the claim", airflow=with_airflow(dags=dags))
        pods = {
            "extraVolumes": [{"name": "a", "emptyDir": {}}],
            "extraVolumeMounts": [{"name": "a", "mountPath": "/data", "subPath": "x/../../y"}],
        }
        refused("airflow.taskPods.extraVolumeMounts[0].subPath", "inside its volume", airflow=task_pods(**pods))

    def test_its_fixed_twins_load_clean(self):
        assert parse(airflow=git(subPath="dags/prod")).airflow.dags.git_sync.sub_path == "dags/prod"


class TestGitRefs:
    @pytest.mark.parametrize(
        ("branch", "fragment"),
        [
            ("main..old", "'..'"),
            ("feature branch", "' '"),
            ("-rf", "starts with '-'"),
            ("release.lock", "ends with '.lock'"),
            ("refs//heads", "'//'"),
            ("topic/", "ends with '/'"),
            ("@", "'@' alone"),
            ("x@{1}", "'@{'"),
            ("v1.", "ends with '.'"),
        ],
    )
    def test_a_branch_git_refuses_is_refused(self, branch, fragment):
        refused(
            "airflow.dags.gitSync.branch", "git refuses this name", fragment, repr(branch), airflow=git(branch=branch)
        )

    def test_a_bundle_tracking_ref_git_refuses_is_refused(self):
        dags = {
            "mode": "gitBundle",
            "gitBundle": {"repo": "https://github.com/example/dags.git", "trackingRef": "a..b"},
        }
        refused("airflow.dags.gitBundle.trackingRef", "git refuses this name", airflow=with_airflow(dags=dags))

    @pytest.mark.parametrize("branch", ["release/2.0", "feature/JIRA-12_fix", "v1.2.3", "ünïcode"])
    def test_its_fixed_twins_load_clean(self, branch):
        assert parse(airflow=git(branch=branch)).airflow.dags.git_sync.branch == branch


class TestSyncPeriods:
    @pytest.mark.parametrize(
        ("period", "fragment"),
        [
            ("1 minute", "cannot parse"),
            ("30", "cannot parse"),
            ("\u0663\u0660s", "cannot parse"),
            ("500ms", "under 1s"),
        ],
    )
    def test_a_period_git_sync_cannot_parse_or_that_spins_is_refused(self, period, fragment):
        refused("airflow.dags.gitSync.period", fragment, airflow=git(period=period))

    @pytest.mark.parametrize("period", ["1m30s", "45s", "2h", "1.5m"])
    def test_its_fixed_twins_load_clean(self, period):
        assert parse(airflow=git(period=period)).airflow.dags.git_sync.period == period


class TestLookAlikeHosts:
    CYRILLIC_I = "\u0456"
    CYRILLIC_A = "\u0430"

    def test_a_look_alike_ingress_host_is_refused_naming_the_character(self):
        ingress = {"enabled": True, "host": f"{self.CYRILLIC_A}irflow.example.com"}
        refused(
            "airflow.ingress.host",
            "U+0430 CYRILLIC SMALL LETTER A",
            "look-alike",
            airflow=with_airflow(ingress=ingress),
        )

    def test_a_look_alike_git_host_is_refused(self):
        repo = f"https://g{self.CYRILLIC_I}thub.com/example/dags.git"
        refused("airflow.dags.gitSync.repo", "CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I", airflow=git(repo=repo))
        ssh = {
            "mode": "gitSync",
            "gitSync": {"repo": f"git@g{self.CYRILLIC_I}thub.com:example/dags.git", "knownHosts": KNOWN_HOSTS},
        }
        refused(
            "airflow.dags.gitSync.repo", "look-alike", airflow=with_airflow(dags=ssh), secrets={"gitSshKey": SSH_KEY}
        )

    def test_a_look_alike_chart_repository_or_nfs_server_is_refused(self):
        chart = {"repository": f"https://{self.CYRILLIC_A}irflow.apache.org"}
        refused("airflow.chart.repository", "look-alike", airflow=with_airflow(chart=chart))
        logs = {"mode": "nfs", "nfs": {"server": f"nfs.{self.CYRILLIC_A}cme.internal", "path": "/logs"}}
        refused("logs.nfs.server", "look-alike", extra={"logs": logs})

    def test_its_fixed_twins_in_ascii_and_punycode_load_clean(self):
        ingress = {"enabled": True, "host": "xn--irflow-3we.example.com"}
        stack = parse(airflow=with_airflow(ingress=ingress, dags=GIT))
        assert stack.airflow.ingress.host == "xn--irflow-3we.example.com"
        logs = {"mode": "nfs", "nfs": {"server": "10.0.0.5", "path": "/logs"}}
        assert parse({"logs": logs}).logs.nfs_server == "10.0.0.5"


class TestCorpusTwins:
    """The corpus files of these rules (tests/bad_configs/api-*.yaml), fixed in the one place they are
    wrong, load clean."""

    FIXES = {
        "api-cron-day-of-week-seven": (("maintenance", "backup", "schedule"), "0 3 * * 0"),
        "api-cron-never-fires": (("maintenance", "cleanup", "schedule"), "0 0 28 2 *"),
        "api-toleration-without-key": (("airflow", "taskPods", "tolerations", 0, "key"), "nvidia.com/gpu"),
        "api-git-branch-not-a-ref": (("airflow", "dags", "gitSync", "branch"), "release-2024"),
        "api-git-host-look-alike": (("airflow", "dags", "gitSync", "repo"), "https://github.com/example/dags.git"),
    }

    def test_every_corpus_file_of_these_rules_has_a_twin(self):
        assert {p.stem for p in CORPUS.glob("api-*.yaml")} == set(self.FIXES)

    @pytest.mark.parametrize("name", sorted(FIXES))
    def test_the_fixed_twin_loads_clean(self, name):
        config = yaml.safe_load((CORPUS / f"{name}.yaml").read_text())["config"]
        values = {k.split(":", 1)[1]: v for k, v in config.items()}
        path, good = self.FIXES[name]
        target = values
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = good
        parse_stack({k: json.dumps(v) for k, v in values.items()}, set())
