"""The installed package: the wheel imports as `pulumi_airflow_k8s`, beside a user's own `components/`.

The repository's folder is `components/` (the project's design names it); the wheel maps it to the
import name of the distribution, so a Pulumi project with a `components/` folder of its own (a
common layout) imports both. Nothing inside the package imports itself by an absolute name.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers import ROOT

IMPORT_NAME = "pulumi_airflow_k8s"


def _uv() -> str:
    """uv, as run.sh finds it: on PATH, else the .venv-uv it installs."""
    found = shutil.which("uv") or (str(ROOT / ".venv-uv" / "bin" / "uv") if (ROOT / ".venv-uv").exists() else None)
    if found is None:
        pytest.fail("uv is needed to build and install the wheel: run ./run.sh once (it installs .venv-uv)")
    return found


def _run(*command: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel built from this checkout installed (with its dependencies)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "components", source / "components", ignore=shutil.ignore_patterns("__pycache__"))
    uv = _uv()
    _run(uv, "build", "--wheel", "--out-dir", str(work / "dist"), str(source))
    (wheel,) = (work / "dist").glob("*.whl")
    venv = work / "venv"
    _run(uv, "venv", "--python", sys.executable, str(venv))
    _run(uv, "pip", "install", "--python", str(venv / "bin" / "python"), f"{wheel}[preview]")
    return venv


def _consumer_env() -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH into this checkout; the chart archives
    from the folders this checkout's tests use (the installed package has no ../shared beside it)."""
    from components.offline.chart_archives import CHARTS_ENV, local_dirs

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env[CHARTS_ENV] = str(next(d for d in local_dirs(ROOT) if d.is_dir()))
    return env


class TestTheWheel:
    def test_it_holds_the_package_under_its_distribution_name_with_the_lock_and_type_marker(self, installed):
        site = Path(
            _run(
                str(installed / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"
            ).strip()
        )
        package = site / IMPORT_NAME
        for name in ("__init__.py", "py.typed", "charts-lock.json", "PulumiPlugin.yaml", "offline/preview.py"):
            assert (package / name).is_file(), f"{name} is missing from the installed package"
        assert not (site / "components").exists(), "the wheel must not install a top-level `components` package"

    def test_a_user_project_with_its_own_components_folder_imports_both(self, installed, tmp_path):
        consumer = tmp_path / "consumer"
        (consumer / "components").mkdir(parents=True)
        (consumer / "components" / "__init__.py").write_text("OWN = 'the user project'\n")
        (consumer / "__main__.py").write_text(
            "import components\n"
            f"from {IMPORT_NAME} import AirflowPlatform, AirflowRelease, ConfigError\n"
            f"from {IMPORT_NAME}.platform import config as stack\n"
            "print(components.OWN)\n"
            "print(AirflowPlatform.__module__, AirflowRelease.__module__, ConfigError.__name__, stack.__name__)\n"
        )
        out = _run(str(installed / "bin" / "python"), "__main__.py", cwd=consumer, env=_consumer_env()).splitlines()
        assert out == [
            "the user project",
            " ".join(f"{IMPORT_NAME}.{m}" for m in ("platform.component", "airflow.component"))
            + f" ConfigError {IMPORT_NAME}.platform.config",
        ]

    def test_the_preview_extra_previews_a_user_project_of_its_own(self, installed, tmp_path):
        project = tmp_path / "my-data-platform"
        (project / "components").mkdir(parents=True)
        (project / "components" / "__init__.py").write_text("")
        (project / "Pulumi.yaml").write_text("name: my-data-platform\nruntime: python\n")
        (project / "Pulumi.dev.yaml").write_text("config: {}\n")
        (project / "__main__.py").write_text(
            f"from {IMPORT_NAME} import AirflowPlatform\n"
            "dags = {'mode': 'gitSync', 'gitSync': {'repo': 'https://github.com/org/dags.git'}}\n"
            "AirflowPlatform('data', {'airflow': {'namespace': 'data', 'dags': dags}})\n"
        )
        command = (str(installed / "bin" / "python"), "-m", f"{IMPORT_NAME}.offline", "dev", "--no-checkov")
        out = _run(*command, cwd=project, env=_consumer_env())
        assert "Offline preview of stack 'dev' (project at my-data-platform/)" in out
        assert re.search(r"apps/v1/Deployment +data/airflow-scheduler +create", out), out
        assert "; 0 problems." in out
        assert (project / "build" / "preview" / "dev" / "values").is_dir()


def _absolute_self_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "components":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import ...")
        if isinstance(node, ast.Import):
            found += [
                f"{path.relative_to(ROOT)}:{node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name.split(".")[0] == "components"
            ]
    return found


class TestThePackageSource:
    def test_nothing_inside_imports_itself_by_its_folder_name(self):
        found = [line for path in sorted((ROOT / "components").rglob("*.py")) for line in _absolute_self_imports(path)]
        assert (ROOT / "components" / "__init__.py").is_file()
        assert not found, "use a relative import (the installed name is pulumi_airflow_k8s):\n" + "\n".join(found)

    def test_the_wheel_lists_every_subpackage_of_the_folder(self):
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
        assert pyproject["package-dir"] == {IMPORT_NAME: "components"}
        folders = sorted(
            ".".join((IMPORT_NAME, *p.parent.relative_to(ROOT / "components").parts))
            for p in (ROOT / "components").rglob("__init__.py")
            if "__pycache__" not in p.parts
        )
        assert len(folders) > 5
        assert sorted(pyproject["packages"]) == folders

    def test_the_distribution_and_the_import_share_one_name(self):
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        assert project["name"].replace("-", "_") == IMPORT_NAME
