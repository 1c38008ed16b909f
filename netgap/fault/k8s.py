"""Kubernetes objects for the kernel fault injector, as plain dicts printed as JSON (which kubectl
reads as readily as YAML), and the kubectl calls that apply them.

node        a Pod pinned to one node and in its network namespace (hostNetwork) that runs
            `netgap fault k8s --node-agent ...`: apply, wait --ttl, revert. Deleting the Pod
            (SIGTERM) reverts at once, and so does activeDeadlineSeconds as a backstop. tc and
            iptables over netlink need NET_ADMIN, legacy iptables NET_RAW: nothing privileged.
pod         an ephemeral container running the same agent in one pod's network namespace
            (eth0 by default): the body of a PATCH to the pod's `ephemeralcontainers`
            subresource, as `kubectl debug` sends. It cannot be removed, only stopped.
chaos-mesh  the NetworkChaos doing the same with Chaos Mesh: rate alone is `bandwidth` (tbf, as
            the agent does), anything with latency or loss is netem with netem's `rate`.

Rates in Chaos Mesh are written in bytes a second (`6250bps` is 50 kbit/s): its `kbps` is
1024 bytes a second, while tc's is 1000.
"""

import copy
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from netgap.errors import UsageError
from netgap.fault.spec import Faults, format_rate
from netgap.fault.tc import (
    FaultPlanError,
    Scope,
    decimal,
    tbf_burst_bytes,
    tbf_limit_bytes,
    tc_time,
)

IMAGE = "netgap/netgap:0.1.0"  # Dockerfile.netgap; k8s/ and docs/cluster.md use the same tag
NAMESPACE = "netgap"
# Privileged Pods go here, apart from the app (k8s/overlays/fault creates it).
FAULT_NAMESPACE = "netgap-fault"
POD_DEVICE = "eth0"
APP = "netgap-fault"
CONTAINER = "netgap-fault"
AGENT = ("netgap", "fault", "k8s", "--node-agent")
# activeDeadlineSeconds counts from the Pod's start, image pull included; past it the kubelet
# stops the Pod (SIGTERM, so the agent still reverts). The agent's own --ttl ends it first.
DEADLINE_MARGIN_S = 120
CLEAR_DEADLINE_S = 120
# SIGTERM to SIGKILL: reverting takes well under a second, but iptables may wait for its lock.
GRACE_S = 30
SECURITY_CONTEXT: dict[str, Any] = {
    "privileged": False,
    "runAsUser": 0,  # capabilities take effect for root only, and the image may say otherwise
    "runAsNonRoot": False,
    "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
}
# Shared with kube-proxy and the CNI on the node, so concurrent legacy iptables calls wait.
XTABLES_LOCK = "/run/xtables.lock"
CHAOS_API = "chaos-mesh.org/v1alpha1"
_UINT32_MAX = 2**32 - 1
_SELECTOR_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_./]*)\s*==?\s*([-A-Za-z0-9_.]*)")
_NOT_IN_NAME = re.compile(r"[^a-z0-9.-]+")


@dataclass(frozen=True)
class Agent:
    """What the agent in the Pod or ephemeral container is told to do."""

    faults: Faults
    scope: Scope
    ttl_s: float
    device: str | None = None  # None: the agent detects the node's CNI device
    netem: bool = True
    clear: bool = False

    def argv(self) -> list[str]:
        if self.clear:
            return [*AGENT, "--clear"]
        args = [*AGENT, *fault_flags(self.faults)]
        for network in self.scope.networks:
            args += ["--target", str(network)]
        if self.scope.port is not None:
            args += ["--target-port", str(self.scope.port)]
        if self.device is not None:
            args += ["--device", self.device]
        if not self.netem:
            args.append("--no-netem")
        return [*args, "--ttl", go_duration(self.ttl_s)]


def fault_flags(faults: Faults) -> list[str]:
    """The flags that say `faults` again, each set field in the units tc takes."""
    flags = []
    if faults.latency_s:
        flags += ["--latency", tc_time(faults.latency_s)]
    if faults.jitter_s:
        flags += ["--jitter", tc_time(faults.jitter_s)]
    if faults.rate_bps:
        flags += ["--rate", format_rate(faults.rate_bps)]
    if faults.loss:
        flags += ["--loss", f"{decimal(faults.loss * 100)}%"]
    return flags


def go_duration(seconds: float) -> str:
    """`5m`, `90s`, `1500ms`: what Go's time.ParseDuration (Chaos Mesh) and --ttl both read."""
    ms = max(1, round(seconds * 1000))
    if ms % 1000:
        return f"{ms}ms"
    whole = ms // 1000
    for unit, size in (("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def node_pod_name(node: str, clear: bool = False) -> str:
    return object_name("netgap-fault-clear" if clear else "netgap-fault", node)


def object_name(prefix: str, *parts: str) -> str:
    """A valid object name (DNS subdomain) from free text such as a selector."""
    slug = _NOT_IN_NAME.sub("-", "-".join(parts).lower()).strip("-.")
    return f"{prefix}-{slug}"[:253].rstrip("-.") if slug else prefix


def node_pod(
    agent: Agent, *, node: str, namespace: str = FAULT_NAMESPACE, image: str = IMAGE
) -> dict[str, Any]:
    """The Pod that runs `agent` on `node`, in the node's network namespace."""
    deadline = CLEAR_DEADLINE_S if agent.clear else math.ceil(agent.ttl_s) + DEADLINE_MARGIN_S
    container = _container(CONTAINER, agent, image)
    container["volumeMounts"] = [{"name": "xtables-lock", "mountPath": XTABLES_LOCK}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": node_pod_name(node, agent.clear),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": APP,
                "app.kubernetes.io/component": "clear" if agent.clear else "node-agent",
            },
        },
        "spec": {
            "nodeName": node,
            "hostNetwork": True,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": deadline,
            "terminationGracePeriodSeconds": GRACE_S,
            "automountServiceAccountToken": False,
            "tolerations": [{"operator": "Exists"}],  # tainted nodes too, NoExecute included
            "containers": [container],
            "volumes": [
                {"name": "xtables-lock", "hostPath": {"path": XTABLES_LOCK, "type": "FileOrCreate"}}
            ],
        },
    }


def ephemeral_container_patch(agent: Agent, *, name: str, image: str = IMAGE) -> dict[str, Any]:
    """The strategic-merge patch adding the agent to a pod's `ephemeralcontainers`."""
    return {"spec": {"ephemeralContainers": [_container(name, agent, image)]}}


def _container(name: str, agent: Agent, image: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": agent.argv(),
        "securityContext": copy.deepcopy(SECURITY_CONTEXT),
    }


@dataclass(frozen=True)
class Where:
    """Which traffic a manifest is for: one node's, one pod's, or the pods a selector picks."""

    node: str | None = None
    pod: str | None = None
    selector: str | None = None

    def name(self) -> str:
        return object_name(APP, self.node or self.pod or self.selector or "")


def parse_selector(text: str) -> dict[str, str]:
    """`app=apitier,tier=api` -> {"app": "apitier", "tier": "api"}; equality only, as both
    kubectl -l and Chaos Mesh's labelSelectors take it."""
    labels = {}
    for part in text.split(","):
        match = _SELECTOR_PART.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"not a label selector like app=apitier[,key=value]: {text!r}")
        labels[match.group(1)] = match.group(2)
    return labels


def network_chaos(
    faults: Faults,
    scope: Scope,
    ttl_s: float,
    *,
    where: Where,
    namespace: str = NAMESPACE,
    device: str | None = None,
) -> dict[str, Any]:
    """The Chaos Mesh NetworkChaos doing `faults` to the egress of the pods `where` picks."""
    if scope.port is not None:
        raise UsageError(
            "Chaos Mesh's NetworkChaos cannot scope by port",
            hint="drop --target-port, or use --format pod",
        )
    spec: dict[str, Any] = {
        **chaos_action(faults),
        "mode": "all",
        "selector": chaos_selector(where, namespace),
        "direction": "to",
        "duration": go_duration(ttl_s),
    }
    if scope.networks:
        spec["externalTargets"] = [str(network) for network in scope.networks]
    if device is not None:
        spec["device"] = device
    return {
        "apiVersion": CHAOS_API,
        "kind": "NetworkChaos",
        "metadata": {
            "name": where.name(),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": APP},
        },
        "spec": spec,
    }


def chaos_action(faults: Faults) -> dict[str, Any]:
    """`action` and its fields: one netem action for latency and loss (with netem's rate), or
    `bandwidth` (tbf) for a rate alone, as the agent's own plan does."""
    if faults.reset:
        raise FaultPlanError("reset: Chaos Mesh's NetworkChaos cannot close connections")
    if not faults.active:
        raise FaultPlanError("no fault given: use --latency, --rate, --loss or --preset")
    fields: dict[str, Any] = {}
    if faults.latency_s:
        fields["delay"] = {"latency": tc_time(faults.latency_s)}
        if faults.jitter_s:
            fields["delay"]["jitter"] = tc_time(faults.jitter_s)
    if faults.loss:
        fields["loss"] = {"loss": decimal(faults.loss * 100)}  # percent
    if faults.rate_bps and not fields:
        return {"action": "bandwidth", "bandwidth": chaos_bandwidth(faults.rate_bps)}
    if faults.rate_bps:
        fields["rate"] = {"rate": chaos_rate(faults.rate_bps)}
    action = next(iter(fields)) if len(fields) == 1 else "netem"
    return {"action": action, **fields}


def chaos_rate(rate_bps: int) -> str:
    return f"{max(1, round(rate_bps / 8))}bps"  # bytes a second


def chaos_bandwidth(rate_bps: int) -> dict[str, Any]:
    return {
        "rate": chaos_rate(rate_bps),
        "limit": min(_UINT32_MAX, tbf_limit_bytes(rate_bps, 0.0, 1500)),
        "buffer": min(_UINT32_MAX, tbf_burst_bytes(rate_bps, 1500)),
    }


def chaos_selector(where: Where, namespace: str) -> dict[str, Any]:
    if where.pod is not None:
        return {"pods": {namespace: [where.pod]}}
    if where.selector is not None:
        return {"namespaces": [namespace], "labelSelectors": parse_selector(where.selector)}
    if where.node is not None:  # the pods on that node, in that namespace
        return {"namespaces": [namespace], "nodes": [where.node]}
    raise UsageError("Chaos Mesh needs pods to select: give --node, --pod or --selector")


# -- kubectl


@dataclass(frozen=True)
class KubectlCall:
    argv: tuple[str, ...]
    stdin: str | None = None


def to_json(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2) + "\n"


def apply_node_pod(pod: dict[str, Any]) -> list[KubectlCall]:
    """Replace any fault Pod of that name (deleting a running one reverts its fault first, and a
    finished one cannot be applied over: a Pod's spec is immutable), then create this one."""
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    return [
        KubectlCall(
            ("kubectl", "delete", "pod", name, "-n", namespace, "--ignore-not-found", "--wait=true")
        ),
        KubectlCall(("kubectl", "apply", "-f", "-"), to_json(pod)),
    ]


def apply_ephemeral(
    patch: dict[str, Any], pods: Sequence[str], namespace: str
) -> list[KubectlCall]:
    body = json.dumps(patch, separators=(",", ":"))
    how = ("--subresource=ephemeralcontainers", "--type=strategic", "-p", body)
    return [KubectlCall(("kubectl", "patch", "pod", pod, "-n", namespace, *how)) for pod in pods]


def list_pods(selector: str, namespace: str) -> KubectlCall:
    """Prints `pod/NAME` lines: see `pod_names`."""
    return KubectlCall(("kubectl", "get", "pods", "-n", namespace, "-l", selector, "-o", "name"))


def pod_names(listing: str) -> list[str]:
    return [line.strip().removeprefix("pod/") for line in listing.splitlines() if line.strip()]


def apply_manifest(manifest: dict[str, Any]) -> list[KubectlCall]:
    return [KubectlCall(("kubectl", "apply", "-f", "-"), to_json(manifest))]
