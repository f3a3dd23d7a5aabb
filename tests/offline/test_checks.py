# Longer than 600 lines: one test class per check of components/offline/checks/, in the same order,
# sharing its builders.
"""Tests of the offline preview's validation engine (components/offline/checks/)."""

from __future__ import annotations

import copy
import json
import os
import pathlib
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from components.offline.checks import (
    ClusterFacts,
    Item,
    Problem,
    checkov,
    crd_problems,
    reference_problems,
    run_checkov,
    schema_problems,
    schemas,
)
from components.offline.render import crds_of, render

CHARTS = pathlib.Path(
    os.environ.get("AIRFLOW_K8S_CHARTS") or pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "charts"
)
AIRFLOW_CHART = CHARTS / "airflow-1.21.0.tgz"
PROMETHEUS_CHART = CHARTS / "kube-prometheus-stack-88.5.3.tgz"


# --------------------------------------------------------------------------- helpers


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader that reads a bare ``=`` as a string (PyYAML otherwise rejects the 'value' tag)."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def _yaml_docs(text: str) -> Iterator[dict[str, Any]]:
    for doc in yaml.load_all(text, Loader=_Loader):
        if doc:
            yield doc


def _item(obj: dict[str, Any], source: str = "test") -> Item:
    return Item(source, obj)


def _namespace(name: str = "airflow") -> Item:
    return _item({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, source=f"namespace-{name}")


def _secret(name: str, keys: dict[str, str], namespace: str = "airflow", *, string_data: bool = False) -> Item:
    field = "stringData" if string_data else "data"
    return _item(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, field: keys},
        source=f"secret-{name}",
    )


def _config_map(name: str, keys: dict[str, str], namespace: str = "airflow") -> Item:
    return _item(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": keys},
        source=f"configmap-{name}",
    )


def _service_account(name: str, namespace: str = "airflow") -> Item:
    return _item(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        source=f"sa-{name}",
    )


def _deployment(
    name: str = "airflow-scheduler",
    *,
    namespace: str = "airflow",
    labels: dict[str, str] | None = None,
    container: dict[str, Any] | None = None,
    pod: dict[str, Any] | None = None,
) -> dict[str, Any]:
    labels = labels or {"app": name}
    spec: dict[str, Any] = {"containers": [{"name": "scheduler", "image": "apache/airflow:3.2.0", **(container or {})}]}
    spec.update(pod or {})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def _service(
    name: str,
    selector: dict[str, str],
    *,
    namespace: str = "airflow",
    labels: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"selector": selector, "ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def _refs(items: list[Item], facts: ClusterFacts | None = None, rule: str | None = None) -> list[Problem]:
    problems = reference_problems(items, facts or ClusterFacts())
    return [p for p in problems if rule is None or p.rule == rule]


def _render(chart_path: pathlib.Path, name: str, namespace: str, values: dict[str, Any] | None = None) -> list[Item]:
    """Render a real chart as the offline preview does (helm v3.20): objects namespaced, plus their Namespace."""
    if not chart_path.exists():
        pytest.skip(f"chart archive not found: {chart_path} (set AIRFLOW_K8S_CHARTS)")
    items = [_namespace(namespace)]
    for rendered in render(chart_path, values or {}, name, namespace):
        items.append(Item(f"{name}:{rendered.template}", rendered.obj))
    return items


def _chart_crds(chart_path: pathlib.Path, name_contains: str = "") -> list[dict[str, Any]]:
    """The CRDs a chart ships under crds/ whose name contains `name_contains`."""
    if not chart_path.exists():
        pytest.skip(f"chart archive not found: {chart_path} (set AIRFLOW_K8S_CHARTS)")
    return [crd for crd in crds_of(chart_path) if name_contains in crd["metadata"]["name"]]


@pytest.fixture(scope="module")
def service_monitor_crd() -> list[dict[str, Any]]:
    crds = _chart_crds(PROMETHEUS_CHART, "servicemonitors")
    assert [crd["metadata"]["name"] for crd in crds] == ["servicemonitors.monitoring.coreos.com"]
    return crds


# --------------------------------------------------------------------------- schema


class TestSchemaProblems:
    def test_a_valid_deployment_has_no_schema_problems(self) -> None:
        assert schema_problems([_item(_deployment())]) == []

    def test_an_unknown_field_in_a_deployment_is_reported_with_its_path(self) -> None:
        problems = schema_problems([_item(_deployment(container={"imagePullPolicyy": "Always"}))])

        assert len(problems) == 1
        assert problems[0].rule == "schema"
        assert problems[0].object == "Deployment/airflow/airflow-scheduler"
        assert problems[0].message == (
            "Deployment/airflow/airflow-scheduler has unknown field 'spec.template.spec.containers[0].imagePullPolicyy'"
        )

    def test_every_unknown_field_is_reported_not_just_the_first(self) -> None:
        obj = _deployment()
        obj["spec"]["replicaz"] = 2
        obj["metadata"]["labelz"] = {}

        messages = [p.message for p in schema_problems([_item(obj)])]

        assert any("unknown field 'metadata.labelz'" in m for m in messages)
        assert any("unknown field 'spec.replicaz'" in m for m in messages)

    def test_a_wrongly_typed_field_names_its_path_and_the_expected_type(self) -> None:
        obj = _deployment(container={"ports": [{"containerPort": "8080"}]})

        problems = schema_problems([_item(obj)])

        assert [p.message for p in problems] == [
            "Deployment/airflow/airflow-scheduler field 'spec.template.spec.containers[0].ports[0].containerPort' "
            "must be integer (got string '8080')"
        ]

    def test_an_int_or_string_field_accepts_both_and_rejects_anything_else(self) -> None:
        good = _service("web", {"app": "web"}, ports=[{"port": 80, "targetPort": "http"}])
        bad = _service("web", {"app": "web"}, ports=[{"port": 80, "targetPort": [8080]}])

        assert schema_problems([_item(good)]) == []
        [problem] = schema_problems([_item(bad)])
        assert "field 'spec.ports[0].targetPort' must be string or integer (got array [8080])" in problem.message

    def test_a_missing_required_field_is_reported(self) -> None:
        obj = _deployment()
        del obj["spec"]["selector"]

        [problem] = schema_problems([_item(obj)])

        assert problem.message == "Deployment/airflow/airflow-scheduler is missing required field 'spec.selector'"

    def test_annotation_keys_with_dots_and_slashes_are_quoted_in_paths(self) -> None:
        obj = _deployment()
        obj["metadata"]["annotations"] = {"helm.sh/hook": 1}

        [problem] = schema_problems([_item(obj)])

        assert "field 'metadata.annotations[\"helm.sh/hook\"]' must be string (got integer 1)" in problem.message

    def test_cluster_scoped_objects_are_named_without_a_namespace(self) -> None:
        obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "airflow"}, "spex": {}}

        [problem] = schema_problems([_item(obj)])

        assert problem.object == "Namespace/airflow"
        assert problem.message == "Namespace/airflow has unknown field 'spex'"

    def test_an_api_version_kubernetes_no_longer_serves_is_reported(self) -> None:
        obj = {
            "apiVersion": "autoscaling/v2beta2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "airflow"},
            "spec": {},
        }

        [problem] = schema_problems([_item(obj)])

        assert "uses apiVersion autoscaling/v2beta2 kind HorizontalPodAutoscaler" in problem.message
        assert "which Kubernetes 1.31 does not serve" in problem.message

    def test_custom_resources_are_left_to_crd_problems(self) -> None:
        obj = {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "x"},
            "bogus": 1,
        }

        assert schema_problems([_item(obj)]) == []

    def test_the_closest_bundled_kubernetes_version_is_used(self) -> None:
        assert schemas._schema_dir_for("1.31") == "v1.31.0-local-strict"
        assert schemas._schema_dir_for("v1.31.7") == "v1.31.0-local-strict"
        newest = max(schemas._strict_schema_dirs())
        oldest = min(schemas._strict_schema_dirs())
        assert schemas._schema_dir_for("1.999") == schemas._strict_schema_dirs()[newest]
        assert schemas._schema_dir_for("1.1") == schemas._strict_schema_dirs()[oldest]
        with pytest.raises(ValueError, match="not a Kubernetes version"):
            schemas._schema_dir_for("latest")

    def test_a_field_added_in_a_newer_kubernetes_is_unknown_to_an_older_one(self) -> None:
        # Pod-level resources (spec.resources) appeared in Kubernetes 1.32.
        obj = _deployment(pod={"resources": {"limits": {"cpu": "1"}}})

        assert schema_problems([_item(obj)], kube_version="1.34") == []
        [problem] = schema_problems([_item(obj)], kube_version="1.31")
        assert "unknown field 'spec.template.spec.resources'" in problem.message


# --------------------------------------------------------------------------- CRDs

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "Widget", "plural": "widgets"},
        "scope": "Namespaced",
        "versions": [
            {"name": "v1alpha1", "served": False, "storage": False},
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "port": {
                                        "anyOf": [{"type": "integer"}, {"type": "string"}],
                                        "x-kubernetes-int-or-string": True,
                                    },
                                    "note": {"type": "string", "nullable": True},
                                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    "mode": {"type": "string", "enum": ["fast", "slow"]},
                                    "either": {
                                        "type": "object",
                                        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                                        "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
                                    },
                                },
                            },
                        },
                    }
                },
            },
        ],
    },
}


def _widget(spec: dict[str, Any], api_version: str = "example.com/v1") -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "airflow", "labels": {"a": "b"}, "annotations": {"x": "y"}},
        "spec": spec,
    }


class TestCrdProblems:
    def test_a_custom_resource_matching_its_crd_has_no_problems(self) -> None:
        obj = _widget(
            {
                "size": 3,
                "port": "http",
                "note": None,
                "labels": {"team": "data"},
                "extra": {"anything": {"goes": [1, 2]}},
                "mode": "fast",
                "either": {"a": "x"},
            }
        )

        assert crd_problems([_item(obj)], [WIDGET_CRD]) == []

    def test_an_unknown_field_in_a_custom_resource_is_reported_with_its_path(self) -> None:
        [problem] = crd_problems([_item(_widget({"size": 3, "colour": "red"}))], [WIDGET_CRD])

        assert problem.rule == "crd"
        assert problem.object == "Widget/airflow/w"
        assert problem.message == ("Widget/airflow/w has unknown field 'spec.colour' (CRD widgets.example.com v1)")

    def test_an_unknown_top_level_field_is_reported(self) -> None:
        obj = _widget({"size": 3})
        obj["sepc"] = {}

        [problem] = crd_problems([_item(obj)], [WIDGET_CRD])

        assert "has unknown field 'sepc'" in problem.message

    def test_int_or_string_accepts_integers_and_strings_only(self) -> None:
        assert crd_problems([_item(_widget({"size": 1, "port": 8080}))], [WIDGET_CRD]) == []

        [problem] = crd_problems([_item(_widget({"size": 1, "port": 1.5}))], [WIDGET_CRD])

        assert "field 'spec.port' must be integer or string (got number 1.5)" in problem.message

    def test_null_is_only_accepted_where_the_schema_is_nullable(self) -> None:
        [problem] = crd_problems([_item(_widget({"size": 1, "mode": None}))], [WIDGET_CRD])

        assert "field 'spec.mode' must be string (got null)" in problem.message

    def test_value_validations_are_enforced(self) -> None:
        problems = crd_problems([_item(_widget({"size": 0, "mode": "medium", "labels": {"team": 7}}))], [WIDGET_CRD])
        messages = " | ".join(p.message for p in problems)

        assert "field 'spec.size' is invalid: 0 is less than the minimum of 1" in messages
        assert "field 'spec.mode' must be one of 'fast', 'slow' (got 'medium')" in messages
        assert "field 'spec.labels.team' must be string (got integer 7)" in messages

    def test_a_missing_required_field_is_reported(self) -> None:
        [problem] = crd_problems([_item(_widget({}))], [WIDGET_CRD])

        assert "is missing required field 'spec.size'" in problem.message

    def test_properties_inside_one_of_do_not_forbid_fields(self) -> None:
        assert crd_problems([_item(_widget({"size": 1, "either": {"b": "y"}}))], [WIDGET_CRD]) == []

    def test_a_kind_without_a_crd_is_reported(self) -> None:
        obj = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g", "namespace": "airflow"}}

        [problem] = crd_problems([_item(obj)], [WIDGET_CRD])

        assert problem.message == (
            "Gadget/airflow/g: no CRD for Gadget.example.com (example.com/v1) is declared "
            "(CRDs of group example.com: Widget)"
        )

    def test_a_version_the_crd_does_not_serve_is_reported(self) -> None:
        [problem] = crd_problems([_item(_widget({"size": 1}, api_version="example.com/v1alpha1"))], [WIDGET_CRD])

        assert "CRD widgets.example.com does not serve version v1alpha1 (served: v1)" in problem.message

    def test_crds_declared_among_the_items_are_used_too(self) -> None:
        items = [_item(WIDGET_CRD), _item(_widget({"size": 1, "colour": "red"}))]

        [problem] = crd_problems(items, [])

        assert "unknown field 'spec.colour'" in problem.message

    def test_a_namespaced_custom_resource_without_a_namespace_is_reported(self) -> None:
        obj = _widget({"size": 1})
        del obj["metadata"]["namespace"]

        [problem] = crd_problems([_item(obj)], [WIDGET_CRD])

        assert problem.message == "Widget/w is namespaced (CRD widgets.example.com) but has no metadata.namespace"

    def test_built_in_kinds_are_left_to_schema_problems(self) -> None:
        assert crd_problems([_item(_deployment())], []) == []


class TestRealServiceMonitorCrd:
    def _service_monitor(self, endpoint: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "airflow-statsd", "namespace": "airflow"},
            "spec": {
                "selector": {"matchLabels": {"component": "statsd"}},
                "namespaceSelector": {"matchNames": ["airflow"]},
                "endpoints": [endpoint],
            },
        }

    def test_a_good_service_monitor_validates_against_kube_prometheus_stacks_crd(
        self, service_monitor_crd: list[dict[str, Any]]
    ) -> None:
        crds = service_monitor_crd
        obj = self._service_monitor({"port": "statsd-scrape", "interval": "30s", "targetPort": 9102})

        assert crd_problems([_item(obj)], crds) == []

    def test_a_bad_service_monitor_is_rejected_by_kube_prometheus_stacks_crd(
        self, service_monitor_crd: list[dict[str, Any]]
    ) -> None:
        crds = service_monitor_crd
        obj = self._service_monitor({"port": "statsd-scrape", "intervall": "30s", "scheme": "ftp"})

        messages = [p.message for p in crd_problems([_item(obj)], crds)]

        assert any(
            "has unknown field 'spec.endpoints[0].intervall' (CRD servicemonitors.monitoring.coreos.com v1)" in m
            for m in messages
        )
        assert any("field 'spec.endpoints[0].scheme' must be one of" in m for m in messages)


# --------------------------------------------------------------------------- references: Secrets


class TestFileCommands:
    VOLUME = {
        "name": "secrets",
        "projected": {"sources": [{"secret": {"name": "airflow-fernet", "items": [{"key": "k", "path": "fernet"}]}}]},
    }

    def _scheduler(self, path: str, mount_path: str = "/opt/airflow/secrets") -> Item:
        container = {
            "env": [{"name": "AIRFLOW__CORE__FERNET_KEY_CMD", "value": f"cat {path}"}],
            "volumeMounts": [{"name": "secrets", "mountPath": mount_path, "readOnly": True}],
        }
        return _item(_deployment(container=container, pod={"volumes": [self.VOLUME]}), source="airflow-release")

    def test_a_command_reading_a_mounted_secret_file_resolves(self) -> None:
        items = [_namespace(), _secret("airflow-fernet", {"k": "eA=="}), self._scheduler("/opt/airflow/secrets/fernet")]

        assert _refs(items) == []

    @pytest.mark.parametrize(
        ("path", "mount_path"),
        [("/opt/airflow/secrets/fernet-key", "/opt/airflow/secrets"), ("/opt/airflow/secrets/fernet", "/elsewhere")],
    )
    def test_a_command_reading_a_file_no_mount_provides_is_reported(self, path: str, mount_path: str) -> None:
        items = [_namespace(), _secret("airflow-fernet", {"k": "eA=="}), self._scheduler(path, mount_path)]

        problems = _refs(items)

        assert [p.rule for p in problems] == ["file-command"]
        assert problems[0].message == (
            f"Deployment/airflow/airflow-scheduler container 'scheduler' env AIRFLOW__CORE__FERNET_KEY_CMD reads "
            f"{path}, which no volume mount of the container provides"
        )


class TestSecretReferences:
    def _scheduler_with_env(self, secret: str, key: str, **extra: Any) -> Item:
        env = [
            {"name": "AIRFLOW__CORE__FERNET_KEY", "valueFrom": {"secretKeyRef": {"name": secret, "key": key, **extra}}}
        ]
        return _item(_deployment(container={"env": env}), source="airflow-release")

    def test_an_env_var_from_an_existing_secret_key_resolves(self) -> None:
        items = [
            _namespace(),
            _secret("airflow-fernet", {"fernet-key": "eA=="}),
            self._scheduler_with_env("airflow-fernet", "fernet-key"),
        ]

        assert _refs(items) == []

    def test_an_env_var_from_a_missing_secret_key_is_reported(self) -> None:
        items = [
            _namespace(),
            _secret("airflow-fernet", {"api-key": "eA=="}),
            self._scheduler_with_env("airflow-fernet", "nope"),
        ]

        problems = _refs(items)

        assert len(problems) == 1
        assert problems[0].rule == "secret-ref"
        assert problems[0].source == "airflow-release"
        assert problems[0].object == "Deployment/airflow/airflow-scheduler"
        assert "references key 'nope'" in problems[0].message
        assert problems[0].message == (
            "Deployment/airflow/airflow-scheduler container 'scheduler' env AIRFLOW__CORE__FERNET_KEY references "
            "key 'nope' that Secret airflow/airflow-fernet does not have (it has: api-key)"
        )

    def test_string_data_keys_count_as_secret_keys(self) -> None:
        items = [
            _namespace(),
            _secret("airflow-fernet", {"fernet-key": "x"}, string_data=True),
            self._scheduler_with_env("airflow-fernet", "fernet-key"),
        ]

        assert _refs(items) == []

    def test_an_env_var_from_a_missing_secret_is_reported(self) -> None:
        [problem] = _refs([_namespace(), self._scheduler_with_env("airflow-fernet", "fernet-key")])

        assert problem.message == (
            "Deployment/airflow/airflow-scheduler container 'scheduler' env AIRFLOW__CORE__FERNET_KEY references "
            "Secret airflow/airflow-fernet, which is not declared in the stack or in the cluster facts"
        )

    def test_a_secret_in_another_namespace_does_not_count(self) -> None:
        items = [
            _namespace(),
            _namespace("other"),
            _secret("airflow-fernet", {"fernet-key": "eA=="}, namespace="other"),
            self._scheduler_with_env("airflow-fernet", "fernet-key"),
        ]

        [problem] = _refs(items)

        assert "references Secret airflow/airflow-fernet, which is not declared" in problem.message

    def test_an_optional_secret_key_ref_is_not_required(self) -> None:
        assert _refs([_namespace(), self._scheduler_with_env("airflow-fernet", "fernet-key", optional=True)]) == []

    def test_a_pre_existing_secret_from_the_cluster_facts_resolves_any_key(self) -> None:
        facts = ClusterFacts(secrets=frozenset({"airflow/airflow-fernet"}))

        assert _refs([_namespace(), self._scheduler_with_env("airflow-fernet", "fernet-key")], facts) == []

    def test_env_from_a_missing_secret_is_reported(self) -> None:
        obj = _deployment(container={"envFrom": [{"secretRef": {"name": "airflow-env"}}]})

        [problem] = _refs([_namespace(), _item(obj)])

        assert problem.message == (
            "Deployment/airflow/airflow-scheduler container 'scheduler' envFrom references Secret airflow/airflow-env, "
            "which is not declared in the stack or in the cluster facts"
        )

    def test_a_secret_volume_item_with_a_missing_key_is_reported(self) -> None:
        volume = {
            "name": "certs",
            "secret": {
                "secretName": "tls",
                "items": [{"key": "tls.crt", "path": "c"}, {"key": "ca.crt", "path": "ca"}],
            },
        }
        obj = _deployment(pod={"volumes": [volume]})

        [problem] = _refs([_namespace(), _secret("tls", {"tls.crt": "", "tls.key": ""}), _item(obj)])

        assert problem.message == (
            "Deployment/airflow/airflow-scheduler volume 'certs' item references key 'ca.crt' that "
            "Secret airflow/tls does not have (it has: tls.crt, tls.key)"
        )

    def test_a_missing_secret_volume_is_reported(self) -> None:
        obj = _deployment(pod={"volumes": [{"name": "certs", "secret": {"secretName": "tls"}}]})

        [problem] = _refs([_namespace(), _item(obj)])

        assert "volume 'certs' references Secret airflow/tls, which is not declared" in problem.message

    def test_a_projected_secret_source_is_checked(self) -> None:
        volume = {
            "name": "all",
            "projected": {"sources": [{"secret": {"name": "tls", "items": [{"key": "nope", "path": "n"}]}}]},
        }
        obj = _deployment(pod={"volumes": [volume]})

        [problem] = _refs([_namespace(), _secret("tls", {"tls.crt": ""}), _item(obj)])

        assert "volume 'all' projected source item references key 'nope' that Secret airflow/tls" in problem.message

    def test_a_missing_image_pull_secret_is_reported(self) -> None:
        obj = _deployment(pod={"imagePullSecrets": [{"name": "registry"}]})

        [problem] = _refs([_namespace(), _item(obj)])

        assert problem.message == (
            "Deployment/airflow/airflow-scheduler imagePullSecrets references Secret airflow/registry, "
            "which is not declared in the stack or in the cluster facts"
        )

    def test_init_containers_and_cron_jobs_are_checked(self) -> None:
        env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}]
        cron = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "cleanup", "namespace": "airflow"},
            "spec": {
                "schedule": "@daily",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "initContainers": [{"name": "wait", "image": "busybox", "env": env}],
                                "containers": [{"name": "cleanup", "image": "busybox"}],
                            }
                        }
                    }
                },
            },
        }

        [problem] = _refs([_namespace(), _secret("api", {"other": ""}), _item(cron)])

        assert problem.message == (
            "CronJob/airflow/cleanup init container 'wait' env TOKEN references key 'token' that "
            "Secret airflow/api does not have (it has: other)"
        )


class TestConfigMapReferences:
    def test_an_env_var_from_an_existing_config_map_key_resolves(self) -> None:
        env = [{"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "airflow-config", "key": "level"}}}]
        items = [
            _namespace(),
            _config_map("airflow-config", {"level": "INFO"}),
            _item(_deployment(container={"env": env})),
        ]

        assert _refs(items) == []

    def test_an_env_var_from_a_missing_config_map_key_is_reported(self) -> None:
        env = [{"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "airflow-config", "key": "lvl"}}}]
        items = [
            _namespace(),
            _config_map("airflow-config", {"level": "INFO"}),
            _item(_deployment(container={"env": env})),
        ]

        [problem] = _refs(items)

        assert problem.rule == "configmap-ref"
        assert problem.message == (
            "Deployment/airflow/airflow-scheduler container 'scheduler' env LEVEL references key 'lvl' that "
            "ConfigMap airflow/airflow-config does not have (it has: level)"
        )

    def test_binary_data_keys_count_as_config_map_keys(self) -> None:
        config_map = _config_map("bins", {})
        config_map.obj["binaryData"] = {"blob": "AAE="}
        obj = _deployment(
            pod={"volumes": [{"name": "b", "configMap": {"name": "bins", "items": [{"key": "blob", "path": "b"}]}}]}
        )

        assert _refs([_namespace(), config_map, _item(obj)]) == []

    def test_a_missing_config_map_volume_is_reported(self) -> None:
        obj = _deployment(pod={"volumes": [{"name": "config", "configMap": {"name": "airflow-config"}}]})

        [problem] = _refs([_namespace(), _item(obj)])

        assert problem.message == (
            "Deployment/airflow/airflow-scheduler volume 'config' references ConfigMap airflow/airflow-config, "
            "which is not declared in the stack"
        )

    def test_an_optional_config_map_volume_is_not_required(self) -> None:
        obj = _deployment(
            pod={"volumes": [{"name": "config", "configMap": {"name": "airflow-config", "optional": True}}]}
        )

        assert _refs([_namespace(), _item(obj)]) == []


# --------------------------------------------------------------------------- references: storage


def _pvc(name: str, storage_class: str | None = None, volume_name: str | None = None) -> Item:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    if volume_name is not None:
        spec["volumeName"] = volume_name
    return _item(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "airflow"},
            "spec": spec,
        },
        source=f"pvc-{name}",
    )


def _statefulset(claim_template: str = "data", storage_class: str | None = None) -> dict[str, Any]:
    claim_spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    if storage_class is not None:
        claim_spec["storageClassName"] = storage_class
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "airflow-worker", "namespace": "airflow"},
        "spec": {
            "serviceName": "airflow-worker",
            "selector": {"matchLabels": {"app": "worker"}},
            "template": {
                "metadata": {"labels": {"app": "worker"}},
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "image": "apache/airflow:3.2.0",
                            "volumeMounts": [{"name": claim_template, "mountPath": "/logs"}],
                        }
                    ]
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": claim_template}, "spec": claim_spec}],
        },
    }


class TestPersistentVolumeClaimReferences:
    def test_a_volume_on_a_declared_claim_resolves(self) -> None:
        obj = _deployment(pod={"volumes": [{"name": "dags", "persistentVolumeClaim": {"claimName": "airflow-dags"}}]})

        assert _refs([_namespace(), _pvc("airflow-dags"), _item(obj)]) == []

    def test_a_claim_declared_in_the_cluster_facts_resolves(self) -> None:
        obj = _deployment(pod={"volumes": [{"name": "dags", "persistentVolumeClaim": {"claimName": "team-dags"}}]})
        facts = ClusterFacts(persistent_volume_claims=frozenset({"airflow/team-dags"}))

        assert reference_problems([_namespace(), _item(obj)], facts) == []

    def test_a_volume_on_a_missing_claim_is_reported(self) -> None:
        obj = _deployment(pod={"volumes": [{"name": "dags", "persistentVolumeClaim": {"claimName": "airflow-dags"}}]})

        [problem] = _refs([_namespace(), _item(obj)])

        assert problem.rule == "pvc-ref"
        assert problem.message == (
            "Deployment/airflow/airflow-scheduler volume 'dags' references PersistentVolumeClaim airflow/airflow-dags, "
            "which is not declared in the stack (nor produced by a StatefulSet volumeClaimTemplate, "
            "nor listed in cluster.persistentVolumeClaims)"
        )

    def test_a_claim_produced_by_a_statefulset_claim_template_resolves(self) -> None:
        obj = _deployment(
            pod={"volumes": [{"name": "logs", "persistentVolumeClaim": {"claimName": "data-airflow-worker-0"}}]}
        )

        assert _refs([_namespace(), _item(_statefulset()), _item(obj)]) == []

    def test_a_claim_naming_a_missing_persistent_volume_is_reported(self) -> None:
        [problem] = _refs([_namespace(), _pvc("airflow-dags", volume_name="dags-pv")])

        assert problem.rule == "pvc-ref"
        assert problem.message == (
            "PersistentVolumeClaim/airflow/airflow-dags volumeName references PersistentVolume dags-pv, "
            "which is not declared in the stack"
        )


class TestStorageClasses:
    def test_a_claim_on_a_cluster_provided_storage_class_resolves(self) -> None:
        assert (
            _refs([_namespace(), _pvc("logs", "standard")], ClusterFacts(storage_classes=frozenset({"standard"}))) == []
        )

    def test_a_claim_on_a_storage_class_declared_in_the_stack_resolves(self) -> None:
        storage_class = _item(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": "fast"},
                "provisioner": "x",
            }
        )

        assert _refs([_namespace(), storage_class, _pvc("logs", "fast")]) == []

    def test_a_claim_without_a_storage_class_uses_the_default_and_resolves(self) -> None:
        assert _refs([_namespace(), _pvc("logs"), _pvc("static", "")]) == []

    def test_a_claim_on_an_undeclared_storage_class_is_reported(self) -> None:
        [problem] = _refs(
            [_namespace(), _pvc("logs", "fast-ssd")], ClusterFacts(storage_classes=frozenset({"standard"}))
        )

        assert problem.rule == "storage-class"
        assert problem.object == "PersistentVolumeClaim/airflow/logs"
        assert problem.message == (
            "PersistentVolumeClaim/airflow/logs uses storageClassName 'fast-ssd', which is not a StorageClass "
            "declared in the stack or in the cluster facts (known: standard)"
        )

    def test_a_statefulset_claim_template_on_an_undeclared_storage_class_is_reported(self) -> None:
        [problem] = _refs([_namespace(), _item(_statefulset(storage_class="fast-ssd"))])

        assert problem.message.startswith(
            "StatefulSet/airflow/airflow-worker volumeClaimTemplate 'data' uses storageClassName 'fast-ssd', "
            "which is not a StorageClass"
        )


# --------------------------------------------------------------------------- references: identities and RBAC


def _role_binding(
    subjects: list[dict[str, Any]], role_kind: str = "Role", role_name: str = "pod-launcher", *, cluster: bool = False
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "pod-launcher-binding"}
    if not cluster:
        metadata["namespace"] = "airflow"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding" if cluster else "RoleBinding",
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
        "subjects": subjects,
    }


def _role(name: str = "pod-launcher") -> Item:
    return _item(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": "airflow"},
            "rules": [],
        }
    )


class TestServiceAccounts:
    def test_a_pod_running_as_a_declared_service_account_resolves(self) -> None:
        obj = _deployment(pod={"serviceAccountName": "airflow-scheduler"})

        assert _refs([_namespace(), _service_account("airflow-scheduler"), _item(obj)]) == []

    def test_the_default_service_account_always_exists(self) -> None:
        assert _refs([_namespace(), _item(_deployment(pod={"serviceAccountName": "default"}))]) == []

    def test_a_pod_running_as_a_missing_service_account_is_reported(self) -> None:
        [problem] = _refs([_namespace(), _item(_deployment(pod={"serviceAccountName": "airflow-scheduler"}))])

        assert problem.rule == "service-account"
        assert problem.message == (
            "Deployment/airflow/airflow-scheduler serviceAccountName references ServiceAccount "
            "airflow/airflow-scheduler, which is not declared in the stack or in the cluster facts"
        )


class TestRbacSubjects:
    def test_a_binding_to_a_declared_service_account_resolves(self) -> None:
        binding = _role_binding([{"kind": "ServiceAccount", "name": "airflow-worker", "namespace": "airflow"}])

        assert _refs([_namespace(), _role(), _service_account("airflow-worker"), _item(binding)]) == []

    def test_a_binding_to_a_missing_service_account_is_reported(self) -> None:
        binding = _role_binding([{"kind": "ServiceAccount", "name": "airflow-wrker"}])

        [problem] = _refs([_namespace(), _role(), _service_account("airflow-worker"), _item(binding, "rbac")])

        assert problem.rule == "rbac-subject"
        assert problem.source == "rbac"
        assert problem.message == (
            "RoleBinding/airflow/pod-launcher-binding subject references ServiceAccount airflow/airflow-wrker, "
            "which is not declared in the stack or in the cluster facts"
        )

    def test_a_pre_existing_service_account_from_the_cluster_facts_resolves(self) -> None:
        binding = _role_binding([{"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}])
        facts = ClusterFacts(service_accounts=frozenset({"tools/ci"}))

        assert _refs([_namespace(), _role(), _item(binding)], facts) == []

    def test_users_and_groups_are_not_checked(self) -> None:
        binding = _role_binding([{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"}])

        assert _refs([_namespace(), _role(), _item(binding)]) == []

    def test_a_cluster_role_binding_subject_without_a_namespace_is_reported(self) -> None:
        binding = _role_binding(
            [{"kind": "ServiceAccount", "name": "airflow-worker"}], "ClusterRole", "view", cluster=True
        )

        [problem] = _refs([_namespace(), _service_account("airflow-worker"), _item(binding)])

        assert problem.object == "ClusterRoleBinding/pod-launcher-binding"
        assert "subject ServiceAccount 'airflow-worker' has no namespace" in problem.message


class TestRbacRoleRefs:
    def test_a_binding_to_a_missing_role_is_reported(self) -> None:
        binding = _role_binding([{"kind": "ServiceAccount", "name": "default"}], "Role", "pod-launcher")

        [problem] = _refs([_namespace(), _item(binding)])

        assert problem.rule == "rbac-roleref"
        assert problem.message == (
            "RoleBinding/airflow/pod-launcher-binding roleRef references Role airflow/pod-launcher, "
            "which is not declared in the stack"
        )

    @pytest.mark.parametrize("name", ["view", "edit", "admin", "cluster-admin", "system:auth-delegator"])
    def test_a_binding_to_a_kubernetes_built_in_cluster_role_resolves(self, name: str) -> None:
        binding = _role_binding([{"kind": "ServiceAccount", "name": "default"}], "ClusterRole", name)

        assert _refs([_namespace(), _item(binding)]) == []

    def test_a_binding_to_a_pre_existing_cluster_role_from_the_facts_resolves(self) -> None:
        binding = _role_binding([], "ClusterRole", "psp:restricted", cluster=True)

        assert _refs([_item(binding)], ClusterFacts(cluster_roles=frozenset({"psp:restricted"}))) == []

    def test_a_binding_to_a_missing_cluster_role_is_reported(self) -> None:
        binding = _role_binding([], "ClusterRole", "spark-operator", cluster=True)

        [problem] = _refs([_item(binding)])

        assert problem.message == (
            "ClusterRoleBinding/pod-launcher-binding roleRef references ClusterRole spark-operator, which is not "
            "declared in the stack, in the cluster facts, or a Kubernetes built-in"
        )


# --------------------------------------------------------------------------- references: Services and monitoring


class TestServiceSelectors:
    def test_a_service_selecting_a_pod_template_with_a_named_port_resolves(self) -> None:
        deployment = _deployment(
            "api", labels={"app": "api", "tier": "web"}, container={"ports": [{"name": "http", "containerPort": 8080}]}
        )
        service = _service("api", {"app": "api"}, ports=[{"name": "http", "port": 80, "targetPort": "http"}])

        assert _refs([_namespace(), _item(deployment), _item(service)]) == []

    def test_a_service_selecting_nothing_is_reported(self) -> None:
        deployment = _deployment("api", labels={"app": "api"})
        service = _service("api", {"app": "api-server"})

        [problem] = _refs([_namespace(), _item(deployment), _item(service, "svc")])

        assert problem.rule == "service-selector"
        assert problem.object == "Service/airflow/api"
        assert problem.message == (
            "Service/airflow/api selector {app=api-server} matches no pod template in namespace airflow "
            "(1 pod templates there, none carries all these labels)"
        )

    def test_a_pod_template_in_another_namespace_does_not_count(self) -> None:
        deployment = _deployment("api", namespace="other", labels={"app": "api"})

        [problem] = _refs(
            [_namespace(), _namespace("other"), _item(deployment), _item(_service("api", {"app": "api"}))]
        )

        assert "matches no pod template in namespace airflow" in problem.message

    def test_a_named_target_port_no_selected_pod_declares_is_reported(self) -> None:
        deployment = _deployment(
            "api", labels={"app": "api"}, container={"ports": [{"name": "web", "containerPort": 8080}]}
        )
        service = _service("api", {"app": "api"}, ports=[{"name": "http", "port": 80, "targetPort": "http"}])

        [problem] = _refs([_namespace(), _item(deployment), _item(service)])

        assert problem.message == (
            "Service/airflow/api port 'http' targetPort 'http' is not a named containerPort of any selected pod "
            "template (Deployment/airflow/api names: web)"
        )

    def test_a_service_without_a_selector_is_not_checked(self) -> None:
        service = _service("external", {})

        assert _refs([_namespace(), _item(service)]) == []

    def test_pre_existing_pods_from_the_cluster_facts_can_be_selected(self) -> None:
        service = _service("coredns", {"k8s-app": "kube-dns"}, namespace="kube-system", ports=[{"port": 9153}])
        facts = ClusterFacts(pod_labels=frozenset({"kube-system/k8s-app=kube-dns,tier=node"}))

        assert _refs([_item(service)], facts) == []
        assert [p.rule for p in _refs([_item(service)])] == ["service-selector"]

    def test_pods_prometheus_operator_creates_for_a_prometheus_resource_can_be_selected(self) -> None:
        prometheus = {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "Prometheus",
            "metadata": {"name": "kps-prometheus", "namespace": "monitoring"},
            "spec": {},
        }
        service = _service(
            "kps-prometheus",
            {"app.kubernetes.io/name": "prometheus", "operator.prometheus.io/name": "kps-prometheus"},
            namespace="monitoring",
            ports=[{"name": "reloader-web", "port": 8080, "targetPort": "reloader-web"}],
        )

        assert _refs([_namespace("monitoring"), _item(prometheus), _item(service)]) == []


def _service_monitor(
    selector: dict[str, Any], endpoints: list[dict[str, Any]], namespace_selector: dict[str, Any] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": selector, "endpoints": endpoints}
    if namespace_selector is not None:
        spec["namespaceSelector"] = namespace_selector
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "airflow-statsd", "namespace": "monitoring"},
        "spec": spec,
    }


class TestServiceMonitors:
    def _stack(self) -> list[Item]:
        statsd = _deployment(
            "airflow-statsd",
            labels={"component": "statsd"},
            container={"ports": [{"name": "statsd-scrape", "containerPort": 9102}]},
        )
        service = _service(
            "airflow-statsd",
            {"component": "statsd"},
            labels={"component": "statsd", "release": "airflow"},
            ports=[{"name": "statsd-scrape", "port": 9102, "targetPort": 9102}],
        )
        return [_namespace(), _namespace("monitoring"), _item(statsd), _item(service)]

    def test_a_service_monitor_on_a_named_service_port_resolves(self) -> None:
        monitor = _service_monitor(
            {"matchLabels": {"component": "statsd"}}, [{"port": "statsd-scrape"}], {"matchNames": ["airflow"]}
        )

        assert _refs([*self._stack(), _item(monitor)]) == []

    def test_a_service_monitor_on_a_missing_port_is_reported(self) -> None:
        monitor = _service_monitor(
            {"matchLabels": {"component": "statsd"}}, [{"port": "metrics"}], {"matchNames": ["airflow"]}
        )

        [problem] = _refs([*self._stack(), _item(monitor, "monitoring")])

        assert problem.rule == "servicemonitor"
        assert problem.object == "ServiceMonitor/monitoring/airflow-statsd"
        assert problem.message == (
            "ServiceMonitor/monitoring/airflow-statsd endpoint 0 port 'metrics' is not a named port of any selected "
            "Service (Service/airflow/airflow-statsd has: statsd-scrape)"
        )

    def test_a_service_monitor_looks_in_its_own_namespace_by_default(self) -> None:
        monitor = _service_monitor({"matchLabels": {"component": "statsd"}}, [{"port": "statsd-scrape"}])

        [problem] = _refs([*self._stack(), _item(monitor)])

        assert problem.message == (
            "ServiceMonitor/monitoring/airflow-statsd selector {component=statsd} matches no Service in "
            "namespace(s) monitoring"
        )

    def test_a_service_monitor_for_any_namespace_resolves(self) -> None:
        monitor = _service_monitor({"matchLabels": {"component": "statsd"}}, [{"port": "statsd-scrape"}], {"any": True})

        assert _refs([*self._stack(), _item(monitor)]) == []

    def test_match_expressions_are_evaluated(self) -> None:
        selects = {
            "matchExpressions": [
                {"key": "component", "operator": "In", "values": ["statsd", "x"]},
                {"key": "release", "operator": "Exists"},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "release", "operator": "NotIn", "values": ["other"]},
            ]
        }
        misses = {"matchExpressions": [{"key": "release", "operator": "NotIn", "values": ["airflow"]}]}

        good = _service_monitor(selects, [{"port": "statsd-scrape"}], {"matchNames": ["airflow"]})
        bad = _service_monitor(misses, [{"port": "statsd-scrape"}], {"matchNames": ["airflow"]})

        assert _refs([*self._stack(), _item(good)]) == []
        [problem] = _refs([*self._stack(), _item(bad)])
        assert "selector {release NotIn (airflow)} matches no Service in namespace(s) airflow" in problem.message

    def test_a_target_port_is_matched_against_services_and_their_pods(self) -> None:
        by_number = _service_monitor({"matchLabels": {"component": "statsd"}}, [{"targetPort": 9102}], {"any": True})
        by_name = _service_monitor(
            {"matchLabels": {"component": "statsd"}}, [{"targetPort": "statsd-scrape"}], {"any": True}
        )
        wrong = _service_monitor({"matchLabels": {"component": "statsd"}}, [{"targetPort": "metrics"}], {"any": True})

        assert _refs([*self._stack(), _item(by_number)]) == []
        assert _refs([*self._stack(), _item(by_name)]) == []
        [problem] = _refs([*self._stack(), _item(wrong)])
        assert "endpoint 0 targetPort 'metrics' matches no targetPort of the selected Services" in problem.message

    def test_the_api_servers_own_service_counts_as_existing(self) -> None:
        monitor = _service_monitor(
            {"matchLabels": {"component": "apiserver", "provider": "kubernetes"}},
            [{"port": "https"}],
            {"matchNames": ["default"]},
        )

        assert _refs([_namespace("monitoring"), _item(monitor)]) == []


# --------------------------------------------------------------------------- references: namespaces and duplicates


class TestNamespaces:
    def test_objects_in_a_declared_namespace_resolve(self) -> None:
        assert _refs([_namespace(), _config_map("c", {})]) == []

    def test_objects_in_built_in_or_pre_existing_namespaces_resolve(self) -> None:
        items = [_config_map("c", {}, namespace="kube-system"), _config_map("d", {}, namespace="platform")]

        assert _refs(items, ClusterFacts(namespaces=frozenset({"platform"}))) == []

    def test_an_object_in_an_undeclared_namespace_is_reported(self) -> None:
        [problem] = _refs([_config_map("c", {}, namespace="airflw")])

        assert problem.rule == "namespace"
        assert problem.message == (
            "ConfigMap/airflw/c is in namespace 'airflw', which is neither declared in the stack (kind Namespace) "
            "nor listed as pre-existing in the cluster facts"
        )

    def test_a_namespaced_object_without_a_namespace_is_reported(self) -> None:
        config_map = _config_map("c", {})
        del config_map.obj["metadata"]["namespace"]

        [problem] = _refs([config_map])

        assert problem.message == "ConfigMap/c is namespaced but has no metadata.namespace"

    def test_cluster_scoped_objects_need_no_namespace(self) -> None:
        cluster_role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "r"},
            "rules": [],
        }

        assert _refs([_item(cluster_role)]) == []


class TestDuplicates:
    def test_the_same_object_declared_twice_is_reported(self) -> None:
        items = [_namespace(), _item(_deployment(), "pulumi:scheduler"), _item(_deployment(), "airflow-release")]

        [problem] = _refs(items)

        assert problem.rule == "duplicate"
        assert problem.message == (
            "Deployment/airflow/airflow-scheduler is declared twice: by pulumi:scheduler and by airflow-release"
        )

    def test_same_names_in_other_namespaces_or_kinds_are_not_duplicates(self) -> None:
        items = [
            _namespace(),
            _namespace("other"),
            _config_map("x", {}),
            _config_map("x", {}, namespace="other"),
            _secret("x", {}),
        ]

        assert _refs(items) == []


# --------------------------------------------------------------------------- the real Airflow chart


@pytest.fixture(scope="module")
def airflow_default_render() -> list[Item]:
    return _render(AIRFLOW_CHART, "airflow", "airflow")


class TestRealAirflowChart:
    def test_the_default_render_passes_the_strict_kubernetes_schemas(self, airflow_default_render: list[Item]) -> None:
        assert schema_problems(airflow_default_render) == []

    def test_the_default_render_has_no_custom_resources(self, airflow_default_render: list[Item]) -> None:
        assert crd_problems(airflow_default_render, []) == []

    def test_every_reference_in_the_default_render_resolves(self, airflow_default_render: list[Item]) -> None:
        # With chart defaults every Secret, ConfigMap, ServiceAccount, Role and selector resolves
        # within the release itself; nothing pre-existing is needed.
        assert reference_problems(airflow_default_render, ClusterFacts()) == []

    def test_dropping_the_fernet_key_secret_is_caught_in_every_pod_that_uses_it(
        self, airflow_default_render: list[Item]
    ) -> None:
        items = [i for i in airflow_default_render if i.obj["metadata"]["name"] != "airflow-fernet-key"]

        problems = reference_problems(items, ClusterFacts())

        assert {p.rule for p in problems} == {"secret-ref"}
        assert all(
            "env AIRFLOW__CORE__FERNET_KEY references Secret airflow/airflow-fernet-key, which is not declared"
            in p.message
            for p in problems
        )
        assert "StatefulSet/airflow/airflow-worker" in {p.object for p in problems}
        assert "Deployment/airflow/airflow-scheduler" in {p.object for p in problems}

    def test_a_misspelled_secret_key_is_caught(self, airflow_default_render: list[Item]) -> None:
        items = copy.deepcopy(airflow_default_render)
        fernet = next(i for i in items if i.obj["metadata"]["name"] == "airflow-fernet-key")
        fernet.obj["data"] = {"fernet_key": fernet.obj["data"]["fernet-key"]}

        problems = reference_problems(items, ClusterFacts())

        assert problems
        assert all(
            "references key 'fernet-key' that Secret airflow/airflow-fernet-key does not have (it has: fernet_key)"
            in p.message
            for p in problems
        )

    def test_two_hundred_objects_are_schema_validated_within_two_seconds(
        self, airflow_default_render: list[Item]
    ) -> None:
        items = (airflow_default_render * 6)[:200]
        schemas._builtin_validator.cache_clear()
        schemas._schema_registry.cache_clear()

        started = time.perf_counter()
        problems = schema_problems(items)
        elapsed = time.perf_counter() - started

        assert problems == []
        assert elapsed < 2.0, f"schema validation of 200 objects took {elapsed:.2f}s"


# --------------------------------------------------------------------------- checkov


def _checkov_installed() -> bool:
    try:
        checkov._checkov_command()
    except RuntimeError:
        return False
    return True


class TestCheckov:
    @pytest.mark.skipif(not _checkov_installed(), reason="checkov is not installed")
    def test_checkov_reports_passed_and_failed_checks_of_a_manifest_directory(self, tmp_path: pathlib.Path) -> None:
        manifests = tmp_path / "manifests"
        manifests.mkdir()
        deployment = _deployment(container={"securityContext": {"privileged": True}})
        (manifests / "deployment.yaml").write_text(yaml.safe_dump(deployment))
        report = tmp_path / "out" / "checkov.json"

        passed, failed, summaries = run_checkov(manifests, report)

        assert passed > 0
        assert failed == len(summaries) > 0
        privileged = [s for s in summaries if s["check_id"] == "CKV_K8S_16"]
        assert privileged == [
            {
                "check_id": "CKV_K8S_16",
                "check_name": "Container should not be privileged",
                "resource": "Deployment.airflow.airflow-scheduler",
                "file": "deployment.yaml",
            }
        ]
        assert json.loads(report.read_text())["summary"]["failed"] == failed

    def test_a_report_list_from_several_frameworks_is_summed(
        self, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        payload = [
            {
                "check_type": "kubernetes",
                "summary": {"passed": 3, "failed": 1},
                "results": {
                    "failed_checks": [
                        {
                            "check_id": "CKV_K8S_8",
                            "check_name": "Liveness Probe Should be Configured",
                            "resource": "Deployment.a.b",
                            "file_path": "/a.yaml",
                        }
                    ]
                },
            },
            {"check_type": "secrets", "summary": {"passed": 2, "failed": 0}, "results": {"failed_checks": []}},
        ]

        def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
            assert "--soft-fail" in command and "--skip-download" in command
            assert kwargs["env"]["BC_SKIP_MAPPING"] == "TRUE"
            return subprocess.CompletedProcess(command, 0, stdout=json.dumps(payload), stderr="")

        monkeypatch.setattr(subprocess, "run", fake_run)
        monkeypatch.setattr(checkov, "_checkov_command", lambda: ["checkov"])

        passed, failed, summaries = run_checkov(tmp_path, tmp_path / "report.json")

        assert (passed, failed) == (5, 1)
        assert summaries == [
            {
                "check_id": "CKV_K8S_8",
                "check_name": "Liveness Probe Should be Configured",
                "resource": "Deployment.a.b",
                "file": "a.yaml",
            }
        ]
        assert json.loads((tmp_path / "report.json").read_text()) == payload

    def test_an_empty_directory_reports_nothing(self, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
        summary_only = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0, "resource_count": 0}

        def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
            return subprocess.CompletedProcess(command, 0, stdout=json.dumps(summary_only), stderr="")

        monkeypatch.setattr(subprocess, "run", fake_run)
        monkeypatch.setattr(checkov, "_checkov_command", lambda: ["checkov"])

        assert run_checkov(tmp_path, tmp_path / "report.json") == (0, 0, [])

    def test_checkov_failing_without_a_report_raises(
        self, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
            return subprocess.CompletedProcess(command, 2, stdout="", stderr="boom")

        monkeypatch.setattr(subprocess, "run", fake_run)
        monkeypatch.setattr(checkov, "_checkov_command", lambda: ["checkov"])

        with pytest.raises(RuntimeError, match="checkov exited 2 without a JSON report: boom"):
            run_checkov(tmp_path, tmp_path / "report.json")


class TestIngressReferences:
    @staticmethod
    def _ingress(class_name: str = "nginx", service: str = "airflow-api-server", port: Any = None) -> Item:
        backend = {"service": {"name": service, "port": port or {"name": "api-server"}}}
        return _item(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": "ui", "namespace": "airflow"},
                "spec": {
                    "ingressClassName": class_name,
                    "rules": [
                        {
                            "host": "a.example.com",
                            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                        }
                    ],
                },
            }
        )

    @staticmethod
    def _service() -> Item:
        return _item(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "airflow-api-server", "namespace": "airflow"},
                "spec": {"ports": [{"name": "api-server", "port": 8080}]},
            }
        )

    def test_an_ingress_on_a_declared_class_and_service_port_resolves(self) -> None:
        facts = ClusterFacts(ingress_classes=frozenset({"nginx"}))
        problems = reference_problems([_namespace(), self._service(), self._ingress()], facts)
        assert [p for p in problems if p.rule == "ingress"] == []

    def test_an_ingress_on_an_undeclared_class_is_reported(self) -> None:
        problems = [
            p
            for p in reference_problems([_namespace(), self._service(), self._ingress()], ClusterFacts())
            if p.rule == "ingress"
        ]
        assert [p.message for p in problems] == [
            "Ingress/airflow/ui uses ingressClassName 'nginx', which is not an IngressClass declared in the stack "
            "or in cluster.ingressClasses (known: none)"
        ]

    def test_an_ingress_to_a_missing_port_is_reported(self) -> None:
        facts = ClusterFacts(ingress_classes=frozenset({"nginx"}))
        items = [_namespace(), self._service(), self._ingress(port={"number": 80})]
        problems = [p for p in reference_problems(items, facts) if p.rule == "ingress"]
        assert [p.message for p in problems] == [
            "Ingress/airflow/ui routes to port 80 of Service airflow/airflow-api-server, which has no such port"
        ]


class TestVolumeBinding:
    @staticmethod
    def _pv(**spec: Any) -> Item:
        base = {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "local",
            "hostPath": {"path": "/d"},
        }
        return _item(
            {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "logs-pv"}, "spec": {**base, **spec}}
        )

    @staticmethod
    def _claim(**spec: Any) -> Item:
        base = {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "local",
            "volumeName": "logs-pv",
            "resources": {"requests": {"storage": "10Gi"}},
        }
        return _item(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "logs", "namespace": "airflow"},
                "spec": {**base, **spec},
            }
        )

    def _binding(self, pv: Item, claim: Item) -> list[str]:
        facts = ClusterFacts(storage_classes=frozenset({"local", "other"}))
        return [p.message for p in reference_problems([_namespace(), pv, claim], facts) if p.rule == "pv-binding"]

    def test_a_claim_that_fits_its_volume_binds(self) -> None:
        assert self._binding(self._pv(), self._claim()) == []

    def test_a_claim_larger_than_its_volume_is_reported(self) -> None:
        assert self._binding(self._pv(capacity={"storage": "1Gi"}), self._claim()) == [
            "PersistentVolumeClaim/airflow/logs requests 10Gi but PersistentVolume logs-pv has a capacity of 1Gi"
        ]

    def test_a_claim_on_another_class_or_access_mode_is_reported(self) -> None:
        messages = self._binding(self._pv(accessModes=["ReadWriteOnce"]), self._claim(storageClassName="other"))
        assert messages == [
            "PersistentVolumeClaim/airflow/logs has storageClassName 'other' "
            "but its PersistentVolume logs-pv has 'local'",
            "PersistentVolumeClaim/airflow/logs asks for access modes ReadWriteMany that PersistentVolume logs-pv "
            "does not offer (it has: ReadWriteOnce)",
        ]


class TestBuiltInObjects:
    def test_the_root_ca_config_map_kubernetes_publishes_in_every_namespace_resolves(self) -> None:
        volume = {
            "name": "kube-api-access",
            "projected": {
                "sources": [{"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]
            },
        }
        obj = _deployment(pod={"volumes": [volume]})
        assert [p for p in _refs([_namespace(), _item(obj)]) if p.rule == "configmap-ref"] == []

    def test_a_missing_key_of_the_root_ca_config_map_is_still_reported(self) -> None:
        volume = {"name": "ca", "configMap": {"name": "kube-root-ca.crt", "items": [{"key": "nope", "path": "x"}]}}
        obj = _deployment(pod={"volumes": [volume]})
        assert [p.rule for p in _refs([_namespace(), _item(obj)])] == ["configmap-ref"]
