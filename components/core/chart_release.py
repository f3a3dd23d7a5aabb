"""The Pulumi wiring of a chart: one `helm.v3.Release` the way every component installs one.

Apart from components/core/charts.py (where a chart comes from, parsed with the config) so the config
layer never imports Pulumi.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .charts import ChartSource


def helm_release(
    chart_source: ChartSource,
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
    chart: dict[str, Any] = (
        {"chart": chart_source.path}
        if chart_source.path
        else {
            "chart": chart_source.name,
            "version": chart_source.version,
            "repository_opts": k8s.helm.v3.RepositoryOptsArgs(repo=chart_source.repository),
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


def own_namespace(
    resource_name: str, name: str, labels: dict[str, str], *, create: bool, opts: pulumi.ResourceOptions
) -> tuple[pulumi.Output[str], list[pulumi.Resource]]:
    """The namespace a component installs into: declared (and then a dependency) when `create`,
    else the one the cluster already has, by name."""
    if not create:
        return pulumi.Output.from_input(name), []
    ns = k8s.core.v1.Namespace(resource_name, metadata={"name": name, "labels": labels}, opts=opts)
    return ns.metadata.name, [ns]
