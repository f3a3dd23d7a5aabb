"""The working set of Airflow's dependencies: the constraints the Airflow image is built with
(images/airflow/) and the DAG test environment (requirements-dags.txt).

Airflow 3.2 with the newest of everything breaks (each seen by running it): Celery 5.7 breaks
the Celery provider's executor import, SQLAlchemy 2.1 makes `postgresql://` mean psycopg 3,
FastAPI 0.156.1 and newer stop the api-server at start. These tests keep those versions out of
every file and the files in agreement, and make each file say why it pins what it pins.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

IMAGES = ROOT / "images" / "airflow"
CONSTRAINTS = {
    "constraints-3.2.txt": ("3.2.0", "3.2.1"),
    "constraints-3.2.2.txt": ("3.2.2",),
}
DAGS = ROOT / "requirements-dags.txt"
FILES = [IMAGES / name for name in CONSTRAINTS] + [DAGS]
# (package, the newest version that works, why): what a newest-everything install broke.
CEILINGS = (
    ("celery", (5, 6, 99), "Celery 5.7"),
    ("kombu", (5, 6, 99), "Celery 5.7"),
    ("sqlalchemy", (2, 0, 99), "SQLAlchemy 2.1"),
    ("fastapi", (0, 156, 0), "FastAPI 0.156.1"),
)
# What the stacks need from the image: executors, database drivers, auth manager, DAG bundle, metrics.
IMAGE_PACKAGES = (
    "apache-airflow-providers-cncf-kubernetes",
    "apache-airflow-providers-celery",
    "apache-airflow-providers-postgres",
    "apache-airflow-providers-redis",
    "apache-airflow-providers-standard",
    "apache-airflow-providers-common-sql",
    "apache-airflow-providers-fab",
    "apache-airflow-providers-git",
    "psycopg2-binary",
    "asyncpg",
    "statsd",
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(path: Path) -> dict[str, set[str]]:
    """Package -> its pinned versions (more than one where environment markers choose by Python)."""
    out: dict[str, set[str]] = {}
    for line in path.read_text().splitlines():
        line = line.split(";", 1)[0].strip()
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line!r} is not an exact pin"
            out.setdefault(canonical(name), set()).add(version.strip())
    return out


def pins(path: Path) -> dict[str, str]:
    """Package -> pinned version, for the packages pinned once (every ceiling and driver is)."""
    return {name: next(iter(versions)) for name, versions in pinned(path).items() if len(versions) == 1}


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


class TestKnownBreakage:
    @pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
    @pytest.mark.parametrize(("package", "ceiling", "why"), CEILINGS, ids=[c[0] for c in CEILINGS])
    def test_no_file_pins_a_version_airflow_3_2_breaks_on(self, path, package, ceiling, why):
        pinned = pins(path).get(package)
        assert pinned is not None, f"{path.name} does not pin {package}"
        assert version(pinned) <= ceiling, f"{path.name}: {package}=={pinned} ({why} breaks Airflow 3.2)"

    @pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
    def test_each_file_says_why_it_pins_each_ceiling(self, path):
        comments = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#")).lower()
        for package, _, why in CEILINGS:
            assert package in comments and why.lower() in comments, f"{path.name} does not say why {package}"

    def test_starlette_follows_what_each_airflow_version_requires(self):
        assert version(pins(IMAGES / "constraints-3.2.txt")["starlette"]) < (1,)  # 3.2.0, 3.2.1: < 1
        assert version(pins(IMAGES / "constraints-3.2.2.txt")["starlette"]) >= (1, 0, 1)  # 3.2.2: >= 1.0.1
        assert version(pins(DAGS)["starlette"]) >= (1, 0, 1)  # the DAG environment runs 3.2.2


class TestConstraintsFiles:
    @pytest.mark.parametrize(("name", "versions"), CONSTRAINTS.items())
    def test_each_file_names_the_airflow_versions_it_serves_and_leaves_airflow_itself_to_the_install(
        self, name, versions
    ):
        path = IMAGES / name
        head = path.read_text().split("\n\n", 1)[0]
        for v in versions:
            assert f"apache-airflow {v}" in head or f"{v}" in head.split("apache-airflow", 1)[1]
        # apache-airflow pins its own core and task SDK exactly: one file serves several versions.
        assert not {"apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk"} & set(pins(path))

    @pytest.mark.parametrize("name", CONSTRAINTS)
    def test_the_image_gets_every_provider_and_driver_the_stacks_use(self, name):
        assert [p for p in IMAGE_PACKAGES if p not in pins(IMAGES / name)] == []

    def test_the_two_files_differ_only_in_starlette(self):
        a, b = pinned(IMAGES / "constraints-3.2.txt"), pinned(IMAGES / "constraints-3.2.2.txt")
        assert {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} == {"starlette"}

    def test_the_dag_environment_is_resolved_under_the_image_constraints(self):
        dags, image = pins(DAGS), pinned(IMAGES / "constraints-3.2.2.txt")
        assert dags["apache-airflow"] == "3.2.2"
        assert {k: v for k, v in dags.items() if k in image and v not in image[k]} == {}
