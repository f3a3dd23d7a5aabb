"""An in-memory stand-in for e2e.kube.Kube: list, read, create, discovery, nothing else."""

from __future__ import annotations

import copy
from typing import Any

from e2e.kube import ApiError, ApiResource, Kube

BUILTIN = (
    ApiResource("v1", "namespaces", "Namespace", False),
    ApiResource("v1", "nodes", "Node", False),
    ApiResource("v1", "persistentvolumes", "PersistentVolume", False),
    ApiResource("v1", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    ApiResource("v1", "pods", "Pod", True),
    ApiResource("v1", "events", "Event", True),
    ApiResource("v1", "services", "Service", True),
    ApiResource("v1", "endpoints", "Endpoints", True),
    ApiResource("v1", "secrets", "Secret", True),
    ApiResource("v1", "configmaps", "ConfigMap", True),
    ApiResource("v1", "serviceaccounts", "ServiceAccount", True),
    ApiResource("apps/v1", "deployments", "Deployment", True),
    ApiResource("apps/v1", "replicasets", "ReplicaSet", True),
    ApiResource("apps/v1", "statefulsets", "StatefulSet", True),
    ApiResource("apps/v1", "daemonsets", "DaemonSet", True),
    ApiResource("apps/v1", "controllerrevisions", "ControllerRevision", True),
    ApiResource("batch/v1", "jobs", "Job", True),
    ApiResource("batch/v1", "cronjobs", "CronJob", True),
    ApiResource("discovery.k8s.io/v1", "endpointslices", "EndpointSlice", True),
    ApiResource("coordination.k8s.io/v1", "leases", "Lease", True),
    ApiResource("storage.k8s.io/v1", "storageclasses", "StorageClass", False),
    ApiResource("rbac.authorization.k8s.io/v1", "roles", "Role", True),
    ApiResource("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding", True),
    ApiResource("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", False),
    ApiResource("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", False),
    ApiResource("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", True),
    ApiResource("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", True),
    ApiResource("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True),
    ApiResource("autoscaling/v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True),
    ApiResource("authorization.k8s.io/v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
)


class FakeKube(Kube):
    def __init__(self, objects: list[dict[str, Any]] | None = None, extra: tuple[ApiResource, ...] = ()) -> None:
        self.objects = [copy.deepcopy(o) for o in objects or []]
        self._table = {(r.group_version, r.kind): r for r in (*BUILTIN, *extra)}
        self._resources = None
        self.reads: list[tuple[str, str, str, str | None]] = []

    def resources(self) -> dict[tuple[str, str], ApiResource]:
        return dict(self._table)

    def get(self, path: str) -> Any:
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for gv, _ in self._table:
                if "/" in gv:
                    group = gv.rpartition("/")[0]
                    groups.setdefault(group, []).append(gv)
            return {
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": v} for v in vs],
                        "preferredVersion": {"groupVersion": vs[0]},
                    }
                    for g, vs in groups.items()
                ]
            }
        raise ApiError("GET", path, 404, "not served by the fake")

    def _matches(self, obj: dict[str, Any], api_version: str, kind: str) -> bool:
        group = api_version.rpartition("/")[0]
        return str(obj.get("apiVersion", "")).rpartition("/")[0] == group and obj.get("kind") == kind

    def _namespaced(self, api_version: str, kind: str) -> bool:
        res = self._table.get((api_version, kind))
        if res is None:
            raise ApiError("DISCOVER", f"{api_version}/{kind}", 404, "no such kind on the server")
        return res.namespaced

    def _as_served(self, obj: dict[str, Any], api_version: str) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        out["apiVersion"] = api_version
        return out

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        if (api_version, kind) == ("authorization.k8s.io/v1", "SelfSubjectAccessReview"):
            raise ApiError("GET", kind, 405, "method not allowed")
        namespaced = self._namespaced(api_version, kind)
        items = []
        for obj in self.objects:
            if not self._matches(obj, api_version, kind):
                continue
            if namespaced and namespace and obj["metadata"].get("namespace") != namespace:
                continue
            item = self._as_served(obj, api_version)
            del item["apiVersion"], item["kind"]  # list items come without them, as from the API server
            items.append(item)
        return items

    def read(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        self.reads.append((api_version, kind, name, namespace))
        namespaced = self._namespaced(api_version, kind)
        for obj in self.objects:
            if not self._matches(obj, api_version, kind) or obj["metadata"]["name"] != name:
                continue
            if namespaced and obj["metadata"].get("namespace") != namespace:
                continue
            return self._as_served(obj, api_version)
        return None

    def create(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        self.objects.append(copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> None:
        namespaced = self._namespaced(api_version, kind)
        self.objects = [
            o
            for o in self.objects
            if not (
                self._matches(o, api_version, kind)
                and o["metadata"]["name"] == name
                and (not namespaced or o["metadata"].get("namespace") == namespace)
            )
        ]
