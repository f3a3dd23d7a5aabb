"""Which Airflow versions a pinned Airflow chart supports, checked before anything is declared.

The chart decides what it renders from `airflowVersion` (semver comparisons in its templates):
an Airflow release newer than the chart's own (its `appVersion`) can need templates, settings or
migrations the chart does not know yet. So an Airflow minor newer than the chart's is refused
with the chart upgrade it needs (docs/upgrades.md, "A chart upgrade"); patches of the chart's
minor are fine. Charts other than the ones listed are not checked (their support is unknown here).
"""

from __future__ import annotations

from ...core.charts import ChartSource
from ...core.reader import ConfigError, version_tuple

# Airflow chart version -> (oldest, newest Airflow it supports): its values.schema.json says
# "Version 2.11.0 and above is supported"; its appVersion is the newest minor it knows.
AIRFLOW_SUPPORT: dict[str, tuple[str, str]] = {"1.21.0": ("2.11.0", "3.2.0")}


def check_chart_supports(key: str, version: str, chart: ChartSource) -> None:
    """Raise a ConfigError at `key` when Airflow `version` needs a newer chart than `chart`."""
    support = AIRFLOW_SUPPORT.get(chart.version)
    if support is None or chart.path is not None:
        return
    newest = version_tuple(support[1])
    wanted = version_tuple(version)
    if wanted[:2] > newest[:2]:
        raise ConfigError(
            key,
            version,
            f"Airflow {version} needs a newer Airflow chart than the pinned {chart.name} {chart.version}, which "
            f"supports Airflow {support[0]} to {newest[0]}.{newest[1]}.x (its appVersion is {support[1]}).",
            "upgrade the chart first (airflow.chart.version, to a release whose appVersion is at least "
            f"{wanted[0]}.{wanted[1]}; see docs/upgrades.md, 'A chart upgrade'), then Airflow; or stay on "
            f"{newest[0]}.{newest[1]}.x.",
        )
