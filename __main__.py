"""The stack: Airflow on Kubernetes, configured by Pulumi.<stack>.yaml."""

import pulumi

from components.platform import config as stack_config
from components.platform.component import AirflowPlatform

cfg = stack_config.load()
# AirflowPlatform refuses a change that would lose data (components/platform/deployed.py) before
# anything is declared, and exports what it deployed as `deployedIdentity`.
platform = AirflowPlatform.from_config("airflow", cfg)
airflow = platform.airflow

monitoring = platform.monitoring
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

for team_name, task_namespace in platform.teams.items():
    pulumi.export(f"team-{team_name}-namespace", task_namespace.namespace)
    pulumi.export(f"team-{team_name}-serviceAccount", task_namespace.service_account)

spark = platform.spark
if spark is not None:
    pulumi.export("sparkNamespace", spark.namespace)
    pulumi.export("sparkJobNamespaces", spark.job_namespaces)
    pulumi.export("sparkDriverServiceAccount", spark.driver_service_account)
    pulumi.export("sparkSubmitters", spark.submitters)

if platform.keda is not None:
    pulumi.export("kedaNamespace", platform.keda.namespace)

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
