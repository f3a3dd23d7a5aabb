"""Pulumi components that run Apache Airflow on Kubernetes."""

from ._reader import ConfigError
from .airflow import AirflowRelease, AirflowReleaseArgs
from .config import AirflowConfig, parse_airflow

__all__ = [
    "AirflowConfig",
    "AirflowRelease",
    "AirflowReleaseArgs",
    "ConfigError",
    "parse_airflow",
]
