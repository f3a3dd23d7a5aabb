"""node-prod's failure and rollout parts (issue 25, scenario 6: e2e/node/prod_*.py), offline: what
they decide from the API's answers (restarts, times, the drain's order and budgets, the rollout's
failed requests), the DAG they run, and that they are parts of the scenario."""

from __future__ import annotations

import http.server
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from e2e.harness import StepError
from e2e.node import prod_common, prod_drain, prod_redis, prod_rollout, prod_scheduler, scenario_prod
from e2e.node.airflow_steps import NODE_DAGS, NOT_RUN
from e2e.scenarios import airflow_images
from tests.test_node_prod import node_config, parsed


def pod(
    name: str,
    component: str,
    uid: str = "u1",
    restarts: int = 0,
    *,
    job: bool = False,
    deleting: bool = False,
    ready_at: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": uid, "labels": {"component": component}}
    if job:
        meta["ownerReferences"] = [{"kind": "Job"}]
    if deleting:
        meta["deletionTimestamp"] = "2026-12-07T15:00:00Z"
    conditions = [{"type": "Ready", "status": "True", "lastTransitionTime": ready_at}] if ready_at else []
    return {
        "metadata": meta,
        "status": {"conditions": conditions, "containerStatuses": [{"name": component, "restartCount": restarts}]},
    }


class TestRestarts:
    def test_only_airflows_own_serving_pods_count(self):
        pods = [
            pod("airflow-scheduler-a", "scheduler"),
            pod("airflow-pgbouncer-a", "pgbouncer"),
            pod("airflow-redis-0", "redis"),
            pod("airflow-run-migrations-x", "scheduler", job=True),
            pod("airflow-scheduler-old", "scheduler", deleting=True),
        ]
        assert prod_common.airflow_containers(pods) == {"airflow-scheduler-a/scheduler": ("u1", 0)}

    def test_a_restart_a_replaced_pod_a_gone_one_and_a_new_one_are_each_named(self):
        before = {"s/scheduler": ("u1", 0), "a/api-server": ("u2", 1), "w/worker": ("u3", 0), "t/triggerer": ("u4", 0)}
        after = {"s/scheduler": ("u1", 1), "a/api-server": ("u2", 1), "w/worker": ("u9", 0), "n/triggerer": ("u5", 0)}
        assert prod_common.restarted(before, after) == [
            "s/scheduler restarted (0 -> 1)",
            "t/triggerer gone",
            "w/worker replaced (a new pod)",
            "n/triggerer new",
        ]

    def test_the_containers_whose_previous_log_is_read_are_those_that_restarted(self):
        changes = ["airflow-scheduler-x/scheduler restarted (0 -> 1)", "w/worker replaced (a new pod)", "t/t gone"]
        assert prod_common.restarted_containers(changes) == [("airflow-scheduler-x", "scheduler")]

    def test_nothing_changed_is_no_change(self):
        counts = {"s/scheduler": ("u1", 2)}
        assert prod_common.restarted(counts, dict(counts)) == []


class TestTimes:
    def test_api_times_with_z_or_an_offset_parse_alike(self):
        assert prod_common.parse_time("2026-12-07T15:00:01.5Z") == prod_common.parse_time("2026-12-07T15:00:01.5+00:00")
        assert prod_common.parse_time(None) is None

    def test_ready_since_is_the_ready_conditions_transition(self):
        ready = pod("s", "scheduler", ready_at="2026-12-07T15:00:40Z")
        assert prod_common.ready_since(ready) == datetime(2026, 12, 7, 15, 0, 40, tzinfo=UTC)
        assert prod_common.ready_since(pod("s", "scheduler")) is None

    def test_task_times_are_counted_from_the_deletion(self):
        start = datetime(2026, 12, 7, 15, 0, 0, tzinfo=UTC)
        tasks = [
            {
                "task_id": "after",
                "try_number": 1,
                "queued_when": "2026-12-07T15:00:12Z",
                "start_date": "2026-12-07T15:00:13.5Z",
                "end_date": None,
            }
        ]
        assert prod_common.task_times(tasks, start) == "after try 1: queued +12.0s, started +13.5s, ended ?"

    def test_the_run_did_not_wait_only_when_it_ended_before_the_new_scheduler_was_ready(self):
        end = datetime(2026, 12, 7, 15, 0, 20, tzinfo=UTC)
        back = datetime(2026, 12, 7, 15, 0, 45, tzinfo=UTC)
        assert prod_scheduler.ended_before_return(end, back)
        assert not prod_scheduler.ended_before_return(back, end)
        assert not prod_scheduler.ended_before_return(end, None)

    def test_health_names_the_components_not_healthy(self):
        answer = {
            "metadatabase": {"status": "healthy"},
            "scheduler": {"status": "unhealthy", "latest_scheduler_heartbeat": None},
            "dag_processor": {"status": None},
        }
        assert prod_common.healthy(answer) == ["scheduler"]


class TestRedis:
    def test_the_workers_broker_lines_are_picked_from_its_log(self):
        log = "\n".join(
            [
                "[2026-12-07 15:00:00] Task nap received",
                "consumer: Connection to broker lost. Trying to re-establish the connection...",
                "consumer: Cannot connect to redis://:**@airflow-redis:6379/0: Error 111. Connection refused.",
                "Connected to redis://:**@airflow-redis:6379/0",
            ]
        )
        assert len(prod_redis.broker_lines(log)) == 3
        assert prod_redis.broker_lines(log, limit=1) == ["Connected to redis://:**@airflow-redis:6379/0"]


class TestDrain:
    def test_the_budgets_are_prods_and_the_components_accept_them(self):
        cfg = prod_drain.prod_budgets(scenario_prod.prod_stack(node_config()))
        airflow = parsed(cfg).airflow
        for component in (airflow.scheduler, airflow.api_server, airflow.triggerer, airflow.workers):
            assert component.disruption.enabled and component.disruption.max_unavailable == 1
        assert airflow.database.pgbouncer.disruption.enabled

    def test_the_node_config_it_starts_from_is_left_as_it_was(self):
        cfg = scenario_prod.prod_stack(node_config())
        prod_drain.prod_budgets(cfg)
        assert "podDisruptionBudget" not in cfg["airflow-k8s:airflow"]["scheduler"]

    def test_the_first_of_each_pair_goes_first_the_second_last(self):
        pods = [
            pod("airflow-scheduler-b", "scheduler"),
            pod("airflow-scheduler-a", "scheduler"),
            pod("airflow-api-server-a", "api-server"),
            pod("airflow-api-server-b", "api-server"),
            pod("airflow-redis-0", "redis"),
            pod("airflow-pgbouncer-a", "pgbouncer"),
            pod("airflow-pgbouncer-b", "pgbouncer"),
            pod("airflow-run-migrations-x", "run-airflow-migrations", job=True),
            pod("airflow-scheduler-c", "scheduler", deleting=True),
        ]
        assert prod_drain.drain_order(pods) == [
            "airflow-scheduler-a",
            "airflow-api-server-a",
            "airflow-pgbouncer-a",
            "airflow-redis-0",
            "airflow-scheduler-b",
            "airflow-api-server-b",
            "airflow-pgbouncer-b",
        ]

    def test_an_eviction_names_the_pod(self):
        assert prod_drain.eviction("p", "airflow") == {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "p", "namespace": "airflow"},
        }


class TestRollout:
    def test_the_new_tag_is_the_old_one_with_a_suffix(self):
        assert prod_rollout.retag("apache/airflow:3.2.0") == "apache/airflow:3.2.0-rollout"
        assert prod_rollout.retag("registry:5000/airflow:3.2.0") == "registry:5000/airflow:3.2.0-rollout"
        with pytest.raises(StepError, match="pinned by digest"):
            prod_rollout.retag("apache/airflow:3.2.0@sha256:" + "0" * 64)

    def test_the_summary_counts_failures_and_says_when_and_what(self):
        samples = [(0.0, None), (1.2, "ConnectionResetError: reset"), (1.4, "HTTP 503"), (1.6, None)]
        assert prod_rollout.summary(samples) == (
            4,
            2,
            "4 requests, 2 failed (first at 1.2s, last at 1.4s): 1 x ConnectionResetError, 1 x HTTP 503",
        )
        assert prod_rollout.summary([(0.0, None)]) == (1, 0, "1 requests, 0 failed")

    def test_the_poller_counts_a_server_that_goes_away(self):
        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        poller = prod_rollout.Poller(f"http://127.0.0.1:{server.server_address[1]}/", interval=0.02)
        poller.start()
        time.sleep(0.2)
        server.shutdown()
        server.server_close()
        time.sleep(0.2)
        poller.stop()
        total, failed, _ = prod_rollout.summary(poller.samples)
        assert 0 < failed < total


class TestWhatRunsAirflow:
    """The rollout waits for every workload that runs Airflow to run the new tag. The chart's
    PgBouncer comes from the same repository under its own tag: counted, it never rolled, and the
    part timed out after 300 s on the node."""

    def test_the_charts_pgbouncer_and_its_exporter_are_not_airflow(self):
        pgbouncer = {
            "containers": [
                {"image": "apache/airflow:airflow-pgbouncer-2026.04.17-1.23.1"},
                {"image": "apache/airflow:airflow-pgbouncer-exporter-2026.04.17-0.19.0"},
            ]
        }
        assert airflow_images(pgbouncer) == []

    def test_airflows_own_containers_are_and_their_sidecars_are_not(self):
        scheduler = {"containers": [{"image": "apache/airflow:3.2.0-rollout"}, {"image": "busybox:1.37"}]}
        assert airflow_images(scheduler) == ["apache/airflow:3.2.0-rollout"]


class TestTheParts:
    def test_each_is_a_part_of_node_prod_with_its_own_name(self):
        names = [p.name for p in (*scenario_prod.PROD_PARTS, *scenario_prod.PROD_TRIAL_PARTS)]
        assert {"scheduler-loss", "redis-restart", "pgbouncer-restart", "drain", "rollout"} <= set(names)
        assert len(names) == len(set(names))

    def test_only_those_shown_green_on_the_node_run_unnamed(self):
        assert "scheduler-loss" in [p.name for p in scenario_prod.PROD_PARTS]
        trial = {p.name for p in scenario_prod.PROD_TRIAL_PARTS}
        assert {"redis-restart", "pgbouncer-restart", "drain", "rollout"} <= trial

    def test_the_dag_they_run_is_mounted_and_named_as_not_run_by_the_node_scenario(self):
        source = (NODE_DAGS / "example_sleep.py").read_text()
        assert 'dag_id="example_sleep"' in source and '"seconds"' in source
        assert prod_common.SLEEP_DAG in NOT_RUN
