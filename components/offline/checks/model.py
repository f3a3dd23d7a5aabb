"""The preview checks' shared vocabulary: Problem, Item, ClusterFacts, the rules, and small helpers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import ValidationError, best_match

RULES: frozenset[str] = frozenset(
    {
        "schema",  # built-in kind fails its Kubernetes OpenAPI schema (or its API version is not served)
        "crd",  # custom resource fails its CRD schema, or no CRD defines it
        "secret-ref",  # Secret / Secret key referenced by a pod template does not exist
        "configmap-ref",  # ConfigMap / ConfigMap key referenced by a pod template does not exist
        "pvc-ref",  # PersistentVolumeClaim (or a PVC's PersistentVolume) does not exist
        "storage-class",  # StorageClass used by a PVC / PV / claim template does not exist
        "pv-binding",  # a claim and the volume it names disagree (class, access modes, capacity)
        "service-account",  # serviceAccountName of a pod template does not exist
        "rbac-subject",  # ServiceAccount subject of a (Cluster)RoleBinding does not exist
        "rbac-roleref",  # Role / ClusterRole referenced by a binding does not exist
        "service-selector",  # Service selects no pod, or a named targetPort no pod declares
        "servicemonitor",  # ServiceMonitor selects no Service, or scrapes a port it lacks
        "ingress",  # Ingress on an undeclared IngressClass, or a backend Service / port that does not exist
        "namespace",  # namespaced object without namespace, or in an undeclared namespace
        "duplicate",  # same object declared twice
        "file-command",  # an `AIRFLOW__..._CMD=cat <file>` reads a file no volume mount of the container provides
        "airflow",  # Airflow's own code refuses a value the stack hands it (components/offline/airflow_checks.py)
        "api-server",  # the API server refuses the object in a server-side dry run (components/offline/dry_run.py)
        "checkov",  # checkov policy failure (reported by the caller from run_checkov)
    }
)

#: API groups served by Kubernetes itself (never by a CRD).
BUILTIN_GROUPS: frozenset[str] = frozenset(
    {
        "",
        "apps",
        "batch",
        "policy",
        "autoscaling",
        "rbac.authorization.k8s.io",
        "networking.k8s.io",
        "storage.k8s.io",
        "scheduling.k8s.io",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "certificates.k8s.io",
        "node.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "apiregistration.k8s.io",
        "events.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "resource.k8s.io",
        "storagemigration.k8s.io",
        "internal.apiserver.k8s.io",
        "extensions",  # removed from Kubernetes; kept so its objects are reported as not served
    }
)

_BUILTIN_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
_BUILTIN_CLUSTER_ROLES = frozenset({"cluster-admin", "admin", "edit", "view"})
# Roles and ServiceAccounts every Kubernetes control plane makes in kube-system (API server
# bootstrap policy; kube-controller-manager's per-controller accounts). KEDA's metrics server binds both.
_BUILTIN_ROLES = frozenset({("kube-system", "extension-apiserver-authentication-reader")})
_BUILTIN_SERVICE_ACCOUNTS = frozenset({("kube-system", "horizontal-pod-autoscaler")})

# Cluster-scoped built-in kinds; every other built-in kind is namespaced.
_CLUSTER_SCOPED: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "Namespace"),
        ("", "Node"),
        ("", "PersistentVolume"),
        ("", "ComponentStatus"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "VolumeAttachment"),
        ("storage.k8s.io", "VolumeAttributesClass"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("apiregistration.k8s.io", "APIService"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("certificates.k8s.io", "ClusterTrustBundle"),
        ("node.k8s.io", "RuntimeClass"),
        ("networking.k8s.io", "IngressClass"),
        ("networking.k8s.io", "IPAddress"),
        ("networking.k8s.io", "ServiceCIDR"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
        ("resource.k8s.io", "DeviceClass"),
        ("resource.k8s.io", "ResourceSlice"),
        ("storagemigration.k8s.io", "StorageVersionMigration"),
        ("internal.apiserver.k8s.io", "StorageVersion"),
        ("authentication.k8s.io", "TokenReview"),
        ("authentication.k8s.io", "SelfSubjectReview"),
        ("authorization.k8s.io", "SubjectAccessReview"),
        ("authorization.k8s.io", "SelfSubjectAccessReview"),
        ("authorization.k8s.io", "SelfSubjectRulesReview"),
    }
)


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class Problem:
    """One thing that would fail (or silently misbehave) when the stack is applied."""

    rule: str
    source: str
    object: str
    message: str


@dataclass(frozen=True)
class Item:
    """One Kubernetes object and the Pulumi resource / chart release it came from."""

    source: str
    obj: dict[str, Any]


@dataclass(frozen=True)
class ClusterFacts:
    """Things that live outside the stack and must be declared, never assumed."""

    storage_classes: frozenset[str] = frozenset()  # cluster-provided StorageClasses (e.g. "standard")
    cluster_roles: frozenset[str] = frozenset()  # extra pre-existing ClusterRoles beyond the Kubernetes built-ins
    service_accounts: frozenset[str] = frozenset()  # pre-existing "namespace/name" ServiceAccounts
    secrets: frozenset[str] = frozenset()  # pre-existing "namespace/name" Secrets
    namespaces: frozenset[str] = frozenset()  # pre-existing namespaces (default, kube-system, ... always count)
    # Labels of pre-existing pods a Service in the stack may select, one pod per entry:
    # "namespace/key=value,key=value" (e.g. "kube-system/k8s-app=kube-dns").
    pod_labels: frozenset[str] = frozenset()
    persistent_volume_claims: frozenset[str] = frozenset()  # pre-existing "namespace/name" claims
    ingress_classes: frozenset[str] = frozenset()  # cluster-provided IngressClasses (e.g. "nginx")


# --------------------------------------------------------------------------- small helpers


def _split_api_version(api_version: str) -> tuple[str, str]:
    """``"apps/v1"`` -> ``("apps", "v1")``; ``"v1"`` -> ``("", "v1")``."""
    if "/" in api_version:
        group, _, version = api_version.partition("/")
        return group, version
    return "", api_version


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in _as_dict(value).items()}


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return _as_dict(obj.get("metadata"))


def _name(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    name = meta.get("name")
    if isinstance(name, str) and name:
        return name
    generate = meta.get("generateName")
    if isinstance(generate, str) and generate:
        return f"{generate}*"
    return "<unnamed>"


def _gk(obj: Mapping[str, Any]) -> tuple[str, str]:
    api_version = obj.get("apiVersion")
    group = _split_api_version(api_version)[0] if isinstance(api_version, str) else ""
    kind = obj.get("kind")
    return group, kind if isinstance(kind, str) else ""


def _scope_from_crd(crd: Mapping[str, Any]) -> tuple[tuple[str, str], bool] | None:
    spec = _as_dict(crd.get("spec"))
    group = spec.get("group")
    kind = _as_dict(spec.get("names")).get("kind")
    if not isinstance(group, str) or not isinstance(kind, str):
        return None
    return (group, kind), spec.get("scope", "Namespaced") == "Namespaced"


def _is_crd(obj: Mapping[str, Any]) -> bool:
    return _gk(obj) == ("apiextensions.k8s.io", "CustomResourceDefinition")


def _namespaced(obj: Mapping[str, Any], crd_scopes: Mapping[tuple[str, str], bool]) -> bool | None:
    """True/False when the scope is known, None for a custom resource of unknown scope."""
    group, kind = _gk(obj)
    if group in BUILTIN_GROUPS:
        return (group, kind) not in _CLUSTER_SCOPED
    return crd_scopes.get((group, kind))


def _namespace(obj: Mapping[str, Any]) -> str | None:
    ns = _meta(obj).get("namespace")
    return ns if isinstance(ns, str) and ns else None


def _ident(obj: Mapping[str, Any], namespaced: bool | None) -> str:
    kind = obj.get("kind") if isinstance(obj.get("kind"), str) else "<no kind>"
    ns = _namespace(obj)
    if ns is not None and namespaced is not False:
        return f"{kind}/{ns}/{_name(obj)}"
    return f"{kind}/{_name(obj)}"


def _crd_scopes(objs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], bool]:
    scopes: dict[tuple[str, str], bool] = {}
    for obj in objs:
        if _is_crd(obj):
            scope = _scope_from_crd(obj)
            if scope is not None:
                scopes[scope[0]] = scope[1]
    return scopes


def _fmt_path(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_$-]+", str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f'["{part}"]'
    return out


def _join(parent: str, key: str) -> str:
    """Path of field ``key`` inside the field at ``parent``."""
    if not parent:
        return _fmt_path([key])
    tail = _fmt_path([key])
    return f"{parent}{tail}" if tail.startswith("[") else f"{parent}.{tail}"


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_JSON_TYPES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
    (type(None), "null"),
)


def _json_type(value: Any) -> str:
    for py_type, name in _JSON_TYPES:
        if isinstance(value, py_type):
            return name
    return type(value).__name__


def _got(value: Any) -> str:
    return "got null" if value is None else f"got {_json_type(value)} {_short(value)}"


def _leaf_errors(error: ValidationError) -> list[ValidationError]:
    if error.validator in ("anyOf", "oneOf") and error.context:
        leaves: list[ValidationError] = []
        for sub in error.context:
            leaves.extend(_leaf_errors(sub))
        return leaves
    return [error]


def _type_names(errors: Iterable[ValidationError]) -> list[str]:
    """Expected JSON types of ``type`` errors, without "null" (every field may be null)."""
    names: list[str] = []
    for error in errors:
        value = error.validator_value
        for name in [value] if isinstance(value, str) else _as_list(value):
            if name not in names:
                names.append(str(name))
    return [name for name in names if name != "null"] or names


def _describe(error: ValidationError) -> list[str]:
    """Turn one jsonschema error into sentences naming the path of the bad field."""
    path = _fmt_path(error.absolute_path)
    where = f"field '{path}'" if path else "the object"
    validator = error.validator
    instance = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    if validator == "additionalProperties" and isinstance(instance, dict):
        known = set(_as_dict(schema.get("properties")))
        patterns = list(_as_dict(schema.get("patternProperties")))
        extra = sorted(
            str(key)
            for key in instance
            if key not in known and not any(re.search(pattern, str(key)) for pattern in patterns)
        )
        if extra:
            return [f"has unknown field '{_join(path, key)}'" for key in extra]
    if validator == "required" and isinstance(instance, dict) and isinstance(error.validator_value, list):
        missing = [str(key) for key in error.validator_value if key not in instance]
        if missing:
            return [f"is missing required field '{_join(path, key)}'" for key in missing]
    if validator == "type":
        types = _type_names([error])
        return [f"{where} must be {' or '.join(types)} ({_got(instance)})"]
    if validator == "enum":
        allowed = ", ".join(_short(v, 30) for v in _as_list(error.validator_value) if v is not None)
        return [f"{where} must be one of {allowed} (got {_short(instance)})"]
    if validator in ("anyOf", "oneOf") and error.context:
        leaves = _leaf_errors(error)
        if leaves and all(leaf.validator == "type" for leaf in leaves):
            types = _type_names(leaves)
            return [f"{where} must be {' or '.join(types)} ({_got(instance)})"]
        deepest = best_match(error.context)
        if deepest is not None and deepest is not error:
            return _describe(deepest)
    message = error.message
    if len(message) > 200:
        message = message[:197] + "..."
    return [f"{where} is invalid: {message}"]
