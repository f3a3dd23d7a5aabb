"""LogStorage: task logs that survive pods and reach every Airflow pod."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict, cast

import pulumi
import pulumi_kubernetes as k8s

from ..core.airflow_user import AIRFLOW_UID
from .config import (
    LOGS_PATH,
    LogsConfig,
    claim_name,
    elasticsearch_secret_name,
    logs_values,
    parse_logs,
    storage_class_name,
    volume_name,
    wasb_identity_connection,
)

PACKAGE = "airflow-k8s"
# Pinned helper image for the one-off ownership fix of hostPath log folders.
PERMISSIONS_IMAGE = "busybox:1.37.0"


class LogStorageArgs(TypedDict):
    """Inputs of LogStorage."""

    settings: LogsConfig | Mapping[str, Any]
    """A `LogsConfig`, or a mapping of the same shape as the `logs` stack config key."""

    namespace: pulumi.Input[str]
    """The Airflow namespace (where the claim and any connection Secret live)."""

    namespace_name: str
    """The namespace's name as plain text, for names of cluster-scoped objects."""

    release_name: str
    """The Airflow Helm release name (prefixes the claim and cluster-scoped names)."""

    connection: NotRequired[pulumi.Input[str] | None]
    """Credentials for remote logging (`logsConnection`): an Airflow connection URI or JSON,
    or for Elasticsearch its URL. Secret."""


class LogStorage(pulumi.ComponentResource):
    """A logs volume (hostPath, NFS or a ReadWriteMany class) or remote logging.

    Volumes are never deleted with the stack: PersistentVolumes use reclaimPolicy Retain
    and the volume, claim and StorageClass are declared with `retainOnDelete`.
    """

    claim_name: pulumi.Output[str | None]
    """The logs PersistentVolumeClaim every Airflow pod mounts (None for emptyDir and remote)."""
    values: pulumi.Output[dict[str, Any]]
    """The Airflow chart values AirflowRelease merges (logs persistence, groomer, remote logging)."""
    connections: dict[str, pulumi.Output[str]]
    """Airflow connections remote logging needs (conn id -> secret value), for AirflowRelease."""

    def __init__(self, name: str, args: LogStorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{PACKAGE}:index:LogStorage", name, {}, opts)
        settings = args["settings"]
        connection = args.get("connection")
        cfg = settings if isinstance(settings, LogsConfig) else parse_logs(settings, logs_connection=connection)
        self.config = cfg
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=True, protect=True)
        ns_name, release = args["namespace_name"], args["release_name"]
        namespace = args["namespace"]
        labels = {"app.kubernetes.io/part-of": "airflow", "app.kubernetes.io/managed-by": "pulumi", "release": release}

        claim: pulumi.Output[str | None] = pulumi.Output.from_input(None)
        self.connections = {}
        if cfg.uses_claim:
            pvc = self._volume(name, cfg, namespace, ns_name, release, labels, keep)
            claim = pvc.metadata.name
            if cfg.mode == "hostPath":
                self._fix_ownership(name, namespace, release, labels, pvc, child)
        elif cfg.remote is not None and connection is not None:
            secret_value = pulumi.Output.secret(connection)
            if cfg.remote.target == "elasticsearch":
                k8s.core.v1.Secret(
                    f"{name}-elasticsearch-secret",
                    metadata={"name": elasticsearch_secret_name(release), "namespace": namespace, "labels": labels},
                    type="Opaque",
                    string_data={"connection": secret_value},
                    opts=child,
                )
            else:
                self.connections = {cfg.remote.connection_id: secret_value}
        elif cfg.remote is not None and cfg.remote.workload_identity and cfg.remote.target == "wasb":
            # No credentials in it; kept with the other connections all the same.
            self.connections = {
                cfg.remote.connection_id: pulumi.Output.secret(wasb_identity_connection(cfg.remote.base_log_folder))
            }

        self.claim_name = claim
        self.values = claim.apply(lambda c: logs_values(cfg, release, c))
        self.register_outputs({"claim_name": self.claim_name, "values": self.values})

    def _volume(
        self,
        name: str,
        cfg: LogsConfig,
        namespace: pulumi.Input[str],
        ns_name: str,
        release: str,
        labels: dict[str, str],
        keep: pulumi.ResourceOptions,
    ) -> k8s.core.v1.PersistentVolumeClaim:
        """The logs claim, and for hostPath/NFS the PersistentVolume (and StorageClass) it binds to."""
        access = ["ReadWriteMany"]  # the chart's logs volume is always ReadWriteMany (apache/airflow#48243)
        depends: list[pulumi.Resource] = []
        volume_name_out: pulumi.Input[str] | None = None
        class_name: pulumi.Input[str] = cfg.storage_class or ""
        if cfg.mode == "hostPath" and cfg.adopt_storage_class:
            class_name = storage_class_name(ns_name, release, cfg)  # the cluster's own: used, never declared
        elif cfg.mode == "hostPath":
            sc = k8s.storage.v1.StorageClass(
                f"{name}-storage-class",
                metadata={"name": storage_class_name(ns_name, release, cfg), "labels": labels},
                provisioner="kubernetes.io/no-provisioner",
                reclaim_policy="Retain",
                volume_binding_mode="Immediate",
                opts=keep,
            )
            class_name = sc.metadata.name
            depends.append(sc)
        if cfg.mode in ("hostPath", "nfs"):
            spec: dict[str, Any] = {
                "capacity": {"storage": cfg.size},
                "accessModes": access,
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": class_name,
            }
            if cfg.mode == "hostPath":
                spec["hostPath"] = {"path": cfg.host_path, "type": "DirectoryOrCreate"}
                if cfg.node:
                    spec["nodeAffinity"] = {
                        "required": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [cfg.node]}
                                    ]
                                }
                            ]
                        }
                    }
            else:
                spec["nfs"] = {"server": cfg.nfs_server, "path": cfg.nfs_path}
                spec["mountOptions"] = list(cfg.mount_options)
            pv = k8s.core.v1.PersistentVolume(
                f"{name}-volume",
                metadata={
                    "name": volume_name(ns_name, release),
                    "labels": labels,
                    # Pods that mount the volume get GID 0 as a supplemental group, like the chart's pods.
                    "annotations": {"pv.beta.kubernetes.io/gid": "0"},
                },
                spec=cast(Any, spec),
                opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(depends_on=depends)),
            )
            volume_name_out = pv.metadata.name
            depends.append(pv)
        claim_spec: dict[str, Any] = {
            "accessModes": access,
            "storageClassName": class_name,
            "resources": {"requests": {"storage": cfg.size}},
        }
        if volume_name_out is not None:
            claim_spec["volumeName"] = volume_name_out
        return k8s.core.v1.PersistentVolumeClaim(
            f"{name}-claim",
            metadata={"name": claim_name(release), "namespace": namespace, "labels": labels},
            spec=cast(Any, claim_spec),
            opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(depends_on=depends)),
        )

    def _fix_ownership(
        self,
        name: str,
        namespace: pulumi.Input[str],
        release: str,
        labels: dict[str, str],
        pvc: k8s.core.v1.PersistentVolumeClaim,
        child: pulumi.ResourceOptions,
    ) -> None:
        """A hostPath folder is created root-owned; Airflow (uid 50000, gid 0) must write to it.

        One Job, running once, gives the folder to 50000:0 with group write and setgid, with
        only the capabilities `chown` and `chmod` need.
        """
        script = f"chown {AIRFLOW_UID}:0 {LOGS_PATH} && chmod 2775 {LOGS_PATH}"
        k8s.batch.v1.Job(
            f"{name}-permissions",
            metadata={"name": f"{release}-logs-permissions", "namespace": namespace, "labels": labels},
            spec={
                "backoffLimit": 3,
                "template": {
                    "metadata": {"labels": {**labels, "component": "logs-permissions"}},
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "automountServiceAccountToken": False,
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [
                            {
                                "name": "chown",
                                "image": PERMISSIONS_IMAGE,
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["sh", "-c", script],
                                "securityContext": {
                                    "runAsUser": 0,
                                    "runAsNonRoot": False,
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]},
                                },
                                "resources": {
                                    "requests": {"cpu": "10m", "memory": "16Mi"},
                                    "limits": {"cpu": "100m", "memory": "32Mi"},
                                },
                                "volumeMounts": [{"name": "logs", "mountPath": LOGS_PATH}],
                            }
                        ],
                        "volumes": [{"name": "logs", "persistentVolumeClaim": {"claimName": pvc.metadata.name}}],
                    },
                },
            },
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[pvc])),
        )
