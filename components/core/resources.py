"""CPU and memory of one container: the typed `Resources` every capability's config holds, and its
parser (`requests` / `limits`, each of `cpu` and `memory`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from components.core.reader import ConfigError, Node, quantity_value


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
    """`<name>.requests` / `<name>.limits`: quantities, each limit at least its request."""
    sub = node.mapping(name)
    parts: dict[str, dict[str, str]] = {}
    for part in ("requests", "limits"):
        spec = sub.mapping(part)
        values = {}
        for res in ("cpu", "memory"):
            what = "a CPU quantity" if res == "cpu" else "a memory quantity"
            value = spec.quantity(res, None, what=what)
            if value is not None:
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
