"""NetworkPolicy reachability: would Kubernetes let pod A open a connection to pod B on a port?

Implements the NetworkPolicy semantics of the Kubernetes API (networking.k8s.io/v1):
a pod selected by no policy of a direction is open in that direction; a selected pod
admits exactly the union of its policies' rules; a connection needs both the source's
egress and the destination's ingress to allow it. Rules match peers by podSelector
(in the policy's namespace), namespaceSelector (by namespace labels, with the automatic
`kubernetes.io/metadata.name`), both together, or ipBlock (for peers outside the
cluster's pods); ports by number, name (resolved on the destination's containers),
range (`endPort`) and protocol.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.workloads import pod_template_of


@dataclass(frozen=True)
class Peer:
    """A pod (by namespace and labels) or an address outside the cluster's pods."""

    name: str
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, tuple[int, str]] = field(default_factory=dict)  # named container ports
    ip: str | None = None  # set for peers that are not pods (matched by ipBlock only)


def pods(objects: Iterable[Mapping[str, Any]]) -> list[Peer]:
    """One Peer per pod template (or Pod) of the given objects."""
    out = []
    for obj in objects:
        template = pod_template_of(obj)
        if template is None:
            continue
        meta = template.get("metadata") or {}
        spec = template.get("spec") or {}
        ports: dict[str, tuple[int, str]] = {}
        for container in spec.get("containers") or []:
            for port in container.get("ports") or []:
                if port.get("name"):
                    ports[port["name"]] = (int(port["containerPort"]), port.get("protocol", "TCP"))
        out.append(
            Peer(
                name=f"{obj['kind']}/{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}",
                namespace=obj["metadata"].get("namespace", ""),
                labels=dict(meta.get("labels") or {}),
                ports=ports,
            )
        )
    return out


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector; an empty selector matches everything."""
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass
class Network:
    """All NetworkPolicies and namespace labels of a stack, queried for connections."""

    policies: list[Mapping[str, Any]]
    namespace_labels: dict[str, dict[str, str]]

    @classmethod
    def of(
        cls, objects: Iterable[Mapping[str, Any]], extra_namespaces: Mapping[str, Mapping[str, str]] | None = None
    ) -> Network:
        objects = list(objects)
        labels: dict[str, dict[str, str]] = {}
        for name, extra in (extra_namespaces or {}).items():
            labels[name] = {**extra, "kubernetes.io/metadata.name": name}
        for obj in objects:
            if obj.get("kind") == "Namespace":
                name = obj["metadata"]["name"]
                labels[name] = {**(obj["metadata"].get("labels") or {}), "kubernetes.io/metadata.name": name}
        policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
        return cls(policies, labels)

    def _ns_labels(self, namespace: str) -> dict[str, str]:
        return self.namespace_labels.get(namespace, {"kubernetes.io/metadata.name": namespace})

    def selecting(self, pod: Peer, direction: str) -> list[Mapping[str, Any]]:
        """The policies of `direction` ("Ingress" or "Egress") that select `pod`."""
        if pod.ip is not None:
            return []
        found = []
        for policy in self.policies:
            spec = policy.get("spec") or {}
            if policy["metadata"].get("namespace") != pod.namespace:
                continue
            if not selector_matches(spec.get("podSelector") or {}, pod.labels):
                continue
            types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
            if direction in types:
                found.append(policy)
        return found

    def _peer_matches(self, rule_peer: Mapping[str, Any], policy_ns: str, other: Peer) -> bool:
        if "ipBlock" in rule_peer:
            if other.ip is None:
                return False
            block = rule_peer["ipBlock"]
            address = ipaddress.ip_address(other.ip)
            if address not in ipaddress.ip_network(block["cidr"], strict=False):
                return False
            return not any(address in ipaddress.ip_network(e, strict=False) for e in block.get("except") or [])
        if other.ip is not None:
            return False
        if "namespaceSelector" in rule_peer:
            if not selector_matches(rule_peer["namespaceSelector"], self._ns_labels(other.namespace)):
                return False
        elif other.namespace != policy_ns:
            return False
        return "podSelector" not in rule_peer or selector_matches(rule_peer["podSelector"], other.labels)

    @staticmethod
    def _port_matches(rule_ports: list[Mapping[str, Any]] | None, dst: Peer, port: int, protocol: str) -> bool:
        if not rule_ports:
            return True
        for p in rule_ports:
            if p.get("protocol", "TCP") != protocol:
                continue
            want = p.get("port")
            if want is None:
                return True
            if isinstance(want, str):
                named = dst.ports.get(want)
                if named and named[0] == port:
                    return True
                continue
            if want == port or (p.get("endPort") is not None and want <= port <= p["endPort"]):
                return True
        return False

    def _admits(
        self, policies: list[Mapping[str, Any]], key: str, other: Peer, dst: Peer, port: int, protocol: str
    ) -> bool:
        for policy in policies:
            for rule in (policy.get("spec") or {}).get(key) or []:
                peers = rule.get("from" if key == "ingress" else "to")
                peer_ok = not peers or any(self._peer_matches(p, policy["metadata"]["namespace"], other) for p in peers)
                if peer_ok and self._port_matches(rule.get("ports"), dst, port, protocol):
                    return True
        return False

    def explain(self, src: Peer, dst: Peer, port: int, protocol: str = "TCP") -> str | None:
        """None when the connection is allowed, else why not."""
        egress = self.selecting(src, "Egress")
        if egress and not self._admits(egress, "egress", dst, dst, port, protocol):
            names = ", ".join(p["metadata"]["name"] for p in egress)
            return f"egress of {src.name} is limited by {names}, and no rule allows {dst.name} on {protocol}/{port}"
        ingress = self.selecting(dst, "Ingress")
        if ingress and not self._admits(ingress, "ingress", src, dst, port, protocol):
            names = ", ".join(p["metadata"]["name"] for p in ingress)
            return f"ingress of {dst.name} is limited by {names}, and no rule admits {src.name} on {protocol}/{port}"
        return None
