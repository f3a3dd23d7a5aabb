"""The stack plus hand-written objects, to prove the preview catches broken references."""

import json

import pulumi
import pulumi_kubernetes as k8s

from components import AirflowRelease

config = pulumi.Config()
airflow = AirflowRelease("airflow", {"settings": config.get_object("airflow") or {}})
for i, obj in enumerate(json.loads(config.get("objects") or "[]")):
    if obj["kind"] == "Service":
        k8s.core.v1.Service(f"extra-{i}", metadata=obj["metadata"], spec=obj["spec"])
    else:
        k8s.apiextensions.CustomResource(
            f"extra-{i}", api_version=obj["apiVersion"], kind=obj["kind"], metadata=obj["metadata"], spec=obj["spec"]
        )
