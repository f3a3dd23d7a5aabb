"""AirflowRelease given an explicit Kubernetes provider through opts."""

import pulumi
import pulumi_kubernetes as k8s

from components import AirflowRelease

provider = k8s.Provider("laptop", context="kind-kind")
AirflowRelease(
    "airflow",
    {"settings": {"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}}},
    opts=pulumi.ResourceOptions(providers=[provider]),
)
