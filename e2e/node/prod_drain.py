"""Part `drain` of node-prod (issue 25, scenario 6): the node's Airflow pods evicted one by one
through the Eviction API, as a cluster upgrade's drain does (the node is the only one, so it is
not cordoned: each evicted pod comes back on it). The PodDisruptionBudgets are prod's
(`Pulumi.prod.yaml`, which `prod_stack` leaves out with the components' sizes): at most one pod
of each component away at a time. Each eviction is retried while the API answers 429 (a budget
that allows no disruption yet, as `kubectl drain` retries) until it is allowed; how many 429s
and how long each pod waited is printed. The pods are taken in the order that makes the
budgets matter: the first of every pair, the single ones, then the second of every pair. Then
every pod is Ready, every component healthy, and a new run succeeds.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import yaml

from ..harness import ROOT, StepError
from ..kube import ApiError
from .airflow_steps import wait_ready
from .parts import NodeRun, Part
from .prod_common import new_run_seconds, serving, title, wait_healthy

NAME = "drain"
# Chart values keys whose PodDisruptionBudget prod sets (Pulumi.prod.yaml) beside PgBouncer's.
BUDGETED = ("scheduler", "apiServer", "triggerer", "dagProcessor", "workers")
# The pods a drain of the node evicts: all of Airflow's namespace that a controller serves.
DRAINED = ("scheduler", "api-server", "triggerer", "dag-processor", "worker", "pgbouncer", "redis", "flower", "statsd")
EVICTION_TIMEOUT = 420
RETRY_SECONDS = 1.0
RUN_DAG = "example_one_task"


def prod_budgets(cfg: dict[str, Any], prod: dict[str, Any] | None = None) -> dict[str, Any]:
    """The node's stack with the PodDisruptionBudgets Pulumi.prod.yaml gives BUDGETED."""
    if prod is None:
        prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["airflow-k8s:airflow"]
    cfg = copy.deepcopy(cfg)
    airflow = cfg["airflow-k8s:airflow"]
    for key in BUDGETED:
        budget = (prod.get(key) or {}).get("podDisruptionBudget")
        if budget is not None:
            airflow.setdefault(key, {})["podDisruptionBudget"] = copy.deepcopy(budget)
    return cfg


def drain_order(pods: list[dict[str, Any]]) -> list[str]:
    """The pods' names in the order the drain evicts them: the first pod of each component, then
    the second of each... (so the second of a pair meets its budget while the first's
    replacement starts); within a round, in DRAINED's order."""
    by_component: dict[str, list[str]] = {}
    for pod in serving(pods, DRAINED):
        by_component.setdefault(pod["metadata"]["labels"]["component"], []).append(pod["metadata"]["name"])
    rounds = max((len(names) for names in by_component.values()), default=0)
    order = []
    for i in range(rounds):
        for component in DRAINED:
            names = sorted(by_component.get(component, []))
            if i < len(names):
                order.append(names[i])
    return order


def eviction(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}


def evict(r: NodeRun, name: str) -> tuple[int, float, str]:
    """Evict the pod, retrying every RETRY_SECONDS while the API answers 429; (the 429s, the
    seconds until allowed, the last refusal's message)."""
    started, refused, why = time.monotonic(), 0, ""
    path = f"/api/v1/namespaces/{r.namespace}/pods/{name}/eviction"
    while True:
        try:
            r.kube.request("POST", path, eviction(name, r.namespace))
            return refused, time.monotonic() - started, why
        except ApiError as exc:
            if exc.status == 404:  # gone already (its controller replaced it meanwhile)
                return refused, time.monotonic() - started, "gone"
            if exc.status != 429:
                raise
            refused += 1
            why = exc.body
        if time.monotonic() - started > EVICTION_TIMEOUT:
            raise StepError(f"the eviction of {name} still refused after {EVICTION_TIMEOUT}s ({refused} x 429): {why}")
        time.sleep(RETRY_SECONDS)


def budgets(r: NodeRun) -> list[str]:
    out = []
    for pdb in r.kube.list("policy/v1", "PodDisruptionBudget", r.namespace):
        spec, status = pdb.get("spec") or {}, pdb.get("status") or {}
        key = "maxUnavailable" if "maxUnavailable" in spec else "minAvailable"
        limit = f"{key} {spec.get(key)}"
        out.append(f"{pdb['metadata']['name']} ({limit}, allowed now {status.get('disruptionsAllowed')})")
    return out


def run(r: NodeRun) -> None:
    with r.h.steps.step(title(NAME, "the Airflow pods evicted one by one (Eviction API): the budgets allow it")):
        started = time.monotonic()
        r.echo(f"    PodDisruptionBudgets: {'; '.join(budgets(r))}")
        order = drain_order(r.kube.list("v1", "Pod", r.namespace))
        r.echo(f"    eviction order: {', '.join(order)}")
        waited = []
        for name in order:
            refused, seconds, why = evict(r, name)
            note = f" (last refusal: {why[:160]})" if refused else ""
            r.echo(f"    evicted {name}: {refused} x 429, allowed after {seconds:.1f}s{note}")
            waited.append((name, refused, seconds))
        blocked = [f"{n} {s:.0f}s" for n, c, s in waited if c]
        took = time.monotonic() - started
        r.echo(f"    {len(order)} pods evicted in {took:.1f}s; held by a budget: {', '.join(blocked) or 'none'}")
    with r.h.steps.step(title(NAME, "after the drain: every pod Ready, every component healthy, a new run succeeds")):
        back = time.monotonic()
        wait_ready(r.d, r.namespace)
        took = wait_healthy(r)
        r.echo(f"    every pod Ready, every component healthy {time.monotonic() - back:.1f}s after the last eviction")
        ran = new_run_seconds(r, RUN_DAG)
        r.echo(f"    healthy in {took:.1f}s; a new run of {RUN_DAG}: success {ran:.1f}s after its trigger")
        r.echo(f"    part {NAME}: {time.monotonic() - started:.1f}s")


PART = Part(NAME, run, stack=prod_budgets)
