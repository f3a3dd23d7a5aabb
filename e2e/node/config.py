"""What the real node runs with, as text and objects: containerd's config and registry hosts, the
CNI network, the kubelet's and kube-proxy's configs, CoreDNS and the default StorageClass.

Pure functions of a `Layout` (folders, addresses, names), so that each file is tested offline
(tests/test_node.py). The node (e2e.node.host) writes them and starts the programs.

Addresses: the API server and the kubelet listen on NODE_ADDRESS, a /32 on a bridge interface
the run creates (this kernel has no dummy links); pods get addresses from POD_CIDR on the CNI
bridge; Services from SERVICE_CIDR. Nothing listens on the machine's own interfaces.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cluster import SERVICE_CIDR as SERVICE_CIDR  # the node's kube-proxy and egress rules use it

NODE_ADDRESS = "10.89.0.1"  # the API server's and kubelet's address (a /32 on NODE_BRIDGE)
NODE_BRIDGE = "airflowk8s0"  # holds NODE_ADDRESS; no ports
CNI_BRIDGE = "airflowk8scni0"  # the pods' bridge (CNI `bridge` plugin); its address is the pods' gateway
POD_CIDR = "10.88.0.0/16"
CLUSTER_DNS = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
API_PORT = 6443
KUBELET_PORT = 10250
CNI_NETWORK = "airflow-k8s-node"
CGROUP_ROOT = "airflow-k8s-node"  # every pod's cgroup is below /<hierarchy>/airflow-k8s-node
# A port nothing listens on: every registry points there, so an image that was not imported
# fails in a second ("connection refused") and no request leaves the machine.
REFUSING_REGISTRY = "http://127.0.0.1:9"
DEFAULT_NODE_NAME = "airflow-k8s-node"

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.14.7"
STORAGE_CLASS = "standard"  # what Pulumi.dev.yaml declares (minikube's and kind's default)
PROVISIONER = "airflow-k8s.local/host-folder"
# Our own iptables chains (mangle table): pod traffic to anything but the cluster is dropped.
EGRESS_CHAIN = "AIRFLOW-K8S-EGRESS"
INPUT_CHAIN = "AIRFLOW-K8S-INPUT"
RULE_COMMENT = "airflow-k8s-node"


@dataclass(frozen=True)
class Layout:
    """Where a node keeps everything (one folder) and what it is called."""

    root: Path
    pki: Path  # the control plane's certificates (its CA, the kubelet's and kube-proxy's)
    node_name: str = DEFAULT_NODE_NAME
    outside_interface: str = ""  # the default route's interface: pod traffic to it is dropped first

    @property
    def containerd_dir(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.containerd_dir / "config.toml"

    @property
    def registry_hosts(self) -> Path:
        return self.containerd_dir / "certs.d"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_data_dir(self) -> Path:
        return self.root / "cni" / "networks"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def cni_gateway() -> str:
    return str(next(ipaddress.ip_network(POD_CIDR).hosts()))


def overlapping(ranges: list[str], routes: list[str]) -> list[str]:
    """The machine's routes (destinations, "default" ignored) that overlap the node's ranges."""
    mine = [ipaddress.ip_network(r, strict=False) for r in ranges]
    clash = []
    for dest in routes:
        if dest in ("default", "") or ":" in dest:
            continue
        net = ipaddress.ip_network(dest if "/" in dest else f"{dest}/32", strict=False)
        if any(net.overlaps(m) for m in mine):
            clash.append(dest)
    return clash


# --- containerd ---------------------------------------------------------------------------------


def containerd_config(layout: Layout) -> str:
    """containerd 1.6 (config version 2): its own root, state, socket and runc state under the
    node's folder;
    runc with cgroupfs (the machine's cgroups are v1 with a v2 hierarchy beside them); the
    sandbox (pause) image imported, never pulled; every registry at REFUSING_REGISTRY;
    `restrict_oom_score_adj` (the sandbox cannot lower an OOM score: runc would fail)."""
    d = layout.containerd_dir
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{d / "root"}"
state = "{d / "state"}"
oom_score = 0
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{d / "containerd.sock.ttrpc"}"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  max_container_log_line_size = 16384

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
  discard_unpacked_layers = false

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{d / "runc"}"

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{layout.cni_conf_dir}"
  max_conf_num = 1

[{cri}.registry]
  config_path = "{layout.registry_hosts}"
"""


def registry_hosts() -> str:
    """`_default/hosts.toml`: every registry (docker.io, registry.k8s.io, quay.io, ...) is this
    port that refuses; nothing is fetched, a missing image fails at once."""
    return f'server = "{REFUSING_REGISTRY}"\n\n[host."{REFUSING_REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n'


# --- CNI ----------------------------------------------------------------------------------------


def cni_conflist(layout: Layout) -> dict[str, Any]:
    """The pods' network: a bridge with host-local addresses from POD_CIDR, hairpin (a pod reaching
    itself through its Service), no masquerade (nothing is routed out: see egress_rules), portmap
    for hostPorts, and the loopback of each pod."""
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": CNI_BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": cni_gateway()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.cni_data_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }


def cni_conflist_text(layout: Layout) -> str:
    return json.dumps(cni_conflist(layout), indent=2) + "\n"


# --- the kubelet and kube-proxy -------------------------------------------------------------------


def kubelet_config(layout: Layout, *, healthz_port: int) -> dict[str, Any]:
    """KubeletConfiguration: cgroupfs under CGROUP_ROOT, swap tolerated, serving on NODE_ADDRESS
    with a certificate of the run's CA, clients authenticated by that CA (the API server's
    kubelet client certificate) or by a token the API server vouches for; no image garbage
    collection (images are imported once, never pulled again) and eviction only when the disk or
    memory is really gone; no resolv.conf of the machine handed to pods (its name server is
    outside)."""
    pki = layout.pki
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_ADDRESS,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "cgroupsPerQOS": True,
        "failSwapOn": False,
        "oomScoreAdj": 0,
        "clusterDNS": [CLUSTER_DNS],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "",
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "imageServiceEndpoint": f"unix://{layout.containerd_socket}",
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "registerNode": True,
        "maxPods": 110,
        "podPidsLimit": 4096,
        "localStorageCapacityIsolation": True,
        "failCgroupV1": False,
        "shutdownGracePeriod": "0s",
        "logging": {"format": "text"},
    }


def kubelet_args(layout: Layout, config: Path, kubeconfig: Path) -> list[str]:
    return [
        f"--config={config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={layout.kubelet_dir}",
        f"--cert-dir={layout.pki / 'kubelet-certs'}",
        f"--node-ip={NODE_ADDRESS}",
        f"--hostname-override={layout.node_name}",
        f"--node-labels={','.join(f'{k}={v}' for k, v in node_labels(layout.node_name).items())}",
        "--v=1",
    ]


def node_labels(node_name: str) -> dict[str, str]:
    """The labels a stack may select the node by (its name as kubernetes.io/hostname, which the
    kubelet sets itself, and a label of its own)."""
    return {"airflow-k8s.local/node": "real"} | ({"kubernetes.io/hostname": node_name} if len(node_name) <= 63 else {})


def kube_proxy_config(layout: Layout, kubeconfig: Path, *, healthz_port: int, metrics_port: int) -> dict[str, Any]:
    """iptables mode; NodePorts on NODE_ADDRESS only (never the machine's interfaces, never
    localhost, so route_localnet stays as it is); no conntrack sysctl touched; every Service
    connection masqueraded, so that a reply from a pod on the same bridge comes back through the
    host and is translated back."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": layout.node_name,
        "bindAddress": NODE_ADDRESS,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "clusterCIDR": POD_CIDR,
        "nodePortAddresses": [f"{NODE_ADDRESS}/32"],
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False, "syncPeriod": "10s", "minSyncPeriod": "1s"},
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "oomScoreAdj": 0,
    }


def kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: node
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: node
  context: {{cluster: node, user: {user}}}
current-context: node
"""


# --- egress -----------------------------------------------------------------------------------------


def egress_rules(outside_interface: str) -> list[list[str]]:
    """iptables commands that keep pods inside the cluster, in the mangle table: its FORWARD and
    INPUT chains see a packet after the Service address was translated to the pod's (or to any
    endpoint a Service names) and before the filter table, where kube-proxy accepts Service
    traffic. Pod traffic the host would route goes to EGRESS_CHAIN: towards the machine's outside
    interface it is dropped first (counted on its own rule), then anything but the pod and Service
    ranges is dropped. Pod traffic to the host itself goes to INPUT_CHAIN: replies, and the API
    server and kubelet on NODE_ADDRESS, pass; the host's other addresses (its services listening
    on every address) do not."""
    comment = ["-m", "comment", "--comment", RULE_COMMENT]
    table = ["-t", "mangle"]
    rules = [[*table, "-N", EGRESS_CHAIN], [*table, "-N", INPUT_CHAIN]]
    if outside_interface:
        rules.append([*table, "-A", EGRESS_CHAIN, "-o", outside_interface, *comment, "-j", "DROP"])
    rules += [
        [*table, "-A", EGRESS_CHAIN, "-d", POD_CIDR, *comment, "-j", "RETURN"],
        [*table, "-A", EGRESS_CHAIN, "-d", SERVICE_CIDR, *comment, "-j", "RETURN"],
        [*table, "-A", EGRESS_CHAIN, *comment, "-j", "DROP"],
        [*table, "-A", INPUT_CHAIN, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", *comment, "-j", "RETURN"],
        [*table, "-A", INPUT_CHAIN, "-d", f"{NODE_ADDRESS}/32", *comment, "-j", "RETURN"],
        [*table, "-A", INPUT_CHAIN, *comment, "-j", "DROP"],
        [*table, "-I", "FORWARD", "1", "-s", POD_CIDR, *comment, "-j", EGRESS_CHAIN],
        [*table, "-I", "INPUT", "1", "-s", POD_CIDR, *comment, "-j", INPUT_CHAIN],
    ]
    return rules


# --- objects the node brings: CoreDNS, the StorageClass ------------------------------------------------


def corefile() -> str:
    """The cluster's names only. No `forward`: a name outside the cluster resolves to nothing."""
    return f""".:53 {{
    errors
    health {{
        lameduck 5s
    }}
    ready
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
    loop
    reload
    loadbalance
}}
"""


def coredns_objects(image: str = COREDNS_IMAGE) -> list[dict[str, Any]]:
    """CoreDNS as minikube and kind run it (labels `k8s-app: kube-dns`, Service `kube-dns` at
    CLUSTER_DNS), with the Corefile above."""
    ns = "kube-system"
    labels = {"k8s-app": "kube-dns"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": ns}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": ns},
            "data": {"Corefile": corefile()},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": ns, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "priorityClassName": "system-cluster-critical",
                        "dnsPolicy": "Default",
                        "containers": [
                            {
                                "name": "coredns",
                                "image": image,
                                "imagePullPolicy": "IfNotPresent",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                    {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                                ],
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "70Mi"},
                                    "limits": {"memory": "170Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True,
                                },
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": 8080},
                                    "initialDelaySeconds": 10,
                                    "periodSeconds": 10,
                                    "failureThreshold": 5,
                                },
                                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
            "spec": {
                "selector": labels,
                "clusterIP": CLUSTER_DNS,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
            },
        },
    ]


def storage_class(reclaim_policy: str = "Delete") -> dict[str, Any]:
    """The default class: claims get a real folder on the node (e2e.volumes, real-folder mode).
    Delete, like minikube's and kind's: a released volume's folder goes with it; the stacks' own
    claims are retained by Pulumi and never released."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": reclaim_policy,
        "volumeBindingMode": "Immediate",
    }


# `pulumi up` on the node is stopped, naming what is pending, once the same objects stayed pending
# this long (e2e.stuck), instead of waiting out a Release's timeout: the migration Job holds every
# Airflow pod back for minutes on 2 cores, so it is longer than under kwok.
UP_STALL_SECONDS = 420
