"""The typed stack configuration (what `components.platform.config.parse_stack` returns).

Its own module so the stack-wide guards (components/platform/guards.py), which check a parsed
StackConfig, sit below the parser that calls them: no import loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..airflow.config.airflow import AirflowConfig, StackSecrets
from ..airflow.config.maintenance import MaintenanceConfig
from ..keda.config import KedaConfig
from ..logs.config import LogsConfig
from ..monitoring.config import MonitoringConfig
from ..spark.config import SparkConfig
from ..teams.config import Team
from .identity_config import IdentityConfig


@dataclass(frozen=True)
class ClusterConfig:
    """What the cluster already has: declared, so the preview never assumes it."""

    storage_classes: tuple[str, ...] = ()
    ingress_classes: tuple[str, ...] = ()
    persistent_volume_claims: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    pods: tuple[str, ...] = ()  # "namespace/key=value,key=value" of pods the cluster runs
    secrets: tuple[str, ...] = ()  # "namespace/name" Secrets that exist before the stack
    kubernetes_version: str = "1.31"
    environment: str = "production"
    # API versions the cluster serves beyond Kubernetes' own ("cert-manager.io/v1", with or without
    # "/Kind"): CRDs others installed. Charts branch on them (`.Capabilities.APIVersions.Has`).
    api_versions: tuple[str, ...] = ()

    @property
    def production(self) -> bool:
        return self.environment == "production"


@dataclass(frozen=True)
class StackConfig:
    airflow: AirflowConfig
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    secrets: StackSecrets = field(default_factory=StackSecrets)
    logs: LogsConfig = field(default_factory=LogsConfig)
    logs_connection: str | None = None
    spark: SparkConfig = field(default_factory=SparkConfig)  # off unless the `spark` key is set
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)  # off unless set
    teams: tuple[Team, ...] = ()
    team_secrets: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    connections: dict[str, str] = field(default_factory=dict)  # `connections` (secret): id -> URI/JSON
    variables: dict[str, str] = field(default_factory=dict)  # `variables`: key -> text
    previous_fernet_keys: tuple[str, ...] = ()  # `previousFernetKeys` (secret)
    task_images: dict[str, str] = field(default_factory=dict)  # `taskImages`: role -> pinned image
    keda: KedaConfig = field(default_factory=KedaConfig)  # Celery workers scaled by KEDA; off unless set
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)  # metadata backups and cleanup
    identity: IdentityConfig = field(default_factory=IdentityConfig)  # cloud identity of the pods; off unless set
    identity_change: str | None = None  # `identityChange`: '<old namespace>/<old release>' (deployed.py)
