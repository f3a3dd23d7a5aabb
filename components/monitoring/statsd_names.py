"""Which Prometheus metric names reach Prometheus from Airflow, and which ones a query reads.

Airflow sends StatsD with the prefix `airflow`; the Airflow chart's statsd-exporter
applies the chart's `files/statsd-mappings.yml`. This module replays what the exporter
does with each name Airflow emits (Airflow's own metric catalogue, `name` and
`legacy_name`, templated parts filled with a marker):

* glob mappings first (`*` is one dot-free part), then regex mappings in order,
  unanchored, as statsd_exporter's mapper does; a match takes the mapping's `name`;
* no match: the StatsD name with every character outside `[a-zA-Z0-9_]` turned into `_`;
* timers become summaries: `<name>` (with `quantile`), `<name>_sum`, `<name>_count`.

A name that still carries the marker only exists per DAG, task or pool value, so no
query can name it; every other result is a name a rule or dashboard may use. PromQL is
read with `promql-parser` (a test and preview dependency, imported when used).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

PREFIX = "airflow"
MARKER = "zzvariable"

# Names Airflow 2.x emits where the 3.x catalogue has another name (Airflow 3 renamed
# "zombie" tasks to "task instances without heartbeats").
AIRFLOW2_NAMES: dict[str, str] = {"airflow_task_instances_without_heartbeats_killed": "airflow_zombies_killed"}

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_VARIABLE = re.compile(r"\{[^}]*\}")


@dataclass(frozen=True)
class StatsdMapping:
    match: str
    match_type: str  # "glob" or "regex"
    name: str
    pattern: re.Pattern[str]


def parse_mappings(text: str) -> list[StatsdMapping]:
    """The mappings of a statsd_exporter mapping file (Helm template comments are YAML comments)."""
    data = yaml.safe_load(text) or {}
    out = []
    for entry in data.get("mappings") or []:
        match = str(entry["match"])
        match_type = str(entry.get("match_type", "glob"))
        if match_type == "glob":
            parts = [re.escape(p) for p in match.split("*")]
            pattern = re.compile("^" + "([^.]+)".join(parts) + "$")
        else:
            pattern = re.compile(match)
        out.append(StatsdMapping(match, match_type, str(entry["name"]), pattern))
    return out


def export_name(statsd_name: str, mappings: Iterable[StatsdMapping]) -> str:
    """The Prometheus name statsd_exporter gives `statsd_name`."""
    ordered = list(mappings)
    for mapping in [m for m in ordered if m.match_type == "glob"] + [m for m in ordered if m.match_type != "glob"]:
        found = (
            mapping.pattern.fullmatch(statsd_name)
            if mapping.match_type == "glob"
            else mapping.pattern.search(statsd_name)
        )
        if found:
            return found.expand(mapping.name.replace("$", "\\")) if mapping.match_type != "glob" else mapping.name
    name = _INVALID.sub("_", statsd_name)
    return f"_{name}" if name[:1].isdigit() else name


def exported_metrics(mapping_text: str, catalogue_text: str, *, airflow_major: int = 3) -> dict[str, str]:
    """Every metric name a query may use -> its Prometheus type (counter, gauge, summary)."""
    mappings = parse_mappings(mapping_text)
    catalogue: list[Mapping[str, Any]] = (yaml.safe_load(catalogue_text) or {}).get("metrics") or []
    found: dict[str, str] = {}
    for metric in catalogue:
        kind = str(metric.get("type", "gauge"))
        forms = [str(metric["name"])]
        legacy = str(metric.get("legacy_name") or "-")
        if legacy != "-":
            forms.append(legacy)
        for form in forms:
            concrete = _VARIABLE.sub(MARKER, form)
            name = export_name(f"{PREFIX}.{concrete}", mappings)
            if MARKER in name:
                continue
            if airflow_major < 3:
                name = AIRFLOW2_NAMES.get(name, name)
            if kind == "timer":
                for suffix in ("", "_sum", "_count"):
                    found[name + suffix] = "summary"
            else:
                found.setdefault(name, kind)
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects. Raises ValueError if it does not parse."""
    import promql_parser

    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(str(node.name))
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.add(str(matcher.value))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


GRAFANA_DURATIONS = ("$__rate_interval", "$__interval", "$__range")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$")


def grafana_query_to_promql(query: str) -> str:
    """A Grafana query as plain PromQL: its interval variables become `5m`, a
    `label_values(selector, label)` variable query becomes its selector."""
    match = _LABEL_VALUES.match(query.strip())
    if match:
        query = match.group("selector")
    for variable in GRAFANA_DURATIONS:
        query = query.replace(variable, "5m")
    return query


def unknown_airflow_metrics(expressions: Iterable[str], known: Iterable[str]) -> list[tuple[str, str]]:
    """(metric, expression) for every `airflow_*` metric an expression reads that Airflow's
    StatsD metrics, through the chart's mapping, never produce."""
    allowed = set(known)
    problems = []
    for expr in expressions:
        for name in sorted(metric_names(grafana_query_to_promql(expr))):
            if name.startswith(f"{PREFIX}_") and name not in allowed:
                problems.append((name, expr))
    return problems
