"""PgBouncer's pods stay in their Service while the node is busy: the exporter sidecar's exec
probes get time to run (found on the real node's node-prod scenario: the chart's 1 s timeout
failed them while the stack started, every PgBouncer left the Service and the api-servers
crashed on "connection refused")."""

from __future__ import annotations

from typing import Any

from tests.helpers import DB_URL, release, render_release, run_stack

GIT_HTTPS = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}


class TestTheExporterProbes:
    def exporter(self) -> dict[str, Any]:
        run = run_stack(
            {"executor": "CeleryExecutor", "dags": GIT_HTTPS, "database": {"mode": "external"}},
            secrets={"databaseUrl": DB_URL},
        )
        objects = {(o["kind"], o["metadata"]["name"]): o for o in render_release(release(run))}
        pod = objects[("Deployment", "airflow-pgbouncer")]["spec"]["template"]["spec"]
        return next(c for c in pod["containers"] if c["name"] == "metrics-exporter")

    def test_its_exec_probes_may_take_ten_seconds_not_the_charts_one(self):
        exporter = self.exporter()
        for probe in ("livenessProbe", "readinessProbe"):
            assert exporter[probe]["exec"]["command"] == ["pgbouncer_exporter", "health"]
            assert exporter[probe]["timeoutSeconds"] == 10

    def test_the_rest_of_the_charts_probe_settings_stay(self):
        exporter = self.exporter()
        assert exporter["livenessProbe"]["periodSeconds"] == 10
        assert exporter["readinessProbe"]["initialDelaySeconds"] == 10
