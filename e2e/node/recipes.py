"""Which recipe builds an image reference, and the content key of that build.

A recipe covers one repository (as containerd names it) and the tags its pattern matches;
the pattern's named groups are the build's parameters (`3.2.1` -> version 3.2.1). The key
of a build hashes everything it is made from: the recipe's name and parameters, its Debian
packages, Go modules and repository files (their bytes), the Debian base, and the source of
its build function. Any change to one of them gives a new key, so a new archive.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from e2e.node import builders, operator_builders
from e2e.node.debian import NEWER, base_key
from e2e.node.oci import ImageConfig, normalise, sha256_file

REPO = Path(__file__).resolve().parents[2]
# Bump when a helper shared by several build functions (builders.py, debian.py, oci.py)
# changes what it puts into a tree: every key changes with it.
HELPERS_REVISION = "1"

Builder = Callable[[builders.Context, Mapping[str, str]], ImageConfig]


def airflow_constraints_file(params: dict[str, str]) -> dict[str, str]:
    """images/airflow/constraints-<version>.txt when there is one, else constraints-<x.y>.txt."""
    version = params["version"]
    exact = REPO / "images" / "airflow" / f"constraints-{version}.txt"
    return {"constraints": version if exact.is_file() else version.rsplit(".", 1)[0]}


# The Spark each Spark operator release's image is built on (its controller runs that Spark's
# spark-submit). 2.5.2's own image starts from Spark 4.0.4, but Maven Central has no
# spark-kubernetes 4.0.3 or 4.0.4 (4.0.2 is the newest 4.0.x there): 4.0.0 is the Spark of the
# example DAG's SparkApplication, so the submitting client and the driver agree.
SPARK_OF_SPARK_OPERATOR = {"2.5.2": "4.0.0"}


def spark_operator_spark(params: dict[str, str]) -> dict[str, str]:
    return {"spark": SPARK_OF_SPARK_OPERATOR[params["version"]]}


@dataclass(frozen=True)
class Recipe:
    name: str
    repository: str  # as containerd names it: docker.io/library/busybox
    tag: str  # a regular expression the whole tag must match; named groups are parameters
    summary: str  # what the image holds, and how it differs from the official one
    build: Builder | None = None
    base: bool = False  # starts from the Debian base tree (else from an empty one)
    suite: str = "bookworm"  # which Debian release that base is
    debian: tuple[str, ...] = ()  # Debian packages the build installs or unpacks
    files: tuple[str, ...] = ()  # repository files the build reads ({name} from parameters)
    go: tuple[str, ...] = ()  # Go modules it builds, module@version ({name} from parameters)
    unavailable: str = ""  # why no build can be made on these machines (then `build` is None)
    derive: Callable[[dict[str, str]], dict[str, str]] | None = None  # more parameters from the tag's

    def params(self, tag: str) -> dict[str, str] | None:
        match = re.fullmatch(self.tag, tag)
        if match is None:
            return None
        found = {k: v for k, v in match.groupdict().items() if v is not None}
        return {**found, **self.derive(found)} if self.derive else found

    def inputs(self, params: Mapping[str, str]) -> list[str]:
        return [path.format(**params) for path in self.files]

    def modules(self, params: Mapping[str, str]) -> list[str]:
        return [module.format(**params) for module in self.go]


R = Recipe
# The stand-in for the PgBouncer exporter sidecar the real image of which cannot be built here.
PGBOUNCER_EXPORTER_STANDIN = "docker.io/library/airflow-k8s-pgbouncer-exporter-standin:0.18.0"
RECIPES: tuple[Recipe, ...] = (
    R(
        "pause",
        "registry.k8s.io/pause",
        r"(?P<version>3\.\d+(?:\.\d+)?)",
        "the pod sandbox: a static C program (images/pause/pause.c) that waits for SIGINT/SIGTERM "
        "and reaps orphans; any 3.x tag, as containerd's `sandbox_image` names it",
        builders.pause,
        files=("images/pause/pause.c",),
    ),
    R(
        "coredns",
        "registry.k8s.io/coredns/coredns",
        r"v(?P<version>1\.\d+\.\d+)",
        "/coredns (static, from ../shared/tools or the Go module at the tag's version), "
        "cap_net_bind_service on the file, user nonroot 65532; no CA certificates or time zones",
        builders.coredns,
        go=("github.com/coredns/coredns@v{version}",),
    ),
    R(
        "busybox",
        "docker.io/library/busybox",
        r"(?P<version>1\.\d+\.\d+)",
        "Debian trixie's busybox-static (BusyBox 1.37.0) with every applet linked in /bin",
        builders.busybox,
        debian=("busybox-static",),
    ),
    R(
        "statsd-exporter",
        "quay.io/prometheus/statsd-exporter",
        r"v(?P<version>\d+\.\d+\.\d+)",
        "/bin/statsd_exporter built from the Go module at the tag's version, on busybox, user nobody",
        builders.statsd_exporter,
        debian=("busybox-static",),
        go=("github.com/prometheus/statsd_exporter@v{version}",),
    ),
    R(
        "airflow",
        "docker.io/apache/airflow",
        r"(?P<version>3\.2\.\d+)(?:-python3\.11)?",
        "apache-airflow at the tag's version with the providers the stacks use, in a virtualenv at "
        "/home/airflow/.local on Debian's Python 3.11 (the official image's default is 3.12), "
        "pinned by images/airflow/constraints-<version or x.y>.txt; uid 50000 gid 0, /entrypoint and /clean-logs",
        builders.airflow,
        base=True,
        debian=builders.AIRFLOW_DEBIAN,
        files=(
            "images/airflow/constraints-{constraints}.txt",
            "images/airflow/entrypoint",
            "images/airflow/clean-logs",
        ),
        derive=airflow_constraints_file,
    ),
    R(
        "airflow-python",
        "docker.io/apache/airflow",
        r"(?P<version>\d+\.\d+\.\d+)-python(?P<python>3\.(?:9|10|12|13|14))",
        "",
        unavailable="Debian bookworm's Python is 3.11: only the default and -python3.11 tags can be built",
    ),
    R(
        "postgresql",
        "docker.io/bitnamilegacy/postgresql",
        r"(?P<version>\d+\.\d+\.\d+)-debian-\d+-r\d+",
        "Debian's PostgreSQL 15 (the tag names 16.1) behind Bitnami's paths and environment: "
        "PGDATA under /bitnami/postgresql, POSTGRES_PASSWORD for the postgres user, uid 1001, "
        "/opt/bitnami/scripts/postgresql/{entrypoint,run}.sh, pg_isready on PATH",
        builders.postgresql,
        base=True,
        debian=builders.POSTGRESQL_DEBIAN,
        files=("images/postgresql/entrypoint.sh", "images/postgresql/run.sh"),
    ),
    R(
        "redis",
        "docker.io/library/redis",
        r"(?P<version>7\.\d+(?:\.\d+)?)-bookworm",
        "Debian's redis-server (7.0, the tag names 7.2) on bookworm, working folder /data",
        builders.redis,
        base=True,
        debian=("redis-server",),
    ),
    R(
        "pgbouncer",
        "docker.io/apache/airflow",
        r"airflow-pgbouncer-(?P<date>\d{4}\.\d{2}\.\d{2})-(?P<version>\d+\.\d+\.\d+)",
        "Debian trixie's pgbouncer (1.24.1; the tag names 1.23.1) and killall, user nobody",
        builders.pgbouncer,
        base=True,
        suite=NEWER,
        debian=("pgbouncer", "psmisc"),
    ),
    R(
        "pgbouncer-exporter",
        "docker.io/apache/airflow",
        r"airflow-pgbouncer-exporter-(?P<date>\d{4}\.\d{2}\.\d{2})-(?P<version>\d+\.\d+\.\d+)",
        "",
        unavailable="its source, the Go module github.com/jbub/pgbouncer_exporter, is not served by the "
        "Go module proxy these machines reach",
    ),
    R(
        "pgbouncer-exporter-standin",
        PGBOUNCER_EXPORTER_STANDIN.rpartition(":")[0],
        r"(?P<version>\d+\.\d+\.\d+)",
        "NOT pgbouncer_exporter: a stand-in (images/pgbouncer-exporter/pgbouncer_exporter on busybox, user "
        "nobody) that answers the chart's probes (`pgbouncer_exporter health`: PgBouncer's port accepts) and "
        "serves no metrics; the node-prod scenario points the chart's images.pgbouncerExporter at it",
        builders.pgbouncer_exporter_standin,
        debian=("busybox-static",),
        files=("images/pgbouncer-exporter/pgbouncer_exporter",),
    ),
    R(
        "git-sync",
        "registry.k8s.io/git-sync/git-sync",
        r"v(?P<version>\d+\.\d+\.\d+)",
        "",
        unavailable="its source, the Go module k8s.io/git-sync, is not served by the Go module proxy "
        "these machines reach",
    ),
    R(
        "keda",
        "ghcr.io/kedacore/keda",
        r"(?P<version>2\.\d+\.\d+)",
        "/keda (the operator) built in the Go module github.com/kedacore/keda/v2 at the tag's version, "
        "user nonroot 65532 as distroless's static:nonroot; no CA certificates or time zones",
        operator_builders.keda,
        go=("github.com/kedacore/keda/v2@v{version}",),
    ),
    R(
        "keda-metrics-apiserver",
        "ghcr.io/kedacore/keda-metrics-apiserver",
        r"(?P<version>2\.\d+\.\d+)",
        "/keda-adapter (the metrics API server) built in the Go module github.com/kedacore/keda/v2, "
        "user nonroot 65532; no CA certificates or time zones",
        operator_builders.keda_metrics_apiserver,
        go=("github.com/kedacore/keda/v2@v{version}",),
    ),
    R(
        "keda-admission-webhooks",
        "ghcr.io/kedacore/keda-admission-webhooks",
        r"(?P<version>2\.\d+\.\d+)",
        "/keda-admission-webhooks built in the Go module github.com/kedacore/keda/v2, user nonroot 65532; "
        "no CA certificates or time zones",
        operator_builders.keda_admission_webhooks,
        go=("github.com/kedacore/keda/v2@v{version}",),
    ),
    R(
        "prometheus",
        "quay.io/prometheus/prometheus",
        r"v(?P<version>3\.\d+\.\d+)-distroless",
        "/bin/prometheus and /bin/promtool built in the Go module github.com/prometheus/prometheus "
        "(v0.3xx.y for 3.xx.y) without the web UI's assets (the API answers, the UI pages do not), "
        "user nonroot 65532, /prometheus; no CA certificates or time zones",
        operator_builders.prometheus,
        go=("github.com/prometheus/prometheus@{module}",),
        derive=lambda params: {"module": operator_builders.prometheus_module_version(params["version"])},
    ),
    R(
        "prometheus-operator",
        "quay.io/prometheus-operator/prometheus-operator",
        r"v(?P<version>0\.\d+\.\d+)",
        "/bin/operator built in the Go module github.com/prometheus-operator/prometheus-operator, "
        "on busybox, user nobody",
        operator_builders.prometheus_operator,
        debian=("busybox-static",),
        go=("github.com/prometheus-operator/prometheus-operator@v{version}",),
    ),
    R(
        "prometheus-config-reloader",
        "quay.io/prometheus-operator/prometheus-config-reloader",
        r"v(?P<version>0\.\d+\.\d+)",
        "/bin/prometheus-config-reloader built in the Go module "
        "github.com/prometheus-operator/prometheus-operator, on busybox, user nobody",
        operator_builders.prometheus_config_reloader,
        debian=("busybox-static",),
        go=("github.com/prometheus-operator/prometheus-operator@v{version}",),
    ),
    R(
        "spark",
        "docker.io/library/spark",
        r"(?P<version>4\.\d+\.\d+)",
        "Spark at the tag's version from Maven Central's jars (spark-core, spark-sql, spark-kubernetes "
        "and their run-time dependencies, images/spark/pom.xml) on Debian's Java 17 JRE; SparkPi of our "
        "own (images/spark/SparkPi.java) as examples/jars/spark-examples.jar; our own entrypoint and "
        "launcher scripts; user spark 185; no Python, no PySpark, no R, no Hive",
        operator_builders.spark,
        base=True,
        debian=operator_builders.SPARK_DEBIAN + operator_builders.SPARK_BUILD_DEBIAN,
        files=operator_builders.SPARK_FILES,
    ),
    R(
        "spark-operator",
        "ghcr.io/kubeflow/spark-operator/controller",
        r"(?P<version>2\.5\.2)",
        "/usr/bin/spark-operator built in the Go module github.com/kubeflow/spark-operator/v2, on the "
        "Spark image built here (Spark 4.0.0 for 2.5.2, whose own image has 4.0.4: Maven Central lacks "
        "spark-kubernetes 4.0.4), tini, user spark 185",
        operator_builders.spark_operator,
        base=True,
        debian=operator_builders.SPARK_DEBIAN + operator_builders.SPARK_BUILD_DEBIAN,
        files=(*operator_builders.SPARK_FILES, "images/spark-operator/entrypoint.sh"),
        go=("github.com/kubeflow/spark-operator/v2@v{version}",),
        derive=spark_operator_spark,
    ),
    R(
        "kube-webhook-certgen",
        "ghcr.io/jkroepke/kube-webhook-certgen",
        r"(?P<version>\d+\.\d+\.\d+)",
        "",
        unavailable="its source, the Go module github.com/jkroepke/kube-webhook-certgen, is not served by the "
        "Go module proxy these machines reach (403: This module version is not available)",
    ),
    R(
        "grafana",
        "docker.io/grafana/grafana",
        r"(?P<version>\d+\.\d+\.\d+)",
        "",
        unavailable="its source, the Go module github.com/grafana/grafana, is not served by the Go module proxy "
        "these machines reach (403: This module version is not available), and its web UI needs a Node.js build",
    ),
    R(
        "python",
        "docker.io/library/python",
        r"(?P<version>3\.\d+\.\d+)-slim-bookworm",
        "Debian's Python 3.11 (whatever version the tag names) as python and python3, on bookworm",
        builders.python,
        base=True,
        debian=("python3",),
    ),
    R(
        "task",
        "docker.io/library/airflow-k8s-task",
        r"(?P<version>\d+\.\d+\.\d+)",
        "images/task/hello.py on Debian's Python 3.11 (images/task/Dockerfile starts from "
        "python:3.13.7-alpine3.22), user 1001, entrypoint python /opt/task/hello.py",
        builders.task,
        base=True,
        debian=("python3",),
        files=("images/task/hello.py",),
    ),
)


@dataclass(frozen=True)
class Selected:
    ref: str
    name: str  # the reference as containerd names it
    recipe: Recipe
    params: dict[str, str]

    @property
    def tag(self) -> str:
        return self.name.rsplit(":", 1)[1]


def split(ref: str) -> tuple[str, str]:
    """(repository, tag) of a reference, as containerd names it."""
    repository, _, tag = normalise(ref).rpartition(":")
    return repository, tag


def select(ref: str, recipes: Iterable[Recipe] = RECIPES) -> Selected | None:
    """The recipe that covers `ref`, with its parameters; None when none does. A reference
    pinned by digest is never covered: no build gives the bytes a digest names."""
    if "@" in ref:
        return None
    repository, tag = split(ref)
    for recipe in recipes:
        if recipe.repository == repository:
            params = recipe.params(tag)
            if params is not None:
                return Selected(ref, normalise(ref), recipe, params)
    return None


def reasons(refs: Iterable[str], recipes: Iterable[Recipe] = RECIPES) -> dict[str, str]:
    """Each reference no build covers, and why."""
    found: dict[str, str] = {}
    recipes = tuple(recipes)
    for ref in refs:
        selected = select(ref, recipes)
        if "@" in ref:
            found[ref] = "pinned by digest: no build here gives the bytes a digest names"
        elif selected is None:
            repository, tag = split(ref)
            known = [r for r in recipes if r.repository == repository and not r.unavailable]
            found[ref] = (
                f"no recipe builds {repository} (`python -m e2e.node.images list` names those there are)"
                if not known
                else f"no recipe builds tag {tag!r} of {repository} (tags matching: "
                + ", ".join(r.tag for r in known)
                + ")"
            )
        elif selected.recipe.unavailable:
            found[ref] = selected.recipe.unavailable
    return found


def cache_key(selected: Selected, repo: Path = REPO) -> str:
    """The content key of a build: equal keys, equal inputs."""
    recipe, params = selected.recipe, selected.params
    if recipe.build is None:
        raise ValueError(f"{selected.ref}: {recipe.unavailable}")
    material: dict[str, object] = {
        "recipe": recipe.name,
        "name": selected.name,
        "params": params,
        "debian": list(recipe.debian),
        "go": recipe.modules(params),
        "base": base_key(recipe.suite) if recipe.base else "",
        "build": inspect.getsource(recipe.build),
        "helpers": HELPERS_REVISION,
        "files": {},
    }
    files: dict[str, str] = {}
    for relative in recipe.inputs(params):
        path = repo / relative
        files[relative] = sha256_file(path) if path.is_file() else "missing"
    material["files"] = files
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
