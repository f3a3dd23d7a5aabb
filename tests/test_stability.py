"""Upgrades that lose nothing: every resource keeps its URN, every random value its inputs.

The dev and prod programs are checked against the committed inventory in tests/golden/
(regenerate with `python -m tests.golden --update`, see tests/golden/__init__.py). Renames
and reparents are caught unless an alias covers them, and executor, replica, chart and
Airflow version changes never touch a random resource.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.offline.program import ProgramRun, load_stack_config, run_program
from tests.golden import (
    STACKS,
    UPDATE_COMMAND,
    Urns,
    alias_index,
    compare,
    golden_path,
    inventory,
    load,
    run_stack_program,
    updated,
)
from tests.golden.__main__ import main as golden_main
from tests.helpers import ROOT, run_stack

# The first Fernet key under a root AirflowRelease (tests/programs/renamed_release.py) and under
# the stack program's AirflowPlatform.
RELEASE_FERNET = "airflow-k8s:index:AirflowRelease$random:index/randomBytes:RandomBytes::airflow-fernet-key"
FERNET_1 = f"airflow-k8s:index:AirflowPlatform${RELEASE_FERNET}"


@pytest.fixture(scope="module")
def stack_runs() -> dict[str, ProgramRun]:
    return {stack: run_stack_program(stack) for stack in STACKS}


def renamed(**config: Any) -> ProgramRun:
    return run_stack(program="renamed_release", extra=config)


def golden_of(run: ProgramRun) -> dict[str, Any]:
    return updated(None, run, run.stack, allow_removal=False)


class TestGoldenInventory:
    @pytest.mark.parametrize("stack", STACKS)
    def test_the_stack_declares_exactly_the_golden_resources_with_the_golden_random_inputs(self, stack_runs, stack):
        diff = compare(load(stack), stack_runs[stack], stack)
        assert diff.empty, diff.report()

    @pytest.mark.parametrize("stack", STACKS)
    def test_the_golden_file_is_what_the_update_command_writes(self, stack_runs, stack):
        golden = load(stack)
        assert golden == updated(golden, stack_runs[stack], stack, allow_removal=False)
        assert golden["resources"] == sorted(golden["resources"])
        assert all(u.startswith(f"urn:pulumi:{stack}::airflow-k8s::") for u in golden["resources"])

    @pytest.mark.parametrize("stack", STACKS)
    def test_every_random_resource_of_the_stack_is_in_the_golden_inventory(self, stack_runs, stack):
        randoms = {u for u in inventory(stack_runs[stack])["resources"] if "$random:" in u}
        assert randoms and randoms == set(load(stack)["random"])
        assert f"urn:pulumi:{stack}::airflow-k8s::{FERNET_1}" in randoms

    def test_engine_urns_carry_every_ancestor_type_and_not_the_root_stack(self, stack_runs):
        urns = set(inventory(stack_runs["dev"])["resources"])
        assert (
            "urn:pulumi:dev::airflow-k8s::airflow-k8s:index:AirflowPlatform$airflow-k8s:index:AirflowRelease"
            "$airflow-k8s:index:LogStorage$kubernetes:core/v1:PersistentVolumeClaim::airflow-logs-claim"
        ) in urns
        platform = "urn:pulumi:dev::airflow-k8s::airflow-k8s:index:AirflowPlatform"
        assert f"{platform}$airflow-k8s:index:AirflowRelease::airflow" in urns
        assert not any("pulumi:pulumi:Stack" in u for u in urns)

    @pytest.mark.parametrize("stack", STACKS)
    def test_every_urn_from_before_the_platform_is_retired_and_covered_by_an_alias(self, stack_runs, stack):
        retired = load(stack)["retired"]
        before = [u for u in retired if "AirflowPlatform" not in u]
        assert f"urn:pulumi:{stack}::airflow-k8s::{RELEASE_FERNET}" in before
        assert f"urn:pulumi:{stack}::airflow-k8s::airflow-k8s:index:AirflowRelease::airflow" in before
        covering = alias_index(stack_runs[stack])
        for urn in before:
            assert covering[urn] == retired[urn]
            moved = urn.replace("::airflow-k8s::", "::airflow-k8s::airflow-k8s:index:AirflowPlatform$", 1)
            assert covering[urn] == moved

    def test_the_check_command_passes_and_names_its_update_command(self, capsys):
        assert golden_main([]) == 0
        assert "dev: matches dev.json" in capsys.readouterr().out
        assert UPDATE_COMMAND == "python -m tests.golden --update"
        assert UPDATE_COMMAND in (ROOT / "tests" / "golden" / "__init__.py").read_text()
        assert all(golden_path(s).exists() for s in STACKS)


class TestRenames:
    def test_renaming_a_component_without_an_alias_fails_naming_every_vanished_and_new_urn(self):
        golden = golden_of(renamed())
        diff = compare(golden, renamed(componentName="airflow-main"), "test")
        old_key = f"urn:pulumi:test::airflow-k8s::{RELEASE_FERNET}"
        new_key = old_key.replace("::airflow-fernet-key", "::airflow-main-fernet-key")
        assert old_key in diff.vanished and new_key in diff.appeared
        assert set(diff.vanished) == {u for u in golden["resources"] if not u.endswith("::extra-key")}
        report = diff.report()
        assert f"- {old_key}" in report and f"+ {new_key}" in report
        assert "VANISHED" in report and UPDATE_COMMAND in report

    def test_an_alias_on_the_component_covers_every_child_and_the_update_records_it(self):
        golden = golden_of(renamed())
        run = renamed(componentName="airflow-main", aliasOf="airflow")
        diff = compare(golden, run, "test")
        assert diff.vanished == []
        old_key = f"urn:pulumi:test::airflow-k8s::{RELEASE_FERNET}"
        assert diff.covered[old_key] == old_key.replace("::airflow-fernet-key", "::airflow-main-fernet-key")
        # Every child inherits the component's alias.
        assert set(diff.covered) == {u for u in golden["resources"] if not u.endswith("::extra-key")}
        assert not diff.empty  # the inventory must still be updated
        new = updated(golden, run, "test", allow_removal=False)
        assert compare(new, run, "test").empty
        assert new["retired"][old_key] == diff.covered[old_key]

    def test_dropping_the_alias_later_is_caught(self):
        golden = golden_of(renamed())
        with_alias = updated(
            golden, renamed(componentName="airflow-main", aliasOf="airflow"), "test", allow_removal=False
        )
        diff = compare(with_alias, renamed(componentName="airflow-main"), "test")
        assert f"urn:pulumi:test::airflow-k8s::{RELEASE_FERNET}" in diff.retired_uncovered
        assert "ALIAS REMOVED" in diff.report()

    def test_the_update_refuses_to_forget_a_renamed_resource_without_an_alias(self):
        golden = golden_of(renamed())
        run = renamed(componentName="airflow-main")
        with pytest.raises(ValueError, match="would vanish with no alias") as err:
            updated(golden, run, "test", allow_removal=False)
        assert f"urn:pulumi:test::airflow-k8s::{RELEASE_FERNET}" in str(err.value)
        assert updated(golden, run, "test", allow_removal=True)["retired"] == {}

    def test_moving_a_resource_under_a_component_is_a_reparent_caught_unless_aliased(self):
        golden = golden_of(renamed())
        root_key = "urn:pulumi:test::airflow-k8s::random:index/randomBytes:RandomBytes::extra-key"
        assert root_key in golden["resources"]
        moved = compare(golden, renamed(keyInComponent=True), "test")
        assert moved.vanished == [root_key]
        assert moved.appeared == [
            "urn:pulumi:test::airflow-k8s::airflow-k8s:test:Holder$random:index/randomBytes:RandomBytes::extra-key",
            "urn:pulumi:test::airflow-k8s::airflow-k8s:test:Holder::holder",
        ]
        aliased = compare(golden, renamed(keyInComponent=True, keyAliased=True), "test")
        assert aliased.vanished == [] and root_key in aliased.covered

    def test_alias_urns_follow_the_engine_rules_for_names_and_parents(self):
        run = renamed(componentName="airflow-main", aliasOf="airflow")
        urns = Urns(run)
        (component,) = [r for r in run.resources if r.type == "airflow-k8s:index:AirflowRelease"]
        assert urns.aliases(component.urn) == [
            "urn:pulumi:test::airflow-k8s::airflow-k8s:index:AirflowRelease::airflow"
        ]


def stack_variant(stack: str, change: dict[str, Any]) -> ProgramRun:
    """The stack's own config with `change` deep-merged into its `airflow` object."""
    project, config, secret_keys, _ = load_stack_config(ROOT, stack)
    airflow = json.loads(config[f"{project}:airflow"])
    for key, value in change.items():
        if value is None:
            airflow.pop(key, None)
        elif isinstance(value, dict) and isinstance(airflow.get(key), dict):
            airflow[key] = {**airflow[key], **value}
        else:
            airflow[key] = value
    if str(airflow.get("version", "3")).startswith("2.") and "apiServer" in airflow:
        airflow["webserver"] = airflow.pop("apiServer")
    config = {**config, f"{project}:airflow": json.dumps(airflow)}
    if "Celery" not in str(airflow.get("executor", "")):
        config.pop(f"{project}:keda", None)  # KEDA scales Celery workers only: the user drops it too
    return run_program(ROOT, stack, config=config, secret_keys=secret_keys, project=project)


VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("local-executor", {"executor": "LocalExecutor", "flower": None}),
    ("celery-executor", {"executor": "CeleryExecutor"}),
    ("kubernetes-executor", {"executor": "KubernetesExecutor", "flower": None}),
    ("hybrid-executors", {"executor": "CeleryExecutor,KubernetesExecutor"}),
    ("airflow-2", {"version": "2.11.0", "executor": "CeleryKubernetesExecutor"}),
    ("airflow-3-1", {"version": "3.1.3"}),
    ("more-replicas", {"scheduler": {"replicas": 4}, "apiServer": {"replicas": 3}, "triggerer": {"replicas": 3}}),
    ("chart-version", {"chart": {"version": "1.20.0"}}),
    ("no-spread", {"spread": {"enabled": False}}),
    ("fernet-rotation", {"fernetKey": {"generation": 2, "rotate": True}}),
]


class TestRandomInputsAreStable:
    @pytest.mark.parametrize("stack", STACKS)
    @pytest.mark.parametrize(("variant", "change"), VARIANTS, ids=[v[0] for v in VARIANTS])
    def test_a_change_of_executor_replicas_chart_or_version_never_touches_a_random_resource(
        self, stack, variant, change
    ):
        golden = load(stack)["random"]
        now = inventory(stack_variant(stack, change))["random"]
        added = {u for u in now if u not in golden}
        if variant == "fernet-rotation":
            assert added == {f"urn:pulumi:{stack}::airflow-k8s::{FERNET_1}-2"}
        else:
            assert added == set()
        assert {u: now[u] for u in golden} == golden

    def test_the_first_fernet_key_keeps_its_urn_and_inputs_in_every_generation(self):
        for generation in (1, 2, 5):
            run = run_stack(
                {"fernetKey": {"generation": generation}, "dags": {"mode": "image"}, "image": {"repository": "r/a"}}
            )
            randoms = inventory(run)["random"]
            assert randoms[f"urn:pulumi:test::airflow-k8s::{FERNET_1}"] == {"length": 32}
            assert sorted(u for u in randoms if "fernet-key" in u) == sorted(
                [f"urn:pulumi:test::airflow-k8s::{FERNET_1}"]
                + [f"urn:pulumi:test::airflow-k8s::{FERNET_1}-{g}" for g in range(2, generation + 1)]
            )
