"""The house keeps its shape: no import cycle in components/, config parsers below chart values,
chart values below the Pulumi wiring (import-linter contracts in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def packages_copy(dest: Path) -> None:
    """The packages the contracts cover and the contracts themselves, to break one in a copy."""
    for package in ("components", "e2e"):
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def lint_copy_with(dest: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """lint-imports over a copy of the packages in which `module` (a path, created when new) ends
    with `line`."""
    packages_copy(dest)
    path = dest / module
    path.write_text((path.read_text() if path.exists() else "") + f"\n{line}\n")
    return lint_imports(dest)


class TestContracts:
    def test_every_contract_of_the_project_is_kept(self):
        proc = lint_imports(ROOT)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert "0 broken" in proc.stdout
        assert "No import cycles in components/, between packages or modules KEPT" in proc.stdout
        assert "e2e: nothing imports the dispatcher, and the harness imports no scenario KEPT" in proc.stdout

    def test_the_cycle_contract_catches_a_loop_even_through_a_type_checking_import(self, tmp_path: Path):
        package = tmp_path / "loop"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "config.py").write_text("from loop.fernet import FernetConfig\n")
        (package / "fernet.py").write_text(
            textwrap.dedent(
                """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from loop.config import AirflowConfig
                class FernetConfig: ...
                """
            )
        )
        (tmp_path / ".importlinter").write_text(
            "[importlinter]\nroot_package = loop\n\n"
            "[importlinter:contract:acyclic]\nname = no loops\ntype = acyclic_siblings\nancestors = loop\n"
        )
        proc = lint_imports(tmp_path, "--config", str(tmp_path / ".importlinter"))
        assert proc.returncode == 1
        assert "no loops BROKEN" in proc.stdout

    def test_a_capability_that_reaches_into_airflow_internals_breaks_a_contract(self, tmp_path: Path):
        proc = lint_copy_with(
            tmp_path, "components/keda/values.py", "from components.airflow.values.chart import chart_values"
        )
        assert proc.returncode == 1
        assert "Capabilities see only Airflow's public surface" in proc.stdout
        assert "components.keda.values -> components.airflow.values.chart" in proc.stdout

    def test_a_capability_may_use_airflow_config_and_its_component(self, tmp_path: Path):
        proc = lint_copy_with(
            tmp_path,
            "components/spark/component.py",
            "from components.airflow.config.airflow import AirflowConfig as _AirflowConfig",
        )
        assert proc.returncode == 0, proc.stdout[-3000:]

    def test_an_airflow_config_module_importing_chart_values_breaks_the_layers(self, tmp_path: Path):
        proc = lint_copy_with(
            tmp_path, "components/airflow/config/pools.py", "from components.airflow.values.chart import chart_values"
        )
        assert proc.returncode == 1
        assert "Airflow: config/ -> values/ -> the wiring (maintenance, component) BROKEN" in proc.stdout
        assert "components.airflow.config.pools -> components.airflow.values.chart" in proc.stdout

    def test_a_new_module_in_airflow_values_is_held_to_its_folder_without_being_listed(self, tmp_path: Path):
        proc = lint_copy_with(tmp_path, "components/airflow/values/brand_new.py", "import pulumi")
        assert proc.returncode == 1
        assert "Chart values are plain functions: no Pulumi, no component BROKEN" in proc.stdout
        assert "components.airflow.values.brand_new -> pulumi" in proc.stdout

    def test_a_scenario_importing_the_e2e_dispatcher_breaks_a_contract(self, tmp_path: Path):
        proc = lint_copy_with(tmp_path, "e2e/scenarios.py", "from e2e.run import PULUMI_SCENARIOS")
        assert proc.returncode == 1
        assert "e2e: nothing imports the dispatcher" in proc.stdout
        assert "No import cycles in e2e/" in proc.stdout and "BROKEN" in proc.stdout


LIMIT = 600
REASON = "Longer than 600 lines:"


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / name for name in out if name.endswith((".py", ".md", ".sh", ".ts")) and (ROOT / name).is_file()]


class TestFileSizes:
    def test_no_file_passes_600_lines_without_a_reason_stated_at_its_top(self):
        unexplained = []
        for path in tracked_files():
            lines = path.read_text().splitlines()
            if len(lines) > LIMIT and not any(REASON in line for line in lines[:5]):
                unexplained.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
        assert unexplained == []

    def test_the_rule_sees_the_largest_modules(self):
        sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in tracked_files()}
        assert sizes["components/offline/checks/references.py"] > LIMIT
        assert all(not name.startswith(("examples/typescript/node_modules", "components/venv")) for name in sizes)
