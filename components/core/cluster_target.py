"""Which cluster a production stack deploys to: named in the stack, never whatever kubectl points at.

`pulumi-resource-kubernetes` falls back to the current kubeconfig context when the stack sets
neither `kubernetes:context` nor `kubernetes:kubeconfig`, so `pulumi up -s prod` from a shell
left pointing at a laptop cluster (or the other way round) would deploy there. A stack whose
`cluster.environment` is `production` must name its cluster; the check runs before any
resource is declared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .reader import _MISSING, ConfigError

TARGET_KEYS = ("kubernetes:context", "kubernetes:kubeconfig")

#: The Kubernetes releases a stack may target (`cluster.kubernetesVersion`, the preview's
#: `--kube-version`): all four charts support them (the Airflow chart asks for 1.23 or later,
#: spark-operator and KEDA for 1.25 or later) and the preview has their API schemas.
KUBERNETES_VERSIONS = tuple(f"1.{minor}" for minor in range(27, 36))
#: An API a cluster serves, as Helm's `.Capabilities.APIVersions.Has` takes it: `group/version`
#: or `group/version/Kind` (`cluster.apiVersions`, the preview's `--api-versions`).
API_VERSION = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?v[0-9]+((alpha|beta)[0-9]+)?(/[A-Z][A-Za-z0-9]*)?$")


def require_target(production: bool, kubernetes_config: Mapping[str, str | None]) -> None:
    """`kubernetes_config`: the stack's `kubernetes:` keys (context, kubeconfig)."""
    if not production or any(kubernetes_config.get(key.split(":", 1)[1]) for key in TARGET_KEYS):
        return
    raise ConfigError(
        "kubernetes:context",
        _MISSING,
        "a production stack (cluster.environment: production) must name the cluster it deploys to with "
        "`kubernetes:context` (a context of your kubeconfig) or `kubernetes:kubeconfig`; without either the "
        "Kubernetes provider would deploy to whatever the current kubectl context is.",
        "pulumi config set kubernetes:context <your production context>",
    )


SECRET_MUTABLE_KEY = "kubernetes:enableSecretMutable"
SECRET_MUTABLE_ENV = "PULUMI_K8S_ENABLE_SECRET_MUTABLE"


def require_mutable_secrets(why: str | None, setting: object, env: Mapping[str, str]) -> None:
    """`why`: the change that rewrites a protected Secret's data (a Fernet rotation), or None.

    pulumi-kubernetes replaces a Secret whose data changes unless its provider may change Secrets
    in place (`enableSecretMutable`, or the environment variable), and a protected Secret cannot be
    replaced: `pulumi up` would stop at it, halfway. Refused before anything is declared."""
    if why is None or str(setting).lower() == "true" or env.get(SECRET_MUTABLE_ENV, "").lower() == "true":
        return
    raise ConfigError(
        SECRET_MUTABLE_KEY,
        _MISSING if setting is None else setting,
        f"{why} rewrites the Fernet key Secret in place, and the Kubernetes provider replaces a Secret "
        "whose data changes unless it may change Secrets (a protected Secret cannot be replaced: "
        "`pulumi up` would fail at it).",
        f"pulumi config set {SECRET_MUTABLE_KEY} true   (a program's own Provider: enable_secret_mutable=True)",
    )
