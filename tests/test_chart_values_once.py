"""The Airflow chart values are built once per Release per program run: the stack's check, the
Release's own check and the Release itself ask for the same values (components/airflow/values/chart.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from components.airflow.config.airflow import parse_airflow
from components.airflow.values import chart as values
from components.offline.program import run_program
from tests.helpers import ROOT, run_stack

GIT = {"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}}


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """Each build of typed chart values in the test: (release name, connections Secret)."""
    calls: list[tuple[str, Any]] = []
    build = values.build_values

    def counting(cfg: Any, dags_claim: Any, connections_secret: Any) -> dict[str, Any]:
        calls.append((cfg.release_name, connections_secret))
        return build(cfg, dags_claim, connections_secret)

    monkeypatch.setattr(values, "build_values", counting)
    monkeypatch.setattr(values, "_BUILT", [])
    yield calls


class TestOncePerRelease:
    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_a_run_of_the_stack_program_builds_the_airflow_values_once(self, builds, stack):
        run_program(ROOT, stack)
        assert len(builds) == 1

    def test_a_stack_with_connections_builds_them_once_too(self, builds):
        run_stack(program="connections")
        assert len(builds) == 1

    def test_two_releases_in_one_program_build_their_values_once_each(self, builds):
        run_stack(program="two_teams")  # three Releases: team-a and team-b, and team-a again in another namespace
        assert sorted(name for name, _ in builds) == ["team-a", "team-a", "team-b"]


class TestKeptValues:
    def test_values_asked_for_again_are_a_copy_of_their_own(self, builds):
        cfg = parse_airflow(GIT)
        first = values.chart_values(cfg)
        first["executor"] = "changed"
        first["images"]["airflow"]["tag"] = "changed"
        second = values.chart_values(cfg)
        assert second["executor"] == cfg.executor
        assert second["images"]["airflow"]["tag"] == cfg.image.tag
        assert len(builds) == 1

    def test_other_settings_or_another_connections_secret_are_built_anew(self, builds):
        cfg = parse_airflow(GIT)
        values.chart_values(cfg)
        values.chart_values(parse_airflow({**GIT, "executor": "CeleryExecutor"}))
        values.chart_values(cfg, connections_secret="airflow-pulumi-environment")
        assert len(builds) == 3

    def test_extra_values_reach_the_values_but_need_no_new_build(self, builds):
        plain = values.chart_values(parse_airflow(GIT))
        extra = values.chart_values(
            parse_airflow({**GIT, "extraValues": {"scheduler": {"logGroomerSidecar": {"retentionDays": 3}}}})
        )
        assert "retentionDays" not in str(plain["scheduler"])
        assert extra["scheduler"]["logGroomerSidecar"]["retentionDays"] == 3
        assert len(builds) == 1
