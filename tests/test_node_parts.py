"""The node scenario's parts (e2e/node/parts.py): chosen by name, run in the scenario's order,
parts on trial only when named."""

from __future__ import annotations

import pytest

from e2e.harness import StepError
from e2e.node import parts


class TestNodeParts:
    """The node scenario's parts: chosen by AIRFLOW_K8S_NODE_PARTS, applied in their order."""

    PARTS = (
        parts.Part("keys", lambda run: None, stack=lambda cfg: {**cfg, "keys": True}),
        parts.Part("failures", lambda run: None, images=("busybox:1.37.0",)),
    )

    def test_every_part_runs_when_none_is_named(self) -> None:
        assert [p.name for p in parts.selected(self.PARTS, "")] == ["keys", "failures"]

    def test_named_parts_run_in_the_scenarios_order(self) -> None:
        assert [p.name for p in parts.selected(self.PARTS, "failures, keys")] == ["keys", "failures"]

    def test_none_runs_no_part(self) -> None:
        assert parts.selected(self.PARTS, "none") == []

    def test_an_unknown_part_is_refused_naming_those_there_are(self) -> None:
        with pytest.raises(StepError, match=r"no part named upgrad; there are: failures, keys, none"):
            parts.selected(self.PARTS, "upgrad")

    def test_the_prod_scenarios_parts_are_chosen_by_their_own_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(parts.SELECT_ENV, "keys")
        monkeypatch.setenv(parts.PROD_SELECT_ENV, "failures")
        chosen = parts.selected(self.PARTS, variable=parts.PROD_SELECT_ENV)
        assert [p.name for p in chosen] == ["failures"]
        monkeypatch.setenv(parts.PROD_SELECT_ENV, "drain")
        with pytest.raises(StepError, match=r"^AIRFLOW_K8S_PROD_PARTS: no part named drain"):
            parts.selected(self.PARTS, variable=parts.PROD_SELECT_ENV)

    def test_a_part_on_trial_runs_only_when_named(self) -> None:
        trial = (parts.Part("git", lambda run: None),)
        assert [p.name for p in parts.selected(self.PARTS, "", trial)] == ["keys", "failures"]
        assert [p.name for p in parts.selected(self.PARTS, "git,keys", trial)] == ["keys", "git"]

    def test_each_parts_stack_change_is_applied(self) -> None:
        assert parts.stack_for(self.PARTS, {"a": 1}) == {"a": 1, "keys": True}
