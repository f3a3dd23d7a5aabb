"""Validation engine of the offline preview.

The offline preview collects every Kubernetes object a stack would create --
objects declared directly with Pulumi and objects rendered from Helm charts --
as plain dict manifests, and hands them to the modules of this package:

* :func:`schema_problems` validates built-in kinds against the Kubernetes
  OpenAPI schemas bundled with ``kubernetes-validate`` (strict: unknown fields
  are errors).
* :func:`crd_problems` validates custom resources against the
  ``openAPIV3Schema`` of their CustomResourceDefinition, with the structural
  schema rules the API server applies (unknown fields are errors).
* :func:`reference_problems` checks referential integrity across all objects:
  Secrets, ConfigMaps, PVCs, StorageClasses, ServiceAccounts, RBAC roles,
  Service selectors and ServiceMonitors, namespaces and duplicates.
* :func:`run_checkov` runs checkov's Kubernetes policies over a directory of
  YAML files.

Nothing outside the stack is assumed to exist unless it is a Kubernetes
built-in or is declared in :class:`ClusterFacts`. One kind of object is known to
exist although no manifest declares it: the Secret a kube-webhook-certgen Job
creates (``create --secret-name=<name> [--namespace=<ns>]``, keys ``ca``,
``cert``, ``key``), as webhook charts such as kube-prometheus-stack use for their
TLS certificate. It counts for pod templates of the same source (the same chart
release) only, since it exists once that release's install hooks ran.

Problem rules (``Problem.rule``): see :data:`RULES`.
"""

from __future__ import annotations

from .checkov import run_checkov as run_checkov
from .crds import crd_problems as crd_problems
from .model import (
    BUILTIN_GROUPS as BUILTIN_GROUPS,
    RULES as RULES,
    ClusterFacts as ClusterFacts,
    Item as Item,
    Problem as Problem,
)
from .references import reference_problems as reference_problems
from .schemas import schema_problems as schema_problems

__all__ = [
    "BUILTIN_GROUPS",
    "RULES",
    "ClusterFacts",
    "Item",
    "Problem",
    "crd_problems",
    "reference_problems",
    "run_checkov",
    "schema_problems",
]
