"""The content digest components/charts-lock.json pins: the same for the same chart however it is
packaged (tar order, mtimes, compression, README and docs, Chart.yaml as `helm package` rewrites
it, a sub-chart as a folder or an archive), different for anything Helm renders."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from components.offline.chart_archives import CHARTS_ENV, lock
from components.offline.chart_content import ChartContentError, content_digest, main, manifest
from components.offline.helm import helm_binary
from tests.helpers import ROOT
from tests.offline.archives import Files, changed, files_of, packed, with_template_changed

CHARTS = Path(os.environ.get(CHARTS_ENV) or ROOT.parent / "shared" / "charts")
PINS = sorted(lock().values(), key=lambda p: p.name)
AIRFLOW = CHARTS / "airflow-1.21.0.tgz"

needs_charts = pytest.mark.skipif(not AIRFLOW.is_file(), reason=f"no chart archives in {CHARTS}")


def pinned(name: str) -> str:
    return next(p.content_digest for p in PINS if p.name == name)


def top_of(files: Files) -> str:
    return next(iter(files)).split("/")[0]


@needs_charts
class TestTheLock:
    @pytest.mark.parametrize("pin", PINS, ids=lambda p: p.name)
    def test_each_pinned_content_digest_is_that_of_the_archive_the_tests_render(self, pin):
        data = (CHARTS / pin.archive).read_bytes()
        assert content_digest(data) == pin.content_digest
        assert "sha256:" + hashlib.sha256(data).hexdigest() in pin.archive_digests


@needs_charts
class TestTheSameChartHoweverItIsPackaged:
    @pytest.mark.parametrize("pin", PINS, ids=lambda p: p.name)
    def test_other_mtimes_member_order_compression_and_folder_entries_give_the_same_digest(self, pin):
        files = files_of(CHARTS / pin.archive)
        repacked = packed(files, mtime=1_234_567_890, level=1, reverse=True, folders=True)
        assert hashlib.sha256(repacked).digest() != hashlib.sha256((CHARTS / pin.archive).read_bytes()).digest()
        assert content_digest(repacked) == pin.content_digest

    @pytest.mark.parametrize("pin", PINS, ids=lambda p: p.name)
    def test_readme_license_release_notes_docs_ci_and_tests_folders_do_not_count(self, pin):
        def documented(files: Files, top: str) -> None:
            for name in ("README.md", "LICENSE", "NOTICE", "RELEASE_NOTES.rst", ".helmignore", "Chart.lock"):
                files[f"{top}/{name}"] = b"more words\n"
            for folder in ("docs", "ci", "tests", "dockerfiles", "newsfragments"):
                files[f"{top}/{folder}/x.yaml"] = b"a: 1\n"
            files[f"{top}/charts/{top}-0.1.0.tgz.prov"] = b"signature\n"

        assert content_digest(changed(CHARTS / pin.archive, documented)) == pin.content_digest

    @pytest.mark.parametrize("pin", PINS, ids=lambda p: p.name)
    def test_an_archive_made_by_helm_package_as_chart_repositories_publish_gives_the_same_digest(self, pin, tmp_path):
        with tarfile.open(CHARTS / pin.archive) as tar:
            tar.extractall(tmp_path / "source", filter="data")
        (folder,) = (tmp_path / "source").iterdir()
        (folder / "docs").mkdir(exist_ok=True)
        (folder / "docs" / "index.md").write_text("# the chart\n")
        subprocess.run(
            [str(helm_binary()), "package", str(folder), "-d", str(tmp_path / "out")], check=True, capture_output=True
        )
        archive = (tmp_path / "out" / pin.archive).read_bytes()
        rewritten = files_of(archive)[f"{folder.name}/Chart.yaml"]
        original = (folder / "Chart.yaml").read_bytes()
        assert content_digest(archive) == pin.content_digest
        assert f"{folder.name}/docs/index.md" in files_of(archive)  # shipped, and left out of the digest
        if pin.name == "keda":  # its Chart.yaml is the source's, with comments; helm package rewrote it
            assert rewritten != original

    def test_a_sub_chart_as_an_archive_in_charts_is_the_same_as_that_sub_chart_as_a_folder(self):
        def archived_postgresql(files: Files, top: str) -> None:
            folder = f"{top}/charts/postgresql/"
            inner = {
                "postgresql/" + n.removeprefix(folder): files.pop(n) for n in sorted(files) if n.startswith(folder)
            }
            files[f"{top}/charts/postgresql-13.2.24.tgz"] = packed(inner, mtime=99)

        repacked = changed(AIRFLOW, archived_postgresql)
        assert not any(n.startswith("airflow/charts/postgresql/") for n in files_of(repacked))
        assert content_digest(repacked) == pinned("airflow")

    def test_chart_yaml_is_read_as_helm_reads_it_so_comments_key_order_and_quotes_do_not_count(self):
        def rewritten(files: Files, top: str) -> None:
            files[f"{top}/Chart.yaml"] = (
                b"# the KEDA chart\nversion: 2.20.2\n"
                + b"\n".join(
                    line.replace(b"appVersion: 2.20.2", b'appVersion: "2.20.2"')
                    for line in files[f"{top}/Chart.yaml"].splitlines()
                    if not line.startswith((b"#", b"version:"))
                )
                + b"\nunknownToHelm: ignored\ndeprecated: false\ncondition: ~\n"
            )

        assert content_digest(changed(CHARTS / "keda-2.20.2.tgz", rewritten)) == pinned("keda")

    def test_a_byte_order_mark_that_helm_drops_does_not_count(self):
        def marked(files: Files, top: str) -> None:
            files[f"{top}/values.yaml"] = b"\xef\xbb\xbf" + files[f"{top}/values.yaml"]

        assert content_digest(changed(CHARTS / "keda-2.20.2.tgz", marked)) == pinned("keda")


def _edit(path: str, edit: str) -> Callable[[Files, str], None]:
    def change(files: Files, top: str) -> None:
        name = f"{top}/{path}"
        if edit == "remove":
            del files[name]
        elif edit == "add":
            files[name] = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: added\n"
        else:
            before = files[name]
            files[name] = before.replace(edit.encode(), edit.upper().encode(), 1)
            assert files[name] != before, f"{edit!r} is not in {path}"

    change.__name__ = f"{edit} {path}"
    return change


@needs_charts
class TestAnythingHelmRendersChangesIt:
    @pytest.mark.parametrize(
        "change",
        [
            with_template_changed,
            _edit("templates/added.yaml", "add"),
            _edit("templates/configmaps/configmap.yaml", "remove"),
            _edit("values.yaml", "airflowVersion"),
            _edit("values.schema.json", "description"),
            _edit("files/statsd-mappings.yml", "match"),
            _edit("charts/postgresql/templates/primary/statefulset.yaml", "metadata"),
            _edit("charts/postgresql/charts/common/templates/_labels.tpl", "define"),
            _edit("Chart.yaml", "appVersion: 3.2.0"),
            _edit("charts/postgresql/Chart.yaml", "version: 13.2.24"),
        ],
        ids=lambda c: c.__name__,
    )
    def test_a_change_to_a_file_helm_renders_changes_the_digest(self, change):
        assert content_digest(changed(AIRFLOW, change)) != pinned("airflow")

    def test_a_changed_crd_changes_the_digest(self):
        digest = content_digest(changed(CHARTS / "spark-operator-2.5.2.tgz", _edit(_first_crd(), "openAPIV3Schema")))
        assert digest != pinned("spark-operator")

    def test_a_sub_chart_removed_changes_the_digest(self):
        def without_grafana(files: Files, top: str) -> None:
            for name in [n for n in files if n.startswith(f"{top}/charts/grafana/")]:
                del files[name]

        assert content_digest(changed(CHARTS / "kube-prometheus-stack-88.5.3.tgz", without_grafana)) != pinned(
            "kube-prometheus-stack"
        )


def _first_crd() -> str:
    return next(n.split("/", 1)[1] for n in sorted(files_of(CHARTS / "spark-operator-2.5.2.tgz")) if "/crds/" in n)


# `.Files.Get "path"`, `$files.Glob "pattern"`, ... in a template: what it reads besides itself.
_FILES_READ = re.compile(r"(?:\.Files|\$files)\.(?:Get|Glob|Lines|AsConfig|AsSecrets)\s+(\"[^\"]*\"|[$.\w]+)")
# Reads whose path is not written in the template, and where the path comes from.
_FROM_ELSEWHERE = {
    ("kube-prometheus-stack", "charts/crds/templates/upgrade/clusterrole.yaml", "$path"): "the Glob of crds/*.yaml",
    ("kube-prometheus-stack", "charts/grafana/templates/_config.tpl", "$value.file"): "grafana's values",
    ("kube-prometheus-stack", "charts/grafana/templates/configSecret.yaml", "$value.secretFile"): "grafana's values",
    ("kube-prometheus-stack", "charts/grafana/templates/dashboards-json-configmap.yaml", "$value.file"): "values",
}


@needs_charts
class TestWhatTheTemplatesRead:
    def test_the_pinned_charts_templates_read_only_files_the_digest_covers(self):
        literal: set[str] = set()
        elsewhere: set[tuple[str, str, str]] = set()
        for pin in PINS:
            for name, data in files_of(CHARTS / pin.archive).items():
                path = name.split("/", 1)[1]
                if "templates/" not in path:
                    continue
                for argument in _FILES_READ.findall(data.decode()):
                    if argument.startswith('"'):
                        literal.add(argument.strip('"'))
                    else:
                        elsewhere.add((pin.name, path, argument))
        assert literal == {"files/statsd-mappings.yml", "files/pod-template-file.kubernetes-helm-yaml",
                           "files/crds.bz2", "crds/*.yaml"}  # fmt: skip
        assert all(p.startswith(("files/", "crds/")) for p in literal)
        assert elsewhere == set(_FROM_ELSEWHERE)


class TestNotAChartArchive:
    def test_a_link_is_refused(self):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            link = tarfile.TarInfo("c/templates/x.yaml")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
        with pytest.raises(ChartContentError, match=r"^c/templates/x.yaml is a link or a special file$"):
            content_digest(buffer.getvalue())

    def test_a_path_outside_the_charts_folder_is_refused(self):
        with pytest.raises(ChartContentError, match=r"^\.\./c/Chart.yaml is outside the chart's folder$"):
            content_digest(packed({"../c/Chart.yaml": b"name: c\n"}))

    def test_a_file_twice_is_refused(self):
        with pytest.raises(ChartContentError, match=r"^Chart.yaml is in the archive twice$"):
            content_digest(packed({"c/Chart.yaml": b"name: c\n", "./c/Chart.yaml": b"name: d\n"}))

    def test_an_archive_without_chart_yaml_is_refused(self):
        with pytest.raises(ChartContentError, match=r"^no Chart.yaml$"):
            content_digest(packed({"c/values.yaml": b"a: 1\n"}))

    def test_bytes_that_are_no_gzipped_tar_are_refused(self):
        with pytest.raises(ChartContentError, match=r"^not a gzipped tar archive \("):
            content_digest(b"<html>not found</html>")


@needs_charts
class TestTheCommand:
    def test_it_prints_the_content_digest_and_the_archive_digest_of_each_archive(self, capsys):
        assert main([str(AIRFLOW)]) == 0
        sha = hashlib.sha256(AIRFLOW.read_bytes()).hexdigest()
        assert capsys.readouterr().out == f"{AIRFLOW}: contentDigest {pinned('airflow')}, archive sha256:{sha}\n"

    def test_files_lists_the_lines_the_digest_is_taken_over(self, capsys):
        assert main(["--files", str(CHARTS / "keda-2.20.2.tgz")]) == 0
        lines = capsys.readouterr().out.splitlines()[1:]
        assert "".join(f"{line}\n" for line in lines) == manifest((CHARTS / "keda-2.20.2.tgz").read_bytes())
        paths = [line.split("  ", 1)[1] for line in lines]
        assert paths == sorted(paths) and "Chart.yaml" in paths and "README.md" not in paths
        assert all(re.fullmatch(r"[0-9a-f]{64}", line.split("  ")[0]) for line in lines)
