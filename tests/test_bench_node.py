"""benchmarks/node.py's number crunching, offline: what it reads from `./run.sh up`, the REST API,
the task pods and the kubelet, and how it prints ratios. Nothing here is timed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import load_benchmark

bench: Any = load_benchmark("node")

UP_OUTPUT = """\
    left out: spark, monitoring (their images are not built yet)
==> images: every image the dev stack names, built unless cached (log: x)
<== images: 6.2s (8 images)
==> node: its address, the control plane, containerd (images imported), kubelet, kube-proxy, CoreDNS
<== node: 48.5s (airflow-k8s-node)
==> pulumi up: the dev stack (log: y)
<== pulumi up: 131.0s
==> Airflow answering on 127.0.0.1
<== Airflow answering: 2.4s
timings: images 6s, node 48s, pulumi up 131s, Airflow answering 2s
"""


class TestUpPhases:
    def test_each_phase_of_up_is_read_with_its_seconds(self):
        assert bench.phase_times(UP_OUTPUT) == {
            "images": 6.2,
            "node": 48.5,
            "pulumi up": 131.0,
            "Airflow answering": 2.4,
        }

    def test_the_row_names_every_phase_and_a_missing_one_as_not_measured(self):
        row = bench.up_row("up", 190.0, UP_OUTPUT.replace("<== pulumi up: 131.0s\n", ""))
        assert row.startswith("up: 190.0 s (node 48.5 s, images 6.2 s, pulumi up n/a, Airflow answering 2.4 s) [load")


class TestDagRunTimings:
    RUN = {"queued_at": "2026-12-07T05:00:00.000000Z", "end_date": "2026-12-07T05:00:21.500000Z"}

    def test_trigger_to_first_running_task_and_to_the_runs_end_come_from_airflows_timestamps(self):
        tasks = [
            {"task_id": "b", "start_date": "2026-12-07T05:00:12.250000Z"},
            {"task_id": "a", "start_date": "2026-12-07T05:00:04.750000+00:00"},
            {"task_id": "c", "start_date": None},
        ]
        assert bench.run_timings(self.RUN, tasks) == {"to_running": 4.75, "to_finished": 21.5}

    def test_a_run_whose_tasks_never_started_has_no_time_to_running(self):
        assert bench.run_timings({**self.RUN, "end_date": None}, [{"task_id": "a"}]) == {
            "to_running": None,
            "to_finished": None,
        }


def task_pod(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": "2026-12-07T05:00:02Z"},
        "status": {"containerStatuses": [{"name": "base", "state": state}]},
    }


class TestTaskPodOverhead:
    TASK = {"start_date": "2026-12-07T05:00:09.500000Z", "end_date": "2026-12-07T05:00:10.000000Z"}

    def test_start_import_run_and_exit_split_the_pods_life_around_the_task(self):
        pod = task_pod({"terminated": {"startedAt": "2026-12-07T05:00:04Z", "finishedAt": "2026-12-07T05:00:12Z"}})
        assert bench.pod_overhead(pod, self.TASK) == {"start": 2.0, "import": 5.5, "run": 0.5, "exit": 2.0}

    def test_a_pod_seen_only_running_gives_its_start_and_import_but_no_exit(self):
        pod = task_pod({"running": {"startedAt": "2026-12-07T05:00:04Z"}})
        assert bench.pod_overhead(pod, self.TASK) == {"start": 2.0, "import": 5.5, "run": 0.5, "exit": None}

    def test_a_pending_pod_gives_nothing_but_the_tasks_own_run(self):
        pod = task_pod({"waiting": {"reason": "ContainerCreating"}})
        assert bench.pod_overhead(pod, self.TASK) == {"start": None, "import": None, "run": 0.5, "exit": None}


class TestMemory:
    SUMMARY = {
        "pods": [
            {"podRef": {"name": "airflow-scheduler-0", "namespace": "airflow"}, "memory": {"workingSetBytes": 300}},
            {
                "podRef": {"name": "airflow-postgresql-0", "namespace": "airflow"},
                "containers": [{"memory": {"workingSetBytes": 70}}, {"memory": {"workingSetBytes": 30}}],
            },
            {"podRef": {"name": "coredns-1", "namespace": "kube-system"}, "memory": {"workingSetBytes": 999}},
        ]
    }

    def test_the_stacks_pods_are_counted_by_their_working_set_and_other_namespaces_left_out(self):
        assert bench.summary_memory(self.SUMMARY, "airflow") == {
            "airflow-scheduler-0": 300,
            "airflow-postgresql-0": 100,
        }

    def test_a_cgroup_v1_working_set_is_the_usage_less_the_inactive_file_cache(self):
        stat = "cache 400\ntotal_inactive_file 250\ninactive_file 100\nrss 600\n"
        assert bench.working_set(1000, stat) == 750

    def test_a_working_set_is_never_negative(self):
        assert bench.working_set(100, "total_inactive_file 250\n") == 0


class TestRatios:
    def test_a_ratio_is_a_line_of_its_own_as_ratio_what_x(self):
        assert bench.ratio_line("up from a warm image cache to the floor", 180.0, 40.0) == (
            "ratio up from a warm image cache to the floor: 4.5x"
        )

    @pytest.mark.parametrize(("value", "floor"), [(None, 40.0), (180.0, None), (180.0, 0.0)])
    def test_a_ratio_without_both_numbers_says_it_was_not_measured(self, value, floor):
        assert bench.ratio_line("x", value, floor) == "ratio x: n/a (not measured)"

    def test_the_median_leaves_out_what_was_not_measured(self):
        assert bench.median([3.0, None, 1.0, 2.0]) == 2.0
        assert bench.median([None]) is None
