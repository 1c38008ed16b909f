"""tc/iptables plans: golden command sequences, and the plans run for real in a network namespace.

Every expected command below is written out by hand and was checked against tc(8), tc-netem(8),
tc-tbf(8), tc-htb(8), tc-u32(8) and iptables-extensions(8). The real runs need root, `ip netns`,
tc and iptables; they apply what this kernel has (htb, tbf, u32, iptables statistic), check it is
in place, revert, and compare `tc qdisc show`, the filters and `iptables -S` to before.

netem lines: this build machine's kernel has no sch_netem. tc parses every netem option itself
before it asks the kernel, so a netem command that gets as far as the kernel's "Specified qdisc
kind is unknown" is well-formed by tc's own grammar, and any other failure is ours: that is the
syntax check (and on a kernel with netem the command simply succeeds).
"""

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netgap.errors import UsageError
from netgap.fault.spec import PRESETS, Faults
from netgap.fault.tc import (
    FaultPlanError,
    Injection,
    Plan,
    Scope,
    StepFailed,
    clear_argvs,
    hold,
    is_netem_missing,
    netem_limit_packets,
    parse_network,
    percent,
    pick_interface,
    plan,
    shell_lines,
    tc_time,
)
from tests.netgap.fault import netns
from tests.netgap.fault.netns import LEFT_DEV, RIGHT_IP, Pair

pytestmark = pytest.mark.timeout(60)

ARTICLE = PRESETS["article"]
LATENCY = Faults(latency_s=0.5)
RATE = Faults(rate_bps=50_000)
LOSS = Faults(loss=0.01)
NET = parse_network("10.0.0.0/24")
UNSCOPED = Scope()
CIDR = Scope((NET,))
CIDR_PORT = Scope((NET,), 8801)
# The default route's device stands for every CNI this does not know.
DEVICES = ("tunl0", "vxlan.calico", "flannel.1", "cni0", "eth0")

DEL_ROOT = "tc qdisc del dev {dev} root handle 4e47:"
HTB_ROOT = "tc qdisc add dev {dev} root handle 4e47: htb direct_qlen 1000"
HTB_CLASS = "tc class add dev {dev} parent 4e47: classid 4e47:4 htb rate 100gbit quantum 60000"
CHILD = "tc qdisc add dev {dev} parent 4e47:4 handle 4e48: "
FILTER_CIDR = (
    "tc filter add dev {dev} parent 4e47: protocol ip prio 1 u32 match ip dst 10.0.0.0/24 "
    "flowid 4e47:4"
)
FILTER_CIDR_PORT = (
    "tc filter add dev {dev} parent 4e47: protocol ip prio 1 u32 match ip dst 10.0.0.0/24 "
    "match ip dport 8801 0xffff flowid 4e47:4"
)
DROP = "-m statistic --mode random --probability 0.01 -m comment --comment netgap-fault -j DROP"

# (faults, scope, netem) -> (apply, revert), {dev} standing for the device
GOLDEN: dict[str, tuple[Faults, Scope, bool, list[str], list[str]]] = {
    "latency, unscoped": (
        LATENCY,
        UNSCOPED,
        True,
        # limit: 2 x 1 Gbit/s x 0.5 s in 1500-byte packets = 83333.3 -> 83334
        ["tc qdisc add dev {dev} root handle 4e47: netem delay 500ms limit 83334"],
        [DEL_ROOT],
    ),
    "latency+jitter, unscoped": (
        Faults(latency_s=0.1, jitter_s=0.0015),
        UNSCOPED,
        True,
        # limit: 2 x 125e6 B/s x 0.1015 s / 1500 B = 16916.7 -> 16917
        ["tc qdisc add dev {dev} root handle 4e47: netem delay 100ms 1500us limit 16917"],
        [DEL_ROOT],
    ),
    "rate, unscoped": (
        RATE,
        UNSCOPED,
        True,
        # burst: one 1500-byte packet + 100; limit: 2 x 6250 B/s x 0.5 s = 6250 (>= 2 x burst)
        ["tc qdisc add dev {dev} root handle 4e47: tbf rate 50kbit burst 1600 limit 6250"],
        [DEL_ROOT],
    ),
    "rate, unscoped, no netem": (
        RATE,
        UNSCOPED,
        False,
        ["tc qdisc add dev {dev} root handle 4e47: tbf rate 50kbit burst 1600 limit 6250"],
        [DEL_ROOT],
    ),
    "loss, unscoped": (
        LOSS,
        UNSCOPED,
        True,
        ["tc qdisc add dev {dev} root handle 4e47: netem loss random 1% limit 1000"],
        [DEL_ROOT],
    ),
    "loss, unscoped, no netem": (
        LOSS,
        UNSCOPED,
        False,
        [f"iptables -t mangle -I POSTROUTING -o {{dev}} {DROP}"],
        [f"iptables -t mangle -D POSTROUTING -o {{dev}} {DROP}"],
    ),
    "article, unscoped": (
        ARTICLE,
        UNSCOPED,
        True,
        [
            "tc qdisc add dev {dev} root handle 4e47: "
            "netem delay 500ms loss random 1% rate 50kbit limit 1000"
        ],
        [DEL_ROOT],
    ),
    "latency, cidr+port": (
        LATENCY,
        CIDR_PORT,
        True,
        [HTB_ROOT, HTB_CLASS, CHILD + "netem delay 500ms limit 83334", FILTER_CIDR_PORT],
        [DEL_ROOT],
    ),
    "rate, cidr": (
        RATE,
        CIDR,
        True,
        [HTB_ROOT, HTB_CLASS, CHILD + "tbf rate 50kbit burst 1600 limit 6250", FILTER_CIDR],
        [DEL_ROOT],
    ),
    "loss, cidr": (
        LOSS,
        CIDR,
        True,
        [HTB_ROOT, HTB_CLASS, CHILD + "netem loss random 1% limit 1000", FILTER_CIDR],
        [DEL_ROOT],
    ),
    "loss, cidr+port, no netem": (
        LOSS,
        CIDR_PORT,
        False,
        [
            "iptables -t mangle -I POSTROUTING -o {dev} -d 10.0.0.0/24 -p tcp --dport 8801 " + DROP,
            "iptables -t mangle -I POSTROUTING -o {dev} -d 10.0.0.0/24 -p udp --dport 8801 " + DROP,
        ],
        [
            "iptables -t mangle -D POSTROUTING -o {dev} -d 10.0.0.0/24 -p udp --dport 8801 " + DROP,
            "iptables -t mangle -D POSTROUTING -o {dev} -d 10.0.0.0/24 -p tcp --dport 8801 " + DROP,
        ],
    ),
    "article, cidr": (
        ARTICLE,
        CIDR,
        True,
        [
            HTB_ROOT,
            HTB_CLASS,
            CHILD + "netem delay 500ms loss random 1% rate 50kbit limit 1000",
            FILTER_CIDR,
        ],
        [DEL_ROOT],
    ),
    "article, cidr+port": (
        ARTICLE,
        CIDR_PORT,
        True,
        [
            HTB_ROOT,
            HTB_CLASS,
            CHILD + "netem delay 500ms loss random 1% rate 50kbit limit 1000",
            FILTER_CIDR_PORT,
        ],
        [DEL_ROOT],
    ),
    "rate+loss, cidr+port, no netem": (
        Faults(rate_bps=50_000, loss=0.01),
        CIDR_PORT,
        False,
        [
            HTB_ROOT,
            HTB_CLASS,
            CHILD + "tbf rate 50kbit burst 1600 limit 6250",
            FILTER_CIDR_PORT,
            "iptables -t mangle -I POSTROUTING -o {dev} -d 10.0.0.0/24 -p tcp --dport 8801 " + DROP,
            "iptables -t mangle -I POSTROUTING -o {dev} -d 10.0.0.0/24 -p udp --dport 8801 " + DROP,
        ],
        [
            "iptables -t mangle -D POSTROUTING -o {dev} -d 10.0.0.0/24 -p udp --dport 8801 " + DROP,
            "iptables -t mangle -D POSTROUTING -o {dev} -d 10.0.0.0/24 -p tcp --dport 8801 " + DROP,
            DEL_ROOT,
        ],
    ),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden_sequences(case: str, device: str) -> None:
    faults, scope, netem, apply, revert = GOLDEN[case]
    made = plan(faults, device, scope, netem=netem)
    assert made.apply_lines() == [line.format(dev=device) for line in apply]
    assert made.revert_lines() == [line.format(dev=device) for line in revert]


def test_article_on_tunl0_written_out() -> None:
    """The story's fault, spelled out in full once."""
    assert plan(ARTICLE, "tunl0").apply_lines() == [
        "tc qdisc add dev tunl0 root handle 4e47: "
        "netem delay 500ms loss random 1% rate 50kbit limit 1000"
    ]
    scoped = plan(ARTICLE, "tunl0", CIDR_PORT)
    assert scoped.apply_lines() == [
        "tc qdisc add dev tunl0 root handle 4e47: htb direct_qlen 1000",
        "tc class add dev tunl0 parent 4e47: classid 4e47:4 htb rate 100gbit quantum 60000",
        "tc qdisc add dev tunl0 parent 4e47:4 handle 4e48: "
        "netem delay 500ms loss random 1% rate 50kbit limit 1000",
        "tc filter add dev tunl0 parent 4e47: protocol ip prio 1 u32 "
        "match ip dst 10.0.0.0/24 match ip dport 8801 0xffff flowid 4e47:4",
    ]
    assert scoped.revert_lines() == ["tc qdisc del dev tunl0 root handle 4e47:"]


def test_ipv4_and_ipv6_targets() -> None:
    scope = Scope((parse_network("10.0.0.0/24"), parse_network("fd00::/64")), 443)
    made = plan(Faults(rate_bps=1_000_000, loss=0.005), "eth0", scope, netem=False)
    drop = (
        "-m statistic --mode random --probability 0.005 -m comment --comment netgap-fault -j DROP"
    )
    assert made.apply_lines() == [
        "tc qdisc add dev eth0 root handle 4e47: htb direct_qlen 1000",
        "tc class add dev eth0 parent 4e47: classid 4e47:4 htb rate 100gbit quantum 60000",
        # burst: 1600 > 10 ms at 125000 B/s; limit: 2 x 125000 B/s x 0.5 s
        "tc qdisc add dev eth0 parent 4e47:4 handle 4e48: tbf rate 1mbit burst 1600 limit 125000",
        "tc filter add dev eth0 parent 4e47: protocol ip prio 1 u32 "
        "match ip dst 10.0.0.0/24 match ip dport 443 0xffff flowid 4e47:4",
        "tc filter add dev eth0 parent 4e47: protocol ipv6 prio 2 u32 "
        "match ip6 dst fd00::/64 match ip6 dport 443 0xffff flowid 4e47:4",
        f"iptables -t mangle -I POSTROUTING -o eth0 -d 10.0.0.0/24 -p tcp --dport 443 {drop}",
        f"iptables -t mangle -I POSTROUTING -o eth0 -d 10.0.0.0/24 -p udp --dport 443 {drop}",
        f"ip6tables -t mangle -I POSTROUTING -o eth0 -d fd00::/64 -p tcp --dport 443 {drop}",
        f"ip6tables -t mangle -I POSTROUTING -o eth0 -d fd00::/64 -p udp --dport 443 {drop}",
    ]
    assert made.revert_lines()[-1] == "tc qdisc del dev eth0 root handle 4e47:"
    assert len(made.revert_lines()) == 5


def test_jitter_and_queue_sizes() -> None:
    jittery = Faults(latency_s=0.1, jitter_s=0.02)
    # 2 x 125e6 B/s x 0.12 s / 1500 B is exactly 20000, though 0.1 + 0.02 is not quite 0.12
    assert plan(jittery, "eth0").apply_lines() == [
        "tc qdisc add dev eth0 root handle 4e47: netem delay 100ms 20ms limit 20000"
    ]
    assert netem_limit_packets(Faults(latency_s=0.001)) == 1000  # never below tc's default
    jumbo = plan(RATE, "eth0", mtu=9000).apply_lines()
    assert jumbo == [
        "tc qdisc add dev eth0 root handle 4e47: tbf rate 50kbit burst 9100 limit 18200"
    ]
    fast = plan(Faults(rate_bps=1_000_000_000), "eth0").apply_lines()
    assert fast == [
        "tc qdisc add dev eth0 root handle 4e47: tbf rate 1gbit burst 1250000 limit 125000000"
    ]


def test_units() -> None:
    assert [tc_time(s) for s in (0.5, 0.0015, 2.0, 1e-9)] == ["500ms", "1500us", "2000ms", "1us"]
    assert [percent(f) for f in (0.01, 0.07, 0.001, 1.0)] == ["1%", "7%", "0.1%", "100%"]
    assert str(parse_network("10.0.0.5/24")) == "10.0.0.0/24"
    assert str(parse_network("10.0.0.5")) == "10.0.0.5/32"
    with pytest.raises(ValueError, match="not a CIDR"):
        parse_network("10.0.0.0/33")


def test_what_cannot_be_planned() -> None:
    with pytest.raises(FaultPlanError, match="latency needs netem"):
        plan(ARTICLE, "eth0", netem=False)
    with pytest.raises(FaultPlanError, match="reset"):
        plan(Faults(reset=0.1), "eth0")
    with pytest.raises(FaultPlanError, match="no fault given"):
        plan(Faults(), "eth0")
    with pytest.raises(UsageError, match="target port needs a target network"):
        Scope((), 8801)


def test_notes_say_how() -> None:
    assert plan(ARTICLE, "tunl0", CIDR_PORT).notes == (
        "only egress to 10.0.0.0/24 port 8801 (TCP and UDP)",
        "netem: latency 500ms, rate 50kbit, loss 1%",
    )
    assert plan(Faults(rate_bps=50_000, loss=0.01), "eth0", netem=False).notes == (
        "all egress",
        "tbf: rate 50kbit",
        "iptables statistic: loss 1%, IPv4 only",
        "planned for a kernel without netem",
    )
    lines = shell_lines(plan(RATE, "eth0"), ["device eth0"])
    assert lines == [
        "# device eth0",
        "# all egress",
        "# tbf: rate 50kbit",
        "# apply",
        "tc qdisc add dev eth0 root handle 4e47: tbf rate 50kbit burst 1600 limit 6250",
        "# revert",
        "tc qdisc del dev eth0 root handle 4e47:",
    ]


ROUTE = "default via 172.18.0.1 dev ens5 proto dhcp src 172.18.0.7 metric 100\n"


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        ({"lo": True, "ens5": True, "tunl0": True, "cali1234": True}, "tunl0"),
        ({"ens5": True, "tunl0": False, "vxlan.calico": True}, "vxlan.calico"),  # IPIP off
        ({"ens5": True, "flannel.1": True, "cni0": True}, "flannel.1"),
        ({"ens5": True, "cni0": True, "veth0ab": True}, "cni0"),
        ({"ens5": True, "tunl0": False, "docker0": True}, "ens5"),  # the default route's
        ({"tunl0": True, "vxlan.calico": True, "flannel.1": True}, "tunl0"),  # that order
    ],
)
def test_interface_detection(links: dict[str, bool], expected: str) -> None:
    assert pick_interface(links, ROUTE) == expected


def test_interface_detection_finds_nothing() -> None:
    assert pick_interface({"lo": True}, "") is None


QDISCS = """\
qdisc noqueue 0: dev lo root refcnt 2
qdisc htb 4e47: dev tunl0 root refcnt 2 r2q 10 default 0 direct_packets_stat 3 direct_qlen 1000
qdisc netem 4e48: dev tunl0 parent 4e47:4 limit 1000 delay 500ms rate 50Kbit loss 1%
qdisc tbf 4e47: dev eth0 root refcnt 2 rate 50Kbit burst 1600b lat 744ms
qdisc htb 1: dev eth1 root refcnt 2 r2q 10 default 0x10 direct_packets_stat 0
qdisc fq_codel 0: dev eth2 root refcnt 2 limit 10240p flows 1024
"""
RULES = """\
-P POSTROUTING ACCEPT
-A POSTROUTING -o tunl0 -m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING
-A POSTROUTING -d 10.0.0.0/24 -o tunl0 -p tcp -m tcp --dport 8801 -m statistic --mode random \
--probability 0.00999999978 -m comment --comment netgap-fault -j DROP
-A POSTROUTING -o eth0 -m comment --comment "netgap-fault but not ours" -j ACCEPT
"""


def test_clear_finds_exactly_ours() -> None:
    assert clear_argvs(QDISCS, {"iptables": RULES, "ip6tables": "-P POSTROUTING ACCEPT\n"}) == [
        ("tc", "qdisc", "del", "dev", "tunl0", "root", "handle", "4e47:"),
        ("tc", "qdisc", "del", "dev", "eth0", "root", "handle", "4e47:"),
        (
            *("iptables", "-t", "mangle", "-D", "POSTROUTING", "-d", "10.0.0.0/24", "-o", "tunl0"),
            *("-p", "tcp", "-m", "tcp", "--dport", "8801", "-m", "statistic", "--mode", "random"),
            *("--probability", "0.00999999978", "-m", "comment", "--comment", "netgap-fault"),
            *("-j", "DROP"),
        ),
    ]
    assert clear_argvs("qdisc noqueue 0: dev lo root refcnt 2\n", {"iptables": ""}) == []
    links = (
        "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n"
        "7: ngprobe0a1b2cp@ngprobe0a1b2c: <BROADCAST,MULTICAST,M-DOWN> mtu 1500 qdisc noop\n"
        "8: ngprobe0a1b2c@ngprobe0a1b2cp: <BROADCAST,MULTICAST,M-DOWN> mtu 1500 qdisc noop\n"
    )
    assert clear_argvs("", {}, links) == [("ip", "link", "del", "ngprobe0a1b2c")]


def test_netem_missing_is_told_from_other_errors() -> None:
    assert is_netem_missing("Error: Specified qdisc kind is unknown.\n")
    assert not is_netem_missing('What is "lossy"?\nUsage: ... netem [ limit PACKETS ]\n')
    assert not is_netem_missing("RTNETLINK answers: Operation not permitted\n")


# -- for real, in a network namespace


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    reason = netns.missing()
    if reason:
        pytest.skip(reason)
    with netns.netns_pair() as made:
        yield made


def _apply_and_revert(pair: Pair, made: Plan) -> str:
    """Apply in the left namespace, return the state while applied, revert, check it is gone."""
    before = pair.state(pair.left)
    injection = Injection(made, io.StringIO(), pair.runner(pair.left))
    assert injection.apply()
    during = pair.state(pair.left)
    assert injection.revert() == []
    assert pair.state(pair.left) == before
    return during


def test_scoped_rate_and_loss_really_apply_and_revert_exactly(pair: Pair) -> None:
    scope = Scope((parse_network(f"{RIGHT_IP}/32"),), 8801)
    during = _apply_and_revert(
        pair, plan(Faults(rate_bps=1_000_000, loss=0.01), LEFT_DEV, scope, netem=False)
    )
    assert f"qdisc htb 4e47: dev {LEFT_DEV} root" in during
    assert f"qdisc tbf 4e48: dev {LEFT_DEV} parent 4e47:4 rate 1Mbit burst 1600b" in during
    assert "*flowid 4e47:4" in during
    assert "match c0000202/ffffffff at 16" in during  # 192.0.2.2/32
    assert "match 00002261/0000ffff at 20" in during  # dport 8801
    assert during.count("--comment netgap-fault -j DROP") == 2
    assert f"-d {RIGHT_IP}/32 -o {LEFT_DEV} -p udp -m udp --dport 8801" in during


def test_unscoped_rate_and_loss_really_apply_and_revert_exactly(pair: Pair) -> None:
    during = _apply_and_revert(pair, plan(Faults(rate_bps=50_000, loss=0.5), LEFT_DEV, netem=False))
    assert f"qdisc tbf 4e47: dev {LEFT_DEV} root" in during
    assert "rate 50Kbit burst 1600b lat 744ms" in during  # (6250 - 1600) B at 6250 B/s
    assert f"-A POSTROUTING -o {LEFT_DEV} -m statistic --mode random --probability 0.5" in during


def test_ipv6_scope_really_applies_and_reverts_exactly(pair: Pair) -> None:
    scope = Scope((parse_network("2001:db8::/64"), parse_network(f"{RIGHT_IP}/32")), 443)
    during = _apply_and_revert(
        pair, plan(Faults(rate_bps=50_000, loss=0.01), LEFT_DEV, scope, netem=False)
    )
    assert "protocol ipv6 pref 2 u32" in during
    assert "-A POSTROUTING -d 2001:db8::/64 -o ngt0 -p tcp -m tcp --dport 443" in during


@pytest.mark.parametrize("case", sorted(name for name, golden in GOLDEN.items() if golden[2]))
def test_netem_lines_pass_tcs_own_parser(pair: Pair, case: str) -> None:
    """The whole plan runs: on a kernel without netem its netem step must fail with nothing but
    "netem missing", and what came before is reverted exactly (a failure mid-apply)."""
    faults, scope, _, _, _ = GOLDEN[case]
    made = plan(faults, LEFT_DEV, scope)
    before = pair.state(pair.left)
    injection = Injection(made, io.StringIO(), pair.runner(pair.left))
    failure: StepFailed | None = None
    try:
        injection.apply()
    except StepFailed as failed:
        failure = failed
    finally:
        assert injection.revert() == []
    if failure is not None:  # anything but "no netem in this kernel" is a bad line
        assert " netem " in str(failure)  # and it is the netem step that failed
        assert failure.hint is not None
        assert "no netem" in failure.hint, str(failure)
    assert pair.state(pair.left) == before


def test_netem_syntax_check_catches_a_bad_line(pair: Pair) -> None:
    bad = ("tc", "qdisc", "add", "dev", LEFT_DEV, "root", "netem", "delay", "500ms", "lossy", "1%")
    done = pair.runner(pair.left)(bad)
    assert done.returncode != 0
    assert not is_netem_missing(done.stderr), done.stderr


def test_tbf_really_caps(pair: Pair) -> None:
    """300 kB through a 4 Mbit/s (500 kB/s) cap take about 0.6 s; unshaped, a few ms."""
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", pair.right, sys.executable, "-c", _TCP_RECEIVER],
        stdout=subprocess.PIPE,
        text=True,
    )
    injection = Injection(
        plan(Faults(rate_bps=4_000_000), LEFT_DEV), io.StringIO(), pair.runner(pair.left)
    )
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "ready"
        assert injection.apply()
        pair.run(pair.left, [sys.executable, "-c", _TCP_SENDER])
        received, elapsed = receiver.communicate(timeout=15)[0].split()
    finally:
        receiver.kill()
        receiver.wait()
        injection.revert()
    assert int(received) == 300_000
    assert 0.4 < float(elapsed) < 5, elapsed


def test_scoped_loss_drops_only_that_port(pair: Pair) -> None:
    scope = Scope((parse_network(f"{RIGHT_IP}/32"),), 8801)
    injection = Injection(
        plan(Faults(loss=1.0), LEFT_DEV, scope, netem=False), io.StringIO(), pair.runner(pair.left)
    )
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", pair.right, sys.executable, "-c", _UDP_RECEIVER],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "ready"
        assert injection.apply()
        pair.run(pair.left, [sys.executable, "-c", _UDP_SENDER])
        counts = receiver.communicate(timeout=15)[0].split()
    finally:
        receiver.kill()
        receiver.wait()
        injection.revert()
    assert counts == ["0", "20"]  # port 8801: all dropped; port 8802: all through


_TCP_RECEIVER = """
import socket, time
server = socket.create_server(("0.0.0.0", 5201))
server.settimeout(10)
print("ready", flush=True)
conn, _ = server.accept()
conn.settimeout(10)
start, size = time.monotonic(), 0
while chunk := conn.recv(65536):
    size += len(chunk)
print(size, time.monotonic() - start, flush=True)
"""
_TCP_SENDER = f"""
import socket
with socket.create_connection(("{RIGHT_IP}", 5201), timeout=10) as conn:
    conn.sendall(b"x" * 300_000)
"""
_UDP_RECEIVER = """
import select, socket, time
socks = []
for port in (8801, 8802):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    socks.append(sock)
print("ready", flush=True)
counts = {sock: 0 for sock in socks}
deadline = time.monotonic() + 1.5
while (left := deadline - time.monotonic()) > 0:
    for sock in select.select(socks, [], [], left)[0]:
        sock.recv(100)
        counts[sock] += 1
print(*counts.values(), flush=True)
"""
_UDP_SENDER = f"""
import socket
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(20):
    for port in (8801, 8802):
        try:
            sock.sendto(b"x", ("{RIGHT_IP}", port))
        except PermissionError:  # what a local sender sees of a netfilter DROP
            pass
"""


def test_sigterm_mid_apply_reverts_what_was_applied(pair: Pair) -> None:
    """hold() holds SIGTERM while it applies: one arriving after the second step stops the
    apply there, and exactly those two steps are reverted."""
    made = plan(Faults(rate_bps=1_000_000), LEFT_DEV, CIDR_PORT, netem=False)
    run_there = pair.runner(pair.left)
    ran: list[tuple[str, ...]] = []

    def run_then_signal(argv: tuple[str, ...]) -> "subprocess.CompletedProcess[str]":
        ran.append(argv)
        if len(ran) == 2:  # to this thread, which holds it: the process-wide default would kill
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        return run_there(argv)

    before = pair.state(pair.left)
    log = io.StringIO()
    assert hold(made, 60, log, run_then_signal) == "SIGTERM"
    assert ran == [made.steps[0].argv, made.steps[1].argv, made.steps[0].undo]
    assert "applied on" not in log.getvalue()
    assert log.getvalue().endswith("reverted (SIGTERM)\n")
    assert pair.state(pair.left) == before


def test_netem_probe_agrees_with_tc(pair: Pair) -> None:
    probe = pair.run(
        pair.left,
        [sys.executable, "-c", "from netgap.fault.tc import probe_netem; print(probe_netem())"],
    ).stdout
    tried = pair.runner(pair.left)(NETEM_ON_LO)
    if tried.returncode == 0:
        pair.run(pair.left, ["tc", "qdisc", "del", "dev", "lo", "root", "handle", "4e47:"])
    assert ("available=True" in probe) == (tried.returncode == 0), (probe, tried.stderr)
    assert "ngprobe" not in pair.run(pair.left, ["ip", "-o", "link"]).stdout  # cleaned up


# -- the agent, as a process: SIGTERM, TTL, SIGKILL then --clear

AGENT = [sys.executable, "-m", "netgap", "fault", "k8s", "--node-agent"]
AGENT_FAULTS = ["--device", LEFT_DEV, "--rate", "1mbit", "--loss", "1%"]
AGENT_SCOPE = ["--target", f"{RIGHT_IP}/32", "--target-port", "8801"]
ROOT = Path(__file__).resolve().parents[3]


class Agent:
    """The agent running in the left namespace, its output collected by a thread."""

    def __init__(self, pair: Pair, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", pair.left, *AGENT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout_s: float = 15) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, f"no {text!r} in {self.output()}"
            time.sleep(0.05)

    def exit_code(self, timeout_s: float = 15) -> int:
        code = self.proc.wait(timeout_s)
        self._reader.join(5)
        return code

    def output(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_agent_reverts_on_sigterm(pair: Pair) -> None:
    before = pair.state(pair.left)
    agent = Agent(pair, *AGENT_FAULTS, *AGENT_SCOPE, "--ttl", "60s")
    try:
        agent.wait_for("applied on")
        during = pair.state(pair.left)
        assert "qdisc htb 4e47:" in during
        assert "netgap-fault" in during
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.exit_code() == 0, agent.output()
    finally:
        agent.kill()
    assert agent.output().endswith("reverted (SIGTERM)\n")
    assert pair.state(pair.left) == before


def test_agent_reverts_when_ttl_expires(pair: Pair) -> None:
    before = pair.state(pair.left)
    agent = Agent(pair, *AGENT_FAULTS, "--ttl", "1s")
    try:
        assert agent.exit_code() == 0, agent.output()
    finally:
        agent.kill()
    assert "applied on" in agent.output()
    assert agent.output().endswith("reverted (ttl expired)\n")
    assert pair.state(pair.left) == before


def test_clear_removes_what_a_killed_agent_left(pair: Pair) -> None:
    before = pair.state(pair.left)
    agent = Agent(pair, *AGENT_FAULTS, *AGENT_SCOPE, "--ttl", "60s")
    try:
        agent.wait_for("applied on")
    finally:
        agent.kill()  # SIGKILL: nothing reverted
    assert pair.state(pair.left) != before
    dry = pair.run(pair.left, [*AGENT, "--clear", "--dry-run"]).stdout
    assert f"tc qdisc del dev {LEFT_DEV} root handle 4e47:" in dry.splitlines()
    assert dry.count("iptables -t mangle -D POSTROUTING") == 2
    assert pair.state(pair.left) != before  # a dry run changes nothing
    cleared = pair.run(pair.left, [*AGENT, "--clear"])
    assert cleared.stdout.count("+ ") == 3
    assert pair.state(pair.left) == before
    again = pair.run(pair.left, [*AGENT, "--clear"])
    assert again.stdout == "nothing to clear\n"


def test_agent_refuses_latency_without_netem(pair: Pair) -> None:
    """On a kernel without netem the agent says so and changes nothing; with netem, it would
    apply (that kernel is not this one)."""
    tried = pair.runner(pair.left)(NETEM_ON_LO)
    if tried.returncode == 0:
        pair.run(pair.left, ["tc", "qdisc", "del", "dev", "lo", "root", "handle", "4e47:"])
        pytest.skip("this kernel has netem")
    assert is_netem_missing(tried.stderr), tried.stderr
    before = pair.state(pair.left)
    done = pair.run(pair.left, [*AGENT, "--device", LEFT_DEV, "--preset", "article"], check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("netgap fault k8s: latency needs netem: this kernel has no netem")
    assert pair.state(pair.left) == before


NETEM_ON_LO = (
    "tc",
    "qdisc",
    "add",
    "dev",
    "lo",
    "root",
    "handle",
    "4e47:",
    "netem",
    "delay",
    "1ms",
)
