# Longer than 600 lines: the schema, CRD, reference and checkov checks share one index of the rendered
# objects (_Index, _Checker); its sections are marked with banner comments. Splitting it into a
# package by concern is open work (CHANGELOG).
"""Validation engine of the offline preview.

The offline preview collects every Kubernetes object a stack would create --
objects declared directly with Pulumi and objects rendered from Helm charts --
as plain dict manifests, and hands them to the functions in this module:

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

import functools
import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from collections import ChainMap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.abc import Traversable
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

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


# --------------------------------------------------------------------------- built-in schemas


_SCHEMA_DIR_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)-local-strict$")


def _schema_root() -> Traversable:
    return resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")


@functools.cache
def _strict_schema_dirs() -> dict[tuple[int, int, int], str]:
    found: dict[tuple[int, int, int], str] = {}
    for entry in _schema_root().iterdir():
        match = _SCHEMA_DIR_RE.match(entry.name)
        if match:
            found[(int(match[1]), int(match[2]), int(match[3]))] = entry.name
    return found


@functools.cache
def _schema_dir_for(kube_version: str) -> str:
    """The bundled strict schema directory closest to ``kube_version`` ("1.31", "v1.31.4").

    Same minor if shipped; else the newest older minor; else (older than everything
    shipped) the oldest one.
    """
    match = re.match(r"^v?(\d+)\.(\d+)", kube_version.strip())
    if not match:
        raise ValueError(f"not a Kubernetes version: {kube_version!r}")
    wanted = (int(match[1]), int(match[2]))
    dirs = _strict_schema_dirs()
    if not dirs:
        raise RuntimeError("kubernetes-validate ships no strict schemas")
    versions = sorted(dirs)
    same = [v for v in versions if v[:2] == wanted]
    older = [v for v in versions if v[:2] < wanted]
    chosen = same[-1] if same else older[-1] if older else versions[0]
    return dirs[chosen]


@functools.cache
def _schema_registry(schema_dir: str) -> Registry[Any]:
    contents = json.loads(_schema_root().joinpath(schema_dir, "_definitions.json").read_text())
    resource: Resource[Any] = Resource.from_contents(contents)
    return resource @ Registry()


@functools.cache
def _builtin_validator(schema_dir: str, group: str, version: str, kind: str) -> jsonschema.Draft202012Validator | None:
    prefix = group.split(".")[0]
    filename = f"{kind.lower()}-{prefix}-{version}.json" if group else f"{kind.lower()}-{version}.json"
    path = _schema_root().joinpath(schema_dir, filename)
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    gvks = _as_list(schema.get("x-kubernetes-group-version-kind"))
    if not any(
        _as_dict(gvk).get("group", "") == group and gvk.get("version") == version and gvk.get("kind") == kind
        for gvk in gvks
    ):
        return None
    return jsonschema.Draft202012Validator(schema, registry=_schema_registry(schema_dir))


def _sorted_errors(errors: Iterable[ValidationError]) -> list[ValidationError]:
    """Errors ordered by path; a wrong type hides the other complaints about the same field."""
    ordered = sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])
    mistyped = {tuple(e.absolute_path) for e in ordered if e.validator == "type"}
    return [e for e in ordered if e.validator == "type" or tuple(e.absolute_path) not in mistyped]


def schema_problems(items: list[Item], kube_version: str = "1.31") -> list[Problem]:
    """Validate built-in kinds against the strict Kubernetes schemas of ``kube_version``.

    Custom resources (API group not built into Kubernetes) are left to
    :func:`crd_problems`. A built-in group/kind whose API version the chosen
    Kubernetes version does not serve (removed or misspelled) is a problem.
    """
    schema_dir = _schema_dir_for(kube_version)
    served = schema_dir.removeprefix("v").split("-")[0].rsplit(".", 1)[0]
    problems: list[Problem] = []
    for item in items:
        obj = item.obj
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        ident = _ident(obj, None)
        if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
            problems.append(Problem("schema", item.source, ident, f"{ident} has no apiVersion and kind"))
            continue
        group, version = _split_api_version(api_version)
        if group not in BUILTIN_GROUPS:
            continue
        ident = _ident(obj, (group, kind) not in _CLUSTER_SCOPED)
        validator = _builtin_validator(schema_dir, group, version, kind)
        if validator is None:
            problems.append(
                Problem(
                    "schema",
                    item.source,
                    ident,
                    f"{ident} uses apiVersion {api_version} kind {kind}, which Kubernetes {served} does not serve "
                    "(no built-in schema: removed, not yet served, or misspelled)",
                )
            )
            continue
        for error in _sorted_errors(validator.iter_errors(obj)):
            for text in _describe(error):
                problems.append(Problem("schema", item.source, ident, f"{ident} {text}"))
    return problems


# --------------------------------------------------------------------------- CRD schemas


_JUNCTORS = ("allOf", "anyOf", "oneOf")


def _structural(node: Any, *, strict: bool, root: bool = False) -> Any:
    """Translate a CRD ``openAPIV3Schema`` node into JSON Schema (draft 4) for jsonschema.

    ``strict`` is False inside allOf/anyOf/oneOf/not, which in a structural
    schema only add value validations and must not forbid fields.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties") and isinstance(value, dict):
            out[key] = {name: _structural(sub, strict=strict) for name, sub in value.items()}
        elif key == "items":
            if isinstance(value, list):
                out[key] = [_structural(sub, strict=strict) for sub in value]
            else:
                out[key] = _structural(value, strict=strict)
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = _structural(value, strict=strict)
        elif key in _JUNCTORS and isinstance(value, list):
            out[key] = [_structural(sub, strict=False) for sub in value]
        elif key == "not":
            out[key] = _structural(value, strict=False)
        else:
            out[key] = value
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if node.get("x-kubernetes-int-or-string") is True:
        out["type"] = ["integer", "string"]
        any_of = out.get("anyOf")
        if isinstance(any_of, list) and all(
            isinstance(sub, dict) and set(sub) == {"type"} and sub["type"] in ("integer", "string") for sub in any_of
        ):
            del out["anyOf"]
    if node.get("x-kubernetes-embedded-resource") is True or root:
        props = dict(_as_dict(out.get("properties")))
        if props or root:
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            props["metadata"] = {"type": "object"}
            out["properties"] = props
    if node.get("nullable") is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = [*kind, "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    if strict and "properties" in out and "additionalProperties" not in node and not preserve:
        out["additionalProperties"] = False
    return out


_CRD_VALIDATORS: dict[tuple[str, str], tuple[Any, jsonschema.Draft4Validator]] = {}


def _crd_validator(crd_name: str, version: str, schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    key = (crd_name, version)
    cached = _CRD_VALIDATORS.get(key)
    if cached is not None and cached[0] is schema:
        return cached[1]
    translated = _structural(schema, strict=True, root=True)
    translated.pop("$schema", None)
    validator = jsonschema.Draft4Validator(translated)
    _CRD_VALIDATORS[key] = (schema, validator)
    return validator


def _crd_version_schema(crd: Mapping[str, Any], version: str) -> tuple[bool, dict[str, Any] | None, list[str]]:
    """(served, openAPIV3Schema or None, served version names) for ``version``."""
    spec = _as_dict(crd.get("spec"))
    versions = [_as_dict(v) for v in _as_list(spec.get("versions"))]
    served_names = [str(v.get("name")) for v in versions if v.get("served", True)]
    if not versions and isinstance(spec.get("version"), str):  # apiextensions v1beta1 single version
        served_names = [spec["version"]]
    for entry in versions:
        if entry.get("name") == version:
            schema = _as_dict(_as_dict(entry.get("schema")).get("openAPIV3Schema")) or None
            if schema is None:
                schema = _as_dict(_as_dict(spec.get("validation")).get("openAPIV3Schema")) or None
            return bool(entry.get("served", True)), schema, served_names
    if version in served_names:
        return (
            True,
            _as_dict(_as_dict(spec.get("validation")).get("openAPIV3Schema")) or None,
            served_names,
        )
    return False, None, served_names


def crd_problems(items: list[Item], crds: list[dict[str, Any]]) -> list[Problem]:
    """Validate custom resources against their CRDs' ``openAPIV3Schema`` (strict).

    CRDs come from ``crds`` and from CustomResourceDefinition objects among the items.
    """
    item_crds = [item.obj for item in items if _is_crd(item.obj)]
    by_gk: dict[tuple[str, str], dict[str, Any]] = {}
    from_items: set[tuple[str, str]] = set()
    for crd in [*crds, *item_crds]:
        scope = _scope_from_crd(crd)
        if scope is not None:
            by_gk[scope[0]] = crd
    for crd in item_crds:
        scope = _scope_from_crd(crd)
        if scope is not None:
            from_items.add(scope[0])
    scopes = {gk: _scope_from_crd(crd) == (gk, True) for gk, crd in by_gk.items()}

    problems: list[Problem] = []
    for item in items:
        obj = item.obj
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
            continue  # reported by schema_problems
        group, version = _split_api_version(api_version)
        if group in BUILTIN_GROUPS:
            continue
        ident = _ident(obj, scopes.get((group, kind)))
        definition = by_gk.get((group, kind))
        if definition is None:
            same_group = sorted(k for g, k in by_gk if g == group)
            hint = f" (CRDs of group {group}: {', '.join(same_group)})" if same_group else ""
            problems.append(
                Problem(
                    "crd",
                    item.source,
                    ident,
                    f"{ident}: no CRD for {kind}.{group} ({api_version}) is declared{hint}",
                )
            )
            continue
        crd_name = _name(definition)
        if scopes[(group, kind)] and _namespace(obj) is None and (group, kind) not in from_items:
            # (when the CRD is among the items, reference_problems reports this)
            problems.append(
                Problem(
                    "crd",
                    item.source,
                    ident,
                    f"{ident} is namespaced (CRD {crd_name}) but has no metadata.namespace",
                )
            )
        served, schema, served_names = _crd_version_schema(definition, version)
        if not served:
            problems.append(
                Problem(
                    "crd",
                    item.source,
                    ident,
                    f"{ident}: CRD {crd_name} does not serve version {version} "
                    f"(served: {', '.join(served_names) or 'none'})",
                )
            )
            continue
        if schema is None:
            continue
        validator = _crd_validator(crd_name, version, schema)
        try:
            errors = _sorted_errors(validator.iter_errors(obj))
        except re.error as exc:  # a Go (RE2) pattern Python's re cannot compile
            problems.append(
                Problem(
                    "crd",
                    item.source,
                    ident,
                    f"{ident} could not be validated: CRD {crd_name} {version} has a pattern Python cannot "
                    f"evaluate ({exc})",
                )
            )
            continue
        for error in errors:
            for text in _describe(error):
                problems.append(
                    Problem(
                        "crd",
                        item.source,
                        ident,
                        f"{ident} {text} (CRD {crd_name} {version})",
                    )
                )
    return problems


# --------------------------------------------------------------------------- references


_WORKLOAD_TEMPLATE_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): (),
    ("", "ReplicationController"): ("spec", "template"),
    ("apps", "Deployment"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
}


def _mounted_files(container: Mapping[str, Any], spec: Mapping[str, Any]) -> set[str]:
    """Paths a container can read from its volumes: exact files for Secret / ConfigMap items
    (also in projected volumes), "<dir>/" for volumes whose files are not listed."""
    volumes = {_as_dict(v).get("name"): _as_dict(v) for v in _as_list(spec.get("volumes"))}
    files: set[str] = set()
    for mount in _as_list(container.get("volumeMounts")):
        mount = _as_dict(mount)
        volume = volumes.get(mount.get("name"))
        if volume is None:
            continue
        root = str(mount.get("mountPath", "")).rstrip("/")
        sources = [_as_dict(volume.get("secret")), _as_dict(volume.get("configMap"))]
        sources += [
            _as_dict(_as_dict(s).get(kind))
            for s in _as_list(_as_dict(volume.get("projected")).get("sources"))
            for kind in ("secret", "configMap")
        ]
        listed = [str(_as_dict(i).get("path")) for source in sources if source for i in _as_list(source.get("items"))]
        whole = any(source and not source.get("items") for source in sources) or not any(sources)
        sub_path = mount.get("subPath")
        if sub_path:
            if sub_path in listed or whole:
                files.add(root)
            continue
        files.update(f"{root}/{p}" for p in listed)
        if whole:
            files.add(root + "/")
    return files


_CONTAINER_LISTS = (
    ("initContainers", "init container"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeral container"),
)

# Pods that prometheus-operator creates for its workload custom resources: the
# selector labels it puts on them and the named container ports they expose.
_OPERATOR_PODS: dict[tuple[str, str], tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = {
    ("monitoring.coreos.com", "Prometheus"): (
        (
            ("app.kubernetes.io/name", "prometheus"),
            ("operator.prometheus.io/name", "{name}"),
            ("operator.prometheus.io/shard", "0"),
            ("prometheus", "{name}"),
        ),
        ("web", "reloader-web"),
    ),
    ("monitoring.coreos.com", "PrometheusAgent"): (
        (
            ("app.kubernetes.io/name", "prometheus-agent"),
            ("operator.prometheus.io/name", "{name}"),
            ("operator.prometheus.io/shard", "0"),
        ),
        ("web", "reloader-web"),
    ),
    ("monitoring.coreos.com", "Alertmanager"): (
        (("app.kubernetes.io/name", "alertmanager"), ("alertmanager", "{name}")),
        ("web", "mesh-tcp", "mesh-udp", "reloader-web"),
    ),
    ("monitoring.coreos.com", "ThanosRuler"): (
        (("app.kubernetes.io/name", "thanos-ruler"), ("thanos-ruler", "{name}")),
        ("web", "grpc", "reloader-web"),
    ),
}
_OPERATOR_COMMON_LABELS = (
    ("app.kubernetes.io/managed-by", "prometheus-operator"),
    ("app.kubernetes.io/instance", "{name}"),
)


@dataclass
class _PodTemplate:
    owner: str  # ident of the workload
    item: Item | None  # None for pre-existing pods from the cluster facts
    namespace: str
    labels: dict[str, str]
    spec: dict[str, Any] | None  # None for pods synthesized from operator custom resources
    port_names: dict[str, set[int]]  # named container ports -> numbers
    port_numbers: set[int]
    own_claims: frozenset[str]  # StatefulSet volumeClaimTemplate names


@dataclass
class _Service:
    ident: str
    namespace: str
    name: str
    labels: dict[str, str]
    selector: dict[str, str]
    ports: list[dict[str, Any]]


@dataclass
class _Index:
    namespaces: set[str] = field(default_factory=set)
    secrets: dict[tuple[str, str], set[str] | None] = field(default_factory=dict)  # None: keys unknown
    config_maps: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    pvcs: set[tuple[str, str]] = field(default_factory=set)
    pvs: set[str] = field(default_factory=set)
    storage_classes: set[str] = field(default_factory=set)
    service_accounts: set[tuple[str, str]] = field(default_factory=set)
    roles: set[tuple[str, str]] = field(default_factory=set)
    cluster_roles: set[str] = field(default_factory=set)
    templates: list[_PodTemplate] = field(default_factory=list)
    services: list[_Service] = field(default_factory=list)
    claim_templates: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # ns -> (sts, template)
    # Secrets that a kube-webhook-certgen Job creates at install: (ns, name) -> (source, keys)
    generated_secrets: dict[tuple[str, str], tuple[str, set[str]]] = field(default_factory=dict)


def _container_ports(spec: Mapping[str, Any]) -> tuple[dict[str, set[int]], set[int]]:
    names: dict[str, set[int]] = {}
    numbers: set[int] = set()
    for list_key in ("containers", "initContainers"):
        for container in _as_list(spec.get(list_key)):
            for port in _as_list(_as_dict(container).get("ports")):
                port = _as_dict(port)
                number = port.get("containerPort")
                if isinstance(number, int):
                    numbers.add(number)
                name = port.get("name")
                if isinstance(name, str) and name:
                    names.setdefault(name, set())
                    if isinstance(number, int):
                        names[name].add(number)
    return names, numbers


def _pod_template(
    obj: Mapping[str, Any],
) -> tuple[dict[str, str], dict[str, Any]] | None:
    path = _WORKLOAD_TEMPLATE_PATHS.get(_gk(obj))
    if path is None:
        return None
    node: Any = obj
    for key in path:
        node = _as_dict(node).get(key)
    template = _as_dict(node)
    return _str_map(_meta(template).get("labels")), _as_dict(template.get("spec"))


def _secret_keys(obj: Mapping[str, Any]) -> set[str]:
    keys = set(_as_dict(obj.get("data"))) | set(_as_dict(obj.get("stringData")))
    if obj.get("type") == "kubernetes.io/service-account-token":
        keys |= {"token", "ca.crt", "namespace"}  # filled in by the token controller
    return {str(k) for k in keys}


def _build_index(items: Sequence[Item], facts: ClusterFacts, scopes: Mapping[tuple[str, str], bool]) -> _Index:
    index = _Index()
    index.namespaces = set(_BUILTIN_NAMESPACES) | set(facts.namespaces)
    index.storage_classes = set(facts.storage_classes)
    index.cluster_roles = set(facts.cluster_roles)
    for entry in facts.secrets:
        ns, _, name = entry.partition("/")
        index.secrets[(ns, name)] = None
    for entry in facts.service_accounts:
        ns, _, name = entry.partition("/")
        index.service_accounts.add((ns, name))
    for entry in facts.persistent_volume_claims:
        ns, _, name = entry.partition("/")
        index.pvcs.add((ns, name))
    for entry in sorted(facts.pod_labels):
        ns, _, text = entry.partition("/")
        labels = dict(pair.split("=", 1) for pair in text.split(",") if "=" in pair)
        index.templates.append(
            _PodTemplate(
                f"pre-existing pod {entry}",
                None,
                ns,
                labels,
                None,
                {},
                set(),
                frozenset(),
            )
        )
    # The API server's own Service exists in every cluster.
    index.services.append(
        _Service(
            "Service/default/kubernetes",
            "default",
            "kubernetes",
            {"component": "apiserver", "provider": "kubernetes"},
            {},
            [{"name": "https", "port": 443, "targetPort": 6443}],
        )
    )

    for item in items:
        obj = item.obj
        group, kind = _gk(obj)
        ns = _namespace(obj) or ""
        name = _name(obj)
        key = (ns, name)
        if (group, kind) == ("", "Namespace"):
            index.namespaces.add(name)
        elif (group, kind) == ("", "Secret"):
            index.secrets[key] = _secret_keys(obj)
        elif (group, kind) == ("", "ConfigMap"):
            keys = set(_as_dict(obj.get("data"))) | set(_as_dict(obj.get("binaryData")))
            index.config_maps[key] = {str(k) for k in keys}
        elif (group, kind) == ("", "PersistentVolumeClaim"):
            index.pvcs.add(key)
        elif (group, kind) == ("", "PersistentVolume"):
            index.pvs.add(name)
        elif (group, kind) == ("storage.k8s.io", "StorageClass"):
            index.storage_classes.add(name)
        elif (group, kind) == ("", "ServiceAccount"):
            index.service_accounts.add(key)
        elif (group, kind) == ("rbac.authorization.k8s.io", "Role"):
            index.roles.add(key)
        elif (group, kind) == ("rbac.authorization.k8s.io", "ClusterRole"):
            index.cluster_roles.add(name)
        elif (group, kind) == ("", "Service"):
            spec = _as_dict(obj.get("spec"))
            selector = _str_map(spec.get("selector")) if spec.get("type") != "ExternalName" else {}
            index.services.append(
                _Service(
                    _ident(obj, True),
                    ns,
                    name,
                    _str_map(_meta(obj).get("labels")),
                    selector,
                    [_as_dict(p) for p in _as_list(spec.get("ports"))],
                )
            )
        elif (group, kind) == ("apps", "Deployment") and any(
            str(arg).startswith("--kubelet-service=") for arg in _deployment_args(obj)
        ):
            # prometheus-operator creates and maintains the kubelet Service it is told about.
            for arg in _deployment_args(obj):
                if str(arg).startswith("--kubelet-service="):
                    svc_ns, _, svc_name = str(arg).split("=", 1)[1].partition("/")
                    index.services.append(
                        _Service(
                            f"Service/{svc_ns}/{svc_name}",
                            svc_ns,
                            svc_name,
                            {
                                "app.kubernetes.io/name": "kubelet",
                                "app.kubernetes.io/managed-by": "prometheus-operator",
                                "k8s-app": "kubelet",
                            },
                            {},
                            [
                                {"name": n, "port": p}
                                for n, p in (
                                    ("https-metrics", 10250),
                                    ("http-metrics", 10255),
                                    ("cadvisor", 4194),
                                )
                            ],
                        )
                    )

        if (group, kind) == ("batch", "Job"):
            for secret_key in _certgen_secrets(obj, ns):
                index.generated_secrets[secret_key] = (item.source, set(_CERTGEN_KEYS))
        if (group, kind) == ("apps", "Deployment"):
            for secret_key in _cert_rotation_secrets(obj, ns):
                index.generated_secrets[secret_key] = (item.source, set(_ROTATED_CERT_KEYS))

        template = _pod_template(obj)
        if template is not None:
            labels, spec = template
            names, numbers = _container_ports(spec)
            own_claims: frozenset[str] = frozenset()
            if (group, kind) == ("apps", "StatefulSet"):
                claim_names = [
                    _name(_as_dict(t)) for t in _as_list(_as_dict(obj.get("spec")).get("volumeClaimTemplates"))
                ]
                own_claims = frozenset(claim_names)
                index.claim_templates.setdefault(ns, []).extend((name, claim) for claim in claim_names)
            index.templates.append(
                _PodTemplate(
                    _ident(obj, True),
                    item,
                    ns,
                    labels,
                    spec,
                    names,
                    numbers,
                    own_claims,
                )
            )
        operator = _OPERATOR_PODS.get((group, kind))
        if operator is not None:
            selector_labels, ports = operator
            labels = {k: v.format(name=name) for k, v in (*selector_labels, *_OPERATOR_COMMON_LABELS)}
            labels.update(_str_map(_as_dict(_as_dict(obj.get("spec")).get("podMetadata")).get("labels")))
            index.templates.append(
                _PodTemplate(
                    f"{_ident(obj, True)} (operator-managed pods)",
                    item,
                    ns,
                    labels,
                    None,
                    {port: set() for port in ports},
                    set(),
                    frozenset(),
                )
            )
    # Kubernetes publishes the cluster's root CA as ConfigMap kube-root-ca.crt (key ca.crt)
    # in every namespace; projected ServiceAccount token volumes reference it.
    for ns in index.namespaces:
        index.config_maps.setdefault((ns, "kube-root-ca.crt"), {"ca.crt"})
    return index


_CERTGEN_KEYS = ("ca", "cert", "key")


def _certgen_secrets(job: Mapping[str, Any], namespace: str) -> list[tuple[str, str]]:
    """(namespace, name) of the Secrets a kube-webhook-certgen `create` Job writes."""
    found = []
    spec = _as_dict(_as_dict(_as_dict(job.get("spec")).get("template")).get("spec"))
    for container in _as_list(spec.get("containers")):
        container = _as_dict(container)
        args = [str(a) for a in _as_list(container.get("args"))]
        if "kube-webhook-certgen" not in str(container.get("image", "")) or "create" not in args:
            continue
        options = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
        if options.get("secret-name"):
            found.append((options.get("namespace") or namespace, options["secret-name"]))
    return found


_ROTATED_CERT_KEYS = ("ca.crt", "tls.crt", "tls.key")


def _cert_rotation_secrets(deployment: Mapping[str, Any], namespace: str) -> list[tuple[str, str]]:
    """(namespace, name) of the certificate Secret a KEDA operator writes itself when it runs with
    `--enable-cert-rotation=true --cert-secret-name=<name>` (the chart's default, no cert-manager)."""
    args = [str(a) for a in _deployment_args(deployment)]
    options = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    if options.get("enable-cert-rotation") == "true" and options.get("cert-secret-name"):
        return [(namespace, options["cert-secret-name"])]
    return []


def _deployment_args(obj: Mapping[str, Any]) -> list[Any]:
    spec = _as_dict(_as_dict(_as_dict(obj.get("spec")).get("template")).get("spec"))
    args: list[Any] = []
    for container in _as_list(spec.get("containers")):
        args.extend(_as_list(_as_dict(container).get("args")))
    return args


def _has_keys(keys: set[str] | None) -> str:
    if keys is None:
        return "unknown keys"
    return ", ".join(sorted(keys)) if keys else "no keys"


class _Checker:
    def __init__(self, items: Sequence[Item], facts: ClusterFacts) -> None:
        self.items = items
        self.facts = facts
        self.scopes = _crd_scopes(item.obj for item in items)
        self.index = _build_index(items, facts, self.scopes)
        self.problems: list[Problem] = []

    def add(self, rule: str, item: Item, ident: str, message: str) -> None:
        self.problems.append(Problem(rule, item.source, ident, message))

    # ----- namespaces and duplicates

    def check_namespaces_and_duplicates(self) -> None:
        seen: dict[tuple[str, str, str, str], Item] = {}
        for item in self.items:
            obj = item.obj
            namespaced = _namespaced(obj, self.scopes)
            ident = _ident(obj, namespaced)
            ns = _namespace(obj)
            if namespaced is True and ns is None:
                self.add(
                    "namespace",
                    item,
                    ident,
                    f"{ident} is namespaced but has no metadata.namespace",
                )
            elif namespaced is not False and ns is not None and ns not in self.index.namespaces:
                self.add(
                    "namespace",
                    item,
                    ident,
                    f"{ident} is in namespace '{ns}', which is neither declared in the stack (kind Namespace) "
                    "nor listed as pre-existing in the cluster facts",
                )
            group, kind = _gk(obj)
            key = (
                group,
                kind,
                (ns or "") if namespaced is not False else "",
                _name(obj),
            )
            first = seen.get(key)
            if first is None:
                seen[key] = item
            else:
                self.add(
                    "duplicate",
                    item,
                    ident,
                    f"{ident} is declared twice: by {first.source} and by {item.source}",
                )

    # ----- pod templates

    def _secret(self, item: Item, ident: str, ns: str, name: Any, where: str, key: Any | None) -> None:
        table: Mapping[tuple[str, str], set[str] | None] = self.index.secrets
        generated = self.index.generated_secrets.get((ns, name)) if isinstance(name, str) else None
        if generated is not None and generated[0] == item.source and (ns, name) not in table:
            table = ChainMap({(ns, name): generated[1]}, self.index.secrets)
        self._lookup(
            "secret-ref",
            "Secret",
            table,
            item,
            ident,
            ns,
            name,
            where,
            key,
            in_facts=True,
        )

    def _config_map(self, item: Item, ident: str, ns: str, name: Any, where: str, key: Any | None) -> None:
        self._lookup(
            "configmap-ref",
            "ConfigMap",
            self.index.config_maps,
            item,
            ident,
            ns,
            name,
            where,
            key,
            in_facts=False,
        )

    def _lookup(
        self,
        rule: str,
        kind: str,
        table: Mapping[tuple[str, str], set[str] | None],
        item: Item,
        ident: str,
        ns: str,
        name: Any,
        where: str,
        key: Any | None,
        *,
        in_facts: bool,
    ) -> None:
        if not isinstance(name, str) or not name:
            self.add(rule, item, ident, f"{ident} {where} references a {kind} without a name")
            return
        if (ns, name) not in table:
            elsewhere = "in the stack or in the cluster facts" if in_facts else "in the stack"
            self.add(
                rule,
                item,
                ident,
                f"{ident} {where} references {kind} {ns}/{name}, which is not declared {elsewhere}",
            )
            return
        keys = table[(ns, name)]
        if key is not None and keys is not None and str(key) not in keys:
            self.add(
                rule,
                item,
                ident,
                f"{ident} {where} references key '{key}' that {kind} {ns}/{name} does not have "
                f"(it has: {_has_keys(keys)})",
            )

    def check_pod_templates(self) -> None:
        for template in self.index.templates:
            if template.spec is not None and template.item is not None:
                self._check_pod_spec(template.item, template)

    def _check_pod_spec(self, item: Item, template: _PodTemplate) -> None:
        spec = template.spec or {}
        ident = template.owner
        ns = template.namespace
        for list_key, label in _CONTAINER_LISTS:
            for container in _as_list(spec.get(list_key)):
                container = _as_dict(container)
                where = f"{label} '{container.get('name', '?')}'"
                for env in _as_list(container.get("env")):
                    env = _as_dict(env)
                    value_from = _as_dict(env.get("valueFrom"))
                    env_where = f"{where} env {env.get('name', '?')}"
                    ref = _as_dict(value_from.get("secretKeyRef"))
                    if ref and ref.get("optional") is not True:
                        self._secret(item, ident, ns, ref.get("name"), env_where, ref.get("key"))
                    ref = _as_dict(value_from.get("configMapKeyRef"))
                    if ref and ref.get("optional") is not True:
                        self._config_map(item, ident, ns, ref.get("name"), env_where, ref.get("key"))
                self._file_commands(item, ident, container, spec, where)
                for env_from in _as_list(container.get("envFrom")):
                    env_from = _as_dict(env_from)
                    ref = _as_dict(env_from.get("secretRef"))
                    if ref and ref.get("optional") is not True:
                        self._secret(item, ident, ns, ref.get("name"), f"{where} envFrom", None)
                    ref = _as_dict(env_from.get("configMapRef"))
                    if ref and ref.get("optional") is not True:
                        self._config_map(item, ident, ns, ref.get("name"), f"{where} envFrom", None)
        for volume in _as_list(spec.get("volumes")):
            volume = _as_dict(volume)
            where = f"volume '{volume.get('name', '?')}'"
            secret = _as_dict(volume.get("secret"))
            if secret and secret.get("optional") is not True:
                self._secret_or_cm_volume(item, ident, ns, "secret", secret.get("secretName"), secret, where)
            config_map = _as_dict(volume.get("configMap"))
            if config_map and config_map.get("optional") is not True:
                self._secret_or_cm_volume(
                    item,
                    ident,
                    ns,
                    "configmap",
                    config_map.get("name"),
                    config_map,
                    where,
                )
            for source in _as_list(_as_dict(volume.get("projected")).get("sources")):
                source = _as_dict(source)
                secret = _as_dict(source.get("secret"))
                if secret and secret.get("optional") is not True:
                    self._secret_or_cm_volume(
                        item,
                        ident,
                        ns,
                        "secret",
                        secret.get("name"),
                        secret,
                        f"{where} projected source",
                    )
                config_map = _as_dict(source.get("configMap"))
                if config_map and config_map.get("optional") is not True:
                    self._secret_or_cm_volume(
                        item,
                        ident,
                        ns,
                        "configmap",
                        config_map.get("name"),
                        config_map,
                        f"{where} projected source",
                    )
            claim = _as_dict(volume.get("persistentVolumeClaim"))
            if claim:
                self._claim(item, ident, ns, claim.get("claimName"), where, template)
            ephemeral = _as_dict(_as_dict(_as_dict(volume.get("ephemeral")).get("volumeClaimTemplate")).get("spec"))
            if ephemeral:
                self._storage_class(
                    item,
                    ident,
                    ephemeral.get("storageClassName"),
                    f"{ident} {where} ephemeral claim",
                )
        for pull_secret in _as_list(spec.get("imagePullSecrets")):
            self._secret(
                item,
                ident,
                ns,
                _as_dict(pull_secret).get("name"),
                "imagePullSecrets",
                None,
            )
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        if account != "default" and (ns, account) not in self.index.service_accounts:
            self.add(
                "service-account",
                item,
                ident,
                f"{ident} serviceAccountName references ServiceAccount {ns}/{account}, "
                "which is not declared in the stack or in the cluster facts",
            )

    def _file_commands(
        self, item: Item, ident: str, container: Mapping[str, Any], spec: Mapping[str, Any], where: str
    ) -> None:
        """Airflow's `<OPTION>_CMD=cat <file>`: the file must come from a volume the container mounts."""
        commands = [
            (_as_dict(e).get("name"), str(_as_dict(e).get("value") or ""))
            for e in _as_list(container.get("env"))
            if str(_as_dict(e).get("name", "")).endswith("_CMD")
        ]
        if not commands:
            return
        files = _mounted_files(container, spec)
        for name, command in commands:
            parts = command.split()
            if len(parts) != 2 or parts[0] != "cat" or not parts[1].startswith("/"):
                continue
            path = parts[1]
            if not any(path == f or (f.endswith("/") and path.startswith(f)) for f in files):
                self.add(
                    "file-command",
                    item,
                    ident,
                    f"{ident} {where} env {name} reads {path}, which no volume mount of the container provides",
                )

    def _secret_or_cm_volume(
        self,
        item: Item,
        ident: str,
        ns: str,
        which: str,
        name: Any,
        source: Mapping[str, Any],
        where: str,
    ) -> None:
        check = self._secret if which == "secret" else self._config_map
        before = len(self.problems)
        check(item, ident, ns, name, where, None)
        if len(self.problems) != before:
            return
        for entry in _as_list(source.get("items")):
            key = _as_dict(entry).get("key")
            if key is not None:
                check(item, ident, ns, name, f"{where} item", key)

    def _claim(
        self,
        item: Item,
        ident: str,
        ns: str,
        claim: Any,
        where: str,
        template: _PodTemplate,
    ) -> None:
        if not isinstance(claim, str) or not claim:
            self.add(
                "pvc-ref",
                item,
                ident,
                f"{ident} {where} references a PersistentVolumeClaim without a name",
            )
            return
        if (ns, claim) in self.index.pvcs or claim in template.own_claims:
            return
        for sts, claim_template in self.index.claim_templates.get(ns, []):
            if re.fullmatch(rf"{re.escape(claim_template)}-{re.escape(sts)}-\d+", claim):
                return
        self.add(
            "pvc-ref",
            item,
            ident,
            f"{ident} {where} references PersistentVolumeClaim {ns}/{claim}, which is not declared in the stack "
            "(nor produced by a StatefulSet volumeClaimTemplate, nor listed in cluster.persistentVolumeClaims)",
        )

    # ----- storage

    def _storage_class(self, item: Item, ident: str, storage_class: Any, where: str) -> None:
        if not isinstance(storage_class, str) or not storage_class:
            return
        if storage_class not in self.index.storage_classes:
            known = ", ".join(sorted(self.index.storage_classes)) or "none"
            self.add(
                "storage-class",
                item,
                ident,
                f"{where} uses storageClassName '{storage_class}', which is not a StorageClass declared in the stack "
                f"or in the cluster facts (known: {known})",
            )

    def check_storage(self) -> None:
        for item in self.items:
            obj = item.obj
            gk = _gk(obj)
            ident = _ident(obj, _namespaced(obj, self.scopes))
            spec = _as_dict(obj.get("spec"))
            if gk == ("", "PersistentVolumeClaim"):
                self._storage_class(item, ident, spec.get("storageClassName"), ident)
                volume = spec.get("volumeName")
                if isinstance(volume, str) and volume and volume not in self.index.pvs:
                    self.add(
                        "pvc-ref",
                        item,
                        ident,
                        f"{ident} volumeName references PersistentVolume {volume}, which is not declared in the stack",
                    )
                elif isinstance(volume, str) and volume:
                    self._binding(item, ident, spec, volume)
            elif gk == ("", "PersistentVolume"):
                self._storage_class(item, ident, spec.get("storageClassName"), ident)
            elif gk == ("apps", "StatefulSet"):
                for claim in _as_list(spec.get("volumeClaimTemplates")):
                    claim = _as_dict(claim)
                    self._storage_class(
                        item,
                        ident,
                        _as_dict(claim.get("spec")).get("storageClassName"),
                        f"{ident} volumeClaimTemplate '{_name(claim)}'",
                    )

    def _binding(self, item: Item, ident: str, claim: Mapping[str, Any], volume: str) -> None:
        """A claim bound by name to a volume must fit it, or it stays Pending forever."""
        from components.airflow.config import quantity_value

        pv = next(
            (i.obj for i in self.items if _gk(i.obj) == ("", "PersistentVolume") and _name(i.obj) == volume), None
        )
        if pv is None:
            return
        pv_spec = _as_dict(pv.get("spec"))
        pv_class, claim_class = pv_spec.get("storageClassName") or "", claim.get("storageClassName") or ""
        if pv_class != claim_class:
            self.add(
                "pv-binding",
                item,
                ident,
                f"{ident} has storageClassName '{claim_class}' but its PersistentVolume {volume} has '{pv_class}'",
            )
        missing = [m for m in _as_list(claim.get("accessModes")) if m not in _as_list(pv_spec.get("accessModes"))]
        if missing:
            self.add(
                "pv-binding",
                item,
                ident,
                f"{ident} asks for access modes {', '.join(map(str, missing))} that PersistentVolume {volume} "
                f"does not offer (it has: {', '.join(map(str, _as_list(pv_spec.get('accessModes'))))})",
            )
        wanted = _as_dict(_as_dict(claim.get("resources")).get("requests")).get("storage")
        offered = _as_dict(pv_spec.get("capacity")).get("storage")
        try:
            too_small = wanted is not None and (
                offered is None or quantity_value(str(offered)) < quantity_value(str(wanted))
            )
        except ValueError:
            too_small = False
        if too_small:
            self.add(
                "pv-binding",
                item,
                ident,
                f"{ident} requests {wanted} but PersistentVolume {volume} has a capacity of {offered}",
            )
        claim_ref = _as_dict(pv_spec.get("claimRef"))
        if claim_ref and (
            claim_ref.get("name") != _name(item.obj) or claim_ref.get("namespace") != _namespace(item.obj)
        ):
            self.add(
                "pv-binding",
                item,
                ident,
                f"{ident} names PersistentVolume {volume}, which is reserved for claim "
                f"{claim_ref.get('namespace')}/{claim_ref.get('name')}",
            )

    # ----- RBAC

    def check_rbac(self) -> None:
        for item in self.items:
            obj = item.obj
            gk = _gk(obj)
            if gk not in (
                ("rbac.authorization.k8s.io", "RoleBinding"),
                ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            ):
                continue
            cluster = gk[1] == "ClusterRoleBinding"
            ident = _ident(obj, not cluster)
            binding_ns = None if cluster else _namespace(obj)
            for subject in _as_list(obj.get("subjects")):
                subject = _as_dict(subject)
                if subject.get("kind") != "ServiceAccount":
                    continue
                name = subject.get("name")
                ns = subject.get("namespace") or binding_ns
                if not ns:
                    self.add(
                        "rbac-subject",
                        item,
                        ident,
                        f"{ident} subject ServiceAccount '{name}' has no namespace (required in a ClusterRoleBinding)",
                    )
                    continue
                exists = (
                    (ns, name) in self.index.service_accounts
                    or (name == "default" and ns in self.index.namespaces)
                    or (ns, name) in _BUILTIN_SERVICE_ACCOUNTS
                )
                if not exists:
                    self.add(
                        "rbac-subject",
                        item,
                        ident,
                        f"{ident} subject references ServiceAccount {ns}/{name}, "
                        "which is not declared in the stack or in the cluster facts",
                    )
            role_ref = _as_dict(obj.get("roleRef"))
            ref_kind, ref_name = role_ref.get("kind"), role_ref.get("name")
            if ref_kind == "Role":
                if cluster:
                    self.add(
                        "rbac-roleref",
                        item,
                        ident,
                        f"{ident} roleRef references Role {ref_name}, "
                        "but a ClusterRoleBinding can only reference a ClusterRole",
                    )
                elif (binding_ns or "", ref_name) not in self.index.roles and (
                    (binding_ns or "", ref_name) not in _BUILTIN_ROLES
                ):
                    self.add(
                        "rbac-roleref",
                        item,
                        ident,
                        f"{ident} roleRef references Role {binding_ns}/{ref_name}, which is not declared in the stack",
                    )
            elif ref_kind == "ClusterRole":
                name = str(ref_name)
                builtin = name in _BUILTIN_CLUSTER_ROLES or name.startswith("system:")
                if not builtin and name not in self.index.cluster_roles:
                    self.add(
                        "rbac-roleref",
                        item,
                        ident,
                        f"{ident} roleRef references ClusterRole {name}, which is not declared in the stack, "
                        "in the cluster facts, or a Kubernetes built-in",
                    )
            else:
                self.add(
                    "rbac-roleref",
                    item,
                    ident,
                    f"{ident} roleRef has kind {ref_kind!r}; expected Role or ClusterRole",
                )

    # ----- Services

    def _selected(self, service: _Service) -> list[_PodTemplate]:
        return [
            t
            for t in self.index.templates
            if t.namespace == service.namespace and all(t.labels.get(k) == v for k, v in service.selector.items())
        ]

    def check_services(self) -> None:
        services = {(s.namespace, s.name): s for s in self.index.services}
        for item in self.items:
            obj = item.obj
            if _gk(obj) != ("", "Service"):
                continue
            service = services.get((_namespace(obj) or "", _name(obj)))
            if service is None or not service.selector:
                continue
            ident = service.ident
            selected = self._selected(service)
            if not selected:
                count = sum(1 for t in self.index.templates if t.namespace == service.namespace)
                self.add(
                    "service-selector",
                    item,
                    ident,
                    f"{ident} selector {{{_fmt_labels(service.selector)}}} matches no pod template in namespace "
                    f"{service.namespace} ({count} pod templates there, none carries all these labels)",
                )
                continue
            for port in service.ports:
                target = port.get("targetPort")
                if not isinstance(target, str):
                    continue
                if any(target in t.port_names for t in selected):
                    continue
                have = "; ".join(f"{t.owner} names: {', '.join(sorted(t.port_names)) or 'none'}" for t in selected)
                self.add(
                    "service-selector",
                    item,
                    ident,
                    f"{ident} port '{port.get('name', port.get('port'))}' targetPort '{target}' is not a named "
                    f"containerPort of any selected pod template ({have})",
                )

    # ----- ServiceMonitors

    def check_ingresses(self) -> None:
        classes = set(self.facts.ingress_classes) | {
            _name(i.obj) for i in self.items if _gk(i.obj) == ("networking.k8s.io", "IngressClass")
        }
        services = {(_namespace(i.obj), _name(i.obj)): i.obj for i in self.items if _gk(i.obj) == ("", "Service")}
        for item in self.items:
            obj = item.obj
            if _gk(obj) != ("networking.k8s.io", "Ingress"):
                continue
            ident = _ident(obj, True)
            ns = _namespace(obj) or ""
            spec = _as_dict(obj.get("spec"))
            wanted = spec.get("ingressClassName")
            if isinstance(wanted, str) and wanted not in classes:
                known = ", ".join(sorted(classes)) or "none"
                self.add(
                    "ingress",
                    item,
                    ident,
                    f"{ident} uses ingressClassName '{wanted}', which is not an IngressClass declared in the stack "
                    f"or in cluster.ingressClasses (known: {known})",
                )
            notes = _as_dict(_meta(obj).get("annotations"))
            issued = any(k in notes for k in ("cert-manager.io/cluster-issuer", "cert-manager.io/issuer"))
            for tls in _as_list(spec.get("tls")):
                secret = _as_dict(tls).get("secretName")
                if isinstance(secret, str) and secret and (ns, secret) not in self.index.secrets and not issued:
                    self.add(
                        "ingress",
                        item,
                        ident,
                        f"{ident} uses TLS Secret {ns}/{secret}, which is not declared in the stack or in "
                        "cluster.secrets (and no cert-manager issuer annotation would create it)",
                    )
            backends = [_as_dict(spec.get("defaultBackend"))]
            for rule in _as_list(spec.get("rules")):
                for path in _as_list(_as_dict(_as_dict(rule).get("http")).get("paths")):
                    backends.append(_as_dict(_as_dict(path).get("backend")))
            for backend in backends:
                svc = _as_dict(backend.get("service"))
                if not svc:
                    continue
                target = services.get((ns, str(svc.get("name"))))
                if target is None:
                    self.add(
                        "ingress",
                        item,
                        ident,
                        f"{ident} routes to Service {ns}/{svc.get('name')}, which does not exist",
                    )
                    continue
                port = _as_dict(svc.get("port"))
                ports = _as_list(_as_dict(target.get("spec")).get("ports"))
                names = {_as_dict(p).get("name") for p in ports}
                numbers = {_as_dict(p).get("port") for p in ports}
                if ("name" in port and port["name"] not in names) or (
                    "number" in port and port["number"] not in numbers
                ):
                    self.add(
                        "ingress",
                        item,
                        ident,
                        f"{ident} routes to port {port.get('name', port.get('number'))} of Service "
                        f"{ns}/{svc.get('name')}, which has no such port",
                    )

    def check_service_monitors(self) -> None:
        for item in self.items:
            obj = item.obj
            if _gk(obj) != ("monitoring.coreos.com", "ServiceMonitor"):
                continue
            ident = _ident(obj, True)
            spec = _as_dict(obj.get("spec"))
            own_ns = _namespace(obj) or ""
            ns_selector = _as_dict(spec.get("namespaceSelector"))
            if ns_selector.get("any") is True:
                namespaces: list[str] | None = None
                scope = "any namespace"
            else:
                names = [str(n) for n in _as_list(ns_selector.get("matchNames"))]
                namespaces = names or [own_ns]
                scope = f"namespace(s) {', '.join(namespaces)}"
            selector = _as_dict(spec.get("selector"))
            matched = [
                s
                for s in self.index.services
                if (namespaces is None or s.namespace in namespaces) and _selector_matches(selector, s.labels)
            ]
            if not matched:
                self.add(
                    "servicemonitor",
                    item,
                    ident,
                    f"{ident} selector {{{_fmt_selector(selector)}}} matches no Service in {scope}",
                )
                continue
            for number, endpoint in enumerate(_as_list(spec.get("endpoints"))):
                endpoint = _as_dict(endpoint)
                port = endpoint.get("port")
                if (
                    isinstance(port, str)
                    and port
                    and not any(any(p.get("name") == port for p in s.ports) for s in matched)
                ):
                    have = "; ".join(f"{s.ident} has: {_port_names(s)}" for s in matched)
                    self.add(
                        "servicemonitor",
                        item,
                        ident,
                        f"{ident} endpoint {number} port '{port}' is not a named port of any selected Service ({have})",
                    )
                target = endpoint.get("targetPort")
                if target is not None and not self._target_port_exists(matched, target):
                    self.add(
                        "servicemonitor",
                        item,
                        ident,
                        f"{ident} endpoint {number} targetPort {target!r} matches no targetPort of the selected "
                        "Services nor a containerPort of their pods",
                    )

    def _target_port_exists(self, services: list[_Service], target: Any) -> bool:
        for service in services:
            if any(p.get("targetPort") == target for p in service.ports):
                return True
            if not service.selector:
                continue
            for template in self._selected(service):
                if isinstance(target, str) and target in template.port_names:
                    return True
                if isinstance(target, int) and (
                    target in template.port_numbers or any(target in n for n in template.port_names.values())
                ):
                    return True
        return False


def _port_names(service: _Service) -> str:
    return ", ".join(str(p["name"]) for p in service.ports if p.get("name")) or "no named ports"


def _fmt_labels(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _fmt_selector(selector: Mapping[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in sorted(_str_map(selector.get("matchLabels")).items())]
    for expr in _as_list(selector.get("matchExpressions")):
        expr = _as_dict(expr)
        values = ",".join(str(v) for v in _as_list(expr.get("values")))
        parts.append(f"{expr.get('key')} {expr.get('operator')}" + (f" ({values})" if values else ""))
    return ", ".join(parts)


def _selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (an empty selector matches everything)."""
    for key, value in _str_map(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for expr in _as_list(selector.get("matchExpressions")):
        expr = _as_dict(expr)
        key = str(expr.get("key"))
        operator = expr.get("operator")
        values = {str(v) for v in _as_list(expr.get("values"))}
        if operator == "In":
            ok = key in labels and labels[key] in values
        elif operator == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif operator == "Exists":
            ok = key in labels
        elif operator == "DoesNotExist":
            ok = key not in labels
        else:
            ok = False
        if not ok:
            return False
    return True


def reference_problems(items: list[Item], facts: ClusterFacts) -> list[Problem]:
    """Referential integrity across all objects of the stack (see module docstring)."""
    checker = _Checker(items, facts)
    checker.check_namespaces_and_duplicates()
    checker.check_pod_templates()
    checker.check_storage()
    checker.check_rbac()
    checker.check_services()
    checker.check_service_monitors()
    checker.check_ingresses()
    return checker.problems


# --------------------------------------------------------------------------- checkov


def _checkov_command() -> list[str]:
    """How to start checkov: $AIRFLOW_K8S_CHECKOV (an executable, e.g. in a virtualenv of its own),
    else this interpreter's checkov module, else the script next to it, else ``checkov`` on PATH."""
    configured = os.environ.get("AIRFLOW_K8S_CHECKOV")
    if configured:
        return [configured]
    if importlib.util.find_spec("checkov") is not None:
        return [sys.executable, "-m", "checkov.main"]
    script = pathlib.Path(sys.executable).with_name("checkov")
    if script.exists():
        return [str(script)]
    found = shutil.which("checkov")
    if found:
        return [found]
    raise RuntimeError("checkov is not installed (pip install checkov)")


def _checkov_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BC_", "PRISMA_", "CKV_API", "CHECKOV_API")) and key not in ("PROXY_URL",)
    }
    env.update(
        {
            "BC_SKIP_MAPPING": "TRUE",
            "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
            "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
            "CKV_GITHUB_CONFIG_FETCH_DATA": "false",
            "CKV_GITLAB_CONFIG_FETCH_DATA": "false",
            "BC_ENABLE_PERSIST_GRAPHS": "false",
            "CHECKOV_NO_OUTPUT": "false",
        }
    )
    return env


def _checkov_reports(payload: Any) -> Iterator[dict[str, Any]]:
    if isinstance(payload, list):
        for entry in payload:
            if isinstance(entry, dict):
                yield entry
    elif isinstance(payload, dict):
        yield payload


def run_checkov(directory: pathlib.Path, output_json: pathlib.Path) -> tuple[int, int, list[dict[str, Any]]]:
    """Run checkov's Kubernetes policies on the YAML files in ``directory``, offline.

    Writes checkov's raw JSON report to ``output_json`` and returns
    ``(passed, failed, [{check_id, check_name, resource, file}, ...])``.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"not a directory: {directory}")
    command = [
        *_checkov_command(),
        "--directory",
        str(directory),
        "--framework",
        "kubernetes",
        "--output",
        "json",
        "--soft-fail",
        "--skip-download",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=_checkov_env(), check=False)
    try:
        payload = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        tail = (result.stderr or result.stdout)[-2000:]
        raise RuntimeError(f"checkov exited {result.returncode} without a JSON report: {tail}") from exc
    output_json = pathlib.Path(output_json)
    output_json.parent.mkdir(parents=True, exist_ok=True)
    output_json.write_text(result.stdout)

    passed = failed = 0
    summaries: list[dict[str, Any]] = []
    for report in _checkov_reports(payload):
        summary = _as_dict(report.get("summary"))
        if "results" not in report and not summary and ("passed" in report or "failed" in report):
            summary = report  # an empty scan prints only the summary
        passed += int(summary.get("passed", 0) or 0)
        failed += int(summary.get("failed", 0) or 0)
        for check in _as_list(_as_dict(report.get("results")).get("failed_checks")):
            check = _as_dict(check)
            summaries.append(
                {
                    "check_id": check.get("check_id"),
                    "check_name": check.get("check_name"),
                    "resource": check.get("resource"),
                    "file": str(check.get("file_path", "")).lstrip("/"),
                }
            )
    return passed, failed, summaries
