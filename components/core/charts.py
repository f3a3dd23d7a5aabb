"""Where an upstream chart comes from: a repository and pinned version, or a local path.

Shared by every component that installs a chart, so the `chart` config object reads
and behaves the same for Airflow, the Spark Operator and kube-prometheus-stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .names import url_host
from .reader import ConfigError, Node, semver

_REPOSITORY = re.compile(r"^(https?|oci|file)://\S+$")


@dataclass(frozen=True)
class ChartSource:
    """A chart by name and pinned version from a repository, or from a local folder or .tgz."""

    name: str
    version: str
    repository: str
    path: str | None = None


def parse_chart_source(node: Node, default: ChartSource) -> ChartSource:
    """Read a `chart` object ({version, repository, path}) onto `default`."""
    chart_node = node.mapping("chart")
    chart = ChartSource(
        name=default.name,
        version=semver(chart_node.key("version"), chart_node.string("version", default.version)),
        repository=chart_node.string(
            "repository",
            default.repository,
            pattern=_REPOSITORY,
            describe="expected an http(s)://, oci:// or file:// chart repository URL.",
        ),
        path=chart_node.string("path", None),
    )
    url_host(chart_node.key("repository"), chart.repository)
    if chart.path is not None and chart_node.has("repository"):
        raise ConfigError(chart_node.key("path"), chart.path, "set either chart.path or chart.repository, not both.")
    chart_node.finish()
    return chart
