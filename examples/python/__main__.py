"""Airflow on a laptop cluster (minikube or kind) from a Python program: one AirflowPlatform,
configured with the same keys as this project's Pulumi.<stack>.yaml (the configuration reference),
as a program of your own would declare it. `pulumi up` deploys it to the current kubeconfig context.
"""

import pulumi
from pulumi_airflow_k8s import AirflowPlatform

config = pulumi.Config()
# Where the Airflow chart comes from (default: the chart's public repository, pinned by the package).
chart = config.get_object("chart")
kubernetes_version = config.get("kubernetesVersion")

platform = AirflowPlatform(
    "airflow",
    {
        "airflow": {
            "namespace": config.get("namespace") or "airflow-py",
            "releaseName": "airflow",
            "executor": "KubernetesExecutor",
            "dags": {"mode": "hostPath", "hostPath": {"path": "/data/airflow-dags"}},
            "database": {"mode": "bundled", "storageSize": "2Gi"},
            **({"chart": chart} if chart else {}),
        },
        "logs": {"mode": "hostPath", "size": "5Gi", "hostPath": {"path": "/data/airflow-logs"}},
        "cluster": {
            "environment": "laptop",
            "storageClasses": ["standard"],
            **({"kubernetesVersion": kubernetes_version} if kubernetes_version else {}),
        },
        # Credentials (database_url, git_token, connections, ...) are passed as plain values, read
        # before any resource is declared; the platform keeps every one of them secret.
    },
)

pulumi.export("namespace", platform.namespace)
pulumi.export("uiServiceName", platform.ui_service_name)
pulumi.export("uiServicePort", platform.ui_service_port)
pulumi.export("adminUsername", platform.admin_username)
pulumi.export("adminPassword", platform.admin_password)
