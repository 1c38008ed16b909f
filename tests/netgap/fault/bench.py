"""How exactly `netgap fault proxy` does what it is asked; not a test (nothing asserts a figure),
a measurement to repeat:

    .venv/bin/python -m tests.netgap.fault.bench [--rounds 5]

Latency: the median added round trip over an echo connection through the proxy (uvloop, as
`netgap fault proxy` runs) against the same echo server directly, for several latencies; the
target is 2L +- 5% with faults in both directions. Rate: the time to push a bulk upload through
a capped proxy, as bits a second; the target is R +- 5%. Zero faults: the added p50 of small
round trips and the bulk throughput ratio, direct and through the proxy alternating, medians of
--rounds.
"""

import argparse
import socket
import statistics
import time

import uvloop

from netgap.fault.spec import Faults, format_rate
from tests.netgap.fault.conftest import (
    connect,
    echo,
    recv_exactly,
    round_trip_s,
    running_proxy,
    sink_then_ack,
    tcp_server,
    upload_s,
)

LATENCIES_S = (0.01, 0.05, 0.2, 0.5)
RATES_BPS = (50_000, 1_000_000, 20_000_000)
# Long enough that the bucket's first burst is a small part of the transfer.
TRANSFER_S = 4.0


def added_round_trip_s(latency_s: float, rounds: int) -> float:
    with tcp_server(echo) as server:
        faults = Faults(latency_s=latency_s)
        with (
            running_proxy(server, faults, loop_factory=uvloop.new_event_loop) as proxy,
            connect(server) as direct,
            connect(proxy.address) as relayed,
        ):
            through = statistics.median(round_trip_s(relayed) for _ in range(rounds))
            straight = statistics.median(round_trip_s(direct) for _ in range(rounds))
    return through - straight


def capped_bps(rate_bps: int) -> float:
    size = int(rate_bps / 8 * TRANSFER_S)
    with (
        tcp_server(sink_then_ack) as server,
        running_proxy(server, Faults(rate_bps=rate_bps), loop_factory=uvloop.new_event_loop) as p,
    ):
        return size * 8 / upload_s(p.address, size)


def zero_fault(rounds: int) -> tuple[float, float]:
    """(added p50 seconds of a 100-byte round trip, bulk throughput through / direct)."""
    added, ratios = [], []
    payload = bytes(100)
    size = 64 * 1024 * 1024
    with tcp_server(echo) as echo_at, tcp_server(sink_then_ack) as sink_at:
        with running_proxy(echo_at, loop_factory=uvloop.new_event_loop) as proxy:
            for _ in range(rounds):
                with connect(echo_at) as direct, connect(proxy.address) as relayed:
                    straight = _p50_round_trip_s(direct, payload)
                    through = _p50_round_trip_s(relayed, payload)
                added.append(through - straight)
        with running_proxy(sink_at, loop_factory=uvloop.new_event_loop) as proxy:
            for _ in range(rounds):
                straight = upload_s(sink_at, size)
                through = upload_s(proxy.address, size)
                ratios.append(straight / through)
    return statistics.median(added), statistics.median(ratios)


def _p50_round_trip_s(sock: socket.socket, payload: bytes, times: int = 2000) -> float:
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        sock.sendall(payload)
        recv_exactly(sock, len(payload))
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{'latency L':>12} {'added round trip':>18} {'/ 2L':>8}")
    for latency in LATENCIES_S:
        added = added_round_trip_s(latency, args.rounds)
        print(f"{latency * 1000:>10.0f}ms {added * 1000:>16.2f}ms {added / (2 * latency):>8.3f}")
    print(f"\n{'rate R':>12} {'bulk measured':>18} {'/ R':>8}")
    for rate in RATES_BPS:
        measured = capped_bps(rate)
        print(f"{format_rate(rate):>12} {measured / 1000:>14.1f}kbit {measured / rate:>8.3f}")
    added_s, ratio = zero_fault(args.rounds)
    print(f"\nzero faults: added p50 {added_s * 1e6:.1f} us per 100 B round trip,", end=" ")
    print(f"bulk {ratio:.2f} of direct")


if __name__ == "__main__":
    main()
