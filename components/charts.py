"""Where an upstream chart comes from: a repository and pinned version, or a local path.

Shared by every component that installs a chart, so the `chart` config object reads
and behaves the same for Airflow, the Spark Operator and kube-prometheus-stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ._reader import ConfigError, Node, semver

_REPOSITORY = re.compile(r"^(https?|oci|file)://\S+$")


@dataclass(frozen=True)
class ChartSource:
    """A chart by name and pinned version from a repository, or from a local folder or .tgz."""

    name: str
    version: str
    repository: str
    path: str | None = None

    def release(
        self,
        resource_name: str,
        *,
        release_name: str,
        namespace: Any,
        values: Any,
        opts: Any,
        timeout: int = 900,
    ) -> Any:
        """The `helm.v3.Release` of this chart, as every component installs one: into a namespace
        the component manages (never Helm's create_namespace), with bounded history."""
        import pulumi_kubernetes as k8s

        chart: dict[str, Any] = (
            {"chart": self.path}
            if self.path
            else {
                "chart": self.name,
                "version": self.version,
                "repository_opts": k8s.helm.v3.RepositoryOptsArgs(repo=self.repository),
            }
        )
        return k8s.helm.v3.Release(
            resource_name,
            name=release_name,
            namespace=namespace,
            values=values,
            create_namespace=False,
            timeout=timeout,
            max_history=10,
            opts=opts,
            **chart,
        )


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
    if chart.path is not None and chart_node.has("repository"):
        raise ConfigError(chart_node.key("path"), chart.path, "set either chart.path or chart.repository, not both.")
    chart_node.finish()
    return chart
