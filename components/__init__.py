"""Pulumi components that run Apache Airflow on Kubernetes."""

from .airflow.component import AirflowRelease, AirflowReleaseArgs
from .airflow.config.airflow import AirflowConfig, parse_airflow
from .core.reader import ConfigError
from .keda.component import KedaOperator, KedaOperatorArgs
from .keda.config import KedaConfig, parse_keda
from .logs.component import LogStorage, LogStorageArgs
from .logs.config import LogsConfig, parse_logs
from .monitoring.component import Monitoring, MonitoringArgs
from .monitoring.config import MonitoringConfig, parse_monitoring
from .platform.component import AirflowPlatform, AirflowPlatformArgs
from .spark.component import SparkOperator, SparkOperatorArgs
from .spark.config import SparkConfig, parse_spark
from .teams.component import TaskNamespace, TaskNamespaceArgs
from .teams.config import Team, parse_teams

__all__ = [
    "AirflowConfig",
    "AirflowPlatform",
    "AirflowPlatformArgs",
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
