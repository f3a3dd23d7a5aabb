"""The real node's own logic, offline (no root, no binaries): the files it runs with, what it
recognises as its own when it cleans up, the real-folder provisioner, and the scenario's checks.
The node itself runs in the e2e run's `node` scenario (docs/e2e.md)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.cluster import KUBERNETES_SERVICE_IP, SERVICE_CIDR, make_certificates
from e2e.node import cleanup, config, local
from e2e.node.airflow_api import log_text
from e2e.node.airflow_steps import (
    NODE_DAGS,
    NOT_RUN,
    OUTCOMES,
    PART_DAGS,
    dag_folder,
    expected_run_state,
    failed_job_pods,
    not_ready,
    restart_counts,
)
from e2e.node.cleanup import Proc
from e2e.node.host import NodeError, _hex_address, images_in, node_not_ready, pod_not_ready
from e2e.node.scenario import PARTS, TRIAL_PARTS, dag_images
from e2e.volumes import HostFolders, Provisioner, to_reclaim, volume_for
from tests.fake_kube import FakeKube
from tests.helpers import ROOT

FOLDER = Path("/tmp/airflow-k8s-e2e-abc/node")


def layout(tmp: Path = FOLDER) -> config.Layout:
    return config.Layout(tmp / "node", tmp / "cluster" / "pki", "airflow-k8s-node", "eth0")


class TestContainerd:
    def test_its_root_state_and_socket_are_under_the_nodes_folder(self):
        text = config.containerd_config(layout())
        assert f'root = "{FOLDER}/node/containerd/root"' in text
        assert f'state = "{FOLDER}/node/containerd/state"' in text
        assert f'address = "{FOLDER}/node/containerd/containerd.sock"' in text

    def test_oom_scores_are_restricted_and_runc_uses_cgroupfs_with_its_state_in_the_folder(self):
        text = config.containerd_config(layout())
        assert "restrict_oom_score_adj = true" in text
        assert "SystemdCgroup = false" in text
        assert f'Root = "{FOLDER}/node/containerd/runc"' in text

    def test_the_sandbox_is_the_imported_pause_image_and_registries_come_from_the_hosts_folder(self):
        text = config.containerd_config(layout())
        assert f'sandbox_image = "{config.PAUSE_IMAGE}"' in text
        assert f'config_path = "{FOLDER}/node/containerd/certs.d"' in text

    def test_every_registry_is_a_local_port_that_refuses(self):
        hosts = config.registry_hosts()
        assert 'server = "http://127.0.0.1:9"' in hosts
        assert "docker.io" not in hosts and "https://" not in hosts


class TestNetwork:
    def test_pods_get_addresses_of_the_pod_range_on_the_nodes_bridge_with_state_in_its_folder(self):
        net = config.cni_conflist(layout())
        bridge, portmap, loopback = net["plugins"]
        assert (bridge["type"], bridge["bridge"], portmap["type"], loopback["type"]) == (
            "bridge",
            config.CNI_BRIDGE,
            "portmap",
            "loopback",
        )
        assert bridge["ipam"]["type"] == "host-local"
        assert bridge["ipam"]["ranges"] == [[{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}]]
        assert bridge["ipam"]["dataDir"] == f"{FOLDER}/node/cni/networks"
        assert bridge["ipMasq"] is False  # nothing is routed out
        assert json.loads(config.cni_conflist_text(layout())) == net

    def test_interface_names_fit_the_kernels_limit(self):
        assert len(config.NODE_BRIDGE) <= 15 and len(config.CNI_BRIDGE) <= 15

    def test_a_route_of_the_machine_that_overlaps_a_node_range_is_named(self):
        routes = ["default", "192.0.2.0/24", "10.96.4.0/24", "10.89.0.1", "fd00::/64"]
        assert config.overlapping(["10.88.0.0/16", SERVICE_CIDR, "10.89.0.1/32"], routes) == [
            "10.96.4.0/24",
            "10.89.0.1",
        ]

    def test_the_api_servers_certificate_holds_the_nodes_address_and_the_kubernetes_service(self, tmp_path):
        make_certificates(tmp_path, config.NODE_ADDRESS, "airflow-k8s-node")
        apiserver = certificate(tmp_path / "apiserver.crt", "-text")
        for ip in ("127.0.0.1", config.NODE_ADDRESS, KUBERNETES_SERVICE_IP):
            assert f"IP Address:{ip}" in apiserver
        assert f"IP Address:{config.NODE_ADDRESS}" in certificate(tmp_path / "kubelet.crt", "-text")
        node = certificate(tmp_path / "node.crt", "-subject")
        assert "O = system:nodes" in node and "CN = system:node:airflow-k8s-node" in node


def certificate(path: Path, what: str) -> str:
    """`openssl x509 -noout <what>` of a certificate."""
    proc = subprocess.run(["openssl", "x509", "-in", str(path), "-noout", what], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


class TestEgressRules:
    def rules(self) -> list[str]:
        return [" ".join(r) for r in config.egress_rules("eth0")]

    def test_pod_traffic_to_the_outside_interface_is_dropped_first_then_anything_outside_the_cluster(self):
        chain = [r for r in self.rules() if f"-A {config.EGRESS_CHAIN}" in r]
        assert "-o eth0" in chain[0] and chain[0].endswith("-j DROP")
        assert "-d 10.88.0.0/16" in chain[1] and "-d 10.96.0.0/16" in chain[2]
        assert chain[-1].endswith("-j DROP") and " -d " not in chain[-1]

    def test_they_sit_in_the_mangle_table_before_kube_proxys_accepting_filter_rules(self):
        assert all(r.startswith("-t mangle ") for r in self.rules())
        jumps = [r for r in self.rules() if " -I " in r]
        assert jumps == [
            f"-t mangle -I FORWARD 1 -s 10.88.0.0/16 -m comment --comment airflow-k8s-node -j {config.EGRESS_CHAIN}",
            f"-t mangle -I INPUT 1 -s 10.88.0.0/16 -m comment --comment airflow-k8s-node -j {config.INPUT_CHAIN}",
        ]

    def test_pods_reach_the_host_only_at_the_nodes_address_and_by_replies(self):
        chain = [r for r in self.rules() if f"-A {config.INPUT_CHAIN}" in r]
        assert "ESTABLISHED,RELATED" in chain[0]
        assert "-d 10.89.0.1/32" in chain[1] and chain[1].endswith("RETURN")
        assert chain[2].endswith("-j DROP")

    def test_without_a_default_route_the_outside_rule_is_left_out(self):
        assert not any("-o " in " ".join(r) for r in config.egress_rules(""))


class TestKubeletAndKubeProxy:
    def test_the_kubelet_serves_on_the_nodes_address_with_the_runs_ca_and_cgroupfs(self):
        cfg = config.kubelet_config(layout(), healthz_port=12345)
        assert (cfg["address"], cfg["port"], cfg["readOnlyPort"]) == ("10.89.0.1", 10250, 0)
        assert cfg["authentication"]["anonymous"] == {"enabled": False}
        assert cfg["authentication"]["x509"]["clientCAFile"] == f"{FOLDER}/cluster/pki/ca.crt"
        assert cfg["authorization"]["mode"] == "Webhook"
        assert (cfg["cgroupDriver"], cfg["cgroupRoot"], cfg["failSwapOn"]) == ("cgroupfs", "/airflow-k8s-node", False)
        assert cfg["containerRuntimeEndpoint"] == f"unix://{FOLDER}/node/containerd/containerd.sock"

    def test_pods_get_the_cluster_dns_and_never_the_machines_name_server(self):
        cfg = config.kubelet_config(layout(), healthz_port=1)
        assert cfg["clusterDNS"] == [config.CLUSTER_DNS] and cfg["resolvConf"] == ""

    def test_imported_images_are_never_garbage_collected(self):
        assert config.kubelet_config(layout(), healthz_port=1)["imageGCHighThresholdPercent"] == 100

    def test_the_node_is_registered_under_the_name_the_stack_pins_on_the_nodes_address(self):
        args = config.kubelet_args(layout(), Path("k.yaml"), Path("k.kubeconfig"))
        assert "--node-ip=10.89.0.1" in args and "--hostname-override=airflow-k8s-node" in args
        assert "--node-labels=airflow-k8s.local/node=real,kubernetes.io/hostname=airflow-k8s-node" in args

    def test_kube_proxy_uses_iptables_and_opens_node_ports_on_the_nodes_address_only(self):
        cfg = config.kube_proxy_config(layout(), Path("kp.kubeconfig"), healthz_port=1, metrics_port=2)
        assert cfg["mode"] == "iptables" and cfg["clusterCIDR"] == config.POD_CIDR
        assert cfg["nodePortAddresses"] == ["10.89.0.1/32"]
        assert cfg["iptables"]["localhostNodePorts"] is False
        assert cfg["healthzBindAddress"].startswith("127.0.0.1:") and cfg["metricsBindAddress"].startswith("127.0.0.1:")
        # No conntrack sysctl is changed on the machine.
        assert cfg["conntrack"]["maxPerCore"] == 0 and cfg["conntrack"]["tcpEstablishedTimeout"] == "0s"

    def test_a_kubeconfig_names_the_server_ca_and_client_certificate(self):
        doc = yaml.safe_load(config.kubeconfig("https://10.89.0.1:6443", Path("ca"), Path("c"), Path("k"), "kubelet"))
        assert doc["clusters"][0]["cluster"] == {"server": "https://10.89.0.1:6443", "certificate-authority": "ca"}
        assert doc["users"][0] == {"name": "kubelet", "user": {"client-certificate": "c", "client-key": "k"}}


class TestClusterObjects:
    def test_coredns_answers_only_the_clusters_names(self):
        corefile = config.corefile()
        assert "kubernetes cluster.local" in corefile
        assert "forward" not in corefile and "/etc/resolv.conf" not in corefile

    def test_coredns_is_a_deployment_and_the_kube_dns_service_at_the_cluster_dns_address(self):
        objects = {o["kind"]: o for o in config.coredns_objects()}
        assert objects["Service"]["spec"]["clusterIP"] == config.CLUSTER_DNS
        assert objects["Service"]["metadata"] == {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns"},
        }
        pod = objects["Deployment"]["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == config.COREDNS_IMAGE
        assert pod["dnsPolicy"] == "Default"  # with the kubelet's empty resolv.conf: no name server

    def test_the_default_storage_class_is_the_one_the_stacks_name_with_the_nodes_provisioner(self):
        cls = config.storage_class()
        assert cls["metadata"]["name"] == "standard"
        assert cls["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
        assert cls["provisioner"] == config.PROVISIONER and cls["reclaimPolicy"] == "Delete"


MOUNTINFO = f"""\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
300 22 0:60 / {FOLDER}/node/containerd/state/io.containerd.grpc.v1.cri/sandboxes/abc/shm rw - tmpfs shm rw
301 22 0:61 / {FOLDER}/node/containerd/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw
302 22 0:62 / {FOLDER}/node/kubelet/pods/uid/volumes/kubernetes.io~projected/kube-api-access rw - tmpfs tmpfs rw
303 22 0:4 net:[4026532] /run/netns/cni-1234 rw shared:5 - nsfs nsfs rw
304 22 0:4 net:[4026533] /run/netns/cni-other rw shared:6 - nsfs nsfs rw
305 22 254:0 /data /tmp/airflow-k8s-e2e-abc/node-other/x rw - ext4 /dev/vda rw
"""


class TestCleanupPlan:
    def test_processes_are_the_nodes_by_their_folder_in_the_command_line_or_their_cgroup(self):
        procs = [
            Proc(10, f"containerd --config {FOLDER}/node/containerd/config.toml", ""),
            Proc(
                11, f"containerd-shim-runc-v2 -namespace k8s.io -address {FOLDER}/node/containerd/containerd.sock", ""
            ),
            Proc(12, "/pause", "4:memory:/airflow-k8s-node/kubepods/besteffort/pod1/abc\n"),
            Proc(13, f"kubelet --root-dir={FOLDER}/node/kubelet", ""),
            Proc(14, f"etcd --data-dir={FOLDER}-other/etcd", ""),  # a longer sibling name: not ours
            Proc(15, "sshd", "4:memory:/\n"),
            Proc(16, f"python -m e2e --keep {FOLDER}", ""),  # the harness itself (spared)
        ]
        assert cleanup.node_processes(procs, FOLDER, spare=[16]) == [10, 11, 12, 13]

    def test_mounts_below_the_folder_and_the_pods_network_namespaces_go_deepest_first(self):
        points = cleanup.mounts_to_unmount(MOUNTINFO, FOLDER, ["cni-1234"])
        assert points[-1] == "/run/netns/cni-1234"
        assert set(points[:-1]) == {
            f"{FOLDER}/node/containerd/state/io.containerd.grpc.v1.cri/sandboxes/abc/shm",
            f"{FOLDER}/node/containerd/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs",
            f"{FOLDER}/node/kubelet/pods/uid/volumes/kubernetes.io~projected/kube-api-access",
        }
        assert "/run/netns/cni-other" not in points and "/" not in points

    def test_network_namespaces_are_the_nodes_when_they_hold_an_address_of_the_pod_range(self):
        found = {"cni-1234": ["10.88.0.7"], "cni-other": ["10.244.1.2"], "cni-empty": [], "x": ["127.0.0.1"]}
        assert cleanup.node_netns(found) == ["cni-1234"]

    def test_links_are_the_veths_on_the_pods_bridge_then_the_two_bridges(self):
        links = [
            {"ifname": "eth0"},
            {"ifname": "veth1", "master": config.CNI_BRIDGE},
            {"ifname": "veth2", "master": "docker0"},
            {"ifname": config.CNI_BRIDGE},
            {"ifname": config.NODE_BRIDGE},
        ]
        assert cleanup.links_to_delete(links) == ["veth1", config.CNI_BRIDGE, config.NODE_BRIDGE]

    def test_firewall_rules_jumping_to_the_nodes_chains_go_before_the_chains(self):
        save = """\
*mangle
:PREROUTING ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:AIRFLOW-K8S-EGRESS - [0:0]
-A FORWARD -s 10.88.0.0/16 -m comment --comment airflow-k8s-node -j AIRFLOW-K8S-EGRESS
-A FORWARD -o eth0 -j ACCEPT
-A AIRFLOW-K8S-EGRESS -o eth0 -m comment --comment airflow-k8s-node -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-ABC - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:DOCKER - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A PREROUTING -j DOCKER
-A KUBE-SERVICES -j KUBE-SVC-ABC
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -j ACCEPT
COMMIT
"""
        plans = {p.table: p for p in cleanup.firewall_plan(save)}
        assert set(plans) == {"mangle", "nat"}
        assert plans["mangle"].restore_script() == (
            "*mangle\n"
            "-D FORWARD -s 10.88.0.0/16 -m comment --comment airflow-k8s-node -j AIRFLOW-K8S-EGRESS\n"
            "-F AIRFLOW-K8S-EGRESS\n-X AIRFLOW-K8S-EGRESS\nCOMMIT\n"
        )
        nat = plans["nat"]
        assert nat.delete_rules == [
            '-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            "-D PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        ]
        assert nat.chains == ["KUBE-SERVICES", "KUBE-SVC-ABC", "CNI-HOSTPORT-DNAT"]  # DOCKER stays

    def test_cgroups_go_children_first(self):
        found = {
            "memory": ["/sys/fs/cgroup/memory/airflow-k8s-node", "/sys/fs/cgroup/memory/airflow-k8s-node/kubepods"],
            "cpu": ["/sys/fs/cgroup/cpu/airflow-k8s-node/kubepods/pod1", "/sys/fs/cgroup/cpu/airflow-k8s-node"],
        }
        order = cleanup.cgroup_dirs(found)
        assert order.index("/sys/fs/cgroup/cpu/airflow-k8s-node/kubepods/pod1") < order.index(
            "/sys/fs/cgroup/cpu/airflow-k8s-node"
        )
        assert order.index("/sys/fs/cgroup/memory/airflow-k8s-node/kubepods") < order.index(
            "/sys/fs/cgroup/memory/airflow-k8s-node"
        )

    def test_only_the_cni_results_of_the_nodes_network_and_its_new_loopbacks_are_removed(self):
        names = [
            "airflow-k8s-node-abc-eth0",
            "podman-def-eth0",
            "airflow-k8s-nodeX",
            "cni-loopback-1-lo",
            "cni-loopback-2-lo",
        ]
        assert cleanup.cni_result_files(names, before=["cni-loopback-1-lo"]) == [
            "airflow-k8s-node-abc-eth0",
            "cni-loopback-2-lo",
        ]

    def test_shim_sockets_are_found_by_the_name_containerd_gives_them(self):
        # sha256("<address>/<namespace>/<id>"), as containerd 1.6's runtime/v2/shim.SocketAddress
        sockets = cleanup.shim_sockets("/f/node/containerd/containerd.sock", {"k8s.io": ["abc"]})
        assert sockets == [
            "/run/containerd/s/" + hashlib.sha256(b"/f/node/containerd/containerd.sock/k8s.io/abc").hexdigest()
        ]

    def test_proc_net_tcp_addresses_read_as_the_kernel_writes_them(self):
        assert _hex_address("0100007F") == "127.0.0.1"
        assert _hex_address("0100590A") == "10.89.0.1"
        assert _hex_address("00000000000000000000000000000000") == "::"


def claim(name: str = "data", cls: str = "standard") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "airflow", "uid": f"uid-{name}"},
        "spec": {
            "storageClassName": cls,
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
        "status": {"phase": "Pending"},
    }


HOST = HostFolders(node="airflow-k8s-node", classes={"standard": "Delete"}, provisioner=config.PROVISIONER)


class TestRealFolders:
    def test_a_claim_of_the_class_gets_a_real_writable_folder_pinned_to_the_node_with_its_policy(self, tmp_path):
        kube = FakeKube([claim()])
        prov = Provisioner(kube, tmp_path / "volumes", tmp_path / "log", delay=0, host=HOST)
        assert prov.sync_once() == ["airflow/data -> pvc-uid-data (1Gi, class standard, ReadWriteOnce)"]
        volume = next(o for o in kube.objects if o["kind"] == "PersistentVolume")
        folder = Path(volume["spec"]["hostPath"]["path"])
        assert folder == tmp_path / "volumes" / "pvc-uid-data" and folder.is_dir()
        assert folder.stat().st_mode & 0o777 == 0o777  # hostPath ignores the pod's fsGroup
        assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        terms = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert terms[0]["matchExpressions"][0]["values"] == ["airflow-k8s-node"]

    def test_claims_of_other_classes_are_left_to_their_own_provisioners(self, tmp_path):
        kube = FakeKube([claim(cls="fast-ssd")])
        prov = Provisioner(kube, tmp_path / "volumes", tmp_path / "log", delay=0, host=HOST)
        assert prov.sync_once() == []

    def test_a_released_volume_with_policy_delete_goes_with_its_folder_and_a_retained_one_stays(self, tmp_path):
        folder = tmp_path / "volumes"
        gone = volume_for(claim("a"), folder, HOST)
        kept = volume_for(
            claim("b"), folder, HostFolders("airflow-k8s-node", {"standard": "Retain"}, config.PROVISIONER)
        )
        for v in (gone, kept):
            v["status"] = {"phase": "Released"}
            Path(v["spec"]["hostPath"]["path"]).mkdir(parents=True)
        assert to_reclaim([gone, kept], HOST) == [gone]
        kube = FakeKube([gone, kept])
        Provisioner(kube, folder, tmp_path / "log", delay=0, host=HOST).sync_once()
        assert [v["metadata"]["name"] for v in kube.objects] == ["pvc-uid-b"]
        assert not (folder / "pvc-uid-a").exists() and (folder / "pvc-uid-b").is_dir()

    def test_the_kwok_stand_in_still_keeps_every_volume_and_names_no_node(self, tmp_path):
        volume = volume_for(claim(), tmp_path)
        assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert "nodeAffinity" not in volume["spec"]


def pod(name: str, phase: str = "Running", ready: bool = True, job: bool = False, restarts: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "ownerReferences": [{"kind": "Job" if job else "ReplicaSet"}]},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "main", "restartCount": restarts}],
        },
    }


class TestScenarioChecks:
    def test_serving_pods_must_be_ready_and_job_pods_only_not_fail(self):
        pods = [
            pod("scheduler"),
            pod("api-server", ready=False),
            pod("migrate", "Succeeded", ready=False, job=True),
            pod("cleanup-pods-123", "Pending", ready=False, job=True),  # a CronJob's run, starting
            pod("create-user-1", "Failed", ready=False, job=True),
        ]
        assert not_ready(pods) == ["api-server (Running)"]
        assert failed_job_pods(pods) == ["create-user-1"]

    def test_every_dag_in_the_dag_folder_is_run_or_said_why_not(self):
        folders = (ROOT / "dags", NODE_DAGS)  # what the scenario mounts (dag_folder)
        declared = {m for f in folders for p in f.glob("*.py") for m in re.findall(r'dag_id="([^"]+)"', p.read_text())}
        assert set(OUTCOMES) | set(PART_DAGS) | set(NOT_RUN) == declared
        assert not set(OUTCOMES) & set(NOT_RUN)
        assert not set(PART_DAGS) & (set(OUTCOMES) | set(NOT_RUN))

    def test_a_dag_run_by_a_part_names_a_part_of_the_scenario(self):
        assert set(PART_DAGS.values()) <= {p.name for p in (*PARTS, *TRIAL_PARTS)}

    def test_the_mounted_dag_folder_holds_dags_and_the_parts_own_dags(self, tmp_path):
        folder = dag_folder(tmp_path / "dags")
        names = {p.name for p in folder.glob("*.py")}
        assert {"k8s_conventions.py", "example_etl.py", "example_team_pod.py"} <= names
        assert not list(folder.rglob("__pycache__"))

    def test_a_run_succeeds_only_when_every_task_is_designed_to(self):
        assert expected_run_state(OUTCOMES["example_etl"]) == "success"
        assert expected_run_state(OUTCOMES["example_pod_pass_fail"]) == "failed"

    def test_restarts_are_counted_per_container_of_serving_pods(self):
        pods = [pod("scheduler", restarts=2), pod("migrate", "Succeeded", job=True, restarts=1)]
        assert restart_counts(pods) == {"scheduler/main": 2}

    def test_the_example_dags_task_images_are_read_from_their_conventions(self):
        assert dag_images(ROOT / "dags" / "k8s_conventions.py") == [
            "python:3.13.7-slim-bookworm",
            "busybox:1.37.0",
            "airflow-k8s-task:1.0.0",
        ]

    def test_images_are_found_in_workloads_jobs_and_pods(self):
        objects = [
            {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"image": "a:1"}]}}}},
            {
                "kind": "CronJob",
                "spec": {
                    "jobTemplate": {
                        "spec": {
                            "template": {
                                "spec": {"initContainers": [{"image": "b:2"}], "containers": [{"image": "a:1"}]}
                            }
                        }
                    }
                },
            },
            {"kind": "Pod", "spec": {"containers": [{"image": "c:3"}]}},
        ]
        assert images_in(objects) == ["a:1", "b:2", "c:3"]

    @pytest.mark.parametrize(
        ("content", "text"),
        [
            ("plain text\nline 2", "plain text\nline 2"),
            (
                [{"event": "::group::Log message source details", "timestamp": None}, {"event": "hello"}],
                "::group::Log message source details\nhello",
            ),
        ],
    )
    def test_a_task_log_reads_as_text_whether_airflow_serves_text_or_entries(self, content, text):
        assert log_text(content) == text


class TestUpOnThisMachine:
    def dev(self) -> dict[str, Any]:
        return local.read_stack("dev")

    def test_the_dev_stack_is_pointed_at_the_nodes_cluster_never_at_what_kubectl_points_at(self):
        cfg, _ = local.node_config(self.dev(), Path("/s/cluster/kubeconfig"), Path("/nowhere"))
        assert cfg["kubernetes:kubeconfig"] == "/s/cluster/kubeconfig"
        assert cfg["kubernetes:context"] == "e2e"

    def test_spark_and_monitoring_are_left_out_and_said_so(self):
        cfg, notes = local.node_config(self.dev(), Path("k"), Path("/nowhere"))
        assert "airflow-k8s:spark" not in cfg and "airflow-k8s:monitoring" not in cfg
        assert notes == ["left out: spark, monitoring (their images are not built yet)"]
        assert "airflow-k8s:spark" in self.dev()  # the stack file itself is untouched

    def test_the_airflow_chart_comes_from_the_local_archives_when_they_are_there(self, tmp_path):
        (tmp_path / "airflow-1.21.0.tgz").write_bytes(b"")
        cfg, notes = local.node_config(self.dev(), Path("k"), tmp_path)
        assert cfg["airflow-k8s:airflow"]["chart"] == {"path": str(tmp_path / "airflow-1.21.0.tgz")}
        assert notes[-1] == f"chart: airflow-1.21.0.tgz from {tmp_path}"

    def test_a_missing_dag_folder_becomes_a_link_to_this_checkouts_dags_and_is_remembered(self, tmp_path):
        cfg = {
            "airflow-k8s:airflow": {"dags": {"hostPath": {"path": str(tmp_path / "data" / "airflow-dags")}}},
            "airflow-k8s:logs": {"hostPath": {"path": str(tmp_path / "data" / "airflow-logs")}},
        }
        state = tmp_path / "state"
        state.mkdir()
        assert local.link_dags(cfg, state) == [f"DAGs: {tmp_path}/data/airflow-dags -> this checkout's dags/"]
        assert (tmp_path / "data" / "airflow-dags").resolve() == ROOT / "dags"
        made = json.loads((state / "made.json").read_text())
        assert made == {
            "dirs": [f"{tmp_path}/data"],
            "links": [f"{tmp_path}/data/airflow-dags"],
            "data": [f"{tmp_path}/data/airflow-logs"],
        }
        assert local.link_dags(cfg, state) == [f"DAGs: {tmp_path}/data/airflow-dags (already there)"]

    def test_a_first_up_that_failed_removes_the_data_folders_it_made_and_keeps_only_its_logs(
        self, tmp_path, monkeypatch
    ):
        stopped = []

        class NodeStandIn:
            def __init__(self, folder, *args, **kwargs):
                self.folder = folder

            def stop(self, everything=False):
                stopped.append(everything)
                return []

        monkeypatch.setattr(local, "Node", NodeStandIn)
        monkeypatch.setattr(local, "find_tools", lambda echo: ({}, []))
        cfg = {
            "airflow-k8s:airflow": {"dags": {"hostPath": {"path": str(tmp_path / "data" / "airflow-dags")}}},
            "airflow-k8s:logs": {"hostPath": {"path": str(tmp_path / "data" / "airflow-logs")}},
        }
        state = tmp_path / "state"
        (state / "logs").mkdir(parents=True)
        local.link_dags(cfg, state)
        (tmp_path / "data" / "airflow-logs").mkdir()  # the kubelet makes it for the logs volume
        assert local.forget(state, purge=True, keep_folder=True) == []
        assert stopped == [False]  # the node's runtime goes, the state folder stays
        assert not (tmp_path / "data").exists()  # the link, the logs folder and /data it made
        assert (state / "logs").is_dir()

    def test_a_stack_with_encrypted_values_is_refused_by_name(self):
        with pytest.raises(NodeError, match=r"Pulumi.prod.yaml holds secrets \(airflow-k8s:databaseUrl"):
            local.read_stack("prod")

    def test_where_the_node_cannot_run_one_line_says_what_is_missing_and_what_to_use_instead(self):
        line = local.cannot(["not root: a node creates interfaces", "port 8080 is in use on this machine"])
        assert "\n" not in line
        assert line.startswith("cannot run a node here: not root: a node creates interfaces; port 8080 is in use")
        assert "minikube or kind" in line


SINCE = datetime(2026, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)


class TestReadyAfterARestart:
    """A kept cluster (`./run.sh up` after `down`) still holds the Ready its node and pods had."""

    def node(self, status: str, beat: str) -> dict[str, Any]:
        return {"status": {"conditions": [{"type": "Ready", "status": status, "lastHeartbeatTime": beat}]}}

    def test_the_node_counts_as_ready_only_once_its_kubelet_reported_after_the_start(self):
        assert node_not_ready(self.node("True", "2026-01-01T11:59:00Z"), SINCE) == (
            "Ready only as reported before this kubelet started"
        )
        assert node_not_ready(self.node("True", "2026-01-01T11:59:59Z"), SINCE) is None  # whole seconds
        assert node_not_ready(self.node("False", "2026-01-01T12:00:05Z"), SINCE) == "Ready=False: None"

    def test_a_pod_counts_as_ready_only_with_containers_started_after_the_start(self):
        pod: dict[str, Any] = {
            "metadata": {"name": "coredns"},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "coredns", "state": {"running": {"startedAt": "2026-01-01T11:00:00Z"}}}],
            },
        }
        assert pod_not_ready(pod, SINCE) == "coredns: container coredns not started by this kubelet yet"
        pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"] = "2026-01-01T12:00:03Z"
        assert pod_not_ready(pod, SINCE) is None
