"""KedaOperator: KEDA from its upstream chart, in a namespace of its own, for Celery workers that scale to zero."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import pulumi

from ..airflow.config.airflow import AirflowConfig, parse_airflow
from ..core.chart_release import helm_release, own_namespace
from ..core.outputs import register_annotated_outputs
from ..core.reader import ConfigError
from .config import KedaConfig, KedaInstall, parse_keda
from .values import chart_values

PACKAGE = "airflow-k8s"


class KedaOperatorArgs(TypedDict):
    """Inputs of KedaOperator."""

    settings: KedaConfig | Mapping[str, Any]
    """A `KedaConfig` with `mode: install`, or a mapping of the same shape as the `keda` stack
    config key (documented in docs/configuration.md), which is validated here against `airflow_settings`."""

    airflow_settings: AirflowConfig | Mapping[str, Any]
    """The settings of the Airflow release whose workers KEDA scales (an `AirflowConfig` or a
    mapping shaped like the `airflow` stack key): its executor must run Celery workers."""


class KedaOperator(pulumi.ComponentResource):
    """KEDA (operator, metrics API server and, unless switched off, admission webhooks) with its CRDs.

    Children (named `<name>-<role>`): the namespace (unless it exists; pods there are held to
    the "restricted" Pod Security Standard) and one `helm.v3.Release`. Declare the AirflowRelease
    whose chart renders the ScaledObject after it (`AirflowReleaseArgs.after`), so the
    ScaledObject CRD exists first.
    """

    namespace: pulumi.Output[str]
    """KEDA's namespace."""
    release_name: pulumi.Output[str]
    """The Helm release name."""
    webhooks: pulumi.Output[bool]
    """Whether KEDA's admission webhooks (which validate ScaledObjects on admission) run."""

    def __init__(self, name: str, args: KedaOperatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{PACKAGE}:index:KedaOperator", name, {}, opts)
        install = self._settings(args)
        self.config = install
        child = pulumi.ResourceOptions(parent=self)
        labels = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "keda"}

        namespace, depends = own_namespace(
            f"{name}-namespace",
            install.namespace,
            {**labels, "pod-security.kubernetes.io/enforce": "restricted"},
            create=install.create_namespace,
            opts=child,
        )

        # CRDs are templates of this chart (templates/crds/): installed and upgraded with it.
        self.release = helm_release(
            install.chart,
            f"{name}-release",
            release_name=install.release_name,
            namespace=namespace,
            values=chart_values(install),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
            timeout=600,
        )

        self.namespace = namespace
        self.release_name = self.release.name.apply(lambda n: n or install.release_name)
        self.webhooks = pulumi.Output.from_input(install.webhooks)
        register_annotated_outputs(self)

    @staticmethod
    def _settings(args: KedaOperatorArgs) -> KedaInstall:
        settings = args["settings"]
        if isinstance(settings, KedaConfig):
            cfg = settings
        else:
            airflow = args["airflow_settings"]
            airflow_cfg = airflow if isinstance(airflow, AirflowConfig) else parse_airflow(airflow)
            cfg = parse_keda(settings, airflow_cfg)
        if cfg.install is None:
            raise ConfigError(
                "keda.mode",
                cfg.mode,
                "KedaOperator installs KEDA: it needs mode 'install'; do not declare it otherwise.",
            )
        return cfg.install
