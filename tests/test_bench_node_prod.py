"""benchmarks/node_prod.py and node-prod's part `timings`, offline: the numbers are read from the
scenario's output as the parts print them, and the part is on trial (never in CI's run)."""

from __future__ import annotations

from typing import Any

from e2e.node.prod_timings import PART, timing_line
from e2e.node.scenario_prod import PROD_PARTS, PROD_TRIAL_PARTS
from tests.helpers import load_benchmark

bench: Any = load_benchmark("node_prod")
PARTS, numbers = bench.PARTS, bench.numbers

OUTPUT = """\
    timing warm-worker: n=3 median=7.1s min=6.9s max=7.4s (each: 7.1 6.9 7.4)
    timing cold-worker: worker Ready 41.2s, run success 52.8s after the trigger
    /api/v2/monitor/health during the rollout: 812 requests, 0 failed
[node-prod] pulumi up of the prod-shaped stack (Celery, PgBouncer, external database)      check  ok         169.6
[node-prod] REST API: log in as admin (two api-servers behind the Service)                 check  ok           2.2
<== [node-prod] pulumi up of the prod-shaped stack (Celery, PgBouncer, external database): ok (169.6s)
"""


class TestTheNumbers:
    def test_each_number_is_read_from_the_line_its_part_prints(self):
        assert numbers(OUTPUT) == [
            "trigger to success, worker up: n=3 median=7.1s min=6.9s max=7.4s (each: 7.1 6.9 7.4)",
            "from zero workers: worker Ready 41.2s, run success 52.8s after the trigger",
            "image rollout, GET /api/v2/monitor/health every 0.2 s: 812 requests, 0 failed",
            "node-prod `pulumi up` and every workload Available: 169.6 s (ok)",
        ]

    def test_a_run_without_the_parts_lines_gives_no_numbers(self):
        assert numbers("e2e: 9 passed, 0 failed\n") == []

    def test_the_timing_line_gives_the_median_and_the_range(self):
        line = timing_line("warm-worker", [7.4, 6.9, 7.1, 30.0])
        assert line == "timing warm-worker: n=4 median=7.2s min=6.9s max=30.0s (each: 7.4 6.9 7.1 30.0)"
        assert numbers(f"    {line}\n") == [f"trigger to success, worker up: {line.split(': ', 1)[1]}"]


class TestThePart:
    def test_the_timings_part_is_on_trial_and_the_benchmark_names_it(self):
        assert PART in PROD_TRIAL_PARTS and PART not in PROD_PARTS
        assert PART.name in PARTS.split(",")
