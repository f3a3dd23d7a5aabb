"""The invariants of components/airflow/values/invariants.py: on merged values, whatever path put a value there.

The corpus (tests/bad_configs/) proves each class through the stack; these tests pin the
functions themselves, the component path (a stack that imports AirflowRelease and passes its
own `extra_values`), the absence of false alarms on every shipped stack, and the checks on
rendered objects.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.airflow.config.airflow import parse_airflow
from components.airflow.values import invariants
from components.core import invariants as chart_invariants
from components.core.reader import ConfigError
from components.offline.program import load_stack_config
from components.platform.config import parse_stack
from tests.helpers import ROOT, run_stack

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}


def check(extra: dict[str, Any], **airflow: Any) -> None:
    invariants.check_airflow(parse_airflow({"dags": GIT, **airflow}), extra=extra, extra_key="extra_values")


def refused(extra: dict[str, Any], **airflow: Any) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        check(extra, **airflow)
    return err.value


class TestNoFalseAlarms:
    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_every_shipped_stack_passes_every_invariant(self, stack):
        _, config, secret_keys, _ = load_stack_config(ROOT, stack)
        ours = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("airflow-k8s:")}
        values = {k: (json.loads(v) if v[:1] in "{[" else v) for k, v in ours.items()}
        parse_stack(values, {k.split(":", 1)[1] for k in secret_keys if k.startswith("airflow-k8s:")})

    @pytest.mark.parametrize(
        "extra",
        [
            {"scheduler": {"env": [{"name": "MY_SETTING", "value": "x"}]}},
            {"config": {"core": {"parallelism": 64}, "webserver": {"expose_config": "False"}}},
            {"workers": {"env": [{"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}},
            {"images": {"airflow": {"repository": "registry.example.com:5000/team/airflow"}}},
            {"scheduler": {"podAnnotations": {"example.com/fernet-rotation": "weekly"}}},
        ],
        ids=["plain-env", "config-options", "env-from-secret", "registry-with-port", "annotation-named-like-a-key"],
    )
    def test_ordinary_overrides_pass(self, extra):
        check(extra)


def env(name: str) -> list[dict[str, str]]:
    return [{"name": name, "value": "x"}]


SIDECAR = {"name": "s", "image": "busybox:1", "env": env("AIRFLOW__CELERY__BROKER_URL")}
REDEFINED: list[tuple[dict[str, Any], str]] = [
    ({"workers": {"env": env("AIRFLOW__CORE__FERNET_KEY")}}, "workers.env[0].name"),
    ({"scheduler": {"env": env("AIRFLOW__CORE__FERNET_KEY")}}, "scheduler.env[0].name"),
    (
        {"workers": {"kubernetes": {"env": env("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD")}}},
        "workers.kubernetes.env[0].name",
    ),
    ({"triggerer": {"extraContainers": [SIDECAR]}}, "triggerer.extraContainers[0].env[0].name"),
]


class TestWhateverPathPutsAValueThere:
    @pytest.mark.parametrize(("extra", "key"), REDEFINED, ids=["workers", "scheduler", "task-pods", "a-sidecar"])
    def test_a_secret_variable_is_never_redefined_in_any_container(self, extra, key):
        assert refused(extra).key == f"extra_values.{key}"

    @pytest.mark.parametrize(
        "extra",
        [
            {"securityContexts": {"pod": {"runAsUser": 0}}},
            {"scheduler": {"securityContexts": {"pod": {"runAsUser": 0}}}},
            {"dagProcessor": {"securityContext": {"runAsUser": 0}}},
            {"uid": 0},
            {"statsd": {"securityContexts": {"container": {"privileged": True}}}},
            {"workers": {"kubernetes": {"securityContexts": {"container": {"allowPrivilegeEscalation": True}}}}},
            {"triggerer": {"extraVolumes": [{"name": "h", "hostPath": {"path": "/var/run/docker.sock"}}]}},
        ],
    )
    def test_no_container_gets_the_node(self, extra):
        message = str(refused(extra))
        assert "root" in message or "node" in message

    def test_the_component_path_checks_its_own_extra_values_before_anything_is_declared(self):
        with pytest.raises(ConfigError) as err:
            run_stack(
                program="component_extra_values",
                extra={"extraValues": json.dumps({"createUserJob": {"useHelmHooks": True}})},
            )
        assert err.value.key == "extra_values.createUserJob.useHelmHooks"
        assert err.value.declared_before_error == []  # type: ignore[attr-defined]

    def test_the_component_path_accepts_ordinary_values(self):
        run = run_stack(program="component_extra_values", extra={"extraValues": json.dumps({"config": {}})})
        assert any(r.type.endswith("helm.sh/v3:Release") for r in run.resources)


class TestHelpers:
    @pytest.mark.parametrize(
        ("url", "bad"),
        [
            ("https://github.com/org/repo.git", False),
            ("git@github.com:org/repo.git", False),
            ("ssh://git@github.com/org/repo.git", False),
            ("https://ghp_x@github.com/org/repo.git", True),
            ("https://u:p@host/x", True),
            ("ssh://git:pw@host/x", True),
            ("https://charts.example.com/?token=abc", True),
            ("s3://AKIA:secret@bucket/x", True),
        ],
    )
    def test_credentials_in_urls(self, url, bad):
        assert bool(chart_invariants.url_credentials(url)) is bad
        if bad:
            assert "[credentials]" in chart_invariants.redact_url(
                url
            ) or "=[credentials]" in chart_invariants.redact_url(url)

    @pytest.mark.parametrize(
        ("path", "system"),
        [("/", True), ("//", True), ("/etc", True), ("/var/lib/kubelet", True), ("/data/airflow-dags", False),
         ("/mnt/logs", False), ("/etc/../data", False), ("/./etc", True)],
    )  # fmt: skip
    def test_system_folders(self, path, system):
        assert chart_invariants.system_folder(path) is system

    @pytest.mark.parametrize(
        ("key", "secret"),
        [("password", True), ("pass", True), ("fernetKey", True), ("sql_alchemy_conn", True), ("api_key", True),
         ("passwordSecretName", False), ("existingSecret", False), ("secretKeyRef", False), ("jwt_algorithm", False),
         ("automountServiceAccountToken", False), ("tokenPath", False)],
    )  # fmt: skip
    def test_secret_shaped_keys(self, key, secret):
        assert chart_invariants.secret_shaped(key) is secret


def pod(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", **container}], **spec}}},
    }


class TestRenderedObjects:
    @pytest.mark.parametrize(
        ("obj", "fragment"),
        [
            (pod({"securityContext": {"runAsUser": 0}}), "uid 0"),
            (pod({}, securityContext={"runAsUser": 0}), "uid 0"),
            (pod({"securityContext": {"privileged": True}}), "privileged"),
            (pod({"securityContext": {"allowPrivilegeEscalation": True}}), "escalation"),
            (pod({}, hostPID=True), "hostPID"),
            (pod({}, volumes=[{"name": "root", "hostPath": {"path": "/"}}]), "node's /"),
            (pod({"env": [{"name": "AIRFLOW__CORE__FERNET_KEY", "value": "x"}]}), "literal value"),
            (pod({"env": [{"name": "AIRFLOW__CORE__FERNET_KEY_CMD", "value": "echo x"}]}), "does not read a file"),
        ],
        ids=["container-root", "pod-root", "privileged", "escalation", "host-pid", "host-root", "env", "cmd"],
    )
    def test_a_pod_that_breaks_a_guarantee_is_a_problem(self, obj, fragment):
        (problem,) = invariants.rendered_problems([("release", obj)])
        assert problem[1] == "Deployment/x" and fragment in problem[2]

    def test_a_hardened_pod_and_the_documented_exceptions_are_not(self):
        good = pod({"securityContext": {"runAsUser": 50000, "allowPrivilegeEscalation": False}})
        exporter = {**pod({}, hostPID=True), "kind": "DaemonSet", "metadata": {"name": "m-prometheus-node-exporter"}}
        assert invariants.rendered_problems([("a", good), ("b", exporter)]) == []
