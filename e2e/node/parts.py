"""The parts of the node scenario after the first run: each a sequence of steps on the same node
and the same deployed dev stack (team pods, keys, failures, upgrade, come back, enforcement...).

A part is declared once (`Part`): its name, the function that runs its steps on a `NodeRun`,
the images it needs beyond the stack's own (built and imported with the rest, before the node
starts), and what it changes in the node's stack before the first `pulumi up`. The scenario runs
them in the order of its list; `AIRFLOW_K8S_NODE_PARTS=name,name` runs only those (the first
run, the preview's pods and the teardown always run), `none` runs none: a part under work can be
run alone, on a node of its own, without the others' minutes. A part on trial (`TRIAL_PARTS`: built,
not yet shown green on a real node) runs only when named, so CI runs just the proven ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..harness import StepError
from ..kube import Kube
from ..scenarios import Deployment, Harness
from .airflow_api import AirflowApi
from .host import Node

SELECT_ENV = "AIRFLOW_K8S_NODE_PARTS"
# The node-prod scenario's parts (e2e.node.scenario_prod), chosen the same way by their own variable.
PROD_SELECT_ENV = "AIRFLOW_K8S_PROD_PARTS"


@dataclass
class NodeRun:
    """What a part works with: the node, the deployed stack and Airflow's REST API, logged in."""

    h: Harness
    node: Node
    plane: Any  # host.NodePlane: stopped by the scenario at the end
    kube: Kube
    d: Deployment
    api: AirflowApi
    namespace: str
    folder: Path  # the node's folder (volumes/, screenshots/, logs)
    config: dict[str, Any]  # the stack config deployed by the first `up`
    # The first run's runs: dag_id -> (run_id, task instances)
    runs: dict[str, tuple[str, list[dict[str, Any]]]] = field(default_factory=dict)
    database: Any = None  # node-prod: its external database (external_db.ExternalPostgres)

    def echo(self, line: str) -> None:
        self.h.steps.echo(line)


@dataclass(frozen=True)
class Part:
    """One part of the node scenario.

    name: short, used by AIRFLOW_K8S_NODE_PARTS and in each step's title (`[node:<name>] ...`).
    run: its steps (`run.h.steps.step(...)`), on the node and stack the first run left.
    images: references it needs beyond the stack's and the example DAGs' (e.g. an upgrade's image).
    stack: changes it makes to the node's stack config before the first `up` (a copy in, a copy out).
    secrets: secret stack keys it sets (`pulumi config set --secret`, key without the project ->
      value; an object goes as JSON) after the stack is made, before the first `up`. Its `stack`
      change may hold `{"secure": ...}` for them meanwhile: the offline preview that finds the
      images puts a placeholder in its place.
    """

    name: str
    run: Callable[[NodeRun], None]
    images: tuple[str, ...] = ()
    stack: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    secrets: Callable[[], dict[str, Any]] | None = None


def selected(
    parts: Sequence[Part], env: str | None = None, trial: Sequence[Part] = (), variable: str = SELECT_ENV
) -> list[Part]:
    """The parts to run: all of `parts`, or those `variable` (AIRFLOW_K8S_NODE_PARTS by default)
    names (`none`: none), in the scenario's order. A part in `trial` (built, not yet shown green on
    a real node: docs/e2e.md says which) runs only when named. An unknown name is refused, naming
    the ones there are."""
    raw = os.environ.get(variable) if env is None else env
    if raw is None or not raw.strip():
        return list(parts)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if names == ["none"]:
        return []
    every = [*parts, *trial]
    known = {p.name for p in every}
    unknown = [n for n in names if n not in known]
    if unknown:
        there = ", ".join(sorted(known))
        raise StepError(f"{variable}: no part named {', '.join(unknown)}; there are: {there}, none")
    return [p for p in every if p.name in names]


def stack_for(parts: Sequence[Part], cfg: dict[str, Any]) -> dict[str, Any]:
    """The node's stack config with each part's change applied, in order."""
    for part in parts:
        if part.stack is not None:
            cfg = part.stack(cfg)
    return cfg


def set_secrets(parts: Sequence[Part], d: Deployment) -> list[str]:
    """Each part's secret keys, set encrypted in the node's stack before the first `up`; the
    encrypted entries are kept in the deployment's config, so that a later rewrite of the stack
    file keeps them. The keys set, back."""
    wanted = {k: v for part in parts for k, v in (part.secrets() if part.secrets is not None else {}).items()}
    keys = list(wanted)
    if not keys:
        return keys
    for key in keys:  # a part's stack change may hold a stand-in (for the images' offline preview)
        d.config.pop(key if ":" in key else f"airflow-k8s:{key}", None)
    d.write()
    for key, value in wanted.items():
        text = value if isinstance(value, str) else json.dumps(value)
        d.pulumi.run("config", "set", "--secret", key, "--", text)
    written = yaml.safe_load((d.project / f"Pulumi.{d.stack}.yaml").read_text()) or {}
    for key in keys:
        full = key if ":" in key else f"airflow-k8s:{key}"
        d.config[full] = written["config"][full]
    return keys
