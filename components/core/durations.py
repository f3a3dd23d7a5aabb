"""Go durations (`time.ParseDuration`), as the Go tools this project configures read them
(git-sync's `--period`, robfig/cron's `@every`): `300ms`, `1.5h`, `2h45m`; a unit on every number."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_ELEMENT = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-z\u00b5\u03bc]+)", re.ASCII)
# Go's int64 nanoseconds end about 292 years on.
_MAX_SECONDS = (2**63 - 1) / 1e9


def go_duration_seconds(text: str) -> float | None:
    """The duration in seconds, or None where Go's time.ParseDuration refuses the text."""
    if text == "0":
        return 0.0
    body = text[1:] if text[:1] in "+-" else text
    if not body:
        return None
    total = 0.0
    position = 0
    while position < len(body):
        match = _ELEMENT.match(body, position)
        if match is None or match.group(1) in ("", ".") or match.group(2) not in _UNITS:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if total > _MAX_SECONDS:
        return None
    return -total if text.startswith("-") else total
