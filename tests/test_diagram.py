"""The architecture diagram (docs/architecture.md): generated from what the shipped stacks declare,
up to date, and showing every component, chart and dependency between components."""

from __future__ import annotations

import copy
import json

import pytest

from components.offline import diagram
from components.offline.diagram import DOC, END, START, Box, House
from components.offline.generated import write_or_check
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def house() -> House:
    return diagram.house(ROOT)


def box(house: House, kind: str) -> Box:
    (found,) = [b for b in house.boxes.values() if diagram.kind(b.type) == kind]
    return found


class TestTheDiagramInTheDocs:
    def test_the_diagram_in_docs_architecture_is_what_the_code_declares_now(self, house: House) -> None:
        text = (ROOT / DOC).read_text()
        assert diagram.updated(text, diagram.section(house)) == text, "run ./run.sh diagram"

    def test_the_check_fails_when_a_component_declares_one_more_resource(self, house: House) -> None:
        text = (ROOT / DOC).read_text()
        grown = copy.deepcopy(house)
        box(grown, "SparkOperator").kinds["ConfigMap"] = {"dev": 1, "prod": 1}
        new = diagram.updated(text, diagram.section(grown))
        assert new != text
        assert "ConfigMap: 1" in new.split("SparkOperator 'spark'", 1)[1].split("\n", 1)[0]

    def test_the_check_command_says_the_diagram_is_up_to_date(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert diagram.main(["--check"]) == 0
        assert "is up to date" in capsys.readouterr().out

    def test_a_page_without_the_markers_is_refused_naming_them(self) -> None:
        with pytest.raises(ValueError, match="no diagram markers") as caught:
            diagram.updated("## Architecture\n", "diagram")
        assert START in str(caught.value) and END in str(caught.value)

    def test_only_the_part_between_the_markers_is_replaced(self) -> None:
        page = f"before\n{START}\nold\n{END}\nafter\n"
        assert diagram.updated(page, "new") == "before\nnew\nafter\n"


class TestWhatItShows:
    def test_every_component_of_the_shipped_stacks_is_a_box_inside_the_platform(self, house: House) -> None:
        kinds = {diagram.kind(b.type) for b in house.boxes.values()}
        components = ("AirflowPlatform", "AirflowRelease", "LogStorage", "KedaOperator", "Monitoring", "SparkOperator")
        assert kinds == set(components)
        platform = box(house, "AirflowPlatform")
        assert platform.parent == ""
        assert box(house, "LogStorage").parent == box(house, "AirflowRelease").key
        for kind in ("AirflowRelease", "KedaOperator", "Monitoring", "SparkOperator"):
            assert box(house, kind).parent == platform.key

    def test_each_release_shows_the_chart_and_version_the_lock_pins(self, house: House) -> None:
        lock = json.loads((ROOT / "components/charts-lock.json").read_text())
        locked = {f"{c['name']} {c['version']}" for c in lock["charts"]}
        charts = {chart for b in house.boxes.values() for chart in b.charts}
        assert charts == locked
        text = diagram.mermaid(house)
        for chart in locked:
            assert f"helm Release: {chart}" in text

    def test_a_component_only_one_stack_declares_is_named_with_it(self, house: House) -> None:
        keda = box(house, "KedaOperator")
        assert keda.stacks == ["prod"]
        assert "KedaOperator 'keda' (prod only)" in diagram.mermaid(house)

    def test_an_arrow_goes_from_a_component_to_the_one_its_resources_depend_on(self, house: House) -> None:
        release, monitoring, spark = (box(house, k).key for k in ("AirflowRelease", "Monitoring", "SparkOperator"))
        assert "Release" in house.uses[(monitoring, release)]
        assert "Namespace" in house.uses[(spark, release)]
        assert (release, monitoring) not in house.uses
        assert '  Monitoring_monitoring -->|"Namespace, Release"| AirflowRelease_airflow_own' in diagram.mermaid(house)

    def test_the_components_no_shipped_stack_declares_are_named_under_it(self, house: House) -> None:
        assert diagram.not_drawn(house) == ["TaskNamespace"]
        assert "The package's other components, which they do not declare: TaskNamespace." in diagram.section(house)

    def test_the_path_from_the_stack_file_names_the_functions_that_take_it(self, house: House) -> None:
        text = diagram.mermaid(house)
        assert "components.platform.config.load()" in text
        assert '-->|"AirflowPlatform.from_config()"| AirflowPlatform_airflow' in text


class TestCounts:
    def test_a_count_the_stacks_agree_on_is_one_number(self) -> None:
        assert diagram._count({"dev": 2, "prod": 2}, ["dev", "prod"]) == "2"

    def test_counts_that_differ_are_a_range(self) -> None:
        assert diagram._count({"dev": 9, "prod": 14}, ["dev", "prod"]) == "9-14"

    def test_a_kind_only_one_stack_has_names_that_stack(self) -> None:
        assert diagram._count({"dev": 1}, ["dev", "prod"]) == "1 (dev)"


class TestGeneratedFiles:
    def test_a_stale_file_fails_the_check_naming_the_command_that_regenerates_it(self, tmp_path, capsys):
        target = tmp_path / "docs" / "page.md"
        target.parent.mkdir()
        target.write_text("old\n")
        assert write_or_check(target, "new\n", what="the page", command="./run.sh page", check=True) == 1
        assert capsys.readouterr().err == "the page is stale: run `./run.sh page`\n"
        assert target.read_text() == "old\n"

    def test_a_missing_file_is_stale_and_writing_creates_it(self, tmp_path, capsys):
        target = tmp_path / "schemas" / "x.json"
        assert write_or_check(target, "{}\n", what="x", command="make x", check=True) == 1
        assert write_or_check(target, "{}\n", what="x", command="make x", check=False) == 0
        assert target.read_text() == "{}\n"
        assert write_or_check(target, "{}\n", what="x", command="make x", check=True) == 0
        assert capsys.readouterr().out.splitlines() == ["wrote x", "x is up to date"]
