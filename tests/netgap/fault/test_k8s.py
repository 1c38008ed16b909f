"""netgap.fault.k8s: golden Pod, ephemeral container and NetworkChaos, their flags, names and
kubectl calls. The `netgap fault k8s` command is tests/netgap/commands/test_fault_k8s.py's."""

import json
from typing import Any

import pytest

from netgap.errors import UsageError
from netgap.fault import k8s
from netgap.fault.spec import PRESETS, Faults
from netgap.fault.tc import FaultPlanError, Scope, parse_network

pytestmark = pytest.mark.timeout(60)

ARTICLE = PRESETS["article"]
NET = parse_network("10.0.0.0/24")
AGENT = ["netgap", "fault", "k8s", "--node-agent"]
ARTICLE_FLAGS = ["--latency", "500ms", "--rate", "50kbit", "--loss", "1%"]
SECURITY = {
    "privileged": False,
    "runAsUser": 0,
    "runAsNonRoot": False,
    "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
}


def test_node_pod_golden() -> None:
    agent = k8s.Agent(ARTICLE, Scope(), 300)
    assert k8s.node_pod(agent, node="worker-1") == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "netgap-fault-worker-1",
            "namespace": "netgap-fault",
            "labels": {
                "app.kubernetes.io/name": "netgap-fault",
                "app.kubernetes.io/component": "node-agent",
            },
        },
        "spec": {
            "nodeName": "worker-1",
            "hostNetwork": True,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 420,  # ttl 300 + 120 for the pull, the start and the revert
            "terminationGracePeriodSeconds": 30,
            "automountServiceAccountToken": False,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "netgap-fault",
                    "image": "netgap/netgap:0.1.0",
                    "imagePullPolicy": "IfNotPresent",
                    "command": [*AGENT, *ARTICLE_FLAGS, "--ttl", "5m"],
                    "securityContext": SECURITY,
                    "volumeMounts": [{"name": "xtables-lock", "mountPath": "/run/xtables.lock"}],
                }
            ],
            "volumes": [
                {
                    "name": "xtables-lock",
                    "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"},
                }
            ],
        },
    }


SCOPES = {
    "none": (Scope(), []),
    "cidr": (Scope((NET,)), ["--target", "10.0.0.0/24"]),
    "cidr+port": (Scope((NET,), 8801), ["--target", "10.0.0.0/24", "--target-port", "8801"]),
}


@pytest.mark.parametrize("device", ["tunl0", "vxlan.calico", "flannel.1", "cni0", "eth0", None])
@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_node_pod_command_per_device_and_scope(device: str | None, scope: str) -> None:
    """None: the agent detects the node's device itself, so no --device."""
    agent = k8s.Agent(ARTICLE, SCOPES[scope][0], 90, device=device)
    pod = k8s.node_pod(agent, node="worker-1", namespace="lab", image="registry.local/netgap:1")
    container = pod["spec"]["containers"][0]
    device_flags = [] if device is None else ["--device", device]
    assert container["command"] == [
        *AGENT,
        *ARTICLE_FLAGS,
        *SCOPES[scope][1],
        *device_flags,
        "--ttl",
        "90s",
    ]
    assert container["image"] == "registry.local/netgap:1"
    assert pod["metadata"]["namespace"] == "lab"
    assert pod["spec"]["activeDeadlineSeconds"] == 210


@pytest.mark.parametrize(
    ("faults", "flags"),
    [
        (Faults(latency_s=0.5), ["--latency", "500ms"]),
        (Faults(rate_bps=50_000), ["--rate", "50kbit"]),
        (Faults(loss=0.01), ["--loss", "1%"]),
        (Faults(latency_s=0.1, jitter_s=0.0015), ["--latency", "100ms", "--jitter", "1500us"]),
        (Faults(rate_bps=6250 * 8 + 1, loss=0.005), ["--rate", "50001bit", "--loss", "0.5%"]),
    ],
)
def test_fault_flags(faults: Faults, flags: list[str]) -> None:
    assert k8s.fault_flags(faults) == flags


def test_clear_pod() -> None:
    pod = k8s.node_pod(k8s.Agent(Faults(), Scope(), 300, clear=True), node="worker-1")
    assert pod["metadata"]["name"] == "netgap-fault-clear-worker-1"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "clear"
    assert pod["spec"]["activeDeadlineSeconds"] == 120
    assert pod["spec"]["containers"][0]["command"] == [*AGENT, "--clear"]


def test_ephemeral_container_golden() -> None:
    agent = k8s.Agent(ARTICLE, Scope((NET,), 8801), 300, device="eth0")
    assert k8s.ephemeral_container_patch(agent, name="netgap-fault-abc123") == {
        "spec": {
            "ephemeralContainers": [
                {
                    "name": "netgap-fault-abc123",
                    "image": "netgap/netgap:0.1.0",
                    "imagePullPolicy": "IfNotPresent",
                    "command": [
                        *AGENT,
                        *ARTICLE_FLAGS,
                        *("--target", "10.0.0.0/24", "--target-port", "8801"),
                        *("--device", "eth0", "--ttl", "5m"),
                    ],
                    "securityContext": SECURITY,
                }
            ]
        }
    }


def test_chaos_mesh_article_golden() -> None:
    """Latency, loss and a rate together: one netem action with netem's rate, in bytes/s."""
    chaos = k8s.network_chaos(
        ARTICLE, Scope((NET,)), 300, where=k8s.Where(pod="apitier-0"), namespace="demo"
    )
    assert chaos == {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "NetworkChaos",
        "metadata": {
            "name": "netgap-fault-apitier-0",
            "namespace": "demo",
            "labels": {"app.kubernetes.io/name": "netgap-fault"},
        },
        "spec": {
            "action": "netem",
            "delay": {"latency": "500ms"},
            "loss": {"loss": "1"},  # percent
            "rate": {"rate": "6250bps"},  # 50 kbit/s in bytes/s; Chaos Mesh's kbps is 1024 B/s
            "mode": "all",
            "selector": {"pods": {"demo": ["apitier-0"]}},
            "direction": "to",
            "duration": "5m",
            "externalTargets": ["10.0.0.0/24"],
        },
    }


@pytest.mark.parametrize(
    ("faults", "action"),
    [
        (
            Faults(rate_bps=50_000),
            # tbf: buffer 1600 B (a full packet), limit 6250 B (2 x 6250 B/s x 0.5 s)
            {
                "action": "bandwidth",
                "bandwidth": {"rate": "6250bps", "limit": 6250, "buffer": 1600},
            },
        ),
        (
            Faults(latency_s=0.5, jitter_s=0.1),
            {"action": "delay", "delay": {"latency": "500ms", "jitter": "100ms"}},
        ),
        (Faults(loss=0.001), {"action": "loss", "loss": {"loss": "0.1"}}),
        (
            Faults(latency_s=0.2, loss=0.02),
            {"action": "netem", "delay": {"latency": "200ms"}, "loss": {"loss": "2"}},
        ),
        (
            Faults(loss=0.01, rate_bps=1_000_000),
            {"action": "netem", "loss": {"loss": "1"}, "rate": {"rate": "125000bps"}},
        ),
    ],
)
def test_chaos_mesh_actions(faults: Faults, action: dict[str, Any]) -> None:
    assert k8s.chaos_action(faults) == action


def test_chaos_mesh_selectors_and_device() -> None:
    def spec(where: k8s.Where) -> dict[str, Any]:
        chaos = k8s.network_chaos(
            ARTICLE, Scope(), 90, where=where, namespace="demo", device="eth1"
        )
        return dict(chaos["spec"])

    by_label = spec(k8s.Where(selector="app=apitier,tier=api"))
    assert by_label["selector"] == {
        "namespaces": ["demo"],
        "labelSelectors": {"app": "apitier", "tier": "api"},
    }
    assert by_label["device"] == "eth1"
    assert by_label["duration"] == "90s"
    assert "externalTargets" not in by_label
    assert spec(k8s.Where(node="worker-1"))["selector"] == {
        "namespaces": ["demo"],
        "nodes": ["worker-1"],
    }
    name = k8s.network_chaos(ARTICLE, Scope(), 90, where=k8s.Where(selector="app=apitier"))
    assert name["metadata"]["name"] == "netgap-fault-app-apitier"


def test_chaos_mesh_refuses_what_it_cannot_do() -> None:
    where = k8s.Where(pod="apitier-0")
    with pytest.raises(UsageError, match="cannot scope by port"):
        k8s.network_chaos(ARTICLE, Scope((NET,), 8801), 300, where=where)
    with pytest.raises(FaultPlanError, match="reset"):
        k8s.network_chaos(Faults(reset=0.1), Scope(), 300, where=where)
    with pytest.raises(UsageError, match="needs pods to select"):
        k8s.network_chaos(ARTICLE, Scope(), 300, where=k8s.Where())


def test_names_and_durations() -> None:
    assert [k8s.go_duration(s) for s in (300, 90, 3600, 7200, 1.5, 0.0001)] == [
        "5m",
        "90s",
        "1h",
        "2h",
        "1500ms",
        "1ms",
    ]
    assert k8s.object_name("netgap-fault", "App=API_tier") == "netgap-fault-app-api-tier"
    assert k8s.node_pod_name("ip-10-0-1-5.ec2.internal") == "netgap-fault-ip-10-0-1-5.ec2.internal"
    assert k8s.parse_selector("app==apitier, tier=") == {"app": "apitier", "tier": ""}
    with pytest.raises(ValueError, match="label selector"):
        k8s.parse_selector("app in (a, b)")


def test_kubectl_calls() -> None:
    pod = k8s.node_pod(k8s.Agent(ARTICLE, Scope(), 300), node="worker-1")
    delete, apply = k8s.apply_node_pod(pod)
    assert delete.argv == (
        *("kubectl", "delete", "pod", "netgap-fault-worker-1", "-n", "netgap-fault"),
        *("--ignore-not-found", "--wait=true"),
    )
    assert apply.argv == ("kubectl", "apply", "-f", "-")
    assert apply.stdin is not None
    assert json.loads(apply.stdin) == pod
    patch: dict[str, Any] = {"spec": {"ephemeralContainers": []}}
    (call,) = k8s.apply_ephemeral(patch, ["apitier-0"], "demo")
    assert call.argv == (
        *("kubectl", "patch", "pod", "apitier-0", "-n", "demo"),
        *("--subresource=ephemeralcontainers", "--type=strategic"),
        *("-p", '{"spec":{"ephemeralContainers":[]}}'),
    )
    assert k8s.list_pods("app=apitier", "demo").argv == (
        *("kubectl", "get", "pods", "-n", "demo", "-l", "app=apitier", "-o", "name"),
    )
    assert k8s.pod_names("pod/a\npod/b\n\n") == ["a", "b"]
