"""CronJob schedules as the API server reads them, and schedules that never fire.

Kubernetes validates `spec.schedule` with robfig/cron v3's `ParseStandard` and refuses `TZ=` /
`CRON_TZ=` in it (the `timeZone` field says that). This mirrors that parser: five fields
(minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of week 0-6 or SUN-SAT),
each a comma-separated list of `*`, `?`, `N`, `N-M`, with an optional `/step`; numbers in ASCII
digits only (Go's strconv.Atoi); or a descriptor (@yearly ... @hourly, `@every <duration>`).
Day of week 7 is refused there, as are digits of other scripts.

A schedule that parses can still never fire: with day of month restricted and day of week `*`,
both must match, so `0 0 30 2 *` (30 February) waits forever; the CronJob is created and does
nothing. That is refused too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .durations import go_duration_seconds
from .reader import ConfigError

_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_MONTHS = {
    m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))
}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# Days each month can have (February 29 in leap years).
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_GO_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 6, _DAYS),
)
ALLOWED = (
    "a cron schedule of five fields (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of "
    "week 0-6 or SUN-SAT; each `*`, `N`, `N-M` or a comma list of them, with an optional `/step`, in ASCII digits) or "
    "@yearly, @monthly, @weekly, @daily, @hourly, @every <duration>"
)


class _InvalidError(ValueError):
    pass


def _number(text: str, field: _Field) -> int:
    if field.names is not None and text.lower() in field.names:
        return field.names[text.lower()]
    if not _GO_INT.fullmatch(text):
        raise _InvalidError(f"{field.name}: {text!r} is not a number")
    number = int(text)
    if number < 0:
        raise _InvalidError(f"{field.name}: negative number ({number}) not allowed")
    return number


def _values(expr: str, field: _Field) -> tuple[set[int], bool]:
    """(the values a field allows, whether it is `*`/`?` (robfig's star bit))."""
    out: set[int] = set()
    star = False
    for part in (p for p in expr.split(",") if p):
        range_step = part.split("/")
        low_high = range_step[0].split("-")
        if low_high[0] in ("*", "?"):
            start, end, star_here = field.low, field.high, True
        else:
            star_here = False
            start = _number(low_high[0], field)
            if len(low_high) == 1:
                end = start
            elif len(low_high) == 2:
                end = _number(low_high[1], field)
            else:
                raise _InvalidError(f"{field.name}: too many hyphens in {part!r}")
        step = 1
        if len(range_step) == 2:
            step = _number(range_step[1], field)
            if len(low_high) == 1 and low_high[0] not in ("*", "?"):
                end = field.high
            if step > 1:
                star_here = False
        elif len(range_step) > 2:
            raise _InvalidError(f"{field.name}: too many slashes in {part!r}")
        if start < field.low:
            raise _InvalidError(f"{field.name}: beginning of range ({start}) below minimum ({field.low})")
        if end > field.high:
            raise _InvalidError(f"{field.name}: end of range ({end}) above maximum ({field.high})")
        if start > end:
            raise _InvalidError(f"{field.name}: beginning of range ({start}) beyond end of range ({end})")
        if step == 0:
            raise _InvalidError(f"{field.name}: step of range should be a positive number")
        out.update(range(start, end + 1, step))
        star = star or star_here
    return out, star


def schedule(key: str, value: object) -> str:
    """A CronJob schedule the API server accepts and that fires."""
    if not isinstance(value, str):
        raise ConfigError(key, value, f"expected {ALLOWED}.")
    if "TZ" in value:
        raise ConfigError(
            key, value, "the API server refuses TZ= or CRON_TZ= in a schedule (the CronJob's timeZone field says it)."
        )
    text = value.strip()
    if text.startswith("@"):
        every = text[len("@every ") :].strip() if text.startswith("@every ") else None
        if text in _DESCRIPTORS or (every is not None and go_duration_seconds(every) is not None):
            return value
        raise ConfigError(key, value, f"unknown descriptor; expected {ALLOWED}.")
    fields = text.split()
    if len(fields) != 5 or any(not c.isascii() for c in text if c.isspace()):
        raise ConfigError(key, value, f"expected {ALLOWED}; found {len(fields)} fields.")
    try:
        parsed = [_values(expr, field) for expr, field in zip(fields, _FIELDS, strict=True)]
    except _InvalidError as exc:
        raise ConfigError(key, value, f"the API server refuses this schedule ({exc}); expected {ALLOWED}.") from None
    (minutes, _), (hours, _), (days, day_star), (months, _), (weekdays, weekday_star) = parsed
    on_a_date = any(day <= _MONTH_DAYS[month - 1] for month in months for day in days)
    # robfig/cron: with `*` in either day field, both must match (every date falls on each weekday in
    # some year); with both restricted, either (every month has every weekday).
    both = day_star or weekday_star
    fires = (on_a_date and bool(weekdays)) if both else (on_a_date or (bool(weekdays) and bool(months)))
    if not (minutes and hours and fires):
        raise ConfigError(
            key,
            value,
            "this schedule never fires: no month in it has that day (day of month and month together name no "
            "date, e.g. 30 February), so the CronJob would be created and never run.",
            "choose a day every listed month has (1-28 runs in every month), or list other months.",
        )
    return value
