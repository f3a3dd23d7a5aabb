"""What the end-to-end run asserts about the live cluster (plain functions over API objects)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, cast

from components.core import workloads

from .kube import Kube

WORKLOAD_KINDS = (
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
)


def pod_spec_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a live workload (components/core/workloads.py), as the API returned it."""
    return cast("dict[str, Any] | None", workloads.pod_spec_of(obj))


def secret_references(pod_spec: dict[str, Any]) -> Iterator[tuple[str, str | None, bool]]:
    """(secret name, key or None, optional) for every Secret a pod spec needs."""
    for vol in pod_spec.get("volumes") or []:
        if "secret" in vol:
            s = vol["secret"]
            optional = bool(s.get("optional"))
            items = s.get("items") or []
            if not items:
                yield s["secretName"], None, optional
            for item in items:
                yield s["secretName"], item["key"], optional
        for source in (vol.get("projected") or {}).get("sources") or []:
            if "secret" in source:
                s = source["secret"]
                for item in s.get("items") or [{"key": None}]:
                    yield s["name"], item["key"], bool(s.get("optional"))
    for pull in pod_spec.get("imagePullSecrets") or []:
        yield pull["name"], None, False
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for container in pod_spec.get(group) or []:
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    yield ref["name"], ref["key"], bool(ref.get("optional"))
            for env_from in container.get("envFrom") or []:
                ref = env_from.get("secretRef")
                if ref:
                    yield ref["name"], None, bool(ref.get("optional"))


def operator_written_secrets(workloads: list[dict[str, Any]]) -> set[str]:
    """Secrets a running operator writes itself: KEDA's certificate Secret, made by its operator when
    it runs with `--enable-cert-rotation=true --cert-secret-name=<name>` (the chart's default). Under
    kwok no operator process runs, so these never appear; the offline preview knows them the same way."""
    names = set()
    for obj in workloads:
        spec = pod_spec_of(obj) or {}
        for container in spec.get("containers") or []:
            args = [str(a) for a in container.get("args") or []]
            options = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
            if options.get("enable-cert-rotation") == "true" and options.get("cert-secret-name"):
                names.add(options["cert-secret-name"])
    return names


def missing_secrets(workloads: list[dict[str, Any]], secrets: dict[str, dict[str, Any]]) -> list[str]:
    """Every non-optional Secret (and key) a workload references that the namespace lacks (less those
    an operator of the namespace writes itself once it runs: `operator_written_secrets`)."""
    problems = []
    written = operator_written_secrets(workloads)
    for obj in workloads:
        spec = pod_spec_of(obj)
        if spec is None:
            continue
        who = f"{obj['kind']}/{obj['metadata']['name']}"
        for name, key, optional in secret_references(spec):
            if optional or (name in written and name not in secrets):
                continue
            secret = secrets.get(name)
            if secret is None:
                problems.append(f"{who} needs Secret {name}, which does not exist")
            elif key is not None and key not in (secret.get("data") or {}):
                problems.append(f"{who} needs key {key!r} of Secret {name}, which it lacks")
    return sorted(set(problems))


def _condition(obj: dict[str, Any], kind: str) -> str | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return str(cond.get("status"))
    return None


def workload_problems(objs: list[dict[str, Any]]) -> list[str]:
    """Deployments Available with every replica, StatefulSets ready, DaemonSets available on
    every node they want, Jobs complete."""
    problems = []
    for obj in objs:
        kind, name = obj["kind"], obj["metadata"]["name"]
        status = obj.get("status") or {}
        want = (obj.get("spec") or {}).get("replicas", 1)
        if kind == "Deployment":
            if _condition(obj, "Available") != "True" or status.get("availableReplicas", 0) != want:
                problems.append(f"Deployment/{name}: {status.get('availableReplicas', 0)}/{want} available")
        elif kind == "StatefulSet":
            if status.get("readyReplicas", 0) != want:
                problems.append(f"StatefulSet/{name}: {status.get('readyReplicas', 0)}/{want} ready")
        elif kind == "DaemonSet":
            want = status.get("desiredNumberScheduled", 0)
            if status.get("numberAvailable", 0) != want or not want:
                problems.append(f"DaemonSet/{name}: {status.get('numberAvailable', 0)}/{want} available")
        elif kind == "Job" and _condition(obj, "Complete") != "True":
            problems.append(f"Job/{name}: not complete (succeeded={status.get('succeeded', 0)})")
    return problems


def live_workloads(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    found = []
    for api_version, kind in WORKLOAD_KINDS:
        for obj in kube.list(api_version, kind, namespace):
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", api_version)
            found.append(obj)
    return found


def live_secrets(kube: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    return {s["metadata"]["name"]: s for s in kube.list("v1", "Secret", namespace)}


def secret_fingerprints(secrets: dict[str, dict[str, Any]]) -> dict[str, str]:
    """name -> sha256 of the Secret's data (values never printed)."""
    return {
        name: hashlib.sha256(json.dumps(s.get("data") or {}, sort_keys=True).encode()).hexdigest()[:16]
        for name, s in secrets.items()
        if s.get("type") != "helm.sh/release.v1"  # Helm's own release records change on every upgrade
    }


def changed_secrets(before: dict[str, str], after: dict[str, str]) -> list[str]:
    out = []
    for name in sorted(before.keys() | after.keys()):
        if name not in after:
            out.append(f"Secret {name} disappeared")
        elif name not in before:
            continue  # a new Secret is not a changed one
        elif before[name] != after[name]:
            out.append(f"Secret {name} data changed")
    return out


def plan_problems(preview: dict[str, Any], allowed_updates: tuple[str, ...]) -> list[str]:
    """From `pulumi preview --json`: no replacement, no deletion, no creation; updates only of
    resource types in `allowed_updates`."""
    problems = []
    for step in preview.get("steps") or []:
        op, urn = step.get("op"), step.get("urn", "")
        rtype = urn.split("::")[2].split("$")[-1] if urn.count("::") >= 3 else ""
        if op in ("same", "read", "refresh"):
            continue
        if op == "update" and rtype in allowed_updates:
            continue
        problems.append(f"{op} {urn}")
    return problems


def state_resources(export: dict[str, Any]) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = (export.get("deployment") or {}).get("resources") or []
    return resources


def kube_identity(resource: dict[str, Any]) -> tuple[str, str, str, str] | None:
    """(apiVersion, kind, namespace, name) of a Kubernetes resource in a stack export."""
    rtype = str(resource.get("type", ""))
    if not rtype.startswith("kubernetes:") or "helm.sh" in rtype:
        return None
    outputs = resource.get("outputs") or {}
    meta = outputs.get("metadata") or {}
    if not isinstance(meta, dict) or "name" not in meta:
        return None
    return str(outputs.get("apiVersion")), str(outputs.get("kind")), str(meta.get("namespace") or ""), meta["name"]


REPLACING = ("replace", "create-replacement", "delete-replaced", "delete")


def random_replacements(preview: dict[str, Any]) -> list[str]:
    """From `pulumi preview --json`: every pulumi-random resource the plan would replace or
    delete (a new value for a generated secret)."""
    out = []
    for step in preview.get("steps") or []:
        urn = str(step.get("urn", ""))
        rtype = urn.split("::")[2].split("$")[-1] if urn.count("::") >= 3 else ""
        if rtype.startswith("random:") and step.get("op") in REPLACING:
            out.append(f"{step.get('op')} {urn}")
    return sorted(set(out))


def plan_ops(preview: dict[str, Any]) -> dict[str, int]:
    """How many steps of each operation a `pulumi preview --json` plan holds."""
    ops: dict[str, int] = {}
    for step in preview.get("steps") or []:
        ops[str(step.get("op"))] = ops.get(str(step.get("op")), 0) + 1
    return ops


def secret_fingerprints_in(kube: Kube, namespaces: list[str]) -> dict[str, str]:
    """`namespace/name` -> fingerprint of every Secret in `namespaces` (Helm's records left out)."""
    out = {}
    for namespace in namespaces:
        for name, fp in secret_fingerprints(live_secrets(kube, namespace)).items():
            out[f"{namespace}/{name}"] = fp
    return out


def object_identities(kube: Kube, namespaces: list[str]) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of the workloads, Services, Secrets, ConfigMaps and claims in
    `namespaces`: what a refused change must leave exactly as it was."""
    kinds = [*WORKLOAD_KINDS, ("v1", "Service"), ("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "PersistentVolumeClaim")]
    found = set()
    for namespace in namespaces:
        for api_version, kind in kinds:
            for obj in kube.list(api_version, kind, namespace):
                found.add((kind, namespace, str(obj["metadata"]["name"])))
    return found
