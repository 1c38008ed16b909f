"""`netgap fault proxy/set/clear` as a user runs them: real processes, real sockets."""

import re
import signal
import time

import httpx
import pytest

from netgap.address import Address
from netgap.cli import build_parser
from netgap.commands.fault_flags import fault_changes, faults_from_args
from netgap.fault.spec import Faults
from tests.harness import free_port
from tests.netgap.commands.processes import fault_proxy, netgap, next_line
from tests.netgap.fault.conftest import connect, echo, ping, round_trip_s, tcp_server

pytestmark = pytest.mark.timeout(30)


def parse_faults(*argv: str) -> Faults:
    args = build_parser().parse_args(
        ["fault", "proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", *argv]
    )
    return faults_from_args(args)


@pytest.mark.parametrize("command", [[], ["proxy"], ["set"], ["clear"], ["k8s"]])
def test_help(command: list[str]) -> None:
    result = netgap("fault", *command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: netgap fault {' '.join(command)}".rstrip())


PROXY = ("fault", "proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1")


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--latency=-5ms"], "argument --latency: '-5ms' must be from 0"),
        (["--loss", "150%"], "argument --loss: '150%' must be from 0% to 100%"),
        (["--rate", "50kbits"], "argument --rate: '50kbits' is not a rate"),
        (["--latency", "5parsecs"], "argument --latency: '5parsecs' is not a duration"),
        (["--jitter", "1s"], "jitter: 1000ms is more than the latency 0ms"),
    ],
)
def test_bad_faults_are_one_line_and_exit_2(flags: list[str], says: str) -> None:
    result = netgap(*PROXY, *flags)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert says in result.stderr


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--packet-loss", "101"], "argument --packet-loss: '101' must be from 0% to 100%"),
        (["--target-bw", "0"], "argument --target-bw: must be more than 0"),
        (["--target-bw", "fast"], "argument --target-bw: not a number of kbit/s"),
        (["--rate", "1mbit", "--target-bw", "50"], "not allowed with argument --rate"),
        (["--direction", "sideways"], "argument --direction"),
        (["--reset", "1x"], "argument --reset: '1x' is not a percentage"),
        (["--listen", "nowhere"], "argument --listen"),
    ],
)
def test_more_bad_flags_in_process(
    flags: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*PROXY, *flags])
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    assert len(stderr.splitlines()) == 1, stderr
    assert says in stderr


def test_it_starts_with_its_upstream_down_and_relays_once_it_is_up() -> None:
    upstream = Address("127.0.0.1", free_port())  # nothing listens there yet
    with fault_proxy(upstream, "--latency", "1ms") as proxy:
        assert proxy.process.poll() is None
        assert next_line(proxy.process) == (
            f"netgap fault proxy: upstream {upstream} is down (Connection refused):"
            " client connections are reset at once until it answers"
        )
        for _ in range(3):  # reset at once, not held (a FIN, recv's b"", fails the test)
            with pytest.raises(ConnectionError):
                ping(proxy.address)
        faults = httpx.get(proxy.control_url, timeout=10)
        assert (faults.status_code, faults.json()["latency"]) == (200, "1ms")

        with tcp_server(echo, upstream.port), connect(proxy.address) as sock:
            assert round_trip_s(sock) < 5
            assert httpx.get(proxy.control_url, timeout=10).status_code == 200
        code, stderr = proxy.stop()
    assert code == 0, stderr
    # One line for the outage and one for its end, not one per connection turned away.
    assert re.fullmatch(
        rf"netgap fault proxy: upstream {upstream} answers again after \d+\.\d s down;"
        " 3 client connections reset meanwhile\n",
        stderr,
    ), stderr


def test_a_listen_port_in_use_is_exit_2(echo_server: Address) -> None:
    result = netgap("fault", "proxy", "--listen", str(echo_server), "--upstream", str(echo_server))
    assert result.returncode == 2
    assert result.stderr.startswith(f"netgap fault proxy: --listen {echo_server}: cannot listen")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["set"], "nothing to set"),
        (["set", "--control", "ftp://127.0.0.1:1", "--latency", "1ms"], "argument --control"),
        (["set", "--loss", "-1"], "argument --loss"),
        (["clear", "--control", "ftp://x"], "argument --control"),
    ],
)
def test_bad_set_and_clear_flags_are_exit_2(args: list[str], says: str) -> None:
    result = netgap("fault", *args)
    assert result.returncode == 2
    assert says in result.stderr.splitlines()[0]


def test_set_without_a_proxy_is_exit_1() -> None:
    result = netgap("fault", "clear", "--control", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert result.stderr.startswith("netgap fault clear: cannot reach the control API")


def test_the_article_preset_and_flags_over_it() -> None:
    article = Faults(latency_s=0.5, rate_bps=50_000, loss=0.01)
    assert parse_faults("--preset", "article") == article
    assert parse_faults("--preset", "article", "--latency", "200ms", "--rate", "none") == Faults(
        latency_s=0.2, loss=0.01
    )
    assert parse_faults("--target-bw", "50", "--packet-loss", "1%") == Faults(
        rate_bps=50_000, loss=0.01
    )
    assert parse_faults("--latency", "500", "--jitter", "50ms", "--reset", "0.1%") == Faults(
        latency_s=0.5, jitter_s=0.05, reset=0.001
    )


def test_set_and_clear_a_running_proxy_without_dropping_connections(
    echo_server: Address,
) -> None:
    with fault_proxy(echo_server, "--preset", "article", "--loss", "0", "-v") as proxy:
        assert proxy.faults == "latency 500ms, rate 50kbit (both)"
        url = proxy.control_url
        with connect(proxy.address) as sock:
            assert round_trip_s(sock) >= 0.99  # 500 ms each way

            done = netgap("fault", "set", "--control", url, "--latency", "100ms", "--rate", "none")
            assert (done.returncode, done.stdout) == (0, "latency 100ms (both)\n"), done.stderr
            assert 0.19 <= round_trip_s(sock) < 0.99

            refused = netgap("fault", "set", "--control", url, "--jitter", "1s")
            assert refused.returncode == 2
            assert refused.stderr == (
                "netgap fault set: jitter: 1000ms is more than the latency 100ms;"
                " a delay cannot go below zero\n"
            )

            done = netgap("fault", "clear", "--control", url)
            assert (done.returncode, done.stdout) == (0, "no faults\n"), done.stderr
            assert min(round_trip_s(sock) for _ in range(3)) < 0.05

            done = netgap("fault", "set", "--control", url, "--preset", "article", "--json")
            assert done.returncode == 0, done.stderr
            assert '"latency": "500ms", "jitter": "0ms", "rate": "50kbit"' in done.stdout
        code, stderr = proxy.stop()
    assert code == 0, stderr
    assert "faults set by 127.0.0.1: latency 100ms (both)" in stderr
    assert re.search(r"connection 1 from 127\.0\.0\.1:\d+: closed", stderr), stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_cleanly(echo_server: Address, signum: int) -> None:
    with fault_proxy(echo_server, "--seed", "1", "--latency", "1ms") as proxy:
        assert proxy.faults == "latency 1ms (both) (seed 1)"
        with connect(proxy.address) as sock:
            round_trip_s(sock)
            started = time.monotonic()
            code, stderr = proxy.stop(signum)
            assert sock.recv(10) == b""  # closed, not left hanging
    assert code == 0, stderr
    assert time.monotonic() - started < 5
    assert stderr == ""


# -- the fault flags `fault proxy`, `fault set`, `fault k8s` and `scenario` share

FAULTS_OF = {  # how each command reads its faults, with no preset under them
    "fault proxy": ["fault", "proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1"],
    "fault k8s": ["fault", "k8s"],
    "scenario": ["scenario", "--preset", "none"],
}
RATE_FLAGS = {"fault proxy": "--rate", "fault k8s": "--rate", "scenario": "--bandwidth"}
SAME_FAULTS = [
    (["--latency", "100ms", "--jitter", "10ms"], Faults(latency_s=0.1, jitter_s=0.01)),
    (["--latency", "250"], Faults(latency_s=0.25)),
    (["--bandwidth", "1mbit"], Faults(rate_bps=1_000_000)),
    (["--target-bw", "1000"], Faults(rate_bps=1_000_000)),
    (["--loss", "1%"], Faults(loss=0.01)),
    (["--packet-loss", "0.5"], Faults(loss=0.005)),
    (["--preset", "article", "--latency", "1s"], Faults(latency_s=1, rate_bps=50_000, loss=0.01)),
    (["--preset", "article", "--bandwidth", "none"], Faults(latency_s=0.5, loss=0.01)),
    (["--preset", "article", "--bandwidth", "0"], Faults(latency_s=0.5, loss=0.01)),
]


@pytest.mark.parametrize("command", sorted(FAULTS_OF))
@pytest.mark.parametrize(("flags", "faults"), SAME_FAULTS)
def test_every_command_reads_the_fault_flags_alike(
    command: str, flags: list[str], faults: Faults
) -> None:
    args = build_parser().parse_args([*FAULTS_OF[command], *flags])
    assert faults_from_args(args) == faults
    # and each command's usual spelling of the cap
    rate = [RATE_FLAGS[command] if flag == "--bandwidth" else flag for flag in flags]
    assert faults_from_args(build_parser().parse_args([*FAULTS_OF[command], *rate])) == faults


def test_fault_set_sends_only_the_fields_given() -> None:
    def changes(*flags: str) -> dict[str, str | None]:
        return fault_changes(build_parser().parse_args(["fault", "set", *flags]))

    assert changes() == {}
    assert changes("--bandwidth", "none", "--packet-loss", "1%") == {"rate": None, "loss": "1%"}
    assert changes("--target-bw", "50", "--reset", "1%", "--direction", "upstream") == {
        "rate": "50000bit",
        "reset": "1%",
        "direction": "upstream",
    }
    assert changes("--preset", "article", "--latency", "1s") == {
        **Faults(rate_bps=50_000, loss=0.01).to_json(),
        "latency": "1s",
    }


def test_scenario_rate_is_requests_a_second_not_the_cap() -> None:
    args = build_parser().parse_args(["scenario", "--rate", "5", "--bandwidth", "1mbit"])
    assert args.rate == 5
    assert faults_from_args(args).rate_bps == 1_000_000


@pytest.mark.parametrize("command", [*sorted(FAULTS_OF), "fault set"])
@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--latency", "5parsecs"], "argument --latency: '5parsecs' is not a duration"),
        (["--jitter", "soon"], "argument --jitter: 'soon' is not a duration"),
        (["--bandwidth", "fast"], "argument --bandwidth: 'fast' is not a rate"),
        (["--target-bw", "0"], "argument --target-bw: must be more than 0 kbit/s, got 0"),
        (["--packet-loss", "101"], "argument --packet-loss: '101' must be from 0% to 100%"),
        (["--loss", "1%", "--packet-loss", "2%"], "not allowed with argument --loss"),
        (["--preset", "nope"], "argument --preset: invalid choice: 'nope'"),
    ],
)
def test_every_command_refuses_a_bad_fault_alike(
    command: str, flags: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command.split(), *flags])
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    assert len(stderr.splitlines()) == 1, stderr
    assert says in stderr


@pytest.mark.parametrize("command", [*sorted(FAULTS_OF), "fault set"])
def test_help_lists_every_fault_flag(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command.split(), "--help"])
    shown = capsys.readouterr().out
    proxy_only = ["--reset", "--direction"] if command in ("fault proxy", "fault set") else []
    rate = [] if command == "scenario" else ["--rate"]
    for flag in ["--latency", "--jitter", *rate, "--bandwidth", "--target-bw", "--loss"]:
        assert f"  {flag} " in shown, flag
    for flag in ["--packet-loss", "--preset", *proxy_only]:
        assert f"  {flag} " in shown or f"  {flag}\n" in shown, flag
    assert ("--reset" in shown) == bool(proxy_only)
