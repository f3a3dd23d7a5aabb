"""The offline preview as a measured predictor: what it predicts for a stack against what
`pulumi up` really created in the API server.

Predicted: the preview's own run (components.offline.preview.preview: the program under
mocks, every Pulumi-declared Kubernetes object, every Release rendered by the preview's
renderer, the CRDs each chart installs), so a change of renderer carries over.
Live: every predicted object read back, plus every object of the namespaces (and every
cluster-scoped one) that Helm marks as a release's (meta.helm.sh/release-name) or that
Pulumi made (its managed-by label or field manager); what controllers make at run time
(Pods, ReplicaSets, Endpoints, Events, ...) is left out.
Compared: every predicted object exists and nothing else was created (kind, namespace,
name); every pod template has the same containers, images, env names and mounts; and inside
each object what decides its behaviour, after normalising what the server adds (env values
and valueFrom, volume sources, security contexts, service accounts, args, resources, probes,
replicas, ConfigMap data, RBAC rules, NetworkPolicy rules, Service ports, claim sizes:
e2e/fidelity_fields.py).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .checks import pod_spec_of
from .fidelity_fields import object_differences, scaled_targets
from .kube import ApiError, Kube

ROOT = Path(__file__).resolve().parent.parent
RELEASE_ANNOTATION = "meta.helm.sh/release-name"
RELEASE_NAMESPACE_ANNOTATION = "meta.helm.sh/release-namespace"
MANAGED_BY = "app.kubernetes.io/managed-by"
PULUMI_FIELD_MANAGER = "pulumi-kubernetes"
HELM_RELEASE_TYPE = "helm.sh/release.v1"
HOOK = "helm.sh/hook"
HOOK_DELETE_POLICY = "helm.sh/hook-delete-policy"
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"})
# Made by controllers and the API server at run time, never by a release: not compared.
CONTROLLER_KINDS = frozenset(
    {
        "Pod",
        "ReplicaSet",
        "Endpoints",
        "EndpointSlice",
        "Event",
        "ControllerRevision",
        "Lease",
        "Node",
        "ComponentStatus",
        "Binding",
        "PodMetrics",
        "NodeMetrics",
        "CertificateSigningRequest",
        "VolumeAttachment",
        "CSINode",
        "CSIStorageCapacity",
        "ResourceSlice",
        "ServiceCIDR",
        "IPAddress",
    }
)

Key = tuple[str, str, str, str]  # API group, kind, namespace ("" when cluster-scoped), name


class PredictionError(RuntimeError):
    """The preview could not predict the stack (a chart not found or not rendered)."""


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return group, str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name"))


def describe(key: Key) -> str:
    _, kind, namespace, name = key
    return f"{kind} {namespace + '/' if namespace else ''}{name}"


# --- predicted -------------------------------------------------------------------------------


@contextlib.contextmanager
def _chart_folder(project: Path, charts: Path | None) -> Iterator[None]:
    """The preview finds chart archives through AIRFLOW_K8S_CHARTS or <project>/../shared/charts;
    a project copied elsewhere (the e2e run's) is pointed at this checkout's charts."""
    folder = charts
    if folder is None:
        if os.environ.get("AIRFLOW_K8S_CHARTS") or (project.resolve().parent / "shared" / "charts").is_dir():
            yield
            return
        folder = ROOT.parent / "shared" / "charts"
    previous = os.environ.get("AIRFLOW_K8S_CHARTS")
    os.environ["AIRFLOW_K8S_CHARTS"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_K8S_CHARTS", None)
        else:
            os.environ["AIRFLOW_K8S_CHARTS"] = previous


def _installed_by_helm(obj: dict[str, Any]) -> bool:
    """Helm test hooks are not installed by an install or upgrade."""
    hook = str(((obj.get("metadata") or {}).get("annotations") or {}).get(HOOK, ""))
    return not any(h.strip().startswith("test") for h in hook.split(",") if h.strip())


def predicted_objects(project: Path, stack: str, *, charts: Path | None = None) -> list[dict[str, Any]]:
    """Every object the offline preview predicts `pulumi up` of `stack` creates."""
    from components.offline.preview import preview

    with tempfile.TemporaryDirectory(prefix="fidelity-") as out, _chart_folder(project, charts):
        result = preview(project, stack, Path(out), run_checkov=False)
    failed = [p for p in result.problems if p.rule in ("chart", "render", "values-schema")]
    if failed:
        raise PredictionError(
            "the preview could not render every release: " + "; ".join(f"{p.object}: {p.message}" for p in failed)
        )
    objects: list[dict[str, Any]] = []
    for source in result.sources:
        if source.kind not in ("resource", "release"):
            continue  # "embedded": pod templates inside ConfigMaps, not objects of their own
        objects += [o for o in source.objects if _installed_by_helm(o)]
        for crd in source.detail.get("crds") or []:
            objects.append(
                {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": crd}}
            )
    return objects


# --- live --------------------------------------------------------------------------------------


def made_by(obj: dict[str, Any]) -> str | None:
    """ "Helm release <name>" or "Pulumi" for an object a release or Pulumi made, else None."""
    meta = obj.get("metadata") or {}
    release = (meta.get("annotations") or {}).get(RELEASE_ANNOTATION)
    if release:
        return f"Helm release {release}"
    if str((meta.get("labels") or {}).get(MANAGED_BY, "")).lower() == "pulumi":
        return "Pulumi"
    if any(str(f.get("manager", "")).startswith(PULUMI_FIELD_MANAGER) for f in meta.get("managedFields") or []):
        return "Pulumi"
    return None


def _helm_storage(obj: dict[str, Any]) -> bool:
    """Helm's own release records (one Secret per revision): Helm's bookkeeping, not the chart's."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return obj.get("type") == HELM_RELEASE_TYPE or (labels.get("owner") == "helm" and "version" in labels)


def _controlled(obj: dict[str, Any]) -> bool:
    return any(ref.get("controller") for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def _preferred_versions(kube: Kube) -> dict[str, str]:
    """API group -> its preferred group/version ("" -> "v1")."""
    preferred = {"": "v1"}
    for group in kube.get("/apis").get("groups") or []:
        preferred[str(group["name"])] = str(group["preferredVersion"]["groupVersion"])
    return preferred


# Kinds that open or grant something in a namespace: counted whoever made them (an allow-all
# NetworkPolicy or a RoleBinding made by hand changes what the deployment may do).
OPENING_KINDS = frozenset({"NetworkPolicy", "Role", "RoleBinding", "ResourceQuota", "LimitRange"})


def _ours(obj: dict[str, Any], kind: str, namespaced: bool, namespaces: set[str]) -> bool:
    """Made by a release of `namespaces` or by Pulumi, in any namespace or cluster-wide; or, made
    by anyone, an object that opens or grants something in `namespaces`."""
    meta = obj.get("metadata") or {}
    who = made_by(obj)
    release_ns = (meta.get("annotations") or {}).get(RELEASE_NAMESPACE_ANNOTATION)
    if who is None:
        if namespaced:
            return kind in OPENING_KINDS and meta.get("namespace") in namespaces
        subjects = obj.get("subjects") if kind == "ClusterRoleBinding" else None
        return any(s.get("namespace") in namespaces for s in subjects or [])
    if release_ns:
        return release_ns in namespaces  # not another release's
    return not namespaced or meta.get("namespace") in namespaces or who == "Pulumi"


def live_objects(kube: Kube, predicted: list[dict[str, Any]], namespaces: list[str]) -> list[dict[str, Any]]:
    """Every predicted object the API server holds; every other object, in any namespace or
    cluster-wide, that a Helm release of `namespaces` or Pulumi made; and every object that opens
    or grants something in `namespaces`, whoever made it (_ours); less what controllers make."""
    found: dict[Key, dict[str, Any]] = {}
    for obj in predicted:
        meta = obj.get("metadata") or {}
        try:
            live = kube.read(str(obj["apiVersion"]), str(obj["kind"]), str(meta["name"]), meta.get("namespace"))
        except ApiError as exc:
            if exc.status != 404:
                raise
            live = None  # the kind itself is not served (its CRD is missing)
        if live is not None:
            live.setdefault("apiVersion", obj["apiVersion"])
            live.setdefault("kind", obj["kind"])
            found[key_of(live)] = live
    wanted = set(namespaces)
    preferred = _preferred_versions(kube)
    for (group_version, kind), resource in sorted(kube.rediscover().items()):
        if kind in CONTROLLER_KINDS or preferred.get(group_version.rpartition("/")[0]) != group_version:
            continue
        try:
            items = kube.list(group_version, kind)
        except ApiError:
            continue  # not listable (reviews, bindings)
        for item in items:
            if _controlled(item) or _helm_storage(item) or not _ours(item, kind, resource.namespaced, wanted):
                continue
            item.setdefault("apiVersion", group_version)
            item.setdefault("kind", kind)
            found.setdefault(key_of(item), item)
    return list(found.values())


# --- the comparison ------------------------------------------------------------------------------


def _may_be_gone(obj: dict[str, Any]) -> bool:
    """A Helm hook deleted once it succeeded."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return HOOK in annotations and "hook-succeeded" in str(annotations.get(HOOK_DELETE_POLICY, ""))


def _names(items: list[dict[str, Any]] | None, field: str) -> set[str]:
    return {str(i.get(field)) for i in items or [] if i.get(field) is not None}


def _difference(what: str, predicted: set[str], live: set[str]) -> str | None:
    if predicted == live:
        return None
    parts = []
    if predicted - live:
        parts.append(f"predicted only: {', '.join(sorted(predicted - live))}")
    if live - predicted:
        parts.append(f"live only: {', '.join(sorted(live - predicted))}")
    return f"{what} differ ({'; '.join(parts)})"


def template_differences(predicted: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """Containers and initContainers of two pod templates: images, env names, mount paths."""
    out = []
    want, have = pod_spec_of(predicted) or {}, pod_spec_of(live) or {}
    for group, label in (("initContainers", "initContainer"), ("containers", "container")):
        p = {str(c.get("name")): c for c in want.get(group) or []}
        q = {str(c.get("name")): c for c in have.get(group) or []}
        for name in sorted(p.keys() - q.keys()):
            out.append(f"{label} {name}: predicted, not in the live template")
        for name in sorted(q.keys() - p.keys()):
            out.append(f"{label} {name}: in the live template, not predicted")
        for name in sorted(p.keys() & q.keys()):
            a, b = p[name], q[name]
            if a.get("image") != b.get("image"):
                out.append(f"{label} {name}: image {a.get('image')} predicted, {b.get('image')} live")
            for what, field, attr in (
                ("env names", "env", "name"),
                ("volume mount paths", "volumeMounts", "mountPath"),
            ):
                diff = _difference(what, _names(a.get(field), attr), _names(b.get(field), attr))
                if diff:
                    out.append(f"{label} {name}: {diff}")
    return out


def compare(predicted: list[dict[str, Any]], live: list[dict[str, Any]]) -> list[str]:
    """Human-readable differences between the prediction and the cluster; empty on a match."""
    live_by_key = {key_of(o): o for o in live}
    # A cluster-scoped object the preview defaulted into a namespace (a custom kind it did not
    # know was cluster-scoped) is the same object: Kubernetes ignores the namespace.
    matched: set[Key] = set()
    out = []
    autoscaled = scaled_targets(predicted)
    for obj in predicted:
        key = key_of(obj)
        unscoped = (key[0], key[1], "", key[3])
        live_key = key if key in live_by_key else unscoped if unscoped in live_by_key else None
        if live_key is None:
            if not _may_be_gone(obj):
                out.append(f"missing {describe(key)}: predicted, not in the cluster")
            continue
        matched.add(live_key)
        live_obj = live_by_key[live_key]
        if key[1] in WORKLOAD_KINDS:
            out += [f"{describe(key)} {d}" for d in template_differences(obj, live_obj)]
        scaled = (key[1], key[2], key[3]) in autoscaled
        out += [f"{describe(key)} {d}" for d in object_differences(obj, live_obj, scaled=scaled)]
    for key in sorted(live_by_key.keys() - matched):
        who = made_by(live_by_key[key]) or "unknown"
        out.append(f"extra {describe(key)}: in the cluster (made by {who}), not predicted")
    return out
