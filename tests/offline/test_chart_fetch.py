"""Charts the way Helm gets them: a local archive first, else fetched from the chart's repository
at the pinned version, checked against components/charts-lock.json and cached; offline and
uncached, one line that says how to provide it. The repository here is the end-to-end run's
local one (e2e/charts.py) on 127.0.0.1; nothing in this file may reach another address."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.airflow.config.airflow import AIRFLOW_CHART
from components.keda.config import KEDA_CHART
from components.monitoring.config import STACK_CHART
from components.offline import helm, policy
from components.offline.__main__ import main
from components.offline.chart_archives import (
    CACHE_ENV,
    CHARTS_ENV,
    REPOSITORY_ENV,
    ChartDigestError,
    ChartNotFoundError,
    Wanted,
    lock,
    resolve,
)
from components.offline.chart_content import content_digest
from components.spark.config import SPARK_CHART
from e2e.charts import ChartRepository
from tests.helpers import ROOT
from tests.offline.archives import Files, changed, tampered

CHARTS = Path(os.environ.get(CHARTS_ENV) or ROOT.parent / "shared" / "charts")
AIRFLOW = Wanted("airflow", "1.21.0", "https://airflow.apache.org")
REFUSING = "http://127.0.0.1:9"

pytestmark = pytest.mark.skipif(not (CHARTS / "airflow-1.21.0.tgz").is_file(), reason=f"no chart archives in {CHARTS}")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name lookup or a connection to anything but loopback fails the test."""
    lookup, connect = socket.getaddrinfo, socket.socket.connect

    def guarded_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("localhost", None) and not ipaddress.ip_address(str(host)).is_loopback:
            raise AssertionError(f"a test looked up {host}")
        return lookup(host, *args, **kwargs)

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not ipaddress.ip_address(address[0]).is_loopback:
            raise AssertionError(f"a test connected to {address}")
        return connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_lookup)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


@pytest.fixture
def plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with no ../shared beside it, no AIRFLOW_K8S_CHARTS and an empty chart cache;
    the repository a loopback port that refuses. Returns the project folder."""
    monkeypatch.delenv(CHARTS_ENV, raising=False)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(REPOSITORY_ENV, REFUSING)
    project = tmp_path / "clone" / "project"
    project.mkdir(parents=True)
    return project


@contextmanager
def serving(folder: Path, root: Path) -> Iterator[str]:
    """The archives in `folder` served as a Helm chart repository on 127.0.0.1: its URL."""
    served = ChartRepository(folder, root)
    try:
        yield served.start()
    finally:
        served.stop()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The archives of the shared charts served as a Helm chart repository on 127.0.0.1."""
    with serving(CHARTS, tmp_path_factory.mktemp("repository")) as url:
        yield url


def repackaged(archive: Path, target: Path) -> Path:
    """The same chart packaged another way (as its repository may serve it): other mtimes, order and
    compression, and a docs folder; another sha256, the same content."""

    def documented(files: Files, top: str) -> None:
        files[f"{top}/docs/index.md"] = b"# the chart\n"

    target.mkdir(parents=True, exist_ok=True)
    out = target / archive.name
    out.write_bytes(changed(archive, documented, mtime=1_700_000_000, level=1, reverse=True))
    return out


def cached(plain: Path) -> list[str]:
    folder = Path(os.environ[CACHE_ENV])
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --------------------------------------------------------------------------- tests


class TestLock:
    def test_the_lock_pins_every_chart_the_components_install_at_their_default_version_and_repository(self):
        pinned = {(p.name, p.version, p.repository) for p in lock().values()}
        defaults = {(c.name, c.version, c.repository) for c in (AIRFLOW_CHART, SPARK_CHART, STACK_CHART, KEDA_CHART)}
        assert pinned == defaults

    def test_the_digests_are_those_of_the_archives_the_tests_render(self):
        for pin in lock().values():
            data = (CHARTS / pin.archive).read_bytes()
            assert content_digest(data) == pin.content_digest, pin.archive
            assert pin.archive_digests == ("sha256:" + hashlib.sha256(data).hexdigest(),), pin.archive

    def test_the_lock_ships_with_the_package(self):
        project = (ROOT / "pyproject.toml").read_text()
        assert '"charts-lock.json"' in project
        assert json.loads((ROOT / "components" / "charts-lock.json").read_text())["charts"]


class TestLocalFirst:
    def test_a_local_archive_is_used_without_asking_any_repository(self, plain, monkeypatch):
        monkeypatch.setenv(CHARTS_ENV, str(CHARTS))
        assert resolve(plain, [AIRFLOW]) == {("airflow", "1.21.0"): CHARTS / "airflow-1.21.0.tgz"}
        assert cached(plain) == []

    def test_the_shared_charts_beside_the_project_come_first(self, tmp_path, monkeypatch):
        monkeypatch.delenv(CHARTS_ENV, raising=False)
        monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "charts").symlink_to(CHARTS)
        (tmp_path / "project").mkdir()
        found = resolve(tmp_path / "project", [AIRFLOW])[("airflow", "1.21.0")]
        assert found == tmp_path / "shared" / "charts" / "airflow-1.21.0.tgz"

    def test_a_local_archive_that_is_not_the_pinned_one_is_refused(self, plain, tmp_path, monkeypatch):
        folder = tmp_path / "mine"
        tampered(CHARTS / "airflow-1.21.0.tgz", folder)
        monkeypatch.setenv(CHARTS_ENV, str(folder))
        with pytest.raises(ChartDigestError) as err:
            resolve(plain, [AIRFLOW])
        message = str(err.value)
        pin = lock()[("airflow", "1.21.0")]
        assert message == (
            f"chart airflow 1.21.0 from {folder / 'airflow-1.21.0.tgz'} is not the one pinned in "
            f"components/charts-lock.json: expected content digest {pin.content_digest}, it holds "
            f"{content_digest((folder / 'airflow-1.21.0.tgz').read_bytes())}. Replace it with the archive "
            "https://airflow.apache.org publishes, or remove it (the preview then fetches the pinned one)"
        )

    def test_a_local_archive_packaged_another_way_is_used(self, plain, tmp_path, monkeypatch):
        folder = tmp_path / "mine"
        repackaged(CHARTS / "airflow-1.21.0.tgz", folder)
        monkeypatch.setenv(CHARTS_ENV, str(folder))
        assert resolve(plain, [AIRFLOW]) == {("airflow", "1.21.0"): folder / "airflow-1.21.0.tgz"}

    def test_a_version_that_is_not_pinned_is_used_from_a_local_folder_as_it_is(self, plain, tmp_path, monkeypatch):
        folder = tmp_path / "mine"
        folder.mkdir()
        (folder / "airflow-1.99.0.tgz").write_bytes((CHARTS / "airflow-1.21.0.tgz").read_bytes())
        monkeypatch.setenv(CHARTS_ENV, str(folder))
        assert resolve(plain, [Wanted("airflow", "1.99.0", None)]) == {
            ("airflow", "1.99.0"): folder / "airflow-1.99.0.tgz"
        }


class TestFetching:
    def test_a_chart_not_on_this_machine_is_fetched_checked_and_cached(self, plain, repository, monkeypatch):
        monkeypatch.setenv(REPOSITORY_ENV, repository)
        said: list[str] = []
        found = resolve(plain, [AIRFLOW, Wanted("keda", "2.20.2", None)], said.append)
        assert cached(plain) == ["airflow-1.21.0.tgz", "keda-2.20.2.tgz"]
        assert found[("airflow", "1.21.0")].read_bytes() == (CHARTS / "airflow-1.21.0.tgz").read_bytes()
        assert f"... fetching chart airflow 1.21.0 from {repository} (not on this machine)" in said
        # The next preview finds them in the cache, with no repository to ask.
        monkeypatch.setenv(REPOSITORY_ENV, REFUSING)
        assert resolve(plain, [AIRFLOW]) == {("airflow", "1.21.0"): found[("airflow", "1.21.0")]}

    def test_the_releases_own_repository_is_used_when_no_mirror_is_named(self, plain, repository, monkeypatch):
        monkeypatch.delenv(REPOSITORY_ENV)
        assert resolve(plain, [Wanted("airflow", "1.21.0", repository)])
        assert cached(plain) == ["airflow-1.21.0.tgz"]

    def test_a_fetched_archive_that_is_not_the_pinned_one_is_refused_and_not_cached(self, plain, tmp_path, monkeypatch):
        folder = tmp_path / "evil"
        tampered(CHARTS / "airflow-1.21.0.tgz", folder)
        with serving(folder, tmp_path / "served") as url, pytest.raises(ChartDigestError) as err:
            monkeypatch.setenv(REPOSITORY_ENV, url)
            resolve(plain, [AIRFLOW])
        message = str(err.value)
        expected = lock()[("airflow", "1.21.0")].content_digest
        assert message.startswith(
            f"chart airflow 1.21.0 from {url}/airflow-1.21.0.tgz is not the one pinned in components/charts-lock.json: "
            f"expected content digest {expected}, it holds sha256:"
        )
        assert message.endswith("; refused, and not cached") and "\n" not in message
        assert cached(plain) == []

    def test_an_archive_the_repository_packaged_another_way_is_fetched_checked_by_content_and_cached(
        self, plain, tmp_path, monkeypatch
    ):
        folder = tmp_path / "upstream"
        served = repackaged(CHARTS / "airflow-1.21.0.tgz", folder).read_bytes()
        assert "sha256:" + hashlib.sha256(served).hexdigest() not in lock()[("airflow", "1.21.0")].archive_digests
        with serving(folder, tmp_path / "served") as url:
            monkeypatch.setenv(REPOSITORY_ENV, url)
            said: list[str] = []
            found = resolve(plain, [AIRFLOW], said.append)[("airflow", "1.21.0")]
        assert found.read_bytes() == served
        assert said[-1].startswith("    airflow-1.21.0.tgz: content as pinned, cached in ")
        # The next preview takes it from the cache: checked again by content, nothing fetched.
        monkeypatch.setenv(REPOSITORY_ENV, REFUSING)
        assert resolve(plain, [AIRFLOW]) == {("airflow", "1.21.0"): found}

    def test_bytes_that_are_no_chart_archive_are_refused_and_not_cached(self, plain, tmp_path, monkeypatch):
        folder = tmp_path / "listed"
        folder.mkdir()
        (folder / "airflow-1.21.0.tgz").write_bytes((CHARTS / "airflow-1.21.0.tgz").read_bytes())
        with serving(folder, tmp_path / "served") as url, pytest.raises(ChartDigestError) as err:
            # The index lists the chart; the archive it points to is a proxy's error page.
            (tmp_path / "served" / "airflow-1.21.0.tgz").write_bytes(b"<html>proxy error</html>")
            monkeypatch.setenv(REPOSITORY_ENV, url)
            resolve(plain, [AIRFLOW])
        assert "expected content digest sha256:" in str(err.value)
        assert "it is not a chart archive (not a gzipped tar archive (" in str(err.value)
        assert cached(plain) == []

    def test_a_cached_archive_that_is_not_the_pinned_one_is_fetched_again(self, plain, repository, monkeypatch):
        tampered(CHARTS / "airflow-1.21.0.tgz", Path(os.environ[CACHE_ENV]))
        monkeypatch.setenv(REPOSITORY_ENV, repository)
        found = resolve(plain, [AIRFLOW])[("airflow", "1.21.0")]
        assert found.read_bytes() == (CHARTS / "airflow-1.21.0.tgz").read_bytes()

    def test_a_repository_that_does_not_list_the_version_says_so(self, plain, tmp_path, monkeypatch):
        folder = tmp_path / "other"
        folder.mkdir()
        (folder / "keda-2.20.2.tgz").write_bytes((CHARTS / "keda-2.20.2.tgz").read_bytes())
        with serving(folder, tmp_path / "served") as url, pytest.raises(ChartNotFoundError) as err:
            monkeypatch.setenv(REPOSITORY_ENV, url)
            resolve(plain, [AIRFLOW])
        assert f"could not be fetched from {url} ({url} does not list airflow 1.21.0)" in str(err.value)


class TestOffline:
    def test_one_line_names_the_chart_its_version_and_both_ways_to_provide_it(self, plain, monkeypatch):
        monkeypatch.delenv(REPOSITORY_ENV)  # the Release's own repository: here a loopback port that refuses
        with pytest.raises(ChartNotFoundError) as err:
            resolve(plain, [Wanted("airflow", "1.21.0", REFUSING)])
        assert str(err.value) == (
            f"chart airflow 1.21.0 is not on this machine and could not be fetched from {REFUSING} (connection "
            "refused). Either put airflow-1.21.0.tgz in a folder and set AIRFLOW_K8S_CHARTS to that folder (or put "
            f"it in {os.environ[CACHE_ENV]}), or allow network access to {REFUSING} (AIRFLOW_K8S_CHART_REPOSITORY can "
            "name a mirror)."
        )

    def test_several_charts_are_named_in_the_same_line(self, plain):
        with pytest.raises(ChartNotFoundError) as err:
            resolve(plain, [AIRFLOW, Wanted("keda", "2.20.2", None), Wanted("airflow", "9.9.9", None)])
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith(
            f"charts not on this machine: airflow 1.21.0, keda 2.20.2 could not be fetched from {REFUSING} "
            "(connection refused); airflow 9.9.9 not pinned in components/charts-lock.json, so not fetched."
        )
        assert "put airflow-1.21.0.tgz, keda-2.20.2.tgz, airflow-9.9.9.tgz in a folder" in message
        assert "or pin the version in components/charts-lock.json" in message

    def test_the_preview_stops_with_that_line_before_helm_or_checkov_start(self, plain, tmp_path, capsys, monkeypatch):
        for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "__main__.py"):
            (plain / name).write_text((ROOT / name).read_text())
        (plain / "components").symlink_to(ROOT / "components")

        def slow(*args: Any) -> Any:
            raise AssertionError("something slow started")

        monkeypatch.setattr(helm, "_helm_binary", slow)
        monkeypatch.setattr(policy, "Scanner", slow)
        code = main(["dev", "--root", str(plain), "--out", str(tmp_path / "out")])
        out, err = capsys.readouterr()
        assert code == 2
        (line,) = err.splitlines()
        assert line.startswith("error: chart airflow 1.21.0") or line.startswith("error: charts ")
        assert "airflow 1.21.0" in line and "AIRFLOW_K8S_CHARTS" in line and "allow network access" in line
        assert "PROBLEM" not in out


class TestPreviewFromAPlainClone:
    def test_a_project_without_shared_charts_previews_from_a_local_chart_repository(
        self, plain, tmp_path, repository, capsys, monkeypatch
    ):
        for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "__main__.py"):
            (plain / name).write_text((ROOT / name).read_text())
        (plain / "components").symlink_to(ROOT / "components")
        monkeypatch.setenv(REPOSITORY_ENV, repository)
        code = main(["dev", "--root", str(plain), "--out", str(tmp_path / "out"), "--no-checkov"])
        out = capsys.readouterr().out
        assert code == 0, out[-3000:]
        assert f"... fetching chart airflow 1.21.0 from {repository}" in out
        assert "0 problems" in out
        assert "airflow-1.21.0.tgz" in cached(plain)
        summary = yaml.safe_load((tmp_path / "out" / "dev" / "summary.json").read_text())
        assert {s["archive"] for s in summary["sources"] if "archive" in s} == set(cached(plain))
