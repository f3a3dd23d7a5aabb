"""Pulumi components that run Apache Airflow on Kubernetes."""

from components.airflow.component import AirflowRelease, AirflowReleaseArgs
from components.airflow.config import AirflowConfig, parse_airflow
from components.core.reader import ConfigError
from components.keda.component import KedaOperator, KedaOperatorArgs
from components.keda.config import KedaConfig, parse_keda
from components.logs.component import LogStorage, LogStorageArgs
from components.logs.config import LogsConfig, parse_logs
from components.monitoring.component import Monitoring, MonitoringArgs
from components.monitoring.config import MonitoringConfig, parse_monitoring
from components.platform.component import AirflowPlatform, AirflowPlatformArgs
from components.spark.component import SparkOperator, SparkOperatorArgs
from components.spark.config import SparkConfig, parse_spark
from components.teams.component import TaskNamespace, TaskNamespaceArgs
from components.teams.config import Team, parse_teams

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
