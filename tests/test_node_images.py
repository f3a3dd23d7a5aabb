"""The real node's images (e2e/node/images.py, recipes.py): which recipe builds a reference,
what cannot be built (named before anything is deployed), and cache keys that follow every
input of a build."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from components.offline.preview import preview
from e2e.node import builders, images, operator_builders
from e2e.node.builders import airflow_constraints
from e2e.node.debian import BuildError
from e2e.node.recipes import RECIPES, Recipe, Selected, cache_key, reasons, select, split
from tests.helpers import ROOT

DEV_IMAGES = {
    "apache/airflow:3.2.0": "airflow",
    "busybox:1.37.0": "busybox",
    "docker.io/bitnamilegacy/postgresql:16.1.0-debian-11-r15": "postgresql",
    "quay.io/prometheus/statsd-exporter:v0.29.0": "statsd-exporter",
    "registry.k8s.io/pause:3.6": "pause",
    "registry.k8s.io/coredns/coredns:v1.14.7": "coredns",
    "python:3.13.7-slim-bookworm": "python",
    "airflow-k8s-task:1.0.0": "task",
    "redis:7.2-bookworm": "redis",
    "apache/airflow:airflow-pgbouncer-2026.04.17-1.23.1": "pgbouncer",
}

# The prod stack's images built here: what its rendered pods name, what its operators make
# (Prometheus, the config reloader) and the image of the SparkApplication the example DAG submits.
PROD_IMAGES = {
    "ghcr.io/kedacore/keda:2.20.2": "keda",
    "ghcr.io/kedacore/keda-metrics-apiserver:2.20.2": "keda-metrics-apiserver",
    "ghcr.io/kedacore/keda-admission-webhooks:2.20.2": "keda-admission-webhooks",
    "quay.io/prometheus/prometheus:v3.14.0-distroless": "prometheus",
    "quay.io/prometheus-operator/prometheus-operator:v0.93.1": "prometheus-operator",
    "quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1": "prometheus-config-reloader",
    "ghcr.io/kubeflow/spark-operator/controller:2.5.2": "spark-operator",
    "docker.io/library/spark:4.0.0": "spark",
}
# What the prod stack runs that no recipe builds (docs/images.md says why, per image).
PROD_UNBUILDABLE = {
    "apache/airflow:airflow-pgbouncer-exporter-2026.04.17-0.18.0",
    "registry.k8s.io/git-sync/git-sync:v4.4.2",
    "docker.io/grafana/grafana:13.2.0",
    "quay.io/kiwigrid/k8s-sidecar:2.10.1",
    "ghcr.io/jkroepke/kube-webhook-certgen:1.8.7",
    "quay.io/prometheus/node-exporter:v1.12.1-distroless",
    "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.20.0",
    "quay.io/prometheus/alertmanager:v0.34.0",
}


def selected(ref: str) -> Selected:
    found = select(ref)
    assert found is not None, ref
    return found


class TestSelection:
    @pytest.mark.parametrize(("ref", "recipe"), sorted({**DEV_IMAGES, **PROD_IMAGES}.items()))
    def test_each_image_the_stacks_run_is_built_by_its_recipe(self, ref: str, recipe: str) -> None:
        assert selected(ref).recipe.name == recipe

    def test_the_airflow_version_comes_from_the_tag(self) -> None:
        assert selected("apache/airflow:3.2.1").params["version"] == "3.2.1"
        assert selected("docker.io/apache/airflow:3.2.2-python3.11").params["version"] == "3.2.2"

    def test_the_pgbouncer_tags_of_the_airflow_repository_are_not_taken_for_airflow_versions(self) -> None:
        assert selected("apache/airflow:airflow-pgbouncer-2026.04.17-1.23.1").params["version"] == "1.23.1"
        exporter = selected("apache/airflow:airflow-pgbouncer-exporter-2026.04.17-0.18.0")
        assert exporter.recipe.name == "pgbouncer-exporter"

    def test_pgbouncer_comes_from_the_debian_release_whose_pgbouncer_takes_the_stacks_settings(self) -> None:
        # bookworm's PgBouncer 1.18 refuses max_prepared_statements; trixie's is 1.24
        assert selected("apache/airflow:airflow-pgbouncer-2026.04.17-1.23.1").recipe.suite == "trixie"
        assert selected("apache/airflow:3.2.0").recipe.suite == "bookworm"

    def test_no_reference_is_covered_by_two_recipes(self) -> None:
        others = ["apache/airflow:3.2.1-python3.12", "registry.k8s.io/git-sync/git-sync:v4.4.2"]
        for ref in [*DEV_IMAGES, *PROD_IMAGES, *others]:
            repository, tag = split(ref)
            matching = [r for r in RECIPES if r.repository == repository and r.params(tag) is not None]
            assert len(matching) == 1, (ref, [r.name for r in matching])

    def test_a_name_and_its_docker_hub_spelling_select_the_same_build(self) -> None:
        short, full = selected("busybox:1.37.0"), selected("docker.io/library/busybox:1.37.0")
        assert (short.name, cache_key(short)) == (full.name, cache_key(full))


class TestUnbuildable:
    def test_every_image_the_stacks_run_can_be_built(self) -> None:
        assert images.unbuildable({**DEV_IMAGES, **PROD_IMAGES}) == []

    def test_an_unknown_repository_is_named_with_where_the_recipes_are_listed(self) -> None:
        assert reasons(["ghcr.io/example/thing:1.0"]) == {
            "ghcr.io/example/thing:1.0": "no recipe builds ghcr.io/example/thing "
            "(`python -m e2e.node.images list` names those there are)"
        }

    def test_an_unknown_tag_names_the_tags_its_repository_takes(self) -> None:
        why = reasons(["apache/airflow:2.11.0"])["apache/airflow:2.11.0"]
        assert why.startswith("no recipe builds tag '2.11.0' of docker.io/apache/airflow (tags matching: ")
        assert r"(?P<version>3\.2\.\d+)" in why

    def test_a_python_variant_debian_has_no_python_for_is_named_with_the_reason(self) -> None:
        assert reasons(["apache/airflow:3.2.1-python3.12"]) == {
            "apache/airflow:3.2.1-python3.12": "Debian bookworm's Python is 3.11: only the default and "
            "-python3.11 tags can be built"
        }

    def test_sources_the_go_module_proxy_does_not_serve_are_named(self) -> None:
        refs = [
            "registry.k8s.io/git-sync/git-sync:v4.4.2",
            "apache/airflow:airflow-pgbouncer-exporter-2026.04.17-0.18.0",
        ]
        refs += ["ghcr.io/jkroepke/kube-webhook-certgen:1.8.7", "docker.io/grafana/grafana:13.2.0"]
        found = reasons(refs)
        assert "the Go module k8s.io/git-sync, is not served by the Go module proxy" in found[refs[0]]
        assert "the Go module github.com/jbub/pgbouncer_exporter, is not served" in found[refs[1]]
        assert "github.com/jkroepke/kube-webhook-certgen, is not served by the Go module proxy" in found[refs[2]]
        assert "(403: This module version is not available)" in found[refs[2]]
        assert "the Go module github.com/grafana/grafana, is not served" in found[refs[3]]

    def test_a_reference_pinned_by_digest_is_never_built(self) -> None:
        ref = "busybox:1.37.0@sha256:" + "0" * 64
        assert images.unbuildable([ref, "busybox:1.37.0"]) == [ref]

    def test_build_refuses_before_building_anything_and_names_every_reference(self, tmp_path: Path) -> None:
        with pytest.raises(images.ImageError) as error:
            images.build(["busybox:1.37.0", "redis:6", "ghcr.io/x/y:1"], tmp_path, echo=lambda _: None)
        assert str(error.value).startswith("no build for:\nghcr.io/x/y:1: no recipe builds ghcr.io/x/y")
        assert "\nredis:6: no recipe builds tag '6' of docker.io/library/redis" in str(error.value)
        assert not (tmp_path / "images").exists()


def copy_inputs(tmp_path: Path, recipe: Recipe, params: dict[str, str]) -> Path:
    for relative in recipe.inputs(params):
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / relative, target)
    return tmp_path


class TestCacheKeys:
    def test_the_same_inputs_give_the_same_key(self) -> None:
        assert cache_key(selected("apache/airflow:3.2.0")) == cache_key(selected("apache/airflow:3.2.0"))

    def test_another_version_gives_another_key(self) -> None:
        assert cache_key(selected("apache/airflow:3.2.0")) != cache_key(selected("apache/airflow:3.2.1"))

    @pytest.mark.parametrize(
        ("ref", "relative"),
        [
            *(
                ("apache/airflow:3.2.0", relative)
                for relative in (
                    "images/airflow/constraints-3.2.txt",
                    "images/airflow/entrypoint",
                    "images/airflow/clean-logs",
                )
            ),
            *(("spark:4.0.0", relative) for relative in operator_builders.SPARK_FILES),
            ("ghcr.io/kubeflow/spark-operator/controller:2.5.2", "images/spark-operator/entrypoint.sh"),
        ],
    )
    def test_a_change_to_a_file_the_build_reads_gives_another_key(
        self, tmp_path: Path, ref: str, relative: str
    ) -> None:
        choice = selected(ref)
        repo = copy_inputs(tmp_path, choice.recipe, choice.params)
        before = cache_key(choice, repo)
        with (repo / relative).open("a") as handle:
            handle.write("\n# changed\n")
        assert cache_key(choice, repo) != before

    def test_another_debian_release_gives_another_key(self) -> None:
        choice = selected("redis:7.2-bookworm")
        changed = dataclasses.replace(choice, recipe=dataclasses.replace(choice.recipe, suite="trixie"))
        assert cache_key(changed) != cache_key(choice)

    def test_other_debian_packages_give_another_key(self) -> None:
        choice = selected("redis:7.2-bookworm")
        changed = dataclasses.replace(choice, recipe=dataclasses.replace(choice.recipe, debian=("redis-tools",)))
        assert cache_key(changed) != cache_key(choice)

    def test_another_build_function_gives_another_key(self) -> None:
        choice = selected("redis:7.2-bookworm")
        changed = dataclasses.replace(choice, recipe=dataclasses.replace(choice.recipe, build=builders.python))
        assert cache_key(changed) != cache_key(choice)

    def test_another_go_module_version_gives_another_key(self) -> None:
        assert cache_key(selected("quay.io/prometheus/statsd-exporter:v0.29.0")) != cache_key(
            selected("quay.io/prometheus/statsd-exporter:v0.28.0")
        )
        assert selected("quay.io/prometheus/statsd-exporter:v0.28.0").recipe.modules({"version": "0.28.0"}) == [
            "github.com/prometheus/statsd_exporter@v0.28.0"
        ]

    def test_a_cached_archive_is_found_under_its_key(self, tmp_path: Path) -> None:
        choice = selected("busybox:1.37.0")
        archive = images.archive_path(tmp_path, choice, cache_key(choice))
        assert images.cached(["busybox:1.37.0"], tmp_path) == {"busybox:1.37.0": None}
        archive.parent.mkdir(parents=True)
        archive.write_bytes(b"")
        assert images.cached(["busybox:1.37.0", "ghcr.io/x/y:1"], tmp_path) == {"busybox:1.37.0": archive}


class TestAirflowPins:
    def test_the_image_build_sets_the_airflow_version_itself(self) -> None:
        text = "apache-airflow==3.2.2\napache-airflow-core==3.2.2\napache-airflow-task-sdk==1.2.2\ncelery==5.6.3\n"
        assert airflow_constraints(text) == "celery==5.6.3\n"

    def test_a_version_with_a_constraints_file_of_its_own_uses_it(self) -> None:
        assert selected("apache/airflow:3.2.2").params == {"version": "3.2.2", "constraints": "3.2.2"}
        assert selected("apache/airflow:3.2.1").recipe.inputs(selected("apache/airflow:3.2.1").params)[0] == (
            "images/airflow/constraints-3.2.txt"
        )


class TestCache:
    def test_the_cache_folder_can_be_moved_with_an_environment_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AIRFLOW_K8S_IMAGES_CACHE", "/somewhere/images")
        assert images.default_cache() == Path("/somewhere/images")
        monkeypatch.delenv("AIRFLOW_K8S_IMAGES_CACHE")
        assert images.default_cache() == Path.home() / ".cache" / "airflow-k8s-images"

    def test_prune_removes_the_archives_built_from_inputs_that_changed_and_keeps_the_current(
        self, tmp_path: Path
    ) -> None:
        choice = selected("busybox:1.37.0")
        current = images.archive_path(tmp_path, choice, cache_key(choice))
        stale = images.archive_path(tmp_path, choice, "0" * 64)
        for archive, key in ((current, cache_key(choice)), (stale, "0" * 64)):
            archive.parent.mkdir(parents=True, exist_ok=True)
            archive.write_bytes(b"x" * 10)
            record = {"ref": "busybox:1.37.0", "name": choice.name, "key": key, "seconds": 1.0, "bytes": 10}
            archive.with_suffix(".json").write_text(json.dumps(record))
        assert {record["archive"]: up for record, up in images.archives(tmp_path)} == {current: True, stale: False}
        assert images.prune(tmp_path, echo=lambda _: None) == 10
        assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted([current.name, current.stem + ".json"])

    def test_a_finished_build_tree_and_what_an_interrupted_build_left_are_removed(self, tmp_path: Path) -> None:
        tree, left = tmp_path / "work" / "abc", tmp_path / "trash" / "old"
        for folder in (tree / "rootfs" / "usr", left):
            folder.mkdir(parents=True)
        images._discard(tree, tmp_path / "trash").join()
        assert not tree.exists()
        assert list((tmp_path / "trash").iterdir()) == []

    def test_uv_is_the_version_run_sh_installs(self) -> None:
        assert images.run_sh_uv_version() in (ROOT / "run.sh").read_text()


@pytest.fixture(scope="module")
def dev_preview(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return preview(ROOT, "dev", tmp_path_factory.mktemp("dev"), run_checkov=False, releases_exist=False)


OPTIONAL = ("spark-release", "monitoring-release")  # the Spark operator and kube-prometheus-stack


class TestStackImages:
    def test_every_image_of_the_dev_stack_but_spark_and_monitoring_can_be_built(self, dev_preview: Any) -> None:
        objects = [o for s in dev_preview.sources if not s.name.startswith(OPTIONAL) for o in s.objects]
        needed = images.pod_images(objects)
        assert {"apache/airflow:3.2.0", "busybox:1.37.0", "quay.io/prometheus/statsd-exporter:v0.29.0"} <= needed
        assert images.unbuildable(needed | images.dag_images()) == []

    def test_the_images_no_recipe_builds_are_some_of_monitorings_and_none_of_sparks(self, dev_preview: Any) -> None:
        monitoring = [o for s in dev_preview.sources if s.name.startswith("monitoring-release") for o in s.objects]
        spark = [o for s in dev_preview.sources if s.name.startswith("spark-release") for o in s.objects]
        left = images.unbuildable(images.pod_images(dev_preview.objects))
        assert left and set(left) <= images.pod_images(monitoring)
        assert "quay.io/prometheus-operator/prometheus-operator:v0.93.1" not in left
        assert images.unbuildable(images.pod_images(spark) | images.operator_images(spark)) == []

    def test_the_dags_task_images_are_read_from_their_conventions(self) -> None:
        assert images.dag_images() == {"python:3.13.7-slim-bookworm", "busybox:1.37.0", "airflow-k8s-task:1.0.0"}


@pytest.mark.skipif(os.geteuid() != 0, reason="the check runs the image in namespaces: root only")
@pytest.mark.skipif(
    None in images.cached(["apache/airflow:3.2.0", "docker.io/bitnamilegacy/postgresql:16.1.0-debian-11-r15"]).values(),
    reason="the Airflow and PostgreSQL images are not cached (python -m e2e.node.images build ...)",
)
class TestAirflowImageRuns:
    def test_migrate_api_server_scheduler_and_log_groomer_run_from_the_image(self) -> None:
        from e2e.node.image_check import check

        lines: list[str] = []
        assert check("apache/airflow:3.2.0", echo=lines.append) == 0, "\n".join(lines)


class TestProdRecipes:
    def test_prometheus_3_is_built_from_the_go_module_version_that_carries_it(self) -> None:
        assert operator_builders.prometheus_module_version("3.14.0") == "v0.314.0"
        assert operator_builders.prometheus_module_version("2.55.1") == "v0.55.1"
        choice = selected("quay.io/prometheus/prometheus:v3.14.0-distroless")
        assert choice.recipe.modules(choice.params) == ["github.com/prometheus/prometheus@v0.314.0"]

    def test_only_the_distroless_prometheus_is_built(self) -> None:
        why = reasons(["quay.io/prometheus/prometheus:v3.14.0"])["quay.io/prometheus/prometheus:v3.14.0"]
        assert why.startswith("no recipe builds tag 'v3.14.0' of quay.io/prometheus/prometheus")

    def test_the_three_keda_images_come_from_one_go_module_at_the_tags_version(self) -> None:
        refs = [ref for ref in PROD_IMAGES if ref.startswith("ghcr.io/kedacore/")]
        modules = {tuple(selected(ref).recipe.modules(selected(ref).params)) for ref in refs}
        assert modules == {("github.com/kedacore/keda/v2@v2.20.2",)}
        assert len({cache_key(selected(ref)) for ref in refs}) == 3

    def test_the_spark_operator_submits_with_the_spark_of_the_dags_application(self) -> None:
        # its own image has Spark 4.0.4, whose spark-kubernetes Maven Central does not carry
        operator = selected("ghcr.io/kubeflow/spark-operator/controller:2.5.2")
        assert operator.params == {"version": "2.5.2", "spark": "4.0.0"}
        (application,) = images.spark_application_images()
        assert split(application)[1] == operator.params["spark"]

    def test_a_spark_operator_release_whose_spark_is_not_known_is_named(self) -> None:
        ref = "ghcr.io/kubeflow/spark-operator/controller:2.6.0"
        assert reasons([ref])[ref].startswith(
            "no recipe builds tag '2.6.0' of ghcr.io/kubeflow/spark-operator/controller"
        )

    def test_the_spark_version_comes_from_the_tag(self) -> None:
        assert selected("spark:4.0.0").params == {"version": "4.0.0"}
        assert cache_key(selected("spark:4.0.0")) != cache_key(selected("spark:4.0.1"))


def prometheus_cr(image: str) -> dict[str, Any]:
    return {"kind": "Prometheus", "metadata": {"name": "p"}, "spec": {"image": image}}


def deployment(image: str, *args: str) -> dict[str, Any]:
    container = {"name": "c", "image": image, "args": list(args)}
    return {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [container]}}}}


class TestOperatorImages:
    def test_the_image_a_prometheus_resource_names_is_an_image_the_stack_runs(self) -> None:
        assert images.operator_images([prometheus_cr("quay.io/prometheus/prometheus:v3.14.0-distroless")]) == {
            "quay.io/prometheus/prometheus:v3.14.0-distroless"
        }

    def test_the_config_reloader_the_operator_is_told_to_use_is_an_image_the_stack_runs(self) -> None:
        operator = deployment(
            "quay.io/prometheus-operator/prometheus-operator:v0.93.1",
            "--kubelet-service=kube-system/k",
            "--prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1",
        )
        assert images.operator_images([operator]) == {"quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1"}

    def test_the_spark_applications_of_the_dags_count_only_when_the_spark_operator_runs(self) -> None:
        assert images.spark_application_images() == {"docker.io/library/spark:4.0.0"}
        assert images.operator_images([deployment("ghcr.io/kubeflow/spark-operator/controller:2.5.2")]) == {
            "docker.io/library/spark:4.0.0"
        }
        assert images.operator_images([deployment("busybox:1.37.0")]) == set()


@pytest.fixture(scope="module")
def prod_preview(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return preview(ROOT, "prod", tmp_path_factory.mktemp("prod"), run_checkov=False, releases_exist=False)


class TestProdStackImages:
    def test_the_recipes_names_are_those_of_the_prod_stacks_rendered_pods_and_operators(
        self, prod_preview: Any
    ) -> None:
        needed = images.pod_images(prod_preview.objects) | images.operator_images(prod_preview.objects)
        recipe_of = {ref: select(ref) for ref in needed}
        chosen = {ref for ref, found in recipe_of.items() if found and found.recipe.name in PROD_IMAGES.values()}
        assert chosen == set(PROD_IMAGES)

    def test_what_no_recipe_builds_for_prod_is_named_and_nothing_else(self, prod_preview: Any) -> None:
        needed = images.pod_images(prod_preview.objects) | images.operator_images(prod_preview.objects)
        assert set(images.unbuildable(needed | images.dag_images())) == PROD_UNBUILDABLE


@pytest.mark.skipif(os.geteuid() != 0, reason="the check runs the image in namespaces: root only")
@pytest.mark.skipif(
    None in images.cached(["docker.io/library/spark:4.0.0"]).values(),
    reason="the Spark image is not cached (python -m e2e.node.images build spark:4.0.0)",
)
class TestSparkImageRuns:
    def test_spark_pi_runs_from_the_image_as_user_spark(self) -> None:
        from e2e.node.image_check import check

        lines: list[str] = []
        assert check("docker.io/library/spark:4.0.0", echo=lines.append) == 0, "\n".join(lines)
        assert any(line.strip().startswith("Pi is roughly 3.1") for line in lines), lines


class TestGoBuilds:
    def test_a_build_without_go_on_the_path_names_the_module_it_needed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PATH", str(tmp_path))
        ctx = builders.Context("x", tmp_path, ROOT, tmp_path / "work", tmp_path / "log", lambda _: None, Path)
        with pytest.raises(BuildError, match=r"`go` \(1.24 or newer\) is needed to build k8s.io/x@v1"):
            ctx.go_build("k8s.io/x@v1", "./cmd/x", "x")

    def test_a_cached_binary_is_used_without_go(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PATH", str(tmp_path))
        binary = tmp_path / "go" / "k8s.io_x@v1" / "x" / "x"
        binary.parent.mkdir(parents=True)
        binary.write_bytes(b"")
        ctx = builders.Context("x", tmp_path, ROOT, tmp_path / "work", tmp_path / "log", lambda _: None, Path)
        assert ctx.go_build("k8s.io/x@v1", "./cmd/x", "x") == binary
