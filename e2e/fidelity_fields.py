"""What the fidelity check compares inside an object, after normalising what the API server adds.

Each object is reduced to the fields that decide what runs, reaches and is stored, with the
server's defaults filled in on the predicted side (or dropped on both), so a difference is a
difference in behaviour, not in spelling:

- pod templates (Deployments, StatefulSets, DaemonSets, Jobs, CronJobs): per container the
  command, args, env values (printed as digests, never in plain) and `valueFrom`, mounts (path,
  volume, subPath, readOnly), security context, resources (as quantities: `1000m` is `1`;
  requests default to limits), probes (with their defaults), ports, lifecycle, working dir; per
  pod the service account (`default` when unset) and whether its token is mounted, the security
  context, the host namespaces, DNS policy, scheduling (node name and selector, affinity,
  tolerations, spread, priority and runtime class), image pull secrets, host aliases and every
  volume source (modes defaulted); the template's labels (what Services and policies select;
  the Job controller's own left out); the replicas (1 when unset), unless an autoscaler owns
  them; a StatefulSet's claim templates (size, access modes, class); a Job's and a CronJob's run
  settings (schedule, suspend, concurrency, retries, deadlines, TTL; defaults filled in);
- ConfigMaps: `data` and `binaryData`; Secrets: type and keys (their values are generated);
- ServiceAccounts: token automount, image pull secrets, cloud identity annotations;
- Namespaces: their Pod Security labels;
- Roles and ClusterRoles: their rules (as sets); bindings: the role and the subjects;
- NetworkPolicies: the pod selector, the policy types (defaulted as the API server does) and
  every rule (port protocol TCP when unset);
- Services: type, selector and ports (protocol TCP, target port the port, when unset);
- PersistentVolumeClaims and PersistentVolumes: size (a quantity), access modes, class when
  predicted, and a volume's source and reclaim policy;
- every other kind (custom resources, autoscalers, disruption budgets, ingresses, limit ranges,
  storage classes, ...): the whole object but its metadata and status, every field the
  prediction sets at any depth holding the predicted value (quantities read back canonical);
  what the live object has beyond that is what the server or a CRD's schema defaults.

What the server assigns (uids, resourceVersion, timestamps, managed fields, generated names,
cluster IPs, node ports it picks, a claim's bound volume, status) and what a controller sets at
run time is not compared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from decimal import InvalidOperation
from typing import Any

from .checks import pod_spec_of

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"})
_SCALED = ("Deployment", "StatefulSet")
# initialDelaySeconds 0 is omitted when read back (a plain int, not a pointer like runAsUser).
_PROBE_DEFAULTS = {
    "initialDelaySeconds": 0,
    "timeoutSeconds": 1,
    "periodSeconds": 10,
    "successThreshold": 1,
    "failureThreshold": 3,
}
_MODE_DEFAULT = 420  # 0644


def _quantity(value: Any) -> Any:
    from components.core.reader import quantity_value

    try:
        return quantity_value(str(value)).normalize()
    except (ValueError, InvalidOperation):
        return value


def _omitted(value: Any) -> bool:
    """None, `false`, an empty object, list or string: what the server omits. Not 0 (`in` would
    take 0 for False, and `runAsUser: 0` is root)."""
    return value is None or value is False or (isinstance(value, (dict, list, str)) and not value)


def _clean(value: Any) -> Any:
    """Drop what the server omits (_omitted), at every depth."""
    if isinstance(value, dict):
        out = {k: _clean(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if not _omitted(v)}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _text(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def _env(entry: dict[str, Any]) -> Any:
    source = dict(entry.get("valueFrom") or {})
    if "fieldRef" in source:
        source["fieldRef"] = {"apiVersion": "v1", **source["fieldRef"]}
    if "resourceFieldRef" in source:
        ref = dict(source["resourceFieldRef"])
        if str(ref.get("divisor", "0")) in ("0", "1"):
            ref.pop("divisor", None)
        source["resourceFieldRef"] = ref
    value = entry.get("value")
    return _clean({"value": _masked(value) if value else None, "valueFrom": source})


def _masked(value: Any) -> str:
    """An env value as the differences print it: never the value (it may be a credential put in
    plain), a digest of it that still tells two values apart."""
    text = str(value)
    return f"<{len(text)} characters, sha256 {hashlib.sha256(text.encode()).hexdigest()[:12]}>"


def _resources(resources: dict[str, Any] | None) -> Any:
    resources = resources or {}
    limits = {k: _quantity(v) for k, v in (resources.get("limits") or {}).items()}
    requests = {k: _quantity(v) for k, v in (resources.get("requests") or {}).items()}
    return {"limits": limits, "requests": {**limits, **requests}}  # requests default to limits


def _probe(probe: dict[str, Any] | None) -> Any:
    if not probe:
        return None
    out = {**_PROBE_DEFAULTS, **probe}
    if "httpGet" in out:
        out["httpGet"] = {"scheme": "HTTP", "path": "/", **out["httpGet"]}
    return _clean(out)


def _handler(handler: dict[str, Any] | None) -> Any:
    """A lifecycle hook: an httpGet's scheme is HTTP when unset."""
    handler = dict(handler or {})
    if "httpGet" in handler:
        handler["httpGet"] = {"scheme": "HTTP", **handler["httpGet"]}
    return _clean(handler)


def _downward_items(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for item in items or []:
        if "fieldRef" in item:
            item = {**item, "fieldRef": {"apiVersion": "v1", **item["fieldRef"]}}
        out.append(item)
    return out


def _volume(volume: dict[str, Any]) -> Any:
    source = {k: v for k, v in volume.items() if k != "name"}
    if "downwardAPI" in source:
        source["downwardAPI"] = {**source["downwardAPI"], "items": _downward_items(source["downwardAPI"].get("items"))}
    for kind in ("configMap", "secret", "projected", "downwardAPI"):
        if kind in source:
            source[kind] = {"defaultMode": _MODE_DEFAULT, **(source[kind] or {})}
    if "projected" in source:
        sources = []
        for item in source["projected"].get("sources") or []:
            if "serviceAccountToken" in item:
                item = {"serviceAccountToken": {"expirationSeconds": 3600, **item["serviceAccountToken"]}}
            if "downwardAPI" in item:
                downward = item["downwardAPI"]
                item = {"downwardAPI": {**downward, "items": _downward_items(downward.get("items"))}}
            sources.append(item)
        source["projected"] = {**source["projected"], "sources": sources}
    if "hostPath" in source:
        source["hostPath"] = {"type": "", **source["hostPath"]}
    if "emptyDir" in source:
        source["emptyDir"] = {k: _quantity(v) for k, v in (source["emptyDir"] or {}).items()}
    return _clean(source)


def _port(port: dict[str, Any], host_network: bool) -> Any:
    """A container port, protocol TCP when unset; on the host's network the host port is the
    container port when unset (the API server's defaulting)."""
    out = {"protocol": "TCP", **port}
    if host_network:
        out.setdefault("hostPort", port.get("containerPort"))
    if not out.get("hostPort"):
        out.pop("hostPort", None)  # 0 is omitted when read back
    return _clean(out)


def _container(container: dict[str, Any], host_network: bool = False) -> dict[str, Any]:
    return {
        "image": container.get("image"),
        "command": container.get("command") or [],
        "args": container.get("args") or [],
        "env": {str(e.get("name")): _env(e) for e in container.get("env") or []},
        "envFrom": _clean(container.get("envFrom") or []),
        "mounts": {
            str(m.get("mountPath")): _clean(
                {"volume": m.get("name"), "subPath": m.get("subPath"), "readOnly": m.get("readOnly")}
            )
            for m in container.get("volumeMounts") or []
        },
        "securityContext": _clean(container.get("securityContext") or {}),
        "resources": _resources(container.get("resources")),
        "livenessProbe": _probe(container.get("livenessProbe")),
        "readinessProbe": _probe(container.get("readinessProbe")),
        "startupProbe": _probe(container.get("startupProbe")),
        "ports": sorted(
            (_port(p, host_network) for p in container.get("ports") or []), key=lambda p: json.dumps(p, sort_keys=True)
        ),
        "lifecycle": {k: _handler(v) for k, v in (container.get("lifecycle") or {}).items()},
        "workingDir": container.get("workingDir") or "",
        "restartPolicy": container.get("restartPolicy") or "",  # Always: a sidecar init container
        "stdin": bool(container.get("stdin")),
        "tty": bool(container.get("tty")),
    }


# Labels the Job controller adds to its pod template (and the selector it makes from them).
_JOB_LABELS = ("controller-uid", "job-name", "batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name")


def _sorted(items: list[Any] | None) -> list[Any]:
    return sorted((_clean(i) for i in items or []), key=lambda i: json.dumps(i, sort_keys=True))


def _pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "serviceAccountName": spec.get("serviceAccountName") or spec.get("serviceAccount") or "default",
        "automountServiceAccountToken": spec.get("automountServiceAccountToken", True),
        "securityContext": _clean(spec.get("securityContext") or {}),
        "hostNetwork": bool(spec.get("hostNetwork")),
        "hostPID": bool(spec.get("hostPID")),
        "hostIPC": bool(spec.get("hostIPC")),
        "shareProcessNamespace": bool(spec.get("shareProcessNamespace")),
        "dnsPolicy": spec.get("dnsPolicy") or "ClusterFirst",
        "nodeName": spec.get("nodeName") or "",
        "nodeSelector": spec.get("nodeSelector") or {},
        "affinity": _clean(spec.get("affinity") or {}),
        "tolerations": _sorted(spec.get("tolerations")),
        "topologySpreadConstraints": _sorted(spec.get("topologySpreadConstraints")),
        "priorityClassName": spec.get("priorityClassName") or "",
        "runtimeClassName": spec.get("runtimeClassName") or "",
        "imagePullSecrets": _sorted(spec.get("imagePullSecrets")),
        "hostAliases": _sorted(spec.get("hostAliases")),
        "volumes": {str(v.get("name")): _volume(v) for v in spec.get("volumes") or []},
    }


def _template_labels(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod template's labels (what Services, NetworkPolicies and PDBs select pods by)."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    labels = dict(((spec.get("template") or {}).get("metadata") or {}).get("labels") or {})
    return {k: v for k, v in labels.items() if k not in _JOB_LABELS}


_JOB_DEFAULTS = {"backoffLimit": 6, "completions": 1, "parallelism": 1, "suspend": False}
_CRONJOB_DEFAULTS = {"concurrencyPolicy": "Allow", "suspend": False}


def _run_settings(obj: dict[str, Any]) -> dict[str, Any]:
    """When and how often a Job or CronJob runs, defaults filled in."""
    spec = obj.get("spec") or {}
    out: dict[str, Any] = {}
    if obj.get("kind") == "CronJob":
        out = {k: spec.get(k, v) for k, v in _CRONJOB_DEFAULTS.items()}
        for key in ("schedule", "timeZone", "startingDeadlineSeconds"):
            out[key] = spec.get(key)
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    out.update({f"job {k}": spec.get(k, v) for k, v in _JOB_DEFAULTS.items()})
    for key in ("activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        out[f"job {key}"] = spec.get(key)
    cleaned: dict[str, Any] = _clean(out)
    return cleaned


def _claim_templates(obj: dict[str, Any]) -> dict[str, Any]:
    """A StatefulSet's volume claim templates: size, access modes, class when set."""
    out = {}
    for template in (obj.get("spec") or {}).get("volumeClaimTemplates") or []:
        spec = template.get("spec") or {}
        out[str((template.get("metadata") or {}).get("name"))] = _clean(
            {
                "size": str(_quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage"))),
                "accessModes": sorted(spec.get("accessModes") or []),
                "storageClassName": spec.get("storageClassName"),
            }
        )
    return out


def _differences(where: str, predicted: Any, live: Any) -> list[str]:
    """Field by field (one level into objects), what differs."""
    if predicted == live:
        return []
    if isinstance(predicted, dict) and isinstance(live, dict):
        out = []
        for key in sorted(set(predicted) | set(live), key=str):
            if key not in live:
                out.append(f"{where}.{key}: predicted, not live ({_text(predicted[key])})")
            elif key not in predicted:
                out.append(f"{where}.{key}: live, not predicted ({_text(live[key])})")
            elif predicted[key] != live[key]:
                out.append(f"{where}.{key}: {_text(predicted[key])} predicted, {_text(live[key])} live")
        return out
    return [f"{where}: {_text(predicted)} predicted, {_text(live)} live"]


def workload_differences(predicted: dict[str, Any], live: dict[str, Any], scaled: bool = False) -> list[str]:
    """Pod template and replicas of two workloads (containers matched by name; a container on one
    side only is reported by the caller)."""
    out: list[str] = []
    if predicted.get("kind") in _SCALED and not scaled:
        want = (predicted.get("spec") or {}).get("replicas", 1)
        have = (live.get("spec") or {}).get("replicas", 1)
        if want != have:
            out.append(f"replicas: {want} predicted, {have} live")
    if predicted.get("kind") in ("Job", "CronJob"):
        out += _differences("spec", _run_settings(predicted), _run_settings(live))
    if predicted.get("kind") == "StatefulSet":
        out += _differences("volumeClaimTemplate", _claim_templates(predicted), _claim_templates(live))
    out += _differences("pod template labels", _template_labels(predicted), _template_labels(live))
    want_pod, have_pod = pod_spec_of(predicted) or {}, pod_spec_of(live) or {}
    pod_a, pod_b = _pod(want_pod), _pod(have_pod)
    for field in pod_a:
        if field != "volumes":
            out += _differences(f"pod {field}", pod_a[field], pod_b[field])
    out += _differences("volume", pod_a["volumes"], pod_b["volumes"])
    for group, label in (("initContainers", "initContainer"), ("containers", "container")):
        a = {str(c.get("name")): c for c in want_pod.get(group) or []}
        b = {str(c.get("name")): c for c in have_pod.get(group) or []}
        for name in sorted(a.keys() & b.keys()):
            ca, cb = _container(a[name], pod_a["hostNetwork"]), _container(b[name], pod_b["hostNetwork"])
            for field in ca:
                if field == "image":
                    continue  # with the containers, env names and mount paths: template_differences
                if field in ("env", "mounts"):
                    common = ca[field].keys() & cb[field].keys()
                    out += _differences(
                        f"{label} {name} {field}", {k: ca[field][k] for k in common}, {k: cb[field][k] for k in common}
                    )
                elif ca[field] != cb[field]:
                    out.append(f"{label} {name} {field}: {_text(ca[field])} predicted, {_text(cb[field])} live")
    return out


def _rules(rules: list[dict[str, Any]] | None) -> list[Any]:
    def one(rule: dict[str, Any]) -> Any:
        return _clean({k: sorted(v) if isinstance(v, list) else v for k, v in rule.items()})

    return sorted((one(r) for r in rules or []), key=lambda r: json.dumps(r, sort_keys=True))


def _subjects(subjects: list[dict[str, Any]] | None) -> list[Any]:
    out = []
    for subject in subjects or []:
        group = "" if subject.get("kind") == "ServiceAccount" else "rbac.authorization.k8s.io"
        out.append(_clean({"apiGroup": group, **subject}))
    return sorted(out, key=lambda s: json.dumps(s, sort_keys=True))


def _policy_ports(rules: list[dict[str, Any]] | None) -> list[Any]:
    out = []
    for rule in rules or []:
        rule = dict(rule)
        rule["ports"] = [{"protocol": "TCP", **p} for p in rule.get("ports") or []]
        out.append(_clean(rule))
    return out


def _network_policy(spec: dict[str, Any]) -> dict[str, Any]:
    types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
    return {
        "podSelector": _clean(spec.get("podSelector") or {}),
        "policyTypes": sorted(types),
        "ingress": _policy_ports(spec.get("ingress")),
        "egress": _policy_ports(spec.get("egress")),
    }


def _service(spec: dict[str, Any], predicted: dict[str, Any]) -> dict[str, Any]:
    ports = []
    for port in spec.get("ports") or []:
        entry = {"protocol": "TCP", "targetPort": port.get("port"), **port}
        if "nodePort" not in predicted:
            entry.pop("nodePort", None)
        ports.append(_clean(entry))
    return {
        "type": spec.get("type") or "ClusterIP",
        "selector": spec.get("selector") or {},
        "ports": sorted(ports, key=lambda p: json.dumps(p, sort_keys=True)),
    }


def _claim(spec: dict[str, Any], predicted: dict[str, Any]) -> dict[str, Any]:
    out = {
        "size": _quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage")),
        "accessModes": sorted(spec.get("accessModes") or []),
    }
    for optional in ("storageClassName", "volumeName", "volumeMode"):
        if optional in predicted:
            out[optional] = spec.get(optional)
    return out


def _volume_spec(spec: dict[str, Any], predicted: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "size": _quantity((spec.get("capacity") or {}).get("storage")),
        "accessModes": sorted(spec.get("accessModes") or []),
        "persistentVolumeReclaimPolicy": spec.get("persistentVolumeReclaimPolicy") or "Retain",
    }
    for source in ("hostPath", "nfs", "csi", "local"):
        if source in spec or source in predicted:
            out[source] = _volume({source: spec.get(source)}).get(source)
    for optional in ("storageClassName", "nodeAffinity"):
        if optional in predicted:
            out[optional] = _clean(spec.get(optional)) or None  # a volume's "" class is no class: not kept
    return out


# Service account annotations that decide which cloud identity its pods get.
_IDENTITY_ANNOTATIONS = ("eks.amazonaws.com/", "iam.gke.io/", "azure.workload.identity/")
_POD_SECURITY = "pod-security.kubernetes.io/"


_FILLED_BY_KUBERNETES = ("kubernetes.io/service-account-token",)  # the token controller writes its keys


def _secret(obj: dict[str, Any]) -> dict[str, Any]:
    """A Secret's type and keys (its values are generated: the preview holds placeholders)."""
    kind = obj.get("type") or "Opaque"
    keys = {*(obj.get("data") or {}), *(obj.get("stringData") or {})}
    return {"type": kind, "keys": sorted(keys) if kind not in _FILLED_BY_KUBERNETES else "(filled in by Kubernetes)"}


def _service_account(obj: dict[str, Any]) -> dict[str, Any]:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return {
        "automountServiceAccountToken": obj.get("automountServiceAccountToken", True),
        "imagePullSecrets": _sorted(obj.get("imagePullSecrets")),
        "identity": {k: v for k, v in annotations.items() if k.startswith(_IDENTITY_ANNOTATIONS)},
    }


def _namespace(obj: dict[str, Any]) -> dict[str, Any]:
    """A Namespace's Pod Security levels (what its pods are admitted at)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return {"podSecurity": {k: v for k, v in labels.items() if k.startswith(_POD_SECURITY)}}


def _same(predicted: Any, live: Any) -> bool:
    if predicted == live:
        return True
    if isinstance(predicted, str) and isinstance(live, str):  # quantities read back canonical
        a, b = _quantity(predicted), _quantity(live)
        return not isinstance(a, str) and a == b
    return False


def _unkept(where: str, predicted: Any, live: Any, out: list[str]) -> None:
    """Every field the prediction sets, at any depth, holds the predicted value live (the live
    object may carry more: what the API server or a CRD's schema defaults)."""
    if isinstance(predicted, dict) and isinstance(live, dict):
        for key, value in predicted.items():
            if key not in live:
                out.append(f"{where}.{key}: predicted, not live ({_text(value)})")
            else:
                _unkept(f"{where}.{key}", value, live[key], out)
    elif isinstance(predicted, list) and isinstance(live, list):
        if len(predicted) != len(live):
            out.append(f"{where}: {len(predicted)} items predicted, {len(live)} live ({_text(live)})")
            return
        for i, (a, b) in enumerate(zip(predicted, live, strict=True)):
            _unkept(f"{where}[{i}]", a, b, out)
    elif not _same(predicted, live):
        out.append(f"{where}: {_text(predicted)} predicted, {_text(live)} live")


_METADATA_ONLY = ("apiVersion", "kind", "metadata", "status")


def whole_object_differences(predicted: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """Every field of every kind without a projection of its own (custom resources, HPAs, PDBs,
    Ingresses, StorageClasses, LimitRanges, ...): all that the prediction sets, as predicted."""
    out: list[str] = []
    for key, value in _clean({k: v for k, v in predicted.items() if k not in _METADATA_ONLY}).items():
        if key not in live:
            out.append(f"{key}: predicted, not live ({_text(value)})")
        else:
            _unkept(key, value, live[key], out)
    return out


_Projection = Callable[[dict[str, Any], dict[str, Any]], Any]
_PROJECTIONS: dict[str, tuple[str, _Projection]] = {
    "ConfigMap": ("data", lambda o, p: {"data": o.get("data") or {}, "binaryData": o.get("binaryData") or {}}),
    "Role": ("rules", lambda o, p: _rules(o.get("rules"))),
    "ClusterRole": ("rules", lambda o, p: None if p.get("aggregationRule") else _rules(o.get("rules"))),
    "RoleBinding": ("binding", lambda o, p: {"roleRef": o.get("roleRef"), "subjects": _subjects(o.get("subjects"))}),
    "ClusterRoleBinding": (
        "binding",
        lambda o, p: {"roleRef": o.get("roleRef"), "subjects": _subjects(o.get("subjects"))},
    ),
    "NetworkPolicy": ("spec", lambda o, p: _network_policy(o.get("spec") or {})),
    "Service": ("spec", lambda o, p: _service(o.get("spec") or {}, (p.get("spec") or {}))),
    "PersistentVolumeClaim": ("spec", lambda o, p: _claim(o.get("spec") or {}, p.get("spec") or {})),
    "PersistentVolume": ("spec", lambda o, p: _volume_spec(o.get("spec") or {}, p.get("spec") or {})),
    "Secret": ("secret", lambda o, p: _secret(o)),
    "ServiceAccount": ("serviceAccount", lambda o, p: _service_account(o)),
    "Namespace": ("namespace", lambda o, p: _namespace(o)),
}


def object_differences(predicted: dict[str, Any], live: dict[str, Any], *, scaled: bool = False) -> list[str]:
    """The differences in behaviour between a predicted object and its live one."""
    kind = str(predicted.get("kind"))
    if kind in WORKLOAD_KINDS:
        return workload_differences(predicted, live, scaled=scaled)
    projection = _PROJECTIONS.get(kind)
    if projection is None:
        return whole_object_differences(predicted, live)
    field, project = projection
    want, have = project(predicted, predicted), project(live, predicted)
    if kind == "ConfigMap":
        return _differences("data", want["data"], have["data"]) + _differences(
            "binaryData", want["binaryData"], have["binaryData"]
        )
    return _differences(field, want, have)


def scaled_targets(predicted: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of workloads whose replicas an autoscaler (HPA, KEDA) sets."""
    out = set()
    for obj in predicted:
        if obj.get("kind") not in ("HorizontalPodAutoscaler", "ScaledObject"):
            continue
        ref = (obj.get("spec") or {}).get("scaleTargetRef") or {}
        namespace = str((obj.get("metadata") or {}).get("namespace") or "")
        out.add((str(ref.get("kind") or "Deployment"), namespace, str(ref.get("name"))))
    return out
