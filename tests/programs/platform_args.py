"""AirflowPlatform declared from raw config args (as the component package receives them), with
credentials as plain values and a platform name other than the stack program's."""

import pulumi

from components.platform.component import AirflowPlatform

platform = AirflowPlatform(
    "data",
    {
        "airflow": {
            "namespace": "data",
            "executor": "KubernetesExecutor",
            "dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}},
        },
        "cluster": {"environment": "laptop"},
        "teams": [{"name": "ml"}],
        "spark": {"jobNamespaces": ["spark-jobs"]},
        "monitoring": {"mode": "annotations"},
        "git_token": "tok-123456789",
        "connections": {"warehouse": "postgresql://u:p@db.internal:5432/w"},
    },
)
pulumi.export("namespace", platform.namespace)
pulumi.export("teamNamespaces", platform.team_namespaces)
