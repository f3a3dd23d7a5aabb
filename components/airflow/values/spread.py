"""Spreading Airflow's replicated pods across nodes (or zones): topology spread constraints.

The chart only *prefers* (anti-affinity weight 100 on the `component` label) to keep a
component's pods apart, and not at all for Celery workers or PgBouncer: two schedulers,
both api-servers or both PgBouncers may land on one node, and one node drain or failure
takes the component down. `spread_values` gives every scalable component a
`topologySpreadConstraints` entry whose label selector is exactly the labels the chart puts
on that component's pods (`tier: airflow`, `component`, `release`).

`matchLabelKeys` counts only pods of the same revision (`pod-template-hash` for
Deployments, `controller-revision-hash` for StatefulSets): during a rolling update the old
pods do not skew the count, and KubernetesExecutor task pods, which carry the Celery
workers' labels but neither hash, are never counted. `nodeTaintsPolicy: Honor` leaves out
nodes the pods cannot run on (control-plane nodes, tainted pools), which would otherwise
count as empty domains and block scheduling under `DoNotSchedule`.

Pure functions of typed config; `chart_values` merges the result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config.spread import WHEN_UNSATISFIABLE as WHEN_UNSATISFIABLE, Spread as Spread, parse_spread as parse_spread

if TYPE_CHECKING:
    from ..config.airflow import AirflowConfig

REVISION_LABELS = ("pod-template-hash", "controller-revision-hash")
# Chart values path of each scalable component -> the `component` label of its pods.
# Celery workers sit under `workers.celery`, so the KubernetesExecutor pod template (which
# reads `workers.kubernetes` / `workers`) is left alone.
COMPONENT_LABELS: dict[str, str] = {
    "scheduler": "scheduler",
    "apiServer": "api-server",
    "webserver": "webserver",
    "triggerer": "triggerer",
    "dagProcessor": "dag-processor",
    "workers.celery": "worker",
    "pgbouncer": "pgbouncer",
}


def constraint(spread: Spread, release: str, component_label: str) -> dict[str, Any]:
    """One TopologySpreadConstraint selecting exactly the pods of one chart component."""
    return {
        "maxSkew": spread.max_skew,
        "topologyKey": spread.topology_key,
        "whenUnsatisfiable": spread.when_unsatisfiable,
        "labelSelector": {"matchLabels": {"tier": "airflow", "component": component_label, "release": release}},
        "matchLabelKeys": list(REVISION_LABELS),
        "nodeTaintsPolicy": "Honor",
    }


def spread_components(cfg: AirflowConfig) -> dict[str, str]:
    """The chart paths (and pod `component` labels) of the components this config runs."""
    runs = {
        "scheduler": True,
        "dagProcessor": cfg.dag_processor.enabled,
        cfg.ui_component: True,
        "triggerer": cfg.triggerer.enabled,
        "workers.celery": cfg.uses_celery,
        "pgbouncer": cfg.database.pgbouncer.enabled,
    }
    return {path: COMPONENT_LABELS[path] for path, on in runs.items() if on}


def spread_values(cfg: AirflowConfig) -> dict[str, Any]:
    """`<component>.topologySpreadConstraints` chart values, or nothing when spreading is off.

    Applied whatever the replica count, so scaling a component never changes its pod template.
    """
    spread = cfg.spread
    if not spread.enabled:
        return {}
    values: dict[str, Any] = {}
    for path, label in spread_components(cfg).items():
        target = values
        for part in path.split("."):
            target = target.setdefault(part, {})
        target["topologySpreadConstraints"] = [constraint(spread, cfg.release_name, label)]
    return values
