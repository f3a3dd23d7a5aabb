"""AirflowRelease and Monitoring given an explicit Kubernetes provider through opts."""

import pulumi
import pulumi_kubernetes as k8s

from components import AirflowRelease, Monitoring

provider = k8s.Provider("laptop", context="kind-kind")
opts = pulumi.ResourceOptions(providers=[provider])
airflow = AirflowRelease(
    "airflow",
    {"settings": {"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}}},
    opts=opts,
)
Monitoring("monitoring", {"settings": {"mode": "install"}, "airflow": airflow}, opts=opts)
