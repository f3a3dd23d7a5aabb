"""Finding the Helm that renders: a `go install`ed Helm is found again and not rebuilt, and a
build prints its progress instead of minutes of silence."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.offline import helm
from components.offline.helm import HelmNotFoundError, in_series

TOOLS = tuple(shutil.which(tool) for tool in ("sleep", "mkdir", "chmod"))


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def fake_helm(path: Path, version: str) -> Path:
    """A program that answers `helm version --template {{.Version}}` like a Helm of `version`."""
    return script(path, f'[ "$1" = version ] && echo {version}\n')


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder with no ../shared, an empty tools cache, no helm on PATH (only `bin/`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("AIRFLOW_K8S_TOOLS_CACHE", str(tmp_path / "tools"))
    monkeypatch.delenv("AIRFLOW_K8S_HELM", raising=False)
    (tmp_path / "project").mkdir()
    helm._helm_binary.cache_clear()
    yield tmp_path
    helm._helm_binary.cache_clear()


class TestVersionCheck:
    @pytest.mark.parametrize("version", ["v3.20.2", "v3.20.0", "v3.20", "v3.20+unreleased", "v3.20.1-rc.1"])
    def test_every_helm_3_20_is_accepted_patch_number_or_not(self, version):
        assert in_series(version)

    @pytest.mark.parametrize("version", ["v3.2.0", "v3.200.1", "v3.21.0", "v3.19.4", "v4.0.0", "", None])
    def test_other_releases_are_refused(self, version):
        assert not in_series(version)


class TestLookup:
    def test_a_go_installed_helm_in_the_tools_cache_is_used_and_not_rebuilt(self, isolated):
        built = fake_helm(isolated / "tools" / "bin" / "helm", "v3.20")
        script(isolated / "bin" / "go", f"echo > {isolated}/go-was-run\nexit 1\n")
        assert helm._helm_binary(isolated / "project") == str(built)
        assert not (isolated / "go-was-run").exists()

    def test_a_go_installed_helm_on_path_is_used(self, isolated):
        on_path = fake_helm(isolated / "bin" / "helm", "v3.20")
        assert helm._helm_binary(isolated / "project") == str(on_path)

    def test_a_helm_of_another_minor_release_is_refused_with_what_was_tried(self, isolated):
        fake_helm(isolated / "bin" / "helm", "v3.19.4")
        with pytest.raises(HelmNotFoundError) as err:
            helm._helm_binary(isolated / "project")
        message = str(err.value)
        assert "is v3.19.4, not v3.20" in message and "no `go` to build it" in message


class TestBuild:
    def test_a_build_prints_progress_while_it_runs_and_its_result_is_found_next_time(
        self, isolated, capsys, monkeypatch
    ):
        # A `go` that takes a while: downloads, compiles, then installs a helm that says "v3.20".
        sleep, mkdir, chmod = TOOLS  # PATH is only bin/ here
        script(
            isolated / "bin" / "go",
            "echo 'go: downloading helm.sh/helm/v3 v3.20.2' >&2\n"
            f"{sleep} 0.4\necho helm.sh/helm/v3/pkg/chart >&2\necho helm.sh/helm/v3/pkg/engine >&2\n{sleep} 0.4\n"
            f'{mkdir} -p "$GOBIN"\nprintf \'#!/bin/sh\\necho v3.20\\n\' > "$GOBIN/helm"\n{chmod} +x "$GOBIN/helm"\n',
        )
        monkeypatch.setattr(helm, "BUILD_PROGRESS_EVERY", 0.25)
        found = helm._helm_binary(isolated / "project")
        err = capsys.readouterr().err
        assert found == str(isolated / "tools" / "bin" / "helm")
        assert "building helm v3.20.2 with `go install helm.sh/helm/v3/cmd/helm@v3.20.2`" in err
        progress = [line for line in err.splitlines() if "... building helm:" in line]
        assert progress, err
        assert "1 modules downloaded, 2 packages compiled" in progress[-1]
        assert f"built helm v3.20.2 into {isolated / 'tools' / 'bin'}" in err
        # The next lookup finds what was built.
        helm._helm_binary.cache_clear()
        os.remove(isolated / "bin" / "go")
        assert helm._helm_binary(isolated / "project") == found

    def test_a_failed_build_says_what_go_printed(self, isolated):
        script(isolated / "bin" / "go", "echo 'go: helm.sh/helm/v3@v3.20.2: connection refused' >&2\nexit 1\n")
        with pytest.raises(HelmNotFoundError) as err:
            helm._helm_binary(isolated / "project")
        assert "failed: go: helm.sh/helm/v3@v3.20.2: connection refused" in str(err.value)
