"""AirflowPlatform: Airflow, its logs, Spark, monitoring and team namespaces from one config.

It does the wiring between the capabilities (monitoring's and KEDA's values into AirflowRelease,
Spark's and `taskImages`' connections and Variables merged with the stack's own, the operators
bound to Airflow's namespace). The names of its children and their aliases to the places they had
before it existed: docs/packages.md ("Names and URNs"), proven by `python -m tests.golden`.

No `from __future__ import annotations` here: the component package's schema is inferred from
these annotations at run time (see components/provider.py).
"""

from collections.abc import Coroutine, Mapping
from typing import Any, NotRequired, TypedDict

import pulumi

from ..airflow.component import AirflowRelease
from ..airflow.config.task_images import task_image_variables
from ..airflow.values.chart import airflow_api_port
from ..core.arguments import as_arguments
from ..core.merge import deep_merge
from ..core.outputs import register_annotated_outputs
from ..core.reader import ConfigError
from ..keda.component import KedaOperator
from ..keda.values import airflow_values as keda_airflow_values
from ..monitoring.component import Monitoring
from ..monitoring.values import airflow_values as monitoring_airflow_values
from ..spark.component import SparkOperator
from ..spark.values import airflow_connections, airflow_variables
from ..teams.component import TaskNamespace
from . import deployed
from .config import StackConfig, parse_stack
from .environment import merged
from .identity_values import airflow_values as identity_airflow_values, spark_accounts
from .keys import STACK_KEYS

PACKAGE = "airflow-k8s"
STACK_PROGRAM_NAME = deployed.STACK_PROGRAM_NAME
"""The platform name of this project's own stack program: its children keep their historical names."""

# Python argument name -> the stack config key it mirrors (Pulumi.<stack>.yaml, without the project prefix).
CONFIG_KEYS: dict[str, str] = {key.arg: key.name for key in STACK_KEYS}

ARGUMENTS: dict[str, str] = {key.name: key.arg for key in STACK_KEYS}
"""Stack config key -> the Python argument that holds it (messages name the argument)."""

SECRET_ARGS: tuple[str, ...] = tuple(key.arg for key in STACK_KEYS if key.secret)
"""Arguments that hold credentials: marked secret in the package schema, kept secret in state."""


class AirflowPlatformArgs(TypedDict):
    """Everything the platform deploys, with the same keys and meaning as the stack config
    (Pulumi.<stack>.yaml; the configuration reference in the docs describes each key).
    Parsed and validated before any resource is declared."""

    airflow: NotRequired[dict[str, Any]]
    """The `airflow` object: version, executor, namespace, DAGs, database, ingress, resources...
    (default: the laptop defaults of the configuration reference)."""
    cluster: NotRequired[dict[str, Any]]
    """The `cluster` object: what the cluster already has (storage classes, namespaces...) and its
    `environment`, `laptop` or `production` (default)."""
    logs: NotRequired[dict[str, Any]]
    """The `logs` object: the shared logs volume, remote logging and retention."""
    spark: NotRequired[dict[str, Any]]
    """The `spark` object: when set, the Kubeflow spark-operator and its job namespaces are installed."""
    monitoring: NotRequired[dict[str, Any]]
    """The `monitoring` object: scrape annotations, or a kube-prometheus-stack install with
    ServiceMonitors, alert rules and a Grafana dashboard."""
    teams: NotRequired[list[dict[str, Any]]]
    """The `teams` list: one isolated task namespace per team for KubernetesPodOperator."""
    task_images: NotRequired[dict[str, str]]
    """The `taskImages` object: role -> pinned image, delivered as `k8s_image_<role>` Variables."""
    keda: NotRequired[dict[str, Any]]
    """The `keda` object: KEDA autoscaling of the Celery workers (and, with `install`, KEDA itself)."""
    maintenance: NotRequired[dict[str, Any]]
    """The `maintenance` object: metadata database backups, `airflow db clean`, finished-pod cleanup."""
    identity: NotRequired[dict[str, Any]]
    """The `identity` object: the cloud identity (IRSA, GKE or Azure workload identity) of Airflow and Spark pods."""
    variables: NotRequired[pulumi.Input[dict[str, str]]]
    """The `variables` object: Airflow Variables (key -> text), delivered as a file; secret if you pass a secret."""
    connections: NotRequired[pulumi.Input[dict[str, str]]]
    """Secret. The `connections` object: Airflow connections (id -> URI or JSON), delivered as a file."""
    database_url: NotRequired[pulumi.Input[str]]
    """Secret. An external Postgres URL (`postgresql://user:password@host:5432/db`) for the metadata database."""
    git_token: NotRequired[pulumi.Input[str]]
    """Secret. The token git-sync (and the git DAG bundle) uses for an HTTPS DAG repository."""
    git_ssh_key: NotRequired[pulumi.Input[str]]
    """Secret. The private key git-sync (and the git DAG bundle) uses for an SSH DAG repository."""
    logs_connection: NotRequired[pulumi.Input[str]]
    """Secret. The remote-logging connection (URI or JSON) for `logs.remote`."""
    team_secrets: NotRequired[pulumi.Input[dict[str, dict[str, dict[str, str]]]]]
    """Secret. Per team: Secret name -> key -> value, created in that team's namespace only."""
    previous_fernet_keys: NotRequired[pulumi.Input[list[str]]]
    """Secret. Fernet keys of an earlier installation: kept for decrypting only."""
    identity_change: NotRequired[str]
    """`<old namespace>/<old release name>`: confirms, for one `up`, a change of release name or namespace
    (or the drop of a claim holding data) that the platform otherwise refuses because it loses data."""


def _known(value: Any) -> tuple[Any, bool]:
    """(plain value, was secret) of an input.

    The stack config is validated before any resource is declared, so its values must be
    known. A Python caller passes plain values. Through the component package, a secret input
    arrives as an Output whose value the engine already sent (an Output built from known data):
    its value is read directly. Any other Output (a Python `Output.secret(...)`, a resource's
    output) is refused with the key named: pass the plain value, it is kept secret.
    """
    if not isinstance(value, pulumi.Output):
        return value, False
    known = _settled(value.is_known())
    if not known:
        raise ValueError(
            "the value is not known before the deployment, and the config is validated before any resource is "
            "declared. Pass the plain value (AirflowPlatform keeps every credential secret), not a resource output"
        )
    return _settled(value.future()), bool(_settled(value.is_secret()))


def _settled(step: Coroutine[Any, Any, Any]) -> Any:
    """What an Output's coroutine (`future()`, `is_known()`, `is_secret()`) returns when the Output
    has already settled (it then returns without waiting); None when it would have to wait."""
    try:
        step.send(None)
    except StopIteration as done:
        return done.value
    step.close()
    return None


def config_of(args: Mapping[str, Any]) -> StackConfig:
    """The typed stack config of AirflowPlatformArgs, parsed exactly as the stack's own config is."""
    values: dict[str, Any] = {}
    secret_keys: set[str] = set()
    for arg, value in args.items():
        key = CONFIG_KEYS.get(arg)
        if key is None:
            raise ConfigError(arg, "[not shown]", f"unknown argument; known: {', '.join(CONFIG_KEYS)}.")
        if value is None:
            continue
        try:
            plain, was_secret = _known(value)
        except ValueError as exc:
            raise ConfigError(arg, "[not shown]", str(exc)) from None
        if plain is None:
            continue
        values[key] = plain
        if arg in SECRET_ARGS or was_secret:
            secret_keys.add(key)
    return parse_stack(values, secret_keys)


def _secret(value: str | None) -> pulumi.Output[str] | None:
    return None if value is None else pulumi.Output.secret(value)


def _secrets(entries: Mapping[str, str]) -> dict[str, pulumi.Input[str]]:
    return {key: pulumi.Output.secret(value) for key, value in entries.items()}


class AirflowPlatform(pulumi.ComponentResource):
    """Apache Airflow on Kubernetes with its logs, Spark, monitoring and team namespaces,
    from one config: the official Airflow chart with every secret owned by Pulumi."""

    namespace: pulumi.Output[str]
    """The Airflow namespace."""
    release_name: pulumi.Output[str]
    """The Airflow Helm release name."""
    ui_service_name: pulumi.Output[str]
    """The Service of the Airflow UI (API server on Airflow 3, webserver on 2)."""
    ui_service_port: pulumi.Output[int]
    """The port of the UI Service."""
    admin_username: pulumi.Output[str]
    """The first admin user's name."""
    admin_password: pulumi.Output[str]
    """The first admin user's password (secret)."""
    task_service_accounts: pulumi.Output[list[str]]
    """ServiceAccounts that task pods run as."""
    team_namespaces: pulumi.Output[list[str]]
    """The team task namespaces, in config order."""

    def __init__(self, name: str, args: AirflowPlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # A mistake in the arguments is told as the argument path the caller wrote, as one message.
        with as_arguments("AirflowPlatform", name, ARGUMENTS):
            config = config_of(args)
        # A change that would lose data because of what it changes from (release name, namespace,
        # Fernet generation) is refused before anything is declared: components/platform/deployed.py.
        deployed.guard(name, config)
        super().__init__(f"{PACKAGE}:index:AirflowPlatform", name, {}, opts)
        self._declare(name, config)

    @classmethod
    def from_config(
        cls, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None
    ) -> "AirflowPlatform":
        """The platform of an already parsed stack config (`components.platform.config.load()`)."""
        deployed.guard(name, config)
        platform = cls.__new__(cls)
        pulumi.ComponentResource.__init__(platform, f"{PACKAGE}:index:AirflowPlatform", name, {}, opts)
        platform._declare(name, config)
        return platform

    def _child(self) -> pulumi.ResourceOptions:
        """Children sit under the platform; the alias names their place (same name, at the root
        of the stack) before the platform existed."""
        return pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)])

    def _child_name(self, name: str, role: str) -> str:
        return role if name == STACK_PROGRAM_NAME else f"{name}-{role}"

    def _declare(self, name: str, cfg: StackConfig) -> None:
        self.config = cfg
        # KEDA first when the platform installs it: the workers' ScaledObject needs its CRDs.
        self.keda: KedaOperator | None = None
        if cfg.keda.install:
            self.keda = KedaOperator(
                self._child_name(name, "keda"),
                {"settings": cfg.keda, "airflow_settings": cfg.airflow},
                opts=self._child(),
            )
        self.airflow = AirflowRelease(
            name,
            {
                "settings": cfg.airflow,
                "database_url": _secret(cfg.secrets.database_url),
                "git_token": _secret(cfg.secrets.git_token),
                "git_ssh_key": _secret(cfg.secrets.git_ssh_key),
                "logs": cfg.logs,
                "logs_connection": _secret(cfg.logs_connection),
                # Spark on: the in-cluster `kubernetes_default` connection and where DAGs submit jobs;
                # plus the stack's own `connections` and `variables` (secret values; a clash is a ConfigError).
                "connections": merged(_secrets(cfg.connections), airflow_connections(cfg.spark), "connections"),
                # `taskImages`: the k8s_image_<role> Variables that k8s_conventions.image() reads.
                "variables": merged(
                    _secrets(cfg.variables),
                    {**airflow_variables(cfg.spark), **task_image_variables(cfg.task_images)},
                    "variables",
                ),
                # Fernet keys from before (a replaced installation, a destroyed stack): decrypt only.
                "previous_fernet_keys": [pulumi.Output.secret(key) for key in cfg.previous_fernet_keys],
                # Monitoring by annotations: the scrape annotations on the chart's StatsD/PgBouncer;
                # KEDA: the chart's ScaledObject for the Celery workers; the cloud identity of Airflow's
                # ServiceAccounts.
                "extra_values": deep_merge(
                    deep_merge(
                        monitoring_airflow_values(cfg.monitoring, cfg.airflow),
                        keda_airflow_values(cfg.keda, cfg.airflow),
                    ),
                    identity_airflow_values(cfg.identity, cfg.airflow),
                ),
                # Metadata database backups (pg_dump CronJob, retained claim), `airflow db clean` and
                # the cleanup of finished task pods.
                "maintenance": cfg.maintenance,
                "after": [self.keda] if self.keda is not None else [],
            },
            opts=self._child(),
        )
        airflow = self.airflow

        # Declared in every mode (with `off`, only Grafana's key material): see components/monitoring/component.py.
        self.monitoring = Monitoring(
            self._child_name(name, "monitoring"), {"settings": cfg.monitoring, "airflow": airflow}, opts=self._child()
        )

        # Team task namespaces for KubernetesPodOperator: isolated, with their own Secrets.
        self.teams: dict[str, TaskNamespace] = {}
        for team in cfg.teams:
            self.teams[team.name] = TaskNamespace(
                self._child_name(name, f"team-{team.name}"),
                {
                    "team": team,
                    "airflow_namespace": airflow.namespace,
                    "airflow_namespace_name": cfg.airflow.namespace,
                    "release_name": cfg.airflow.release_name,
                    "task_service_accounts": airflow.task_service_accounts,
                    "api_port": airflow_api_port(cfg.airflow),
                    "secrets": {
                        k: {kk: pulumi.Output.secret(vv) for kk, vv in v.items()}
                        for k, v in cfg.team_secrets.get(team.name, {}).items()
                    },
                },
                opts=self._child(),
            )

        self.spark: SparkOperator | None = None
        if cfg.spark.enabled:
            self.spark = SparkOperator(
                self._child_name(name, "spark"),
                {
                    "settings": cfg.spark,
                    "airflow_namespace": airflow.namespace,
                    "airflow_service_accounts": airflow.task_service_accounts,
                    # Cloud identity of the driver and executors (IRSA, GKE or Azure workload identity).
                    "service_account_metadata": spark_accounts(cfg.identity),
                },
                opts=self._child(),
            )

        self.namespace = airflow.namespace
        self.release_name = airflow.release_name
        self.ui_service_name = airflow.ui_service_name
        self.ui_service_port = airflow.ui_service_port
        self.admin_username = airflow.admin_username
        self.admin_password = airflow.admin_password
        self.task_service_accounts = airflow.task_service_accounts
        self.team_namespaces = pulumi.Output.all(*[t.namespace for t in self.teams.values()]).apply(list)
        deployed.record(name, cfg)
        register_annotated_outputs(self)
