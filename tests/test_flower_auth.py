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

    def test_flower_reads_its_basic_auth_from_a_generated_secret(self):
        run = self.celery_with_flower()
        assert values(run)["flower"]["secretName"] == "airflow-pulumi-flower"
        data = unwrap(secrets_by_name(run)["airflow-pulumi-flower"].inputs)["stringData"]
        assert data["username"] == "flower"
        assert len(data["password"]) == 32
        assert data["basicAuth"] == f"flower:{data['password']}"

    def test_the_rendered_flower_pod_gets_the_credentials_from_that_secret(self):
        objects = {(o["kind"], o["metadata"]["name"]): o for o in render_release(release(self.celery_with_flower()))}
        pod = objects[("Deployment", "airflow-flower")]["spec"]["template"]["spec"]
        flower = next(c for c in pod["containers"] if c["name"] == "flower")
        auth = next(e for e in flower["env"] if e["name"] == "AIRFLOW__CELERY__FLOWER_BASIC_AUTH")
        assert auth["valueFrom"]["secretKeyRef"] == {"name": "airflow-pulumi-flower", "key": "basicAuth"}
        # `airflow celery flower` reads it as [celery] flower_basic_auth; the probes log in with it.
        assert "$AIRFLOW__CELERY__FLOWER_BASIC_AUTH" in " ".join(flower["livenessProbe"]["exec"]["command"])
        assert ("Secret", "airflow-flower") not in objects  # the chart's default name is never made

    def test_without_flower_there_is_no_flower_secret(self):
        run = run_stack({"executor": "CeleryExecutor", "dags": GIT_HTTPS})
        assert "airflow-pulumi-flower" not in secrets_by_name(run)
        assert "secretName" not in values(run)["flower"]

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
