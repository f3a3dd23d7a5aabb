"""e2e.node.early, offline: the builds the node scenario starts when the run begins (its images,
kube-router for the enforce part) run in the background at a low priority, the step that needs one
waits for it instead of building twice, a failed one is said and built again by the step, and the
run's end stops one that still runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from e2e.cluster import Process, spawn
from e2e.harness import Steps
from e2e.node import early
from e2e.node.scenario import start_early
from e2e.scenarios import Harness
from tests.helpers import ROOT


@pytest.fixture(autouse=True)
def nothing_left():
    yield
    assert early.stop() == []


def harness(tmp_path: Path) -> Harness:
    charts = ROOT.parent / "shared" / "charts"
    return Harness(
        steps=None,  # type: ignore[arg-type]
        found={},
        work=tmp_path,
        stages=[],
        charts=lambda name: {"path": str(charts / f"{name}.tgz")},
        charts_dir=charts,
    )


class TestTheRunsStart:
    @pytest.fixture
    def started(self, monkeypatch) -> list[tuple[str, list[str]]]:
        seen: list[tuple[str, list[str]]] = []
        monkeypatch.setattr(early, "start", lambda name, logs, module, args=(): seen.append((name, [module, *args])))
        return seen

    def test_the_images_and_kube_router_start_when_the_enforce_part_will_run(self, tmp_path, monkeypatch, started):
        monkeypatch.setenv("AIRFLOW_K8S_NODE_PARTS", "keys,enforce")
        assert start_early(harness(tmp_path)) is early.stop
        assert [name for name, _ in started] == ["images", "kube-router"]
        assert started[1][1] == ["e2e.node.kube_router"]
        (_, args), _ = started
        assert args[0] == "e2e.node.scenario" and args[2].endswith("charts")
        stack = yaml.safe_load((Path(args[1]) / "Pulumi.e2e.yaml").read_text())["config"]
        assert stack["airflow-k8s:airflow"]["networkPolicies"] == {"enabled": True}  # the enforce part's change
        assert not Path(args[1]).is_relative_to(tmp_path / "node")  # nothing the node's clean check would see

    def test_without_the_enforce_part_only_the_images_start(self, tmp_path, monkeypatch, started):
        monkeypatch.setenv("AIRFLOW_K8S_NODE_PARTS", "keys")
        start_early(harness(tmp_path))
        assert [name for name, _ in started] == ["images"]

    def test_a_selection_naming_no_part_starts_nothing_and_leaves_the_error_to_the_scenario(
        self, tmp_path, monkeypatch, started
    ):
        monkeypatch.setenv("AIRFLOW_K8S_NODE_PARTS", "no-such-part")
        said: list[str] = []
        h = harness(tmp_path)
        h.steps = Steps(said.append)
        start_early(h)
        assert started == []
        (line,) = said
        assert line.startswith(
            "    the node's builds did not start early: AIRFLOW_K8S_NODE_PARTS: no part named no-such"
        )


class TestTheBuilds:
    def test_each_runs_at_the_lowest_cpu_priority_in_a_process_of_its_own(self, tmp_path, monkeypatch):
        seen: list[list[str]] = []

        def recorded(logs: Path, name: str, args: list[str], cwd: Path) -> Process:
            seen.append(args)
            return spawn(logs, name, ["true"])

        monkeypatch.setattr(early, "spawn", recorded)
        early.start("kube-router", tmp_path, "e2e.node.kube_router")
        early.start("kube-router", tmp_path, "e2e.node.kube_router")  # once
        assert len(seen) == 1
        assert seen[0][:3] == ["nice", "-n", "19"] and seen[0][-2:] == ["-m", "e2e.node.kube_router"]

    def test_the_step_waits_for_a_build_and_says_so(self, tmp_path):
        early._running["images"] = spawn(tmp_path, "early-images", ["sh", "-c", "sleep 0.3"])
        lines: list[str] = []
        early.wait("images", lines.append)
        assert lines[0].startswith("images: built in the background while the run went on (waited ")
        assert "images" not in early._running

    def test_a_failed_build_is_said_and_the_step_builds_itself(self, tmp_path):
        early._running["kube-router"] = spawn(tmp_path, "early-kube-router", ["sh", "-c", "exit 3"])
        lines: list[str] = []
        early.wait("kube-router", lines.append)
        assert lines[0].startswith("kube-router: the build in the background exited 3 (log: ")
        assert lines[0].endswith("building here")

    def test_a_step_with_no_build_started_waits_for_nothing(self):
        lines: list[str] = []
        early.wait("images", lines.append)
        assert lines == []

    def test_the_runs_end_stops_a_build_that_still_runs(self, tmp_path):
        early._running["images"] = spawn(tmp_path, "early-images", ["sleep", "60"])
        popen = early._running["images"].popen
        assert early.stop() == []
        assert popen.poll() is not None and early._running == {}
