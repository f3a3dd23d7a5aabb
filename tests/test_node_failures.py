"""Part `failures` of the node scenario (e2e/node/part_failures.py), offline: the kubelet stopped
and started again the node's way, the part's stack change, and how its out-of-memory step judges
each try. The part itself runs on the real node (docs/e2e.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e2e.cluster import spawn, stop_all
from e2e.harness import StepError
from e2e.node import host, part_failures
from e2e.node.host import NodeError
from e2e.node.scenario import PARTS


class TestTheKubeletStopped:
    """Part `failures` stops the node's kubelet and starts it again the way the node does."""

    def test_the_kubelet_process_is_stopped_and_no_longer_counted_among_the_nodes(self, tmp_path: Path) -> None:
        node = host.Node(tmp_path, {})
        node.processes += [spawn(tmp_path, "kubelet", ["sleep", "60"]), spawn(tmp_path, "kube-proxy", ["sleep", "60"])]
        kubelet = node.processes[0]
        try:
            node.stop_kubelet()
            assert kubelet.popen.poll() is not None
            assert [p.name for p in node.processes] == ["kube-proxy"]
            assert node.dead() is None  # the node is not taken for dead while its kubelet is down
        finally:
            stop_all(node.processes)

    def test_stopping_a_kubelet_that_does_not_run_is_an_error(self, tmp_path: Path) -> None:
        with pytest.raises(NodeError, match="no kubelet of this node runs"):
            host.Node(tmp_path, {}).stop_kubelet()


class TestTheFailuresPart:
    def test_its_stack_lowers_the_heartbeat_timeout_and_keeps_the_other_extra_values(self) -> None:
        cfg: dict[str, Any] = {
            "airflow-k8s:airflow": {"namespace": "airflow", "extraValues": {"config": {"core": {"x": 1}}}}
        }
        out = part_failures.with_heartbeat_timeout(cfg)
        assert out["airflow-k8s:airflow"]["extraValues"]["config"] == {
            "core": {"x": 1},
            "scheduler": {"task_instance_heartbeat_timeout": part_failures.HEARTBEAT_TIMEOUT},
        }
        assert out["airflow-k8s:airflow"]["namespace"] == "airflow"
        assert "scheduler" not in cfg["airflow-k8s:airflow"]["extraValues"]["config"]  # a copy out

    def test_it_is_the_first_part_of_the_scenario(self) -> None:
        assert PARTS[0].name == "failures"


class FakeOomApi:
    """Airflow's REST API after example_memory_limit's run: failed after two tries, with these logs."""

    def __init__(self, logs: dict[int, str]) -> None:
        self.logs = logs

    def unpause(self, dag_id: str) -> None:
        pass

    def trigger(self, dag_id: str) -> str:
        return "manual__1"

    def run_state(self, dag_id: str, run_id: str) -> str:
        return "failed"

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return [{"task_id": "outgrow", "state": "failed", "try_number": 2}]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        return self.logs[try_number]


def oom_run(logs: dict[int, str], pods: list[dict[str, Any]]) -> tuple[Any, list[str]]:
    from types import SimpleNamespace

    lines: list[str] = []
    kube = SimpleNamespace(list=lambda api_version, kind, namespace: pods)
    run = SimpleNamespace(api=FakeOomApi(logs), kube=kube, namespace="airflow", echo=lines.append, d=None)
    return run, lines


def oom_pod(tries: int, reason: str, exit_code: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"outgrow-{tries}",
            "labels": {"dag_id": "example_memory_limit", "task_id": "outgrow"},
            "annotations": {"run_id": "manual__1", "try_number": str(tries)},
        },
        "status": {
            "containerStatuses": [{"name": "base", "state": {"terminated": {"reason": reason, "exitCode": exit_code}}}]
        },
    }


class TestTheOutOfMemoryStep:
    SAID = "Process terminated by signal. Likely out of memory error (OOM). For more information, see ..."

    def test_each_try_whose_log_says_out_of_memory_passes(self) -> None:
        run, lines = oom_run({1: self.SAID, 2: self.SAID}, [])
        part_failures.memory_limit(run)
        assert lines[-1] == "each try's task log (REST API) says: Likely out of memory error (OOM)"

    def test_a_try_whose_log_does_not_say_why_fails_the_step(self) -> None:
        run, _ = oom_run({1: "allocating 32 MiB at a time", 2: self.SAID}, [])
        with pytest.raises(StepError, match=r"no out-of-memory reason in the task log of try 1 "):
            part_failures.memory_limit(run)

    def test_a_pod_killed_whole_is_a_finding_not_a_failure(self) -> None:
        run, lines = oom_run({1: "allocating", 2: self.SAID}, [oom_pod(1, "OOMKilled", 137)])
        part_failures.memory_limit(run)
        assert "FINDING: try 1's pod was OOMKilled (exit code 137), and its task log does not say so" in lines
