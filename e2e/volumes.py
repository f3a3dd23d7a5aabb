"""A volume-provisioner stand-in for the e2e cluster: every claim binds, whatever its size,
StorageClass (one with no provisioner, `kubernetes.io/no-provisioner`, WaitForFirstConsumer,
or one that does not exist) and access modes.

The real PV controller (kube-controller-manager) still does the binding: for a claim no
existing volume can take, this makes a hostPath PersistentVolume under a temporary folder
that fits the claim and is pre-bound to it (spec.claimRef with the claim's uid), the way an
external provisioner answers. It never takes a claim that names its volume
(spec.volumeName), nor one that a volume already in the cluster could bind (a stack's own
static PersistentVolume, matched by class, size, access modes, volume mode and selector),
and it waits a few seconds before acting so that the PV controller gets there first.

On a real node (`HostFolders`) it is the default StorageClass's provisioner instead: it serves
only the claims of the classes it is given, makes the claim's folder for real (writable by any
uid: the pods' `fsGroup` does not apply to hostPath), pins the volume to the node, gives it the
class's reclaim policy, and when such a volume is released it honours that policy: `Delete`
removes the volume and its folder, `Retain` keeps both.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from components.core.reader import quantity_value
from components.offline.reachability import selector_matches

from .kube import Kube

PROVISIONED_BY = "airflow-k8s-e2e/volume-stand-in"
LABEL = "airflow-k8s-e2e"
PROVISION_AFTER_SECONDS = 3.0
POLL_SECONDS = 1.0
# A pod the scheduler found unschedulable while its claim was still unbound, then did not try again
# once the claim bound (seen on the node with kube-scheduler 1.34: the StatefulSet's PostgreSQL pod
# waited out the 5-minute flush of unschedulable pods). After this long it is deleted, so that its
# controller makes it anew and the scheduler takes it at once.
RETRY_UNSCHEDULED_AFTER_SECONDS = 15.0
DEFAULT_SIZE = "1Gi"


def _storage(obj: dict[str, Any], path: tuple[str, ...]) -> Decimal:
    node: Any = obj.get("spec") or {}
    for key in path:
        node = (node or {}).get(key)
    try:
        return quantity_value(str(node)) if node is not None else Decimal(0)
    except ValueError:
        return Decimal(0)


def labels_for(selector: dict[str, Any] | None) -> dict[str, str]:
    """Labels that satisfy a claim's selector (for the volume made for it)."""
    labels = dict((selector or {}).get("matchLabels") or {})
    for expr in (selector or {}).get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and values:
            labels.setdefault(key, values[0])
        elif op == "Exists":
            labels.setdefault(key, "e2e")
    return labels


def claim_class(claim: dict[str, Any]) -> str:
    """The StorageClass a claim asks for ("" for none). The API server's DefaultStorageClass
    admission has already filled in the default class where the claim named none."""
    spec = claim.get("spec") or {}
    cls = spec.get("storageClassName")
    if cls is None:
        cls = ((claim.get("metadata") or {}).get("annotations") or {}).get("volume.beta.kubernetes.io/storage-class")
    return str(cls or "")


def volume_can_bind(volume: dict[str, Any], claim: dict[str, Any]) -> bool:
    """What the PV controller checks before binding `claim` to `volume`: free (or pre-bound to
    this claim), same class and volume mode, enough capacity, every access mode, selector."""
    spec = volume.get("spec") or {}
    meta = claim["metadata"]
    ref = spec.get("claimRef")
    if ref:
        if (ref.get("namespace"), ref.get("name")) != (meta.get("namespace"), meta["name"]):
            return False
        if ref.get("uid") and ref["uid"] != meta.get("uid"):
            return False
    elif (volume.get("status") or {}).get("phase") not in (None, "Pending", "Available"):
        return False
    if (volume.get("metadata") or {}).get("deletionTimestamp"):
        return False
    claim_spec = claim.get("spec") or {}
    if str(spec.get("storageClassName") or "") != claim_class(claim):
        return False
    if (spec.get("volumeMode") or "Filesystem") != (claim_spec.get("volumeMode") or "Filesystem"):
        return False
    if _storage(volume, ("capacity", "storage")) < _storage(claim, ("resources", "requests", "storage")):
        return False
    if not set(claim_spec.get("accessModes") or []) <= set(spec.get("accessModes") or []):
        return False
    return selector_matches(claim_spec.get("selector"), (volume.get("metadata") or {}).get("labels") or {})


@dataclass(frozen=True)
class HostFolders:
    """Real folders on a real node for the claims of `classes` (StorageClass name -> its reclaim
    policy), made by `provisioner` (the StorageClass's provisioner name)."""

    node: str
    classes: Mapping[str, str]
    provisioner: str


def needs_volume(claim: dict[str, Any], volumes: list[dict[str, Any]]) -> bool:
    """A pending claim that names no volume and that no volume in the cluster can bind."""
    if (claim.get("status") or {}).get("phase", "Pending") != "Pending":
        return False
    if (claim.get("spec") or {}).get("volumeName") or claim["metadata"].get("deletionTimestamp"):
        return False
    if (claim.get("spec") or {}).get("dataSource") or (claim.get("spec") or {}).get("dataSourceRef"):
        return False  # a clone or a snapshot restore: not something a hostPath stand-in can honour
    return not any(volume_can_bind(v, claim) for v in volumes)


def served(claim: dict[str, Any], host: HostFolders | None) -> bool:
    """Whether this provisioner answers `claim`: the stand-in answers every claim, a real node's
    provisioner only those of its classes."""
    return host is None or claim_class(claim) in host.classes


def volume_for(claim: dict[str, Any], folder: Path, host: HostFolders | None = None) -> dict[str, Any]:
    """A hostPath PersistentVolume that fits `claim` exactly, pre-bound to it; on a real node,
    pinned to it with its class's reclaim policy."""
    meta = claim["metadata"]
    spec = claim.get("spec") or {}
    uid = str(meta["uid"])
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage") or DEFAULT_SIZE
    # The stand-in's volumes survive destroy, as the stacks ask; a real class says for itself.
    reclaim = "Retain" if host is None else host.classes[claim_class(claim)]
    volume: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{uid}",
            "labels": {LABEL: "provisioned", **labels_for(spec.get("selector"))},
            "annotations": {"pv.kubernetes.io/provisioned-by": host.provisioner if host else PROVISIONED_BY},
        },
        "spec": {
            "capacity": {"storage": str(size)},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "storageClassName": claim_class(claim),
            "persistentVolumeReclaimPolicy": reclaim,
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": uid,
            },
            "hostPath": {"path": str(folder / f"pvc-{uid}"), "type": "DirectoryOrCreate"},
        },
    }
    if host is not None:
        volume["spec"]["hostPath"]["type"] = "Directory"  # made here, before the volume exists
        volume["spec"]["nodeAffinity"] = {
            "required": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [host.node]}]}
                ]
            }
        }
    return volume


def to_reclaim(volumes: list[dict[str, Any]], host: HostFolders) -> list[dict[str, Any]]:
    """The volumes this provisioner made that are Released with reclaim policy Delete."""
    return [
        v
        for v in volumes
        if ((v.get("metadata") or {}).get("annotations") or {}).get("pv.kubernetes.io/provisioned-by")
        == host.provisioner
        and (v.get("status") or {}).get("phase") == "Released"
        and (v.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete"
        and not (v.get("metadata") or {}).get("deletionTimestamp")
    ]


def stuck_on_bound_claims(pods: list[dict[str, Any]], claims: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pods a controller owns that the scheduler left unschedulable for a claim, though every claim
    they use is bound now."""
    bound = {
        (c["metadata"].get("namespace"), c["metadata"]["name"])
        for c in claims
        if (c.get("status") or {}).get("phase") == "Bound"
    }
    out = []
    for pod in pods:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        if spec.get("nodeName") or meta.get("deletionTimestamp"):
            continue
        if not any(ref.get("controller") for ref in meta.get("ownerReferences") or []):
            continue
        scheduled: dict[str, Any] = next(
            (c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"), {}
        )
        if scheduled.get("reason") != "Unschedulable" or "PersistentVolumeClaim" not in str(scheduled.get("message")):
            continue
        used = [
            (meta.get("namespace"), v["persistentVolumeClaim"]["claimName"])
            for v in spec.get("volumes") or []
            if v.get("persistentVolumeClaim")
        ]
        if used and all(claim in bound for claim in used):
            out.append(pod)
    return out


class Provisioner:
    """Polls the claims of the whole cluster in a thread; see the module docstring."""

    def __init__(
        self,
        kube: Kube,
        folder: Path,
        log: Path,
        *,
        delay: float = PROVISION_AFTER_SECONDS,
        interval: float = POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        host: HostFolders | None = None,
    ) -> None:
        self.host = host
        self.kube = kube
        self.folder = folder
        self.log = log
        self.delay = delay
        self.interval = interval
        self.clock = clock
        self.provisioned: list[str] = []  # "namespace/claim -> volume"
        self.last_error: str | None = None
        self._first_seen: dict[str, float] = {}
        self._stuck_since: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _note(self, line: str) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as out:
            out.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def sync_once(self) -> list[str]:
        """One pass: make a volume for every claim that has needed one for `delay` seconds."""
        claims = self.kube.list("v1", "PersistentVolumeClaim")
        volumes = self.kube.list("v1", "PersistentVolume")
        now = self.clock()
        waiting = {str(c["metadata"]["uid"]) for c in claims if served(c, self.host) and needs_volume(c, volumes)}
        self._first_seen = {uid: self._first_seen.get(uid, now) for uid in waiting}
        made = []
        for claim in claims:
            uid = str(claim["metadata"]["uid"])
            if uid not in waiting or now - self._first_seen[uid] < self.delay:
                continue
            volume = volume_for(claim, self.folder, self.host)
            if self.host is not None:
                path = Path(volume["spec"]["hostPath"]["path"])
                path.mkdir(parents=True, exist_ok=True)
                os.chmod(path, 0o777)  # any uid writes: hostPath ignores the pod's fsGroup
            self.kube.create(volume)
            volumes.append(volume)
            who = f"{claim['metadata']['namespace']}/{claim['metadata']['name']}"
            line = (
                f"{who} -> {volume['metadata']['name']} ({volume['spec']['capacity']['storage']}, "
                f"class {volume['spec']['storageClassName'] or '(none)'}, {','.join(volume['spec']['accessModes'])})"
            )
            self._note(line)
            made.append(line)
            del self._first_seen[uid]
        if self.host is not None:
            for volume in to_reclaim(volumes, self.host):
                self.kube.delete("v1", "PersistentVolume", volume["metadata"]["name"])
                path = Path(volume["spec"]["hostPath"]["path"])
                if path.parent == self.folder:  # only a folder this provisioner made
                    shutil.rmtree(path, ignore_errors=True)
                line = f"{volume['metadata']['name']} released, reclaim policy Delete: volume and folder removed"
                self._note(line)
                made.append(line)
        made += self._retry_unscheduled(now)
        self.provisioned += made
        return made

    def _retry_unscheduled(self, now: float) -> list[str]:
        """Delete the pods stuck_on_bound_claims for RETRY_UNSCHEDULED_AFTER_SECONDS (their controller
        makes them again, and a new pod is scheduled at once)."""
        stuck = {
            str(p["metadata"]["uid"]): p
            for p in stuck_on_bound_claims(self.kube.list("v1", "Pod"), self.kube.list("v1", "PersistentVolumeClaim"))
        }
        self._stuck_since = {uid: self._stuck_since.get(uid, now) for uid in stuck}
        done = []
        for uid, pod in stuck.items():
            if now - self._stuck_since[uid] < RETRY_UNSCHEDULED_AFTER_SECONDS:
                continue
            meta = pod["metadata"]
            self.kube.delete("v1", "Pod", meta["name"], meta["namespace"])
            line = (
                f"{meta['namespace']}/{meta['name']}: unschedulable for a claim that is bound now; deleted, made anew"
            )
            self._note(line)
            done.append(line)
            del self._stuck_since[uid]
        return done

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
                self.last_error = None
            except Exception as exc:  # the API server restarting is not the end of the provisioner
                if str(exc) != self.last_error:
                    self._note(f"error: {exc}")
                self.last_error = str(exc)
            self._stop.wait(self.interval)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="e2e-volume-provisioner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
