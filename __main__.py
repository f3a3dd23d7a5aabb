"""The stack: Airflow on Kubernetes, configured by Pulumi.<stack>.yaml."""

import pulumi

from components import AirflowRelease, KedaOperator, Monitoring, SparkOperator, TaskNamespace, deployed
from components import stack as stack_config
from components.airflow_values import airflow_api_port, deep_merge
from components.environment_config import merged
from components.identity_values import airflow_values as identity_airflow_values
from components.identity_values import spark_accounts
from components.keda_values import airflow_values as keda_airflow_values
from components.maintenance_values import airflow_values as maintenance_airflow_values
from components.monitoring_values import airflow_values as monitoring_airflow_values
from components.spark_values import airflow_connections, airflow_variables
from components.task_images import task_image_variables

cfg = stack_config.load()
# A change that would lose data because of what it changes from (release name, namespace, Fernet
# generation) is refused before anything is declared: components/deployed.py.
deployed.check_change(deployed.previous_identity(), cfg, cfg.identity_change)


def _secret(value: str | None) -> pulumi.Output[str] | None:
    return None if value is None else pulumi.Output.secret(value)


def _secrets(entries: dict[str, str]) -> dict[str, pulumi.Input[str]]:
    return {key: pulumi.Output.secret(value) for key, value in entries.items()}


# KEDA first when the stack installs it: the workers' ScaledObject needs its CRDs.
keda = KedaOperator("keda", {"settings": cfg.keda, "airflow_settings": cfg.airflow}) if cfg.keda.install else None

airflow = AirflowRelease(
    "airflow",
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
        # KEDA: the chart's ScaledObject for the Celery workers; the chart's finished-pod cleanup.
        "extra_values": deep_merge(
            deep_merge(
                monitoring_airflow_values(cfg.monitoring, cfg.airflow), keda_airflow_values(cfg.keda, cfg.airflow)
            ),
            deep_merge(
                maintenance_airflow_values(cfg.airflow, cfg.maintenance),
                identity_airflow_values(cfg.identity, cfg.airflow),
            ),
        ),
        # Metadata database backups (pg_dump CronJob, retained claim) and `airflow db clean`.
        "maintenance": cfg.maintenance,
        "after": [keda] if keda is not None else [],
    },
)

# Declared in every mode (with `off`, only Grafana's key material): see components/monitoring.py.
monitoring = Monitoring("monitoring", {"settings": cfg.monitoring, "airflow": airflow})
if cfg.monitoring.enabled:
    pulumi.export("monitoringNamespace", monitoring.namespace)
    pulumi.export("grafanaServiceName", monitoring.grafana_service)
    pulumi.export("prometheusServiceName", monitoring.prometheus_service)
    pulumi.export("alertmanagerServiceName", monitoring.alertmanager_service)
    pulumi.export("grafanaDashboard", monitoring.dashboard_name)
    pulumi.export("grafanaAdminUsername", monitoring.grafana_admin_user)
    pulumi.export("grafanaAdminPassword", monitoring.grafana_admin_password)
    if cfg.monitoring.install is not None:
        pulumi.export(
            "grafanaPortForward",
            pulumi.Output.concat(
                "kubectl port-forward -n ",
                monitoring.namespace.apply(str),
                " svc/",
                monitoring.grafana_service.apply(str),
                " 3000:80",
            ),
        )

# Team task namespaces for KubernetesPodOperator: isolated, with their own Secrets.
for team in cfg.teams:
    task_namespace = TaskNamespace(
        f"team-{team.name}",
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
    )
    pulumi.export(f"team-{team.name}-namespace", task_namespace.namespace)
    pulumi.export(f"team-{team.name}-serviceAccount", task_namespace.service_account)

if cfg.spark.enabled:
    spark = SparkOperator(
        "spark",
        {
            "settings": cfg.spark,
            "airflow_namespace": airflow.namespace,
            "airflow_service_accounts": airflow.task_service_accounts,
            # Cloud identity of the driver and executors (IRSA, GKE or Azure workload identity).
            "service_account_metadata": spark_accounts(cfg.identity),
        },
    )
    pulumi.export("sparkNamespace", spark.namespace)
    pulumi.export("sparkJobNamespaces", spark.job_namespaces)
    pulumi.export("sparkDriverServiceAccount", spark.driver_service_account)
    pulumi.export("sparkSubmitters", spark.submitters)

if keda is not None:
    pulumi.export("kedaNamespace", keda.namespace)

pulumi.export(deployed.OUTPUT, deployed.identity(cfg))
pulumi.export("namespace", airflow.namespace)
pulumi.export("releaseName", airflow.release_name)
pulumi.export("serviceAccounts", airflow.service_accounts)
pulumi.export("taskServiceAccounts", airflow.task_service_accounts)
pulumi.export("uiServiceName", airflow.ui_service_name)
pulumi.export("uiServicePort", airflow.ui_service_port)
pulumi.export("adminUsername", airflow.admin_username)
pulumi.export("adminPassword", airflow.admin_password)
pulumi.export(
    "uiPortForward",
    pulumi.Output.concat(
        "kubectl port-forward -n ",
        airflow.namespace,
        " svc/",
        airflow.ui_service_name,
        " 8080:",
        airflow.ui_service_port.apply(str),
    ),
)
