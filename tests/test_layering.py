"""The house keeps its shape: no import cycle in components/, config parsers below chart values,
chart values below the Pulumi wiring (import-linter contracts in pyproject.toml)."""

from __future__ import annotations

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


class TestContracts:
    def test_every_contract_of_the_project_is_kept(self):
        proc = lint_imports(ROOT)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert "0 broken" in proc.stdout
        assert "No import cycles between the modules of components/ KEPT" in proc.stdout

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
