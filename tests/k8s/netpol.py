"""A small evaluator of Kubernetes NetworkPolicies, for checking rendered policies against a
list of flows without a cluster.

It follows the NetworkPolicy API (networking.k8s.io/v1): a pod that no policy of a type
selects is open for that type; once one does, only what some selecting policy's rules allow
gets through; a flow needs the sender's egress and the receiver's ingress both allowed. Peers:
podSelector (the policy's namespace), namespaceSelector, both (AND), or ipBlock. Ports:
number, range (endPort) or a name, resolved on the receiving pod; protocol defaults to TCP.
An ipBlock matches any address in it, pods' included: the API leaves pod IPs in ipBlocks to
the implementation, and the conservative reading allows more, so a "denied" check stays true
everywhere. Host-network pods, node-local traffic and the kubelet are out of scope.
"""

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.k8s.manifests import selects

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace set) or an address outside the cluster (namespace None)."""

    name: str
    ip: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)  # named container ports

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None


@dataclass(frozen=True)
class Flow:
    src: Endpoint
    dst: Endpoint
    port: int
    protocol: str = "TCP"

    def __str__(self) -> str:
        return f"{self.src.name} -> {self.dst.name}:{self.port}/{self.protocol}"


class Cluster:
    def __init__(
        self, namespaces: Mapping[str, Mapping[str, str]], policies: Sequence[Mapping[str, Any]]
    ) -> None:
        # Every namespace carries its name as a label (Kubernetes >= 1.21 sets it).
        self._namespaces = {
            name: {**labels, NAMESPACE_NAME_LABEL: name} for name, labels in namespaces.items()
        }
        self._policies = list(policies)
        for policy in self._policies:
            assert policy["kind"] == "NetworkPolicy"
            assert policy["metadata"]["namespace"] in self._namespaces, policy["metadata"]

    def allows(self, flow: Flow) -> bool:
        return self._side_allows(flow, "Egress") and self._side_allows(flow, "Ingress")

    def _side_allows(self, flow: Flow, direction: str) -> bool:
        subject = flow.src if direction == "Egress" else flow.dst
        if not subject.is_pod:
            return True  # outside the cluster: not ours to police
        selecting = [
            p
            for p in self._policies
            if p["metadata"]["namespace"] == subject.namespace
            and direction in _policy_types(p)
            and selects(p["spec"].get("podSelector", {}), subject.labels)
        ]
        if not selecting:
            return True
        key, peer_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        peer = flow.dst if direction == "Egress" else flow.src
        return any(
            self._rule_allows(rule, peer_key, peer, flow, p["metadata"]["namespace"])
            for p in selecting
            for rule in p["spec"].get(key) or []
        )

    def _rule_allows(
        self, rule: Mapping[str, Any], peer_key: str, peer: Endpoint, flow: Flow, namespace: str
    ) -> bool:
        peers = rule.get(peer_key) or []
        if peers and not any(self._peer_matches(p, peer, namespace) for p in peers):
            return False
        ports = rule.get("ports") or []
        return not ports or any(_port_matches(p, flow) for p in ports)

    def _peer_matches(self, spec: Mapping[str, Any], peer: Endpoint, namespace: str) -> bool:
        if "ipBlock" in spec:
            block = spec["ipBlock"]
            address = ipaddress.ip_address(peer.ip)
            network = ipaddress.ip_network(block["cidr"])
            if address.version != network.version or address not in network:
                return False
            return not any(
                address.version == ipaddress.ip_network(e).version
                and address in ipaddress.ip_network(e)
                for e in block.get("except", [])
            )
        if not peer.is_pod:
            return False
        assert peer.namespace is not None
        if "namespaceSelector" in spec:
            if not selects(spec["namespaceSelector"], self._namespaces[peer.namespace]):
                return False
        elif peer.namespace != namespace:
            return False
        return "podSelector" not in spec or selects(spec["podSelector"], peer.labels)


def _policy_types(policy: Mapping[str, Any]) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


def _port_matches(spec: Mapping[str, Any], flow: Flow) -> bool:
    if spec.get("protocol", "TCP") != flow.protocol:
        return False
    port = spec.get("port")
    if port is None:
        return True
    if isinstance(port, str):
        return flow.dst.is_pod and flow.dst.ports.get(port) == flow.port
    return bool(port <= flow.port <= spec.get("endPort", port))
