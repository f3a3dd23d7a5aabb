"""A real node for the end-to-end cluster: containerd, runc, the CNI bridge, kubelet,
kube-proxy and CoreDNS beside the control plane, and the images its pods run, built here
from upstream software and imported into containerd (nothing is ever pulled)."""
