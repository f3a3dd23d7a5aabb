"""Cloud identity for the stack's pods (the `identity` stack key), parsed once at the edge.

Pods reach cloud storage (remote task logs, the buckets tasks and Spark jobs read) as a cloud
identity bound to their Kubernetes ServiceAccount, instead of static keys in a connection:

- `aws`: IAM Roles for Service Accounts (EKS), annotation `eks.amazonaws.com/role-arn`;
- `gcp`: GKE Workload Identity, annotation `iam.gke.io/gcp-service-account`;
- `azure`: Azure AD Workload Identity, annotation `azure.workload.identity/client-id` on the
  ServiceAccount and the label `azure.workload.identity/use: "true"` on the pods.

The cloud SDKs inside the pods (boto3, google-auth, azure-identity) then find credentials by
their default chain, so Airflow's remote logging needs no connection. Errors are `ConfigError`s
naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ..core import names
from ..core.reader import ConfigError, Node, matches

Provider = Literal["aws", "gcp", "azure"]
PROVIDERS: tuple[Provider, ...] = ("aws", "gcp", "azure")

ANNOTATION: dict[str, str] = {
    "aws": "eks.amazonaws.com/role-arn",
    "gcp": "iam.gke.io/gcp-service-account",
    "azure": "azure.workload.identity/client-id",
}
AZURE_POD_LABEL = "azure.workload.identity/use"
AZURE_TENANT_ANNOTATION = "azure.workload.identity/tenant-id"

# Which remote-logging target each provider's identity reaches.
STORAGE: dict[str, str] = {"aws": "s3", "gcp": "gcs", "azure": "wasb"}

_VALUE: dict[str, tuple[re.Pattern[str], str]] = {
    "aws": (
        re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$"),
        "an IAM role ARN such as arn:aws:iam::123456789012:role/airflow",
    ),
    "gcp": (
        re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$"),
        "a Google service account e-mail such as airflow@my-project.iam.gserviceaccount.com",
    ),
    "azure": (
        re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
        "the client id (a GUID) of a managed identity or app registration",
    ),
}

# Components an identity can be given to: Airflow's (chart values keys), and the Spark pods.
AIRFLOW_COMPONENTS = ("scheduler", "apiServer", "webserver", "triggerer", "dagProcessor", "workers", "taskPods")
SPARK_COMPONENTS = ("sparkDriver", "sparkExecutor")
COMPONENTS = (*AIRFLOW_COMPONENTS, *SPARK_COMPONENTS, "metadataBackup")


@dataclass(frozen=True)
class IdentityConfig:
    provider: Provider | None = None
    default: str | None = None
    components: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    azure_tenant_id: str | None = None

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def of(self, component: str) -> str | None:
        """The identity of a component: its own, or the default (Spark pods only their own or the default)."""
        if component in ("apiServer", "webserver"):
            return self.components.get("apiServer") or self.components.get("webserver") or self.default
        return self.components.get(component) or self.default

    def service_account(self, component: str) -> tuple[dict[str, str], dict[str, str]]:
        """(annotations, pod labels) for a component's ServiceAccount and pods; empty without an identity."""
        value = self.of(component)
        if self.provider is None or value is None:
            return {}, {}
        annotations = {**self.annotations, ANNOTATION[self.provider]: value}
        labels = dict(self.labels)
        if self.provider == "azure":
            labels[AZURE_POD_LABEL] = "true"
            if self.azure_tenant_id:
                annotations[AZURE_TENANT_ANNOTATION] = self.azure_tenant_id
        return annotations, labels


def _identity(key: str, provider: str, value: Any) -> str:
    pattern, what = _VALUE[provider]
    if not matches(pattern, value):
        raise ConfigError(key, value, f"expected {what} (identity.provider is {provider!r}).")
    return str(value)


def parse_identity(raw: Any) -> IdentityConfig:
    node = Node(raw, "identity")
    if not node.data:
        node.finish()
        return IdentityConfig()
    provider = node.string("provider", choices=PROVIDERS)
    default = node.raw("default", None)
    if default is not None:
        default = _identity(node.key("default"), provider, default)
    comps = node.mapping("components")
    components: dict[str, str] = {}
    for name in COMPONENTS:
        value = comps.raw(name, None)
        if value is not None:
            components[name] = _identity(comps.key(name), provider, value)
    comps.finish()
    if "apiServer" in components and "webserver" in components:
        raise ConfigError(
            comps.key("webserver"), components["webserver"], "set the UI's identity once: apiServer or webserver."
        )
    if default is None and not components:
        raise ConfigError(
            node.key("default"),
            None,
            "an identity needs a value: identity.default (every Airflow component) or identity.components.<name>.",
        )
    annotations = names.annotation_map(
        node.key("annotations"), node.plain_object("annotations", values={"type": "string"})
    )
    labels = names.label_map(node.key("labels"), node.plain_object("labels", values={"type": "string"}))
    for k in (*annotations, *labels):
        if k.startswith(("eks.amazonaws.com/", "iam.gke.io/", "azure.workload.identity/")):
            where = node.key("annotations") if k in annotations else node.key("labels")
            raise ConfigError(
                f"{where}.{k}", k, "set by identity.provider and identity.default/components; not by hand."
            )
    tenant = node.string("azureTenantId", None, pattern=_VALUE["azure"][0], describe="expected a tenant id (a GUID).")
    if tenant is not None and provider != "azure":
        raise ConfigError(node.key("azureTenantId"), tenant, f"only for provider 'azure' (provider is {provider!r}).")
    node.finish()
    return IdentityConfig(
        provider=provider,
        default=default,
        components=components,
        annotations=annotations,
        labels=labels,
        azure_tenant_id=tenant,
    )
