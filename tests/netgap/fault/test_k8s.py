"""netgap fault k8s: golden Pod, ephemeral container and NetworkChaos, the agent's command line
read back by the CLI, bad input (one line, exit 2), and --apply through a stand-in kubectl."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from netgap.argtypes import OneLineParser
from netgap.commands.fault_flags import faults_from_args
from netgap.commands.fault_k8s import add_arguments, run
from netgap.errors import UsageError
from netgap.fault import k8s
from netgap.fault.spec import PRESETS, Faults
from netgap.fault.tc import FaultPlanError, Scope, parse_network

pytestmark = pytest.mark.timeout(60)

ARTICLE = PRESETS["article"]
NET = parse_network("10.0.0.0/24")
ROOT = Path(__file__).resolve().parents[3]
AGENT = ["netgap", "fault", "k8s", "--node-agent"]
ARTICLE_FLAGS = ["--latency", "500ms", "--rate", "50kbit", "--loss", "1%"]
SECURITY = {
    "privileged": False,
    "runAsUser": 0,
    "runAsNonRoot": False,
    "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
}


def parse(*argv: str) -> argparse.Namespace:
    parser = OneLineParser(prog="netgap fault k8s")
    add_arguments(parser)
    return parser.parse_args(argv)


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


def test_agent_command_reads_back_as_the_same_fault() -> None:
    """What the Pod runs is parsed by this same CLI into the same faults, scope and TTL."""
    faults = Faults(latency_s=0.25, jitter_s=0.0015, rate_bps=1_234_567, loss=0.0025)
    scope = Scope((NET, parse_network("fd00::/64")), 443)
    agent = k8s.Agent(faults, scope, 1.5, device="vxlan.calico", netem=False)
    args = parse(*agent.argv()[3:])
    assert args.node_agent
    assert args.no_netem
    assert faults_from_args(args) == faults
    assert Scope(tuple(args.target), args.target_port) == scope
    assert (args.ttl, args.device) == (1.5, "vxlan.calico")


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


# -- the command line


PORT_SCOPED = ["--rate", "1mbit", "--target", "10.0.0.0/8", "--target-port", "80"]
BAD_VALUES = [
    (["--latency=-5ms"], "must be from 0"),
    (["--latency", "5parsecs"], "not a duration"),
    (["--jitter", "soon"], "not a duration"),
    (["--loss", "150%"], "must be from 0% to 100%"),
    (["--loss=-1%"], "must be from 0% to 100%"),
    (["--loss", "lots"], "not a percentage"),
    (["--rate", "5furlongs"], "not a rate"),
    (["--rate", "0.5bit"], "at least 1bit"),
    (["--target", "10.0.0.0/33"], "not a CIDR"),
    (["--target", "example.com"], "not a CIDR"),
    (["--target-port", "0"], "port must be from 1 to 65535"),
    (["--target-port", "http"], "not a port number"),
    (["--ttl", "0s"], "must be more than 0"),
    (["--ttl", "200h"], "at most 7 days"),
    (["--ttl", "soon"], "not a duration"),
    (["--device", "eth/0"], "not an interface name"),
    (["--device", "sixteen-letters!"], "not an interface name"),
    (["--namespace", "Bad_NS"], "not a namespace name"),
    (["--node", "Worker_1"], "not a Kubernetes object name"),
    (["--selector", "app in (a,b)"], "label selector"),
    (["--format", "yaml"], "invalid choice"),
    (["--preset", "nope"], "invalid choice"),
    (["--pod", "a", "--selector", "app=b"], "not allowed with argument"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_VALUES)
def test_bad_values_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("--node", "worker-1", *argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--node", "w", "--latency", "100ms", "--jitter", "200ms"], "jitter: 200ms is more than"),
        (["--node", "w"], "no fault given"),
        (["--node", "w", "--rate", "1mbit", "--target-port", "80"], "port needs a target network"),
        (["--rate", "1mbit"], "say where"),
        (["--pod", "a", *PORT_SCOPED, "--format", "chaos-mesh"], "cannot scope by port"),
        (["--node", "w", "--node-agent", "--rate", "1mbit"], "drop --node"),
        (["--node", "w", "--latency", "1ms", "--no-netem"], "latency needs netem"),
        (["--node", "w", "--clear", "--format", "chaos-mesh"], "Chaos Mesh removes"),
        (["--rate", "1mbit", "--device", "eth0", "--format", "commands", "--apply"], "only prints"),
    ],
)
def test_impossible_requests_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        run(parse(*argv))


def test_preset_with_overrides() -> None:
    args = parse("--node", "w", "--preset", "article", "--loss", "0", "--rate", "none")
    assert faults_from_args(args) == Faults(latency_s=0.5)
    # 0 is no cap, as `fault proxy` and the control API read it
    args = parse("--node", "w", "--preset", "article", "--rate", "0")
    assert faults_from_args(args) == Faults(latency_s=0.5, loss=0.01)


def test_renders_the_node_pod(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse("--node", "worker-1", "--preset", "article")) == 0
    expected = k8s.node_pod(k8s.Agent(ARTICLE, Scope(), 300), node="worker-1")
    assert json.loads(capsys.readouterr().out) == expected


def test_renders_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--preset", "article", "--device", "tunl0", "--format", "commands"]
    assert run(parse(*argv, "--target", "10.0.0.0/24", "--target-port", "8801")) == 0
    assert capsys.readouterr().out.splitlines() == [
        "# only egress to 10.0.0.0/24 port 8801 (TCP and UDP)",
        "# netem: latency 500ms, rate 50kbit, loss 1%",
        "# apply",
        "tc qdisc add dev tunl0 root handle 4e47: htb direct_qlen 1000",
        "tc class add dev tunl0 parent 4e47: classid 4e47:4 htb rate 100gbit quantum 60000",
        "tc qdisc add dev tunl0 parent 4e47:4 handle 4e48: "
        "netem delay 500ms loss random 1% rate 50kbit limit 1000",
        "tc filter add dev tunl0 parent 4e47: protocol ip prio 1 u32 "
        "match ip dst 10.0.0.0/24 match ip dport 8801 0xffff flowid 4e47:4",
        "# revert",
        "tc qdisc del dev tunl0 root handle 4e47:",
    ]


def test_renders_an_ephemeral_container(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse("--selector", "app=apitier", "--loss", "1%", "--ttl", "2m")) == 0
    (container,) = json.loads(capsys.readouterr().out)["spec"]["ephemeralContainers"]
    assert container["name"].startswith("netgap-fault-")
    assert container["command"] == [*AGENT, "--loss", "1%", "--device", "eth0", "--ttl", "2m"]


def _fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in kubectl on PATH that records each call (argv, stdin) and lists two pods."""
    log = tmp_path / "calls.jsonl"
    script = tmp_path / "kubectl"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "stdin = sys.stdin.read() if sys.argv[1:4] == ['apply', '-f', '-'] else None\n"
        f"with open({str(log)!r}, 'a') as out:\n"
        "    out.write(json.dumps({'argv': sys.argv[1:], 'stdin': stdin}) + '\\n')\n"
        "if sys.argv[1] == 'get':\n"
        "    print('pod/apitier-0')\n"
        "    print('pod/apitier-1')\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    return log


def _calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_apply_node_pod_through_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _fake_kubectl(tmp_path, monkeypatch)
    assert run(parse("--node", "worker-1", "--preset", "article", "--apply")) == 0
    delete, apply = _calls(log)
    assert delete["argv"][:4] == ["delete", "pod", "netgap-fault-worker-1", "-n"]
    assert apply["argv"] == ["apply", "-f", "-"]
    expected = k8s.node_pod(k8s.Agent(ARTICLE, Scope(), 300), node="worker-1")
    assert json.loads(apply["stdin"]) == expected


def test_apply_clear_deletes_the_fault_pod_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _fake_kubectl(tmp_path, monkeypatch)
    assert run(parse("--node", "worker-1", "--clear", "--apply")) == 0
    calls = _calls(log)
    assert [call["argv"][:3] for call in calls] == [
        ["delete", "pod", "netgap-fault-worker-1"],
        ["delete", "pod", "netgap-fault-clear-worker-1"],
        ["apply", "-f", "-"],
    ]
    assert json.loads(calls[2]["stdin"])["spec"]["containers"][0]["command"] == [*AGENT, "--clear"]


def test_apply_to_selected_pods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _fake_kubectl(tmp_path, monkeypatch)
    argv = ["--selector", "app=apitier", "--namespace", "demo", "--rate", "1mbit", "--apply"]
    assert run(parse(*argv)) == 0
    listing, *patches = _calls(log)
    assert listing["argv"] == ["get", "pods", "-n", "demo", "-l", "app=apitier", "-o", "name"]
    assert [call["argv"][:5] for call in patches] == [
        ["patch", "pod", "apitier-0", "-n", "demo"],
        ["patch", "pod", "apitier-1", "-n", "demo"],
    ]
    body = json.loads(patches[0]["argv"][-1])
    assert body["spec"]["ephemeralContainers"][0]["command"][4:6] == ["--rate", "1mbit"]


def _cli(*argv: str, env: dict[str, str] | None = None) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-m", "netgap", "fault", "k8s", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=30,
    )


def test_apply_without_kubectl_is_one_error_naming_it(tmp_path: Path) -> None:
    done = _cli(
        "--node", "w", "--rate", "1mbit", "--apply", env={**os.environ, "PATH": str(tmp_path)}
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        "netgap fault k8s: kubectl not found on PATH; --apply runs it"
    )
    assert done.stdout == ""


def test_bad_input_as_run() -> None:
    for argv in (["--loss", "150%"], ["--latency", "100ms", "--jitter", "200ms"]):
        done = _cli("--node", "w", *argv)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith("netgap fault k8s: ")


def test_wired_into_netgap() -> None:
    from netgap.commands import COMMANDS

    parser = argparse.ArgumentParser()
    COMMANDS["fault"].add_arguments(parser)  # a KeyError, or SystemExit below, is a failure
    parser.parse_args(["k8s", "--node", "w", "--rate", "1mbit"])
    done = subprocess.run(
        [sys.executable, "-m", "netgap", "fault", "k8s", "--node", "w", "--loss", "150%"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
