"""`airflow.spread`: the topology spread constraint of Airflow's replicated pods, parsed at the edge.

The chart values it becomes are in components/airflow/values/spread.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...core.reader import Node

WHEN_UNSATISFIABLE = ("ScheduleAnyway", "DoNotSchedule")
# A label key: optional DNS prefix and '/', then a name (the Kubernetes rule).
_TOPOLOGY_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Spread:
    """`airflow.spread`: one topology spread constraint per scalable component."""

    enabled: bool = True
    topology_key: str = "kubernetes.io/hostname"
    when_unsatisfiable: str = "ScheduleAnyway"
    max_skew: int = 1


def parse_spread(node: Node) -> Spread:
    """Read `<airflow>.spread` from the `airflow` node."""
    sub = node.mapping("spread")
    spread = Spread(
        enabled=sub.boolean("enabled", True),
        topology_key=sub.string(
            "topologyKey",
            "kubernetes.io/hostname",
            pattern=_TOPOLOGY_KEY,
            describe="expected a node label key such as kubernetes.io/hostname or topology.kubernetes.io/zone.",
        ),
        when_unsatisfiable=sub.string("whenUnsatisfiable", "ScheduleAnyway", choices=WHEN_UNSATISFIABLE),
        max_skew=sub.integer("maxSkew", 1, low=1, high=100),
    )
    sub.finish()
    return spread
