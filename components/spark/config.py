"""Typed configuration of the Spark Operator (the `spark` stack config key), parsed once at the edge.

`parse_spark` turns the `spark` object (documented in docs/configuration.md) into an immutable
`SparkConfig`. Everything is checked here, before any resource is declared: names,
the job namespaces (at least one, valid, distinct, never a system namespace, never the
operator's or Airflow's own namespace), replicas and resources. Errors are
`ConfigError`s naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.charts import ChartSource, parse_chart_source
from ..core.names import SYSTEM_NAMESPACES
from ..core.reader import ConfigError, ConfigTypeError, Node, dns_label
from ..core.resources import Resources, parse_resources

DEFAULT_CHART_VERSION = "2.5.2"
DEFAULT_CHART_REPOSITORY = "https://kubeflow.github.io/spark-operator"
SPARK_CHART = ChartSource("spark-operator", DEFAULT_CHART_VERSION, DEFAULT_CHART_REPOSITORY)
DEFAULT_NAMESPACE = "spark-operator"
DEFAULT_RELEASE_NAME = "spark-operator"
DEFAULT_JOB_NAMESPACE = "spark-jobs"
DEFAULT_DRIVER_SERVICE_ACCOUNT = "spark-driver"
DEFAULT_EXECUTOR_SERVICE_ACCOUNT = "spark-executor"

# Namespaces Kubernetes itself owns, or that everything shares: Spark drivers may create
# pods in a job namespace, so a pod there could run as any ServiceAccount of it.

# The release name prefixes every object of the chart; the longest is `<release>-spark-operator-webhook-svc`,
# a Service name (a DNS label of at most 63 characters).
MAX_RELEASE_NAME = 30


@dataclass(frozen=True)
class JobNamespace:
    """A namespace the operator watches and Airflow submits SparkApplications to."""

    name: str
    create: bool = True


@dataclass(frozen=True)
class OperatorPods:
    """Replicas and resources of the controller or the webhook (a budget is added from 2 replicas)."""

    replicas: int = 1
    resources: Resources = field(default_factory=Resources)


@dataclass(frozen=True)
class SparkServiceAccounts:
    """The ServiceAccounts Spark pods run as in every job namespace."""

    driver: str = DEFAULT_DRIVER_SERVICE_ACCOUNT
    executor: str = DEFAULT_EXECUTOR_SERVICE_ACCOUNT


@dataclass(frozen=True)
class SparkConfig:
    """Everything SparkOperator needs, validated. Off unless the stack sets the `spark` key."""

    enabled: bool = False
    namespace: str = DEFAULT_NAMESPACE
    create_namespace: bool = True
    release_name: str = DEFAULT_RELEASE_NAME
    chart: ChartSource = field(default_factory=lambda: SPARK_CHART)
    job_namespaces: tuple[JobNamespace, ...] = (JobNamespace(DEFAULT_JOB_NAMESPACE),)
    service_accounts: SparkServiceAccounts = field(default_factory=SparkServiceAccounts)
    controller: OperatorPods = field(default_factory=OperatorPods)
    webhook: OperatorPods = field(default_factory=OperatorPods)
    extra_values: dict[str, Any] = field(default_factory=dict)

    @property
    def job_namespace_names(self) -> tuple[str, ...]:
        return tuple(job.name for job in self.job_namespaces)

    @property
    def default_job_namespace(self) -> str:
        """Where DAGs submit SparkApplications unless they say otherwise: the first job namespace."""
        return self.job_namespaces[0].name


def _not_system(key: str, value: str, what: str) -> str:
    if value in SYSTEM_NAMESPACES or value.startswith("kube-"):
        raise ConfigError(
            key,
            value,
            f"{what} must be a namespace of its own, not a system or shared namespace "
            f"({', '.join(SYSTEM_NAMESPACES)}, or any kube-* namespace).",
            "use a dedicated namespace such as 'spark-jobs'.",
        )
    return value


def _job_namespaces(node: Node, operator_namespace: str, airflow_namespace: str | None) -> tuple[JobNamespace, ...]:
    key = node.key("jobNamespaces")
    names_or_objects = {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "object"}]}}
    raw = node.raw("jobNamespaces", [DEFAULT_JOB_NAMESPACE], accepts=names_or_objects)
    if not isinstance(raw, list):
        raise ConfigTypeError(key, raw, "expected a list of namespace names (or {name, create} objects).")
    if not raw:
        raise ConfigError(
            key,
            raw,
            "at least one job namespace is needed: the operator only runs SparkApplications in the namespaces "
            "listed here (an empty list would make the chart watch every namespace with cluster-wide rights).",
            f"set {key} to a list such as [{DEFAULT_JOB_NAMESPACE}].",
        )
    found: list[JobNamespace] = []
    for i, entry in enumerate(raw):
        item_key = f"{key}[{i}]"
        if isinstance(entry, str):
            job = JobNamespace(dns_label(item_key, entry))
        elif isinstance(entry, dict):
            sub = Node(entry, item_key)
            name = dns_label(sub.key("name"), sub.string("name"))
            job = JobNamespace(name, create=sub.boolean("create", True))
            sub.finish()
        else:
            raise ConfigTypeError(item_key, entry, "expected a namespace name, or an object {name, create}.")
        where = f"{item_key}.name" if isinstance(entry, dict) else item_key
        _not_system(where, job.name, "a Spark job namespace")
        if job.name in (j.name for j in found):
            raise ConfigError(where, job.name, "each job namespace may be listed only once.")
        if job.name == operator_namespace:
            raise ConfigError(
                where,
                job.name,
                "a job namespace must not be the operator's own namespace: Spark drivers may create pods there, "
                "and such a pod could run as the operator's ServiceAccount.",
                f"use another namespace, or move the operator with {node.key('namespace')}.",
            )
        if airflow_namespace is not None and job.name == airflow_namespace:
            raise ConfigError(
                where,
                job.name,
                "a job namespace must not be Airflow's namespace: Spark drivers may create pods there, and such a "
                "pod could run as an Airflow ServiceAccount and read Airflow's secrets.",
                "use a dedicated namespace such as 'spark-jobs'.",
            )
        found.append(job)
    return tuple(found)


def _operator_pods(node: Node, name: str) -> OperatorPods:
    sub = node.mapping(name)
    pods = OperatorPods(
        replicas=sub.integer("replicas", 1, low=1, high=10), resources=parse_resources(sub, "resources")
    )
    sub.finish()
    return pods


def parse_spark(raw: Any, *, airflow_namespace: str | None = None, key: str = "spark") -> SparkConfig:
    """Parse and validate the `spark` config object. Raises ConfigError.

    A present `spark` object is enabled unless it says `enabled: false` (it is still fully
    checked then). `airflow_namespace` is the namespace of the Airflow release that submits
    jobs, which must not double as a job namespace or the operator's namespace.
    """
    node = Node(raw, key)
    enabled = node.boolean("enabled", True)
    namespace = dns_label(node.key("namespace"), node.string("namespace", DEFAULT_NAMESPACE))
    _not_system(node.key("namespace"), namespace, "the Spark Operator")
    if airflow_namespace is not None and namespace == airflow_namespace:
        raise ConfigError(
            node.key("namespace"),
            namespace,
            "the Spark Operator needs a namespace of its own, not Airflow's: Airflow's pod-launching "
            "ServiceAccounts could otherwise run pods as the operator's ServiceAccount.",
            f"set {node.key('namespace')} to e.g. '{DEFAULT_NAMESPACE}'.",
        )
    create_namespace = node.boolean("createNamespace", True)
    release = dns_label(
        node.key("releaseName"), node.string("releaseName", DEFAULT_RELEASE_NAME), max_len=MAX_RELEASE_NAME
    )

    chart = parse_chart_source(node, SPARK_CHART)

    jobs = _job_namespaces(node, namespace, airflow_namespace)

    sa_node = node.mapping("serviceAccounts")
    accounts = SparkServiceAccounts(
        driver=dns_label(sa_node.key("driver"), sa_node.string("driver", DEFAULT_DRIVER_SERVICE_ACCOUNT), max_len=253),
        executor=dns_label(
            sa_node.key("executor"), sa_node.string("executor", DEFAULT_EXECUTOR_SERVICE_ACCOUNT), max_len=253
        ),
    )
    sa_node.finish()
    for role, value in (("driver", accounts.driver), ("executor", accounts.executor)):
        if value == "default":
            raise ConfigError(
                sa_node.key(role),
                value,
                "Spark pods must not run as the namespace's 'default' ServiceAccount, which every other pod "
                "there uses too.",
            )
    if accounts.driver == accounts.executor:
        raise ConfigError(
            sa_node.key("executor"),
            accounts.executor,
            f"executors need an account of their own, without the driver's rights ({sa_node.key('driver')} is "
            f"{accounts.driver!r}).",
        )

    controller = _operator_pods(node, "controller")
    webhook = _operator_pods(node, "webhook")

    extra_values = node.plain_object("extraValues")
    if "spark" in extra_values:
        raise ConfigError(
            f"{node.key('extraValues')}.spark",
            extra_values["spark"],
            "the chart's `spark` values (job namespaces, Spark ServiceAccounts and their RBAC) are owned by the "
            "typed keys, so namespaces, RBAC and Airflow's grants always agree.",
            f"use {node.key('jobNamespaces')} and {node.key('serviceAccounts')}.",
        )
    node.finish()

    return SparkConfig(
        enabled=enabled,
        namespace=namespace,
        create_namespace=create_namespace,
        release_name=release,
        chart=chart,
        job_namespaces=jobs,
        service_accounts=accounts,
        controller=controller,
        webhook=webhook,
        extra_values=extra_values,
    )
