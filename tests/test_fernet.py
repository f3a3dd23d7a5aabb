"""Fernet key rotation from config: a new key in front, the old one kept, a Job that re-encrypts."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from components.airflow.config.airflow import parse_airflow
from components.airflow.values.fernet import ANNOTATION, FernetConfig, key_list, parse_previous_keys
from components.airflow.values.jobs import rotate_fernet_key_job
from components.core.reader import ConfigError
from components.offline.preview import preview
from components.offline.program import ProgramRun, secret_paths, unwrap
from components.platform.config import parse_stack
from tests.helpers import (
    DB_URL,
    ROOT,
    file_commands,
    of_type,
    release,
    run_stack,
    secret_file_sources,
    secrets_by_name,
    values,
)

GIT = {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}
OLD_KEY = base64.urlsafe_b64encode(b"an old key from elsewhere, 32 b.").decode()


def fernet_keys(run: ProgramRun) -> list[str]:
    secret = secrets_by_name(run)["airflow-pulumi-fernet-key"]
    return str(unwrap(secret.inputs)["stringData"]["fernet-key"]).split(",")


def generated(run: ProgramRun) -> list[str]:
    """Names of the generated Fernet keys' RandomBytes."""
    return sorted(r.name for r in of_type(run, "randomBytes:RandomBytes") if r.name.startswith("airflow-fernet-key"))


def key_of(name: str) -> str:
    """The Fernet key the recording mocks generate for the RandomBytes `name` (their bytes are
    sha256 of the resource's type and name)."""
    raw = hashlib.sha256(f"random:index/randomBytes:RandomBytes:{name}".encode()).digest()
    return base64.urlsafe_b64encode(raw).decode()


def pod_annotations(vals: dict[str, Any], path: str) -> dict[str, str]:
    node: Any = vals
    for part in path.split("."):
        node = node.get(part, {})
    return dict(node.get("podAnnotations") or {})


class TestRotation:
    def test_generation_one_is_the_key_the_stack_always_had_alone(self):
        run = run_stack({"dags": GIT})
        assert generated(run) == ["airflow-fernet-key"]
        assert fernet_keys(run) == [key_of("airflow-fernet-key")]
        assert ANNOTATION not in pod_annotations(values(run), "scheduler")

    def test_a_new_generation_goes_in_front_and_the_old_key_stays_behind_it(self):
        run = run_stack({"dags": GIT, "fernetKey": {"generation": 2}})
        assert generated(run) == ["airflow-fernet-key", "airflow-fernet-key-2"]
        assert fernet_keys(run) == [key_of("airflow-fernet-key-2"), key_of("airflow-fernet-key")]

    def test_dropping_the_previous_key_leaves_only_the_newest_and_keeps_the_old_in_state(self):
        run = run_stack({"dags": GIT, "fernetKey": {"generation": 3, "keepPrevious": False}})
        assert fernet_keys(run) == [key_of("airflow-fernet-key-3")]
        assert generated(run) == ["airflow-fernet-key", "airflow-fernet-key-2", "airflow-fernet-key-3"]

    def test_every_key_is_a_valid_fernet_key_and_stays_secret(self):
        run = run_stack({"dags": GIT, "fernetKey": {"generation": 2}})
        for key in fernet_keys(run):
            assert len(key) == 44 and len(base64.urlsafe_b64decode(key)) == 32
        secret = secrets_by_name(run)["airflow-pulumi-fernet-key"]
        paths = secret_paths(secret.inputs)
        assert paths and all(path.startswith("stringData") for path in paths)
        assert secret.retain_on_delete
        for key in fernet_keys(run):
            assert key not in str(unwrap(release(run).inputs))

    def test_the_secret_keeps_its_name_and_pulumi_resource_in_every_generation(self):
        for generation in (1, 2, 7):
            run = run_stack({"dags": GIT, "fernetKey": {"generation": generation}})
            (secret,) = [r for r in of_type(run, "core/v1:Secret") if r.name == "airflow-fernet-key-secret"]
            assert unwrap(secret.inputs)["metadata"]["name"] == "airflow-pulumi-fernet-key"
            assert values(run)["fernetKeySecretName"] == "airflow-pulumi-fernet-key"

    @pytest.mark.parametrize(
        ("executor", "paths"),
        [
            ("CeleryExecutor", ["scheduler", "apiServer", "triggerer", "dagProcessor", "workers.celery", "flower"]),
            ("KubernetesExecutor", ["scheduler", "apiServer", "triggerer", "dagProcessor"]),
        ],
    )
    def test_a_new_key_list_restarts_every_long_running_airflow_pod(self, executor, paths):
        flower = {"flower": {"enabled": True}} if executor == "CeleryExecutor" else {}
        run = run_stack({"dags": GIT, "executor": executor, "fernetKey": {"generation": 2}, **flower})
        vals = values(run)
        for path in paths:
            assert pod_annotations(vals, path)[ANNOTATION] == "2,1", path
        dropped = values(
            run_stack(
                {"dags": GIT, "executor": executor, "fernetKey": {"generation": 2, "keepPrevious": False}, **flower}
            )
        )
        assert pod_annotations(dropped, "scheduler")[ANNOTATION] == "2"

    def test_the_annotation_reaches_the_rendered_pods(self, tmp_path):
        run = run_stack({"dags": GIT, "executor": "CeleryExecutor", "fernetKey": {"generation": 2}})
        result = preview(ROOT, "test", tmp_path, run_checkov=False, program_run=run)
        assert [p.message for p in result.problems] == []
        for obj in result.objects:
            if obj["kind"] in ("Deployment", "StatefulSet") and obj["metadata"]["name"] in (
                "airflow-scheduler",
                "airflow-worker",
                "airflow-api-server",
                "airflow-triggerer",
                "airflow-dag-processor",
            ):
                assert obj["spec"]["template"]["metadata"]["annotations"][ANNOTATION] == "2,1", obj["metadata"]["name"]


class TestRotationJob:
    def test_no_job_unless_asked(self):
        jobs = of_type(run_stack({"dags": GIT, "fernetKey": {"generation": 2}}), "batch/v1:Job")
        assert [j.name for j in jobs] == ["airflow-migrate"]  # the schema's, always

    def test_the_job_runs_rotate_fernet_key_after_the_release_with_the_keys_and_database(self, tmp_path):
        run = run_stack(
            {
                "dags": GIT,
                "executor": "CeleryExecutor",
                "database": {"mode": "external"},
                "fernetKey": {"generation": 2, "rotate": True},
            },
            secrets={"databaseUrl": DB_URL},
        )
        (job,) = [j for j in of_type(run, "batch/v1:Job") if j.name != "airflow-migrate"]
        assert job.name == "airflow-rotate-fernet-key"
        assert release(run).urn in job.dependencies
        spec = unwrap(job.inputs)
        assert spec["metadata"]["name"] == "airflow-rotate-fernet-key-2"
        pod = spec["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == ["bash", "-c", "exec airflow rotate-fernet-key"]
        assert container["image"] == "apache/airflow:3.2.0"
        files = secret_file_sources(pod, container)
        reads = {option: files[path] for option, path in file_commands(container).items()}
        assert reads == {
            "AIRFLOW__CORE__FERNET_KEY": ("airflow-pulumi-fernet-key", "fernet-key"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": ("airflow-pulumi-metadata", "connection"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": ("airflow-pulumi-metadata-async", "async-connection"),
        }
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["initContainers"][0]["args"][:3] == ["airflow", "db", "check-migrations"]
        assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        result = preview(ROOT, "test", tmp_path, run_checkov=False, program_run=run)
        assert [p.message for p in result.problems] == []
        # Labelled like Airflow's pods, so the chart's PgBouncer NetworkPolicy admits it.
        policy = next(o for o in result.objects if o["metadata"]["name"] == "airflow-pgbouncer-policy")
        peer = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
        assert peer.items() <= spec["spec"]["template"]["metadata"]["labels"].items()

    def test_a_new_generation_is_a_new_job(self):
        two = rotate_fernet_key_job(parse_airflow({"dags": GIT, "fernetKey": {"generation": 2, "rotate": True}}))
        three = rotate_fernet_key_job(parse_airflow({"dags": GIT, "fernetKey": {"generation": 3, "rotate": True}}))
        assert two["metadata"]["name"] != three["metadata"]["name"]


class TestPreviousKeys:
    def test_keys_from_elsewhere_decrypt_behind_the_generated_ones(self):
        run = run_stack({"dags": GIT}, secrets={"previousFernetKeys": f"{OLD_KEY}, {OLD_KEY}"})
        assert fernet_keys(run) == [key_of("airflow-fernet-key"), OLD_KEY]
        assert pod_annotations(values(run), "scheduler")[ANNOTATION] == "1+1"
        assert OLD_KEY not in str(unwrap(release(run).inputs)) and OLD_KEY not in str(run.outputs)

    @pytest.mark.parametrize("bad", ["not-a-key", OLD_KEY[:-2], base64.urlsafe_b64encode(b"x" * 31).decode(), " , "])
    def test_a_value_that_is_not_a_fernet_key_is_rejected_without_showing_it(self, bad):
        with pytest.raises(ConfigError) as err:
            parse_stack(
                {
                    "airflow": '{"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/e/d.git"}}}',
                    "previousFernetKeys": bad,
                },
                {"previousFernetKeys"},
            )
        assert "previousFernetKeys" in str(err.value)
        if bad.strip(" ,"):
            assert bad not in str(err.value)

    def test_the_key_must_be_set_as_a_secret(self):
        with pytest.raises(ConfigError, match="must be stored encrypted"):
            parse_stack({"previousFernetKeys": OLD_KEY})

    def test_the_key_list_puts_the_active_generations_first(self):
        cfg = FernetConfig(generation=3, keep_previous=True)
        keys = {3: "c+/=", 2: "b+/="}
        assert key_list(keys, cfg, ("old",)) == "c-_=,b-_=,old"
        assert parse_previous_keys(f" {OLD_KEY} ,{OLD_KEY},") == (OLD_KEY,)


class TestRotationRewritesTheSecretInPlace:
    """pulumi-kubernetes replaces a Secret whose data changes unless `enableSecretMutable`; the Fernet
    key Secret is protected, so the documented rotation stopped at it (found by the node scenario's
    `keys` part: "unable to replace ... as it is currently marked for protection")."""

    def edge(self, airflow: dict[str, Any], **provider: str) -> Any:
        from components.platform.config import check_config

        airflow = {"dags": GIT, **airflow}
        config = {"airflow-k8s:airflow": airflow, "kubernetes:context": "test-cluster"}
        config.update({f"kubernetes:{k}": v for k, v in provider.items()})
        return check_config(config, set())

    def test_a_rotation_without_mutable_secrets_is_refused_with_the_setting_that_allows_it(self, monkeypatch):
        monkeypatch.delenv("PULUMI_K8S_ENABLE_SECRET_MUTABLE", raising=False)
        with pytest.raises(ConfigError) as err:
            self.edge({"fernetKey": {"generation": 2, "rotate": True}})
        text = str(err.value)
        assert "'kubernetes:enableSecretMutable'" in text and "airflow.fernetKey.generation 2" in text
        assert "pulumi config set kubernetes:enableSecretMutable true" in text

    def test_the_stack_setting_or_the_providers_environment_variable_allows_it(self, monkeypatch):
        monkeypatch.delenv("PULUMI_K8S_ENABLE_SECRET_MUTABLE", raising=False)
        assert self.edge({"fernetKey": {"generation": 2}}, enableSecretMutable="true").airflow.fernet.generation == 2
        monkeypatch.setenv("PULUMI_K8S_ENABLE_SECRET_MUTABLE", "true")
        assert self.edge({"fernetKey": {"generation": 2}}).airflow.fernet.generation == 2

    def test_a_stack_that_never_rotated_needs_nothing(self, monkeypatch):
        monkeypatch.delenv("PULUMI_K8S_ENABLE_SECRET_MUTABLE", raising=False)
        assert self.edge({}).airflow.fernet.generation == 1

    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_both_stack_files_let_the_provider_rewrite_secrets(self, stack):
        import yaml

        config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        assert config["kubernetes:enableSecretMutable"] is True
