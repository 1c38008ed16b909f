"""`netgap scenario --kernel`: the plans and the bookkeeping with a fake runner, the refusals,
and (as root, with network namespaces and iptables) a real run and a SIGTERM in the fault,
each leaving the root namespace's qdiscs, rules, links and namespaces exactly as they were."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netgap.cli import main
from netgap.errors import UsageError
from netgap.fault import tc
from netgap.fault.spec import PRESETS, Faults
from netgap.report import end_moved
from netgap.scenario import diagnosis, kernel, model
from netgap.scenario.page import kernel_lines
from netgap.scenario.result import KernelInfo, ScenarioResult
from tests.harness import ROOT
from tests.netgap.fault.netns import missing
from tests.netgap.scenario.runs import (
    assert_ports_free,
    free_ports,
    jumped_and_came_back,
    scenario_command,
)

MS = 1_000_000
ARTICLE = PRESETS["article"]
API_PORT = 8801
PHASES = ("--baseline", "6s", "--fault", "10s", "--recovery", "6s")


# -- a fake runner: every command recorded, answers scripted


@dataclass
class Fake:
    calls: list[tc.Argv]
    answers: dict[tc.Argv, "subprocess.CompletedProcess[str]"]

    def __call__(self, argv: tc.Argv) -> "subprocess.CompletedProcess[str]":
        self.calls.append(argv)
        return self.answers.get(argv, subprocess.CompletedProcess(argv, 0, "", ""))

    def lines(self) -> list[str]:
        return [" ".join(argv) for argv in self.calls]


def fake() -> Fake:
    return Fake([], {})


def overlay(netem: bool = False, run: Fake | None = None) -> kernel.Overlay:
    return kernel.Overlay(
        API_PORT, tc.NetemProbe(netem, "test"), io.StringIO(), suffix="abc123", run=run or fake()
    )


def test_without_netem_the_latency_goes_to_the_proxy_and_the_rest_to_the_kernel() -> None:
    parts = kernel.split(Faults(latency_s=0.5, jitter_s=0.1, rate_bps=50_000, loss=0.01), False)
    assert parts.kernel == Faults(rate_bps=50_000, loss=0.01)
    assert parts.proxy == Faults(latency_s=0.5, jitter_s=0.1)
    assert kernel.split(ARTICLE, True) == kernel.Split(kernel=ARTICLE, proxy=Faults())
    assert kernel.injector(False) is model.TC_PROXY_LATENCY
    assert kernel.injector(True) is model.NETEM


def test_the_hop_shapes_each_direction_on_its_egress_scoped_to_the_api_port() -> None:
    lab = overlay()
    web, api = lab.sides(kernel.split(ARTICLE, False).kernel)
    assert (web.name, web.plan.device, api.name, api.plan.device) == (
        "web->api",
        "ngsabc123g",  # the hop's end towards the API
        "api->web",
        "ngsabc123h",  # the hop's end towards the web side
    )
    web_lines, api_lines = web.plan.apply_lines(), api.plan.apply_lines()
    assert "tbf rate 50kbit" in web_lines[2]
    assert web_lines[3].endswith(
        "u32 match ip dst 198.51.100.6/32 match ip dport 8801 0xffff flowid 4e47:4"
    )
    assert api_lines[3].endswith(
        "u32 match ip dst 198.51.100.1/32 match ip sport 8801 0xffff flowid 4e47:4"
    )
    assert "-o ngsabc123g -d 198.51.100.6/32 -p tcp --dport 8801 -m statistic" in web_lines[4]
    assert "-o ngsabc123h -d 198.51.100.1/32 -p tcp --sport 8801 -m statistic" in api_lines[4]
    # the undo is rewritten too, and nothing of the API end matches a destination port
    assert all("dport" not in line for line in api_lines + api.plan.revert_lines())
    assert "--sport 8801" in api.plan.revert_lines()[0]
    assert api.plan.notes[0] == "only egress to 198.51.100.1/32 from port 8801 (TCP and UDP)"


def test_one_direction_faults_one_end() -> None:
    lab = overlay()
    upstream = lab.sides(Faults(rate_bps=50_000, direction="upstream"))
    downstream = lab.sides(Faults(rate_bps=50_000, direction="downstream"))
    assert [side.name for side in upstream] == ["web->api"]
    assert [side.name for side in downstream] == ["api->web"]


def test_with_netem_everything_is_one_netem_qdisc_per_end() -> None:
    web, api = overlay(netem=True).sides(ARTICLE)
    for side in (web, api):
        child = side.plan.apply_lines()[2]
        assert "netem delay 500ms loss random 1% rate 50kbit" in child
        assert not any("iptables" in line for line in side.plan.apply_lines())


def test_faults_are_applied_in_the_hop_namespace_and_reverted() -> None:
    run = fake()
    lab = overlay(run=run)
    lab.set_faults(ARTICLE)
    applied = run.lines()
    assert len(applied) == 12
    assert all(line.startswith("ip netns exec ngs-hop-abc123 ") for line in applied)
    assert " tc qdisc add dev ngsabc123g root handle 4e47: htb" in applied[0]
    assert " tc qdisc add dev ngsabc123h root handle 4e47: htb" in applied[6]
    assert lab.kernel_faults == Faults(rate_bps=50_000, loss=0.01)
    run.calls.clear()
    lab.set_faults(Faults())
    reverted = run.lines()
    assert [line.split()[-1] for line in reverted if " tc qdisc del " in f" {line} "] == [
        "4e47:",
        "4e47:",
    ]
    assert len(reverted) == 6  # 2 x (2 iptables -D + 1 qdisc del)
    assert lab.kernel_faults == Faults()
    assert lab.commands[:12] == applied


def test_latency_alone_puts_nothing_in_a_kernel_without_netem() -> None:
    run = fake()
    lab = overlay(run=run)
    lab.set_faults(Faults(latency_s=0.1))
    assert run.calls == []


def test_a_failing_command_leaves_what_was_applied_for_the_teardown() -> None:
    run = fake()
    hop = ("ip", "netns", "exec", "ngs-hop-abc123")
    failing = (*hop, "tc", "qdisc", "add", "dev", "ngsabc123g", "parent", "4e47:4", "handle")
    bad = subprocess.CompletedProcess(failing, 2, "", "RTNETLINK answers: No such device\n")

    def run_or_fail(argv: tc.Argv) -> "subprocess.CompletedProcess[str]":
        return bad if argv[: len(failing)] == failing else run(argv)

    lab = overlay()
    lab.run = run_or_fail
    with pytest.raises(tc.StepFailed, match="No such device"):
        lab.set_faults(ARTICLE)
    run.calls.clear()
    lab.teardown()
    assert run.lines()[:1] == [
        "ip netns exec ngs-hop-abc123 tc qdisc del dev ngsabc123g root handle 4e47:"
    ]
    assert "ip link del ngsabc123w" in run.lines()
    assert "ip netns del ngs-api-abc123" in run.lines()
    assert "ip netns del ngs-hop-abc123" in run.lines()


def test_teardown_sweeps_our_rules_only_and_removes_the_pairs() -> None:
    run = fake()
    ours = (  # in the root namespace, as runs before the hop left them
        "-A POSTROUTING -d 198.51.100.2/32 -o ngsabc123w -p tcp -m tcp --dport 8801 -m statistic "
        "--mode random --probability 0.01000000000 -m comment --comment netgap-fault -j DROP"
    )
    theirs = ours.replace("ngsabc123w", "eth0")
    listing = f"-P POSTROUTING ACCEPT\n{ours}\n{theirs}\n"
    run.answers[("iptables", "-t", "mangle", "-S", "POSTROUTING")] = subprocess.CompletedProcess(
        (), 0, listing, ""
    )
    run.answers[("ip", "link", "show", "dev", "ngsabc123w")] = subprocess.CompletedProcess(
        (), 1, "", 'Device "ngsabc123w" does not exist.'
    )
    assert overlay(run=run).teardown() == []
    deletes = [line for line in run.lines() if " -D " in line]
    assert len(deletes) == 1
    assert "-o ngsabc123w" in deletes[0]
    assert run.lines()[-6:-2] == [
        "ip link del ngsabc123w",
        "ip -n ngs-hop-abc123 link del ngsabc123g",
        "ip netns del ngs-api-abc123",
        "ip netns del ngs-hop-abc123",
    ]


def test_the_tiers_are_routed_through_the_hop() -> None:
    run = fake()
    overlay(run=run).setup()
    lines = run.lines()
    assert "ip link add ngsabc123w type veth peer name ngsabc123h netns ngs-hop-abc123" in lines
    assert "ip -n ngs-hop-abc123 link set dev ngsabc123a netns ngs-api-abc123" in lines
    assert "ip route add 198.51.100.4/30 via 198.51.100.2 dev ngsabc123w" in lines
    assert "ip -n ngs-api-abc123 route add default via 198.51.100.5" in lines
    assert "ip netns exec ngs-hop-abc123 sysctl -qw net.ipv4.ip_forward=1" in lines
    # nothing is shaped or filtered in the root namespace
    assert not [line for line in lines if line.startswith(("tc ", "iptables "))]


def test_the_api_tier_is_started_through_ip_netns_exec() -> None:
    assert overlay().api_child_args("apitier") == [
        "netgap.scenario.kernel",
        "ngs-api-abc123",
        "apitier",
    ]


def test_the_model_charges_tc_headers_but_no_handshake_when_the_proxy_delays() -> None:
    exchange = model.Exchange(request_bytes=212, response_bytes=244)
    load = model.Load(requests_per_s=30, fault_s=10, new_connection_share=0.5)
    link = model.Link(latency_s=0.5, rate_bps=50_000, loss=0.01)
    mixed = model.expect(link, exchange, load, model.TC_PROXY_LATENCY)
    proxy = model.expect(link, exchange, load, model.PROXY)
    terms = {term.name: term for term in mixed.terms}
    assert terms[model.PROPAGATION].seconds == pytest.approx(1.0)  # handshake not delayed
    assert terms[model.TRANSFER].seconds == pytest.approx((212 + 244 + 2 * 52) / 6250)
    assert mixed.backlog_growth > proxy.backlog_growth  # headers count against the cap


# -- refusals


def done(code: int, out: str = "", err: str = "") -> "subprocess.CompletedProcess[str]":
    return subprocess.CompletedProcess((), code, out, err)


def tools(*present: str) -> Any:
    return lambda name: f"/usr/sbin/{name}" if name in present else None


ALL_TOOLS = tools("ip", "tc", "iptables", "sysctl")


@pytest.mark.parametrize(
    ("euid", "which", "answers", "faults", "says"),
    [
        (1000, ALL_TOOLS, {}, ARTICLE, "--kernel needs root"),
        (0, tools("tc", "iptables"), {}, ARTICLE, "needs ip (apt-get install iproute2)"),
        (0, tools("ip", "tc", "iptables"), {}, ARTICLE, "needs sysctl (apt-get install procps)"),
        (
            0,
            ALL_TOOLS,
            {("ip", "netns", "list"): done(1, err="Error: ip: netns not supported\n")},
            ARTICLE,
            "needs network namespaces: ip netns: Error: ip: netns not supported",
        ),
        (
            0,
            tools("ip", "tc", "sysctl"),
            {},
            ARTICLE,
            "needs iptables for the loss (apt-get install iptables)",
        ),
        (
            0,
            ALL_TOOLS,
            {("iptables", "-t", "mangle", "-S", "POSTROUTING"): done(3, err="no mangle\n")},
            ARTICLE,
            "needs iptables' mangle table: no mangle",
        ),
        (
            0,
            ALL_TOOLS,
            {
                ("ip", "-o", "-4", "addr", "show", "to", "198.51.100.0/29"): done(
                    0, "7: ngs1w    inet 198.51.100.1/30 scope global ngs1w\n"
                )
            },
            ARTICLE,
            "uses 198.51.100.0/29, which ngs1w has already",
        ),
        (0, ALL_TOOLS, {}, Faults(reset=0.1), "cannot reset connections"),
    ],
    ids=[
        "not root",
        "no ip",
        "no sysctl",
        "no netns",
        "no iptables",
        "no mangle",
        "subnet taken",
        "reset",
    ],
)
def test_kernel_mode_refuses_clearly(
    euid: int, which: Any, answers: dict[tc.Argv, Any], faults: Faults, says: str
) -> None:
    run = fake()
    run.answers.update(answers)
    with pytest.raises(UsageError) as error:
        kernel.preflight(faults, print, euid=lambda: euid, which=which, run=run)
    assert says in str(error.value)
    assert error.value.hint is None  # one line
    assert error.value.exit_code == 2


def test_without_loss_iptables_is_not_needed() -> None:
    kernel.preflight(
        Faults(rate_bps=50_000),
        print,
        euid=lambda: 0,
        which=tools("ip", "tc", "sysctl"),
        run=fake(),
    )


def test_not_root_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as exit_info:
        main(["scenario", "--kernel", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "netgap scenario: --kernel needs root (network namespaces, tc and iptables); run as root"
    ]
    assert not (tmp_path / "out").exists()


# -- for real: root, network namespaces, iptables

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: network namespaces, tc and iptables"
)


def host_state() -> str:
    """The root namespace as kernel mode may change it: qdiscs, rules, our links, namespaces."""
    parts = []
    for argv in (
        ("tc", "qdisc", "show"),
        ("iptables", "-S"),
        ("iptables", "-t", "mangle", "-S"),
        ("ip", "netns", "list"),
    ):
        shown = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        parts.append(f"$ {' '.join(argv)} -> {shown.returncode}\n{shown.stdout}{shown.stderr}")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    parts.append(
        "ngs links: "
        + " ".join(sorted(line.split(":")[1].strip() for line in links.stdout.splitlines()
                          if line.split(":")[1].strip().startswith(("ngs", "ngprobe"))))
    )  # fmt: skip
    return "\n".join(parts)


@pytest.fixture(scope="module")
def real() -> None:
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    # A run killed earlier on this machine would otherwise be taken down by the first run
    # here, between its before and after snapshots.
    kernel.clear_leftovers(lambda line: None)


@dataclass(frozen=True)
class KernelRun:
    returncode: int
    stdout: str
    stderr: str
    out: Path
    before: str
    after: str

    @property
    def result(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "scenario.json").read_text())
        return data

    def p50(self, phase: str, part: str) -> float:
        found = next(p for p in self.result["phases"] if p["name"] == phase)
        return float(found["components"][found["component_names"][part]]["p50"])


@pytest.fixture(scope="module")
def kernel_run(real: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelRun]:
    out = tmp_path_factory.mktemp("kernel") / "report"
    ports = free_ports()
    before = host_state()
    command = scenario_command(out, ports, "--kernel", "--preset", "article", *PHASES)
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=90)
    yield KernelRun(done.returncode, done.stdout, done.stderr, out, before, host_state())
    assert_ports_free(ports)


@needs_netns
@pytest.mark.timeout(120)
def test_a_kernel_run_faults_the_veth_and_comes_back(kernel_run: KernelRun) -> None:
    run = kernel_run
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    info = run.result["kernel"]
    netem = info["netem"]
    if not netem:
        assert "netgap scenario: latency via the userspace proxy: this kernel has no netem" in (
            run.stdout.splitlines()
        )
        assert info["proxy_faults"] == "latency 500ms (both)"
        assert run.result["model"]["injector"] == model.TC_PROXY_LATENCY.name
    in_kernel = "rate 50kbit, loss 1% (both)" if not netem else ARTICLE.describe()
    assert info["kernel_faults"] == in_kernel
    p50 = [run.p50(phase, "remote") for phase in ("baseline", "fault", "recovery")]
    assert jumped_and_came_back(*p50), [value / MS for value in p50]
    for part in ("web", "api"):  # the application time stays where it was, within a few ms
        moved = run.p50("fault", part) - run.p50("baseline", part)
        assert abs(moved) <= 5 * MS, (part, moved / MS)


@needs_netns
def test_the_kernel_faults_were_the_plans_applied_and_reverted(kernel_run: KernelRun) -> None:
    info = kernel_run.result["kernel"]
    applied = [*info["plan"]["web->api"]["apply"], *info["plan"]["api->web"]["apply"]]
    reverted = [*info["plan"]["api->web"]["revert"], *info["plan"]["web->api"]["revert"]]
    namespace, hop = info["namespace"], info["hop_namespace"]
    assert all(line.startswith(f"ip netns exec {hop} ") for line in info["commands"])
    commands = [line.removeprefix(f"ip netns exec {hop} ") for line in info["commands"]]
    assert commands == applied + reverted
    assert any("tbf rate 50kbit" in line for line in applied)
    assert any("--sport" in line for line in info["plan"]["api->web"]["apply"])
    log = (kernel_run.out / "logs" / "kernel.log").read_text()
    assert f"+ ip netns del {namespace}" in log
    assert f"+ ip netns del {hop}" in log


@needs_netns
def test_the_report_says_how_the_faults_were_made(kernel_run: KernelRun) -> None:
    page = (kernel_run.out / "scenario.html").read_text()
    assert "<h2>Kernel mode</h2>" in page
    assert "span export" in page
    assert "deliberate simplification" in page
    lines = kernel_lines(KernelInfo(**kernel_run.result["kernel"]))
    assert any(kernel_run.result["kernel"]["namespace"] in line for line in lines)
    if not kernel_run.result["kernel"]["netem"]:
        assert kernel.NO_NETEM in page


@needs_netns
def test_the_kernels_curves_show_the_veths_faults(kernel_run: KernelRun) -> None:
    """Issue 9's report in kernel mode: the API tier's end of the connection crosses the
    faulted veth and testifies to it (srtt up, segments resent); without netem the web tier's
    connection ends at the latency proxy on loopback and does not."""
    result = kernel_run.result
    phases = {p["name"]: p for p in result["phases"]}
    fault = phases["fault"]["edges"]["webtier->apitier"]
    before = phases["baseline"]["edges"]["webtier->apitier"]
    assert end_moved(fault["tcp_callee"], before["tcp_callee"])
    assert fault["tcp_callee"]["srtt"]["p50"] >= 10 * before["tcp_callee"]["srtt"]["p50"]
    # the hop's loss and tbf's drops, resent by the API tier (the responses' sender), in the
    # breakdown's own numbers
    resent = fault["tcp_callee"]["retransmits"]["mean"]
    assert resent > 0
    # Healthy, next to nothing: a tail-loss probe on a busy machine counts too (1 in 120 once)
    assert before["tcp_callee"]["retransmits"]["mean"] < resent / 10
    note = diagnosis.kernel_note(ScenarioResult.from_json(result))
    if not result["kernel"]["netem"]:
        assert not end_moved(fault["tcp"], before["tcp"])
        assert note.startswith("The API tier's end shows the fault and the web tier's does not")
        assert "the kernel agrees at apitier's end" in result["diagnosis"]
    assert f"The kernel (TCP_INFO): {note}" in kernel_run.stdout
    assert 'id="srtt-plot"' in (kernel_run.out / "scenario.html").read_text()


@needs_netns
def test_a_kernel_run_leaves_the_host_as_it_was(kernel_run: KernelRun) -> None:
    assert kernel_run.returncode == 0, kernel_run.stderr
    assert kernel_run.after == kernel_run.before


@needs_netns
@pytest.mark.timeout(90)
def test_sigterm_in_the_fault_reverts_and_removes_everything(real: None, tmp_path: Path) -> None:
    ports = free_ports()
    before = host_state()
    command = scenario_command(
        tmp_path, ports, "--kernel", "--baseline", "3s", "--fault", "30s", "--recovery", "3s"
    )
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        seen = ""
        while "fault: 30 s" not in seen:
            line = proc.stdout.readline()
            assert line, seen
            seen += line
        time.sleep(2)  # requests queue up in the tbf
        assert "tbf rate 50kbit" in (tmp_path / "logs" / "kernel.log").read_text()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=40)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == [
        "netgap scenario: interrupted; faults cleared, everything stopped"
    ]
    log = (tmp_path / "logs" / "kernel.log").read_text()
    assert "tc qdisc del dev ngs" in log
    assert host_state() == before
    assert_ports_free(ports)


def test_kernel_mode_is_in_the_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "netgap", "scenario", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert "--kernel" in done.stdout
    assert "span" in done.stdout
    assert "deliberate simplification" in done.stdout


@needs_netns
@pytest.mark.timeout(60)
def test_clear_takes_down_what_a_killed_run_left(real: None) -> None:
    before = host_state()
    left = kernel.Overlay(8801, tc.NetemProbe(False, "not probed"), io.StringIO())
    left.setup()
    left.set_faults(PRESETS["article"])  # as a run SIGKILLed in its fault phase leaves it
    assert host_state() != before
    done = subprocess.run(
        [sys.executable, "-m", "netgap", "scenario", "--kernel", "--clear"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"taking down {left.namespace} and {left.web_device}" in done.stdout
    assert host_state() == before
    again = subprocess.run(
        [sys.executable, "-m", "netgap", "scenario", "--kernel", "--clear"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=50,
        check=False,
    )
    assert again.stdout.strip() == "netgap scenario: nothing left over"


@needs_netns
@pytest.mark.timeout(60)
def test_a_killed_runs_leftovers_do_not_stop_the_next_run(real: None) -> None:
    before = host_state()
    left = kernel.Overlay(8801, tc.NetemProbe(False, "not probed"), io.StringIO())
    left.setup()
    left.set_faults(PRESETS["article"])  # nobody holds its claim: as after a SIGKILL
    said: list[str] = []
    kernel.preflight(ARTICLE, said.append)
    assert said[0] == f"taking down {left.namespace} and {left.web_device} (left by a killed run)"
    assert host_state() == before


@needs_netns
@pytest.mark.timeout(60)
def test_a_live_runs_overlay_is_left_alone_and_its_subnet_refused(real: None) -> None:
    before = host_state()
    live = kernel.Overlay(8801, tc.NetemProbe(False, "not probed"), io.StringIO())
    try:
        with kernel.claimed(live.namespace):
            live.setup()
            assert kernel.is_live(live.namespace)
            said: list[str] = []
            with pytest.raises(UsageError) as error:
                kernel.preflight(ARTICLE, said.append)
            assert said == [f"leaving {live.namespace} alone: its run is still going"]
            assert str(error.value) == (
                f"--kernel uses 198.51.100.0/29, which {live.web_device} has already "
                "(another netgap scenario --kernel is running)"
            )
        assert not kernel.is_live(live.namespace)
        assert not kernel.lock_path(live.namespace).exists()
    finally:
        live.teardown()
    assert host_state() == before


def test_clear_goes_with_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["scenario", "--clear"])
    assert exited.value.code == 2
    assert "--clear goes with --kernel" in capsys.readouterr().err
