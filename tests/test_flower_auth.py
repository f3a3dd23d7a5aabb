"""Flower behind its own authentication: AirflowRelease generates its basic-auth Secret and the
chart's Flower pod logs in with it (the real node's `node-prod` scenario asks Flower with and
without the credentials)."""

from __future__ import annotations

from typing import Any

import pytest

from components.core.reader import ConfigError
from components.offline.program import unwrap
from tests.helpers import release, render_release, run_stack, secrets_by_name, values

GIT_HTTPS = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}


class TestFlowerAuthentication:
    """Flower shows every task's arguments and can revoke tasks and shut workers down: it never
    runs open (the real node's node-prod scenario asks it without credentials: 401)."""

    def celery_with_flower(self) -> Any:
        return run_stack({"executor": "CeleryExecutor", "dags": GIT_HTTPS, "flower": {"enabled": True}})

    def flower_pod(self) -> tuple[dict[str, Any], dict[str, Any]]:
        objects = {(o["kind"], o["metadata"]["name"]): o for o in render_release(release(self.celery_with_flower()))}
        pod = objects[("Deployment", "airflow-flower")]["spec"]["template"]["spec"]
        return pod, next(c for c in pod["containers"] if c["name"] == "flower")

    def test_the_generated_secret_holds_a_random_password_for_the_user_flower(self):
        data = unwrap(secrets_by_name(self.celery_with_flower())["airflow-pulumi-flower"].inputs)["stringData"]
        assert data["username"] == "flower"
        assert len(data["password"]) == 32
        assert data["basicAuth"] == f"flower:{data['password']}"

    def test_flower_reads_its_basic_auth_from_a_file_of_that_secret(self):
        pod, flower = self.flower_pod()
        env = {e["name"]: e for e in flower["env"]}
        assert env["AIRFLOW__CELERY__FLOWER_BASIC_AUTH_CMD"]["value"] == "cat /opt/airflow/secrets/flower-basic-auth"
        assert "AIRFLOW__CELERY__FLOWER_BASIC_AUTH" not in env  # never a variable every child inherits
        volume = next(v for v in pod["volumes"] if "projected" in v)
        sources = [s["secret"] for s in volume["projected"]["sources"]]
        assert {
            "name": "airflow-pulumi-flower",
            "items": [{"key": "basicAuth", "path": "flower-basic-auth"}],
        } in sources

    def test_flowers_probes_need_no_shell_to_pass(self):
        """The chart's probes with `flower.secretName` hand curl the literal `$AIRFLOW__CELERY__FLOWER_BASIC_AUTH`
        (an exec probe runs no shell): curl asked for a password, every probe failed, Flower restarted for
        ever on the real node. Without credentials curl still exits 0 on Flower's 401: Flower answers."""
        _, flower = self.flower_pod()
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            command = flower[probe]["exec"]["command"]
            assert not any("$" in part for part in command), (probe, command)
        assert values(self.celery_with_flower())["flower"].get("secretName") is None

    def test_only_flower_gets_the_file(self):
        objects = render_release(release(self.celery_with_flower()))
        holders = {
            o["metadata"]["name"]
            for o in objects
            if o["kind"] in ("Deployment", "StatefulSet") and "airflow-pulumi-flower" in str(o["spec"]["template"])
        }
        assert holders == {"airflow-flower"}

    def test_without_flower_there_is_no_flower_secret(self):
        run = run_stack({"executor": "CeleryExecutor", "dags": GIT_HTTPS})
        assert "airflow-pulumi-flower" not in secrets_by_name(run)

    def test_extra_values_cannot_point_flower_at_another_secret(self):
        with pytest.raises(ConfigError) as err:
            run_stack(
                {
                    "executor": "CeleryExecutor",
                    "dags": GIT_HTTPS,
                    "flower": {"enabled": True},
                    "extraValues": {"flower": {"secretName": "open"}},
                }
            )
        assert "flower.secretName" in str(err.value)
