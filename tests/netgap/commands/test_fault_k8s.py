"""netgap fault k8s as a user runs it: its flags (bad values one line, exit 2), impossible
requests, what it prints for each format, the agent's own command line read back, and --apply
through a stand-in kubectl. What the library renders is tests/netgap/fault/test_k8s.py's."""

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
from netgap.fault.tc import Scope, parse_network
from tests.harness import ROOT

pytestmark = pytest.mark.timeout(60)

ARTICLE = PRESETS["article"]
NET = parse_network("10.0.0.0/24")
AGENT = ["netgap", "fault", "k8s", "--node-agent"]


def parse(*argv: str) -> argparse.Namespace:
    parser = OneLineParser(prog="netgap fault k8s")
    add_arguments(parser)
    return parser.parse_args(argv)


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
