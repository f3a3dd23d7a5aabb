"""The stack: Airflow on Kubernetes, configured by Pulumi.<stack>.yaml."""

import pulumi

from components import AirflowRelease
from components import stack as stack_config

cfg = stack_config.load()


def _secret(value: str | None) -> pulumi.Output[str] | None:
    return None if value is None else pulumi.Output.secret(value)


airflow = AirflowRelease(
    "airflow",
    {
        "settings": cfg.airflow,
        "database_url": _secret(cfg.secrets.database_url),
        "git_token": _secret(cfg.secrets.git_token),
        "git_ssh_key": _secret(cfg.secrets.git_ssh_key),
    },
)

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
