"""Pulumi components that run Apache Airflow on Kubernetes."""

from ._reader import ConfigError
from .airflow import AirflowRelease, AirflowReleaseArgs
from .config import AirflowConfig, parse_airflow
from .keda import KedaOperator, KedaOperatorArgs
from .keda_config import KedaConfig, parse_keda
from .logs import LogStorage, LogStorageArgs
from .logs_config import LogsConfig, parse_logs
from .monitoring import Monitoring, MonitoringArgs
from .monitoring_config import MonitoringConfig, parse_monitoring
from .spark import SparkOperator, SparkOperatorArgs
from .spark_config import SparkConfig, parse_spark
from .teams import TaskNamespace, TaskNamespaceArgs
from .teams_config import Team, parse_teams

__all__ = [
    "AirflowConfig",
    "AirflowRelease",
    "AirflowReleaseArgs",
    "ConfigError",
    "KedaConfig",
    "KedaOperator",
    "KedaOperatorArgs",
    "LogStorage",
    "LogStorageArgs",
    "LogsConfig",
    "Monitoring",
    "MonitoringArgs",
    "MonitoringConfig",
    "SparkConfig",
    "SparkOperator",
    "SparkOperatorArgs",
    "TaskNamespace",
    "TaskNamespaceArgs",
    "Team",
    "parse_airflow",
    "parse_keda",
    "parse_logs",
    "parse_monitoring",
    "parse_spark",
    "parse_teams",
]
