"""dags-check: the tutorial-style DAGs fail with the expected findings, their fixed versions and dags/ pass.

The DagBag step runs in the Airflow virtualenv (.venv-dags), which `./run.sh test` creates
before the test suite runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

from components.core.reader import ConfigError
from components.platform.config import parse_stack
from dagcheck import dagbag_step, platform, ruff_step
from dagcheck.__main__ import DEFAULT_AIRFLOW_PYTHON, load_stack, main
from dagcheck.findings import Finding, exit_code
from tests.helpers import ROOT

TUTORIAL = ROOT / "tests_dags" / "tutorial"
STACK = ["--stack", "tutorial", "--stack-file", str(TUTORIAL / "Pulumi.tutorial.yaml")]
LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<level>ERROR|WARNING|INFO) \[(?P<step>[^\]]+)\] (?P<rest>.*)$")


@pytest.fixture(scope="module", autouse=True)
def airflow_virtualenv() -> None:
    if not DEFAULT_AIRFLOW_PYTHON.exists():
        pytest.fail("dags-check needs the Airflow virtualenv: run ./run.sh test (it creates .venv-dags)")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(list(args))
    out = capsys.readouterr().out.strip().splitlines()
    return code, out[:-1], out[-1]


class TestTheProjectsOwnDags:
    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_dags_folder_is_clean_against_each_stack(self, capsys, stack):
        code, findings, summary = run(capsys, str(ROOT / "dags"), "--stack", stack)
        assert findings == []
        assert code == 0
        assert summary.startswith("dags-check OK: 0 error(s), 0 warning(s), 0 note(s)")
        declared = {m for p in (ROOT / "dags").glob("*.py") for m in re.findall(r'dag_id="([^"]+)"', p.read_text())}
        assert f"{len(declared)} DAG(s) loaded" in summary  # every DAG the folder declares

    def test_the_check_leaves_no_airflow_home_behind(self, capsys, monkeypatch, tmp_path):
        """Each run made an AIRFLOW_HOME under the temporary folder and left it there."""
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        code, _, _ = run(capsys, str(ROOT / "dags"), "--stack", "dev")
        assert code == 0
        assert not list(tmp_path.glob("dags-check-home-*"))


# (file, line, level, step, text in the finding): every breaking pattern of the tutorials.
EXPECTED = [
    # Airflow 1.10: a BashOperator chain.
    ("bash_chain.py", 6, "ERROR", "import", "No module named 'airflow.operators.bash_operator'"),
    ("bash_chain.py", 6, "ERROR", "import", "airflow.providers.standard.operators"),
    ("bash_chain.py", 13, "ERROR", "ruff AIR301", "`airflow.utils.dates.days_ago` is removed in Airflow 3.0"),
    ("bash_chain.py", 13, "ERROR", "ruff AIR301", "pendulum.datetime("),
    ("bash_chain.py", 18, "WARNING", "ruff AIR311", "`DAG` has been moved to `airflow.sdk`"),
    ("bash_chain.py", 22, "ERROR", "ruff AIR301", "`schedule_interval` is removed in Airflow 3.0 — Use `schedule`"),
    ("bash_chain.py", 22, "ERROR", "ruff AIR301", "(ruff check --fix applies it)"),
    (
        "bash_chain.py",
        25,
        "ERROR",
        "ruff AIR302",
        "use `EmptyOperator` from `airflow.providers.standard.operators.empty`",
    ),
    ("bash_chain.py", 26, "ERROR", "ruff AIR302", "`BashOperator` from `airflow.providers.standard.operators.bash`"),
    # PythonOperator with provide_context.
    ("python_context.py", 6, "ERROR", "import", "No module named 'airflow.operators.python_operator'"),
    ("python_context.py", 17, "ERROR", "ruff AIR301", "`schedule_interval` is removed"),
    ("python_context.py", 20, "ERROR", "ruff AIR301", "`provide_context` is removed in Airflow 3.0"),
    ("python_context.py", 20, "ERROR", "ruff AIR301", "Airflow passes the context to the callable's **kwargs"),
    ("python_context.py", 20, "ERROR", "ruff AIR302", "`PythonOperator` from `airflow.providers.standard.operators"),
    # Airflow 1.10: the KubernetesPodOperator from airflow.contrib.
    ("contrib_pod_etl.py", 6, "ERROR", "import", "No module named 'airflow.contrib'"),
    ("contrib_pod_etl.py", 9, "ERROR", "ruff AIR301", "`airflow.contrib.kubernetes.secret.Secret` is removed"),
    ("contrib_pod_etl.py", 13, "ERROR", "ruff AIR301", "kubernetes_pod_operator.KubernetesPodOperator` is removed"),
    # Airflow 2.x: the provider's old module (ruff misses it; the DagBag load does not, once Secret is fixed).
    ("pod_etl.py", 6, "ERROR", "import", "No module named 'airflow.kubernetes'"),
    ("pod_etl.py", 9, "ERROR", "ruff AIR302", "`Secret` from `airflow.providers.cncf.kubernetes.secret`"),
    ("pod_etl.py", 14, "ERROR", "ruff AIR301", "`schedule_interval` is removed"),
    # A SparkKubernetesOperator job: imports fine, fails on schedule_interval.
    (
        "spark_job.py",
        9,
        "ERROR",
        "import",
        "unexpected keyword argument 'schedule_interval' — rename schedule_interval",
    ),
    # Platform rules, on DAGs that do import on Airflow 3.
    ("platform_pod_etl.py", 15, "ERROR", "platform", "namespace 'default' (the literal) is not granted by stack"),
    ("platform_pod_etl.py", 15, "ERROR", "platform", "add a team with namespace 'default'"),
    ("platform_pod_etl.py", 23, "ERROR", "platform", "service account 'etl-runner' does not exist in namespace"),
    ("platform_pod_etl.py", 23, "ERROR", "platform", "use one the stack creates there: default, etl-tasks"),
    ("platform_pod_etl.py", 23, "ERROR", "platform", 'violates PodSecurity "restricted:latest": allowPrivilegeEscal'),
    ("platform_pod_etl.py", 23, "ERROR", "platform", "runAsNonRoot != true"),
    ("platform_pod_etl.py", 32, "ERROR", "platform", "image 'python:latest' (the literal) is ':latest'"),
    ("platform_pod_etl.py", 33, "ERROR", "platform", "image 'busybox' (the literal) has no tag"),
    ("platform_pod_etl.py", 35, "ERROR", "platform", "Secret 'warehouse-credentials' (secrets), which team 'etl' does"),
    ("platform_pod_etl.py", 35, "ERROR", "platform", "add 'warehouse-credentials' to teams[0].secrets"),
    ("platform_pod_etl.py", 43, "ERROR", "platform", "Secret 'smtp-credentials' (secrets) in Airflow's namespace"),
    ("platform_spark.py", 13, "ERROR", "platform", "SparkApplication namespace 'default' (the literal) is not a Spark"),
    ("platform_spark.py", 13, "ERROR", "platform", "use namespace='spark-jobs'"),
    ("platform_spark.py", 13, "ERROR", "platform", "spec.driver.serviceAccount is 'spark': the stack grants Spark"),
    ("platform_spark.py", 13, "ERROR", "platform", "SparkApplication image 'spark:latest'"),
]


@pytest.fixture(scope="module")
def broken() -> tuple[int, list[str], str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main([str(TUTORIAL / "broken"), *STACK])
    lines = buffer.getvalue().strip().splitlines()
    return code, lines[:-1], lines[-1]


class TestTutorialDags:
    @pytest.mark.parametrize(("file", "line", "level", "step", "text"), EXPECTED)
    def test_each_breaking_pattern_is_found_with_its_message(self, broken, file, line, level, step, text):
        _, findings, _ = broken
        here = [f for f in findings if f.startswith(f"{_rel(TUTORIAL / 'broken' / file)}:{line}: {level} [{step}] ")]
        assert any(text in f for f in here), "\n".join(here) or f"no {level} [{step}] at {file}:{line}"

    def test_every_line_is_a_finding_with_a_fix_and_the_run_fails(self, broken):
        code, findings, summary = broken
        assert code == 1
        assert all(LINE.match(f) and " — " in f for f in findings), findings
        assert re.match(r"^dags-check FAILED: 3\d error\(s\), 5 warning\(s\), 1 note\(s\) in 7 file\(s\)", summary)
        assert "2 DAG(s) loaded, against stack 'tutorial'" in summary

    def test_no_finding_is_unexpected(self, broken):
        _, findings, _ = broken
        expected = {(f, line, step) for f, line, _, step, _ in EXPECTED}
        # Beside EXPECTED: ruff's repeats of one rule on later lines, AIR311 on every `airflow.DAG`, AIR001.
        unexpected = [
            f
            for f in findings
            if (m := LINE.match(f))
            and (Path(m["file"]).name, int(m["line"]), m["step"]) not in expected
            and m["step"] not in ("ruff AIR311", "ruff AIR001", "ruff AIR302", "ruff AIR301")
        ]
        assert unexpected == []

    def test_the_fixed_versions_load_clean(self, capsys):
        code, findings, summary = run(capsys, str(TUTORIAL / "fixed"), *STACK)
        assert findings == []
        assert code == 0
        assert "0 error(s), 0 warning(s), 0 note(s) in 4 file(s), 4 DAG(s) loaded" in summary


def _rel(path: Path) -> str:
    return os.path.relpath(path, Path.cwd())


class TestCommandLine:
    def test_a_missing_folder_exits_2(self, capsys):
        assert main([str(ROOT / "no-such-folder")]) == 2
        assert "no such folder" in capsys.readouterr().err

    def test_a_bad_stack_config_exits_2_naming_the_key(self, capsys, tmp_path):
        bad = tmp_path / "Pulumi.bad.yaml"
        good = (TUTORIAL / "Pulumi.tutorial.yaml").read_text()
        bad.write_text(good + "  airflow-k8s:taskImages:\n    python: python:latest\n")
        assert main([str(ROOT / "dags"), "--stack", "bad", "--stack-file", str(bad)]) == 2
        assert "taskImages.python" in capsys.readouterr().err

    def test_a_broken_airflow_virtualenv_exits_2_with_its_error(self, capsys, tmp_path):
        python = tmp_path / "python"
        python.write_text("#!/bin/sh\necho 'No module named airflow' >&2\nexit 1\n")
        python.chmod(0o755)
        assert main([str(ROOT / "dags"), "--airflow-python", str(python)]) == 2
        err = capsys.readouterr().err
        assert "the DagBag load failed (1)" in err and "No module named airflow" in err

    def test_strict_fails_on_warnings(self):
        warning = Finding("f.py", 1, "WARNING", "ruff AIR311", "m", "f")
        assert exit_code([warning]) == 0
        assert exit_code([warning], strict=True) == 1


class TestPlatformRules:
    def stack(self, **extra):
        laptop = {
            "cluster": '{"environment": "laptop"}',
            "airflow": '{"dags": {"mode": "hostPath", "hostPath": {"path": "/d"}}}',
        }
        values = {**laptop, **extra}
        return parse_stack(values, set())

    def task(self, **facts):
        base = {"dag_id": "d", "task_id": "t", "file": "/x/d.py", "line": 3, "kind": "pod", "image": "busybox:1.37.0"}
        return {**base, **facts}

    def test_a_templated_image_is_resolved_from_the_stacks_task_images(self):
        stack = self.stack(taskImages='{"python": "registry.example.com/python:3.13.7"}')
        variables = platform.delivered_variables(stack)
        got = platform.resolve('{{ var.value.get("k8s_image_python", "python:latest") }}', variables)
        assert got == platform.Resolved(
            "registry.example.com/python:3.13.7", "Variable 'k8s_image_python' (set by the stack)"
        )

    def test_the_templates_default_applies_when_the_stack_sets_nothing(self):
        stack = self.stack()
        task = self.task(namespace="airflow", image='{{ var.value.get("k8s_image_python", "python:latest") }}')
        [finding] = platform.check(stack, "s", [task])
        assert "the default of Variable 'k8s_image_python'" in finding.message
        assert "':latest'" in finding.message

    def test_a_value_known_only_at_run_time_is_a_note(self):
        [finding] = platform.check(self.stack(), "s", [self.task(namespace="{{ params.ns }}")])
        assert finding.level == "INFO"
        assert "known only when the task runs" in finding.message

    def test_a_pod_without_a_namespace_runs_in_airflows(self):
        assert platform.check(self.stack(), "s", [self.task()]) == []
        [finding] = platform.check(self.stack(), "s", [self.task(secrets=[{"name": "x", "via": "secrets"}])])
        assert "in Airflow's namespace 'airflow'" in finding.message

    def test_spark_tasks_on_a_stack_without_spark_are_errors(self):
        [finding] = platform.check(self.stack(), "s", [self.task(kind="spark", namespace="spark-jobs", spark={})])
        assert finding.level == "ERROR"
        assert "runs no Spark Operator" in finding.message

    def test_a_baseline_team_admits_a_root_pod(self):
        teams = '[{"name": "vendor", "podSecurity": {"level": "baseline", "reason": "vendor image runs as root"}}]'
        stack = self.stack(teams=teams)
        assert platform.check(stack, "s", [self.task(namespace="vendor-tasks")]) == []
        privileged = self.task(namespace="vendor-tasks", container_security={"privileged": True})
        [finding] = platform.check(stack, "s", [privileged])
        assert 'violates PodSecurity "baseline:latest"' in finding.message


class TestSteps:
    def test_ruff_levels_follow_what_breaks_on_airflow_3(self):
        assert [ruff_step.level_of(c) for c in ("AIR301", "AIR302", "AIR311", "AIR321", "AIR001")] == [
            "ERROR",
            "ERROR",
            "WARNING",
            "WARNING",
            "INFO",
        ]

    def test_an_import_error_points_at_the_dag_files_own_line(self):
        traceback = (
            'Traceback (most recent call last):\n  File "/lib/x.py", line 9, in f\n'
            '  File "/dags/a.py", line 4, in <module>\n    from airflow.contrib import x\n'
            "ModuleNotFoundError: No module named 'airflow.contrib'\n"
        )
        [finding] = dagbag_step.import_findings({"/dags/a.py": traceback})
        assert (finding.line, finding.level, finding.step) == (4, "ERROR", "import")
        assert finding.message.endswith("No module named 'airflow.contrib'")
        assert "provider package" in finding.fix

    def test_the_stack_is_read_by_the_components_parser(self):
        stack = load_stack("tutorial", TUTORIAL / "Pulumi.tutorial.yaml")
        assert [t.namespace for t in stack.teams] == ["etl-tasks"]
        with pytest.raises(ConfigError):
            TestPlatformRules().stack(taskImages='{"python": "python"}')
