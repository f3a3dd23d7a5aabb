"""The documentation site builds strictly: a broken link or anchor, a page left out of the
navigation, or an API reference entry that names nothing fails the build."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.offline.program import run_program
from tests.helpers import DB_URL, ROOT


def _nav_pages(nav: list[object]) -> set[str]:
    pages: set[str] = set()
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            pages |= _nav_pages(value)
        else:
            pages.add(str(value))
    return pages


class TestDocsSite:
    def test_the_site_builds_in_strict_mode(self, tmp_path: Path):
        proc = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        api = (tmp_path / "site" / "api" / "index.html").read_text()
        for name in ("AirflowPlatform", "AirflowRelease", "LogStorage", "SparkOperator", "Monitoring"):
            assert 'id="components.' in api and name in api

    def test_every_page_in_docs_is_in_the_navigation(self):
        config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
        pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
        assert pages == _nav_pages(config["nav"])

    def test_the_api_reference_documents_every_argument_of_every_component(self):
        import components
        from components.platform.component import AirflowPlatformArgs

        args_types = [AirflowPlatformArgs] + [getattr(components, n) for n in components.__all__ if n.endswith("Args")]
        for args in args_types:
            source = Path(sys.modules[args.__module__].__file__ or "").read_text()
            for field in args.__annotations__:
                after = source.split(f"\n    {field}:", 1)[1].split("\n", 2)
                assert after[1].strip().startswith('"""'), f"{args.__name__}.{field} has no docstring"


def python_snippets(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.DOTALL)


# Every Python snippet of the documentation: the README and each page of docs/.
PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
SNIPPETS = [(page, index) for page in PAGES for index in range(len(python_snippets(page)))]


class TestSnippetsStandAlone:
    """The Python snippets of the documentation run as they are, as a stack program (under
    Pulumi's mocks): every name they use, they define or import."""

    def test_every_page_that_shows_how_to_use_the_components_has_its_snippets_run(self):
        pages = {page for page, _ in SNIPPETS}
        assert {"docs/usage.md", "docs/packages.md", "docs/monitoring.md", "docs/spark.md"} <= pages
        assert len(SNIPPETS) >= 6

    @pytest.mark.parametrize(("page", "index"), SNIPPETS)
    def test_the_snippet_runs_as_a_program_of_its_own(self, page, index, tmp_path: Path):
        snippets = python_snippets(page)
        program = tmp_path / "__main__.py"
        program.write_text(snippets[index])
        dags = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/org/dags.git", "auth": "token"}}
        config = {
            "kubernetes:context": "kind-kind",
            "airflow-k8s:airflow": json.dumps({"dags": dags, "database": {"mode": "external"}}),
            "airflow-k8s:databaseUrl": DB_URL,
            "airflow-k8s:gitToken": "tok-123456789",
        }
        secret_keys = {"airflow-k8s:databaseUrl", "airflow-k8s:gitToken"}
        run = run_program(ROOT, "docs", config=config, secret_keys=secret_keys, project="airflow-k8s", program=program)
        assert any(r.type == "kubernetes:helm.sh/v3:Release" for r in run.resources)
