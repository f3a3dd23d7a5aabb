"""The node scenario's checks of the machine and of the cluster, offline: nothing of a node left
after its teardown (`cleanup.leftovers`), and the offline preview's pods against the pods that run
(`e2e/node/predicted.py`)."""

from __future__ import annotations

from typing import Any

from e2e.node import cleanup, config
from e2e.node.cleanup import Proc
from e2e.node.predicted import compare_pods
from tests.test_node import FOLDER, MOUNTINFO

CLEAN = cleanup.MachineView(
    procs=[Proc(15, "sshd", "4:memory:/\n")],
    mountinfo="22 1 0:21 / / rw - ext4 /dev/sda1 rw\n",
    netns={"cni-other": ["10.244.1.2"]},
    links=[{"ifname": "eth0"}, {"ifname": "docker0"}],
    firewall={"iptables": "*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -j DOCKER\nCOMMIT\n"},
    cgroups={},
    cni_results=["podman-def-eth0", "cni-loopback-1-lo"],
    record=False,
)


class TestNothingLeftAfterTeardown:
    def test_a_machine_without_anything_of_a_node_has_no_leftovers(self):
        assert cleanup.leftovers(CLEAN, FOLDER) == []

    def test_each_kind_of_leftover_is_named(self):
        left = cleanup.MachineView(
            procs=[*CLEAN.procs, Proc(12, "/pause", "4:memory:/airflow-k8s-node/kubepods/pod1/abc\n")],
            mountinfo=MOUNTINFO,
            netns={**CLEAN.netns, "cni-1234": ["10.88.0.7"]},
            links=[*CLEAN.links, {"ifname": config.NODE_BRIDGE}],
            firewall={
                "iptables": CLEAN.firewall["iptables"],
                "ip6tables": "*filter\n:KUBE-FIREWALL - [0:0]\nCOMMIT\n",
            },
            cgroups={"memory": ["/sys/fs/cgroup/memory/airflow-k8s-node"]},
            cni_results=[*CLEAN.cni_results, "airflow-k8s-node-abc-eth0"],
            record=True,
        )
        found = cleanup.leftovers(left, FOLDER)
        assert "process 12" in found
        assert "mount /run/netns/cni-1234" in found
        assert f"mount {FOLDER}/node/kubelet/pods/uid/volumes/kubernetes.io~projected/kube-api-access" in found
        assert "network namespace cni-1234" in found
        assert f"interface {config.NODE_BRIDGE}" in found
        assert "ip6tables filter chain KUBE-FIREWALL" in found
        assert "cgroup /sys/fs/cgroup/memory/airflow-k8s-node" in found
        assert "CNI result airflow-k8s-node-abc-eth0" in found
        assert "the record of a running node" in found
        assert not any("cni-other" in item or "docker" in item.lower() or "podman" in item for item in found)

    def test_the_process_that_looks_is_not_a_leftover(self):
        view = cleanup.MachineView(**{**CLEAN.__dict__, "procs": [Proc(16, f"python -m e2e --keep {FOLDER}", "")]})
        assert cleanup.leftovers(view, FOLDER, spare=[16]) == []
        assert cleanup.leftovers(view, FOLDER) == ["process 16"]


def obj(kind: str, name: str, replicas: int | None = None, owner: tuple[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "airflow"}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    out: dict[str, Any] = {"kind": kind, "metadata": meta}
    if replicas is not None:
        out["spec"] = {"replicas": replicas}
    return out


def nameless(item: dict[str, Any]) -> dict[str, Any]:
    """An item of a list the API server returns: no kind."""
    return {k: v for k, v in item.items() if k != "kind"}


def running_pod(
    name: str, owner: tuple[str, str] | None, labels: dict[str, str] | None = None, ready: bool = True
) -> dict[str, Any]:
    pod = obj("Pod", name, owner=owner)
    pod["metadata"]["labels"] = labels or {}
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}]}
    return pod


class TestPreviewAgainstPods:
    PREDICTED = [
        obj("Deployment", "airflow-api-server", 2),
        obj("StatefulSet", "airflow-postgresql"),
        obj("CronJob", "airflow-cleanup"),
        obj("Job", "airflow-run-airflow-migrations"),
        obj("Service", "airflow-api-server"),
    ]
    OWNERS = {  # as a list from the API server: the items name no kind
        "ReplicaSet": [
            nameless(obj("ReplicaSet", "airflow-api-server-7f", owner=("Deployment", "airflow-api-server"))),
            nameless(obj("ReplicaSet", "stray-5c", owner=("Deployment", "stray"))),
        ],
        "Job": [nameless(obj("Job", "airflow-cleanup-2990", owner=("CronJob", "airflow-cleanup")))],
    }

    def compare(self, pods):
        return compare_pods(self.PREDICTED, pods, self.OWNERS)

    def test_every_predicted_pod_running_and_jobs_and_dag_pods_are_accounted_for(self):
        pods = [
            running_pod("airflow-api-server-7f-a", ("ReplicaSet", "airflow-api-server-7f")),
            running_pod("airflow-api-server-7f-b", ("ReplicaSet", "airflow-api-server-7f")),
            running_pod("airflow-postgresql-0", ("StatefulSet", "airflow-postgresql")),
            running_pod("airflow-cleanup-2990-x", ("Job", "airflow-cleanup-2990")),
            running_pod("airflow-run-airflow-migrations-y", ("Job", "airflow-run-airflow-migrations")),
            running_pod("example-etl-extract-z", None, {"dag_id": "example_etl", "kubernetes_executor": "True"}),
        ]
        missing, unexpected, counts = self.compare(pods)
        assert (missing, unexpected) == ([], [])
        assert counts == {"workload": 3, "job": 2, "dag": 1}

    def test_a_predicted_workload_short_of_ready_pods_is_missing(self):
        pods = [
            running_pod("airflow-api-server-7f-a", ("ReplicaSet", "airflow-api-server-7f")),
            running_pod("airflow-api-server-7f-b", ("ReplicaSet", "airflow-api-server-7f"), ready=False),
        ]
        missing, _, _ = self.compare(pods)
        assert missing == [
            "Deployment airflow/airflow-api-server: 1 of 2 pods Running and Ready",
            "StatefulSet airflow/airflow-postgresql: 0 of 1 pods Running and Ready",
        ]

    def test_a_pod_the_preview_did_not_predict_is_named_with_its_owner(self):
        pods = [
            running_pod("stray-5c-q", ("ReplicaSet", "stray-5c")),
            running_pod("lonely", None),
        ]
        _, unexpected, _ = self.compare(pods)
        assert unexpected == [
            "pod airflow/stray-5c-q (Deployment stray) was not predicted",
            "pod airflow/lonely (no owner) was not predicted",
        ]
