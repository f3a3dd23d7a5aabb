"""CPU and memory of one container: the typed `Resources` every capability's config holds, and its
parser (`requests` / `limits`, each of `cpu` and `memory`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .reader import ConfigError, Node, quantity, quantity_value

# Container runtimes refuse memory limits below 6 MiB (runc's minimum); no Airflow process
# starts in less than this either.
MIN_MEMORY = Decimal(6 * 2**20)
# No node offers more than this to one pod: a request above it is never scheduled.
MAX_CPU = Decimal(1000)
MAX_MEMORY = Decimal(64 * 2**40)


@dataclass(frozen=True)
class Resources:
    """CPU and memory requests and limits of one container."""

    requests: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)

    def as_values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.requests:
            out["requests"] = dict(self.requests)
        if self.limits:
            out["limits"] = dict(self.limits)
        return out


def parse_resources(node: Node, name: str) -> Resources:
    """`<name>.requests` / `<name>.limits`: amounts a container can run with (`amount_valid`), each
    limit at least its request."""
    sub = node.mapping(name)
    parts: dict[str, dict[str, str]] = {}
    for part in ("requests", "limits"):
        spec = sub.mapping(part)
        values = {}
        for res in ("cpu", "memory"):
            what = "a CPU quantity" if res == "cpu" else "a memory quantity"
            value = spec.quantity(res, None, what=what)
            if value is not None:
                amount_valid(spec.key(res), res, value)
                values[res] = value
        spec.finish()
        parts[part] = values
    sub.finish()
    for res in ("cpu", "memory"):
        req, lim = parts["requests"].get(res), parts["limits"].get(res)
        if req and lim and quantity_value(req) > quantity_value(lim):
            raise ConfigError(
                f"{sub.path}.limits.{res}",
                lim,
                f"a limit must be at least the request ({sub.path}.requests.{res} is {req!r}).",
            )
    return Resources(requests=parts["requests"], limits=parts["limits"])


def amount_valid(key: str, resource: str, value: Any, *, one_pod: bool = True) -> None:
    """A container's CPU or memory amount it can run with: memory of 6Mi or more, CPU of 1m or more; for
    `one_pod` (not a namespace's quota) no more than a node can offer."""
    amount = quantity(value)
    if amount is None:
        return
    if resource == "memory" and amount < MIN_MEMORY:
        raise ConfigError(
            key,
            value,
            "memory below 6Mi: a bare number is bytes, and container runtimes refuse limits under 6 MiB "
            "(no Airflow process starts in that either).",
            "use a unit: 512Mi, 2Gi.",
        )
    if resource == "cpu" and amount < Decimal("0.001"):
        raise ConfigError(key, value, "CPU of at least 1m (0.001 of a core).", "use a value such as 100m or 1.")
    if one_pod and resource == "cpu" and amount > MAX_CPU:
        raise ConfigError(
            key,
            value,
            f"CPU of at most {MAX_CPU} cores: no node has more, so the pod would never be scheduled (a bare number "
            "is cores: 500 is five hundred, 500m half of one).",
            "use a value such as 500m or 2.",
        )
    if one_pod and resource == "memory" and amount > MAX_MEMORY:
        raise ConfigError(
            key,
            value,
            "memory of at most 64Ti: no node has more, so the pod would never be scheduled.",
            "use a value such as 512Mi or 4Gi.",
        )
