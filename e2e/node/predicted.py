"""The offline preview measured against real pods (issue "DAGs run for real", scenario 7): every
pod of a Deployment or StatefulSet the preview predicts runs, and no pod the preview missed
appears. Pure: it compares what was read (tests/test_node.py); the scenario reads it.

A pod belongs to the object at the top of its owners (a Deployment through its ReplicaSet, a
CronJob through its Job). The pods a DAG starts (the KubernetesExecutor's and a
KubernetesPodOperator's, labelled with their `dag_id`) are Airflow's, not the stack's: they are
allowed and counted apart.
"""

from __future__ import annotations

from typing import Any

SERVING = ("Deployment", "StatefulSet", "DaemonSet")
RUN_TO_END = ("Job", "CronJob")

Key = tuple[str, str, str]  # kind, namespace, name


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name"))


def top_owner(obj: dict[str, Any], owners: dict[Key, dict[str, Any]]) -> Key | None:
    """The object at the top of `obj`'s controller chain, through the ReplicaSets and Jobs read
    (`owners`); None when it has no owner."""
    namespace = str((obj.get("metadata") or {}).get("namespace") or "")
    current: Key | None = None
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    for _ in range(5):
        ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
        if ref is None:
            return current
        current = (str(ref["kind"]), namespace, str(ref["name"]))
        parent = owners.get(current)
        refs = ((parent or {}).get("metadata") or {}).get("ownerReferences") or []
    return current


def _running_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return status.get("phase") == "Running" and ready and not (pod.get("metadata") or {}).get("deletionTimestamp")


def compare_pods(
    predicted: list[dict[str, Any]], pods: list[dict[str, Any]], owners: dict[str, list[dict[str, Any]]]
) -> tuple[list[str], list[str], dict[str, int]]:
    """(missing, unexpected, counts). `predicted`: the preview's objects; `pods`: the live pods of
    the stack's namespaces; `owners`: their live ReplicaSets and Jobs by kind (a list the API
    server returns names no kind in its items). Missing: a predicted serving workload with fewer
    pods Running and Ready than its replicas. Unexpected: a pod whose top owner the preview did
    not predict, and which no DAG started."""
    by_key = {_key(o): o for o in predicted}
    owner_map = {_key({**o, "kind": kind}): o for kind, items in owners.items() for o in items}
    running: dict[Key, int] = {}
    unexpected = []
    counts = {"workload": 0, "job": 0, "dag": 0}
    for pod in pods:
        name = _key(pod)
        top = top_owner(pod, owner_map)
        if top is not None and top in by_key:
            counts["job" if top[0] in RUN_TO_END else "workload"] += 1
            if _running_ready(pod):
                running[top] = running.get(top, 0) + 1
        elif ((pod.get("metadata") or {}).get("labels") or {}).get("dag_id"):
            counts["dag"] += 1
        else:
            owner = f"{top[0]} {top[2]}" if top else "no owner"
            unexpected.append(f"pod {name[1]}/{name[2]} ({owner}) was not predicted")
    missing = []
    for key, obj in sorted(by_key.items()):
        if key[0] not in SERVING:
            continue
        spec = obj.get("spec") or {}
        wanted = 1 if key[0] == "DaemonSet" else int(spec.get("replicas", 1))
        have = running.get(key, 0)
        if have < wanted:
            missing.append(f"{key[0]} {key[1]}/{key[2]}: {have} of {wanted} pods Running and Ready")
    return missing, unexpected, counts
