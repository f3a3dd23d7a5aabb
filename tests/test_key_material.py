"""Key material never changes with a config switch, and a change that would lose data is refused.

Every random resource (Fernet key, UI/JWT secrets, Redis, Postgres, admin and Grafana
passwords) is declared whatever the database mode, monitoring mode, logs mode or executor,
with inputs that are constants: switching one of them away and back never re-rolls a
password that retained data (the bundled database's volume, Grafana's) still uses. And the
identity a stack deployed last (`deployedIdentity`, read back through a StackReference to the
stack itself) turns a release or namespace change, a Fernet generation jump and a dropped
data claim into a ConfigError before anything is declared (components/platform/deployed.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.core.reader import ConfigError
from components.offline.program import run_program
from components.platform.deployed import OUTPUT
from tests.golden import inventory
from tests.helpers import DB_URL, ROOT, run_stack

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
CLUSTER = {"environment": "laptop", "storageClasses": ["standard", "efs"]}

# (name, config A, config B): the same stack before and after one switch.
Config = tuple[dict[str, Any], dict[str, Any], dict[str, str]]


def config(airflow: dict[str, Any] | None = None, secrets: dict[str, str] | None = None, **extra: Any) -> Config:
    return {"dags": GIT, **(airflow or {})}, extra, secrets or {}


SWITCHES: list[tuple[str, Config, Config]] = [
    (
        "database-bundled-to-external",
        config(),
        config({"database": {"mode": "external"}}, {"databaseUrl": DB_URL}),
    ),
    ("monitoring-off-to-install", config(), config(monitoring={"mode": "install"})),
    (
        "monitoring-install-to-annotations",
        config(monitoring={"mode": "install"}),
        config(monitoring={"mode": "annotations"}),
    ),
    ("logs-empty-dir-to-dynamic", config(), config(logs={"mode": "dynamic", "dynamic": {"storageClass": "efs"}})),
    (
        "logs-dynamic-to-remote",
        config(logs={"mode": "dynamic", "dynamic": {"storageClass": "efs"}}),
        config(
            logs={"mode": "remote", "remote": {"target": "s3", "baseLogFolder": "s3://logs/airflow"}},
            secrets={"logsConnection": "aws://?region_name=eu-west-1"},
        ),
    ),
    ("executor-kubernetes-to-celery", config(), config({"executor": "CeleryExecutor"})),
    ("executor-celery-to-local", config({"executor": "CeleryExecutor"}), config({"executor": "LocalExecutor"})),
    ("fernet-generation-1-to-2", config(), config({"fernetKey": {"generation": 2, "rotate": True}})),
]


def run(cfg: Config, previous: dict[str, Any] | None = None) -> Any:
    airflow, extra, secrets = cfg
    return run_stack(
        airflow,
        cluster=CLUSTER,
        secrets=secrets,
        extra=extra,
        previous_outputs={OUTPUT: previous} if previous else None,
    )


def key_material(result: Any) -> dict[str, Any]:
    """Random resources by URN with their inputs and generated values (the mocks derive the values
    from type and name, as a real random resource keeps its value while its URN and inputs stay)."""
    randoms = inventory(result)["random"]
    values = {r.urn: r.inputs for r in result.resources if r.type.startswith("random:")}
    return {urn: (inputs, values.get(urn)) for urn, inputs in randoms.items()}


class TestNoSwitchChangesKeyMaterial:
    @pytest.mark.parametrize(("name", "before", "after"), SWITCHES, ids=[s[0] for s in SWITCHES])
    def test_switching_there_and_back_keeps_every_key_with_the_same_urn_and_inputs(self, name, before, after):
        a, b = key_material(run(before)), key_material(run(after))
        if name.startswith("fernet"):
            added = set(b) - set(a)
            assert len(added) == 1 and next(iter(added)).endswith("::airflow-fernet-key-2")
            b = {u: v for u, v in b.items() if u not in added}
        assert a == b
        assert any(u.endswith("::airflow-postgres-password") for u in a)
        assert any(u.endswith("::monitoring-grafana-admin-password") for u in a)

    def test_the_postgres_password_secret_is_retained_in_both_database_modes(self):
        for cfg in (config(), config({"database": {"mode": "external"}}, {"databaseUrl": DB_URL})):
            (secret,) = [r for r in run(cfg).resources if r.name == "airflow-postgres-secret"]
            assert secret.retain_on_delete


def identity(**change: Any) -> dict[str, Any]:
    base = {
        "namespace": "airflow",
        "releaseName": "airflow",
        "fernetGeneration": 1,
        "databaseMode": "bundled",
        "logsMode": "emptyDir",
        "retainedClaims": [],
    }
    return {**base, **change}


def refused(cfg: Config, previous: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        run(cfg, previous)
    assert err.value.declared_before_error == []  # type: ignore[attr-defined]
    return err.value


class TestTheLastDeploymentIsRemembered:
    def test_the_stack_exports_its_identity_and_no_key_material(self):
        out = run(config()).outputs[OUTPUT]
        assert out == identity()

    def test_a_first_deployment_has_nothing_to_compare_with(self):
        run(config({"releaseName": "other"}))

    def test_a_new_release_name_is_refused_before_anything_naming_what_would_be_lost_and_how_to_move(self):
        err = refused(config({"releaseName": "airflow2"}), identity())
        assert err.key == "airflow.releaseName"
        text = str(err)
        assert "EMPTY metadata database" in text and "data-airflow-postgresql-0" in text
        assert "pg_dump" in text and "pulumi config set identityChange airflow/airflow" in text

    def test_a_new_namespace_is_refused_too(self):
        err = refused(config({"namespace": "data-platform"}), identity())
        assert err.key == "airflow.namespace" and "Nothing has been changed" in str(err)

    def test_the_change_goes_ahead_once_confirmed_with_the_old_identity(self):
        result = run_stack(
            {"dags": GIT, "releaseName": "airflow2"},
            cluster=CLUSTER,
            extra={"identityChange": "airflow/airflow"},
            previous_outputs={OUTPUT: identity()},
        )
        assert result.outputs[OUTPUT]["releaseName"] == "airflow2"

    def test_a_confirmation_naming_another_identity_does_not_count(self):
        with pytest.raises(ConfigError):
            run_stack(
                {"dags": GIT, "releaseName": "airflow2"},
                cluster=CLUSTER,
                extra={"identityChange": "airflow/something-else"},
                previous_outputs={OUTPUT: identity()},
            )

    @pytest.mark.parametrize(
        ("before", "fernet", "key", "fragment"),
        [
            (3, {"generation": 2}, "airflow.fernetKey.generation", "a lower generation"),
            (1, {"generation": 3}, "airflow.fernetKey.generation", "one step at a time"),
            (1, {"generation": 2, "keepPrevious": False}, "airflow.fernetKey.keepPrevious", "raises the generation"),
        ],
        ids=["lowered", "jump-of-two", "drop-previous-while-raising"],
    )
    def test_a_fernet_change_that_would_drop_a_key_in_use_is_refused(self, before, fernet, key, fragment):
        err = refused(config({"fernetKey": fernet}), identity(fernetGeneration=before))
        assert err.key == key and fragment in str(err)

    def test_the_rotation_steps_in_order_are_accepted(self):
        run(config({"fernetKey": {"generation": 2, "rotate": True}}), identity(fernetGeneration=1))
        run(config({"fernetKey": {"generation": 2, "keepPrevious": False}}), identity(fernetGeneration=2))

    def test_the_backup_claim_is_remembered_and_dropping_it_refused_like_the_other_data_claims(self):
        backups = {"backup": {"keep": 3}}
        out = run(config(maintenance=backups)).outputs[OUTPUT]
        assert out["retainedClaims"] == ["airflow/airflow-metadata-backups"]
        err = refused(config(), identity(retainedClaims=["airflow/airflow-metadata-backups"]))
        assert err.key == "maintenance.backup" and "database dumps" in str(err) and "already exists" in str(err)
        # to a bucket: no claim to remember
        remote = {"mode": "remote", "remote": {"target": "s3", "baseLogFolder": "s3://logs/airflow"}}
        bucket = config(maintenance={"backup": {"target": "bucket"}}, logs=remote, secrets={"logsConnection": "aws://"})
        assert run(bucket).outputs[OUTPUT]["retainedClaims"] == []

    def test_dropping_a_retained_data_claim_is_refused_until_confirmed(self):
        before = identity(logsMode="dynamic", retainedClaims=["airflow/airflow-logs"])
        err = refused(config(), before)
        assert err.key == "logs.mode" and "already exists" in str(err)
        # The claims are protected: without unprotecting them, `up` fails with "cannot be deleted" (node part git)
        assert "pulumi state unprotect" in str(err)
        assert "PersistentVolume(Claim)?::" in str(err)  # the volume is protected too (node part git)
        run_stack(
            {"dags": GIT},
            cluster=CLUSTER,
            extra={"identityChange": "airflow/airflow"},
            previous_outputs={OUTPUT: before},
        )


PLATFORM = """\
from components import AirflowPlatform

AirflowPlatform("data", {"airflow": AIRFLOW, "cluster": {"environment": "laptop"}, **ARGS})
"""


def run_platform(
    tmp_path: Path, previous: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None, **args: Any
) -> Any:
    """A Python stack of its own that declares AirflowPlatform 'data' (not this project's __main__.py);
    `previous` its record from the last deployment, `outputs` the last deployment's outputs."""
    path = tmp_path / "platform_stack.py"
    airflow = {"namespace": "data", "dags": GIT}
    path.write_text(f"AIRFLOW = {airflow!r}\nARGS = {args!r}\n" + PLATFORM)
    previous_outputs = {f"{OUTPUT}-data": previous} if previous else outputs
    return run_program(
        ROOT,
        "test",
        config={},
        secret_keys=set(),
        project="airflow-k8s",
        program=path,
        previous_outputs=previous_outputs,
    )


class TestAnyStackDeclaringThePlatformIsGuarded:
    def test_the_platform_exports_its_identity_under_its_own_name(self, tmp_path):
        out = run_platform(tmp_path).outputs
        assert out[f"{OUTPUT}-data"] == identity(namespace="data")
        assert OUTPUT not in out

    def test_a_new_namespace_is_refused_before_anything_is_declared(self, tmp_path):
        with pytest.raises(ConfigError) as err:
            run_platform(tmp_path, identity(namespace="warehouse"))
        assert err.value.key == "airflow.namespace" and "Nothing has been changed" in str(err.value)
        assert err.value.declared_before_error == []  # type: ignore[attr-defined]

    def test_the_identity_change_argument_confirms_a_deliberate_move(self, tmp_path):
        moved = run_platform(tmp_path, identity(namespace="warehouse"), identity_change="warehouse/airflow")
        assert moved.outputs[f"{OUTPUT}-data"]["namespace"] == "data"

    def test_the_record_of_the_platform_named_airflow_is_not_this_ones(self, tmp_path):
        run_platform(tmp_path, outputs={OUTPUT: identity(namespace="warehouse")})
