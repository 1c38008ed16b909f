"""The fault proxy on real loopback sockets: what each fault does to a connection, and that
bytes always arrive whole and in order."""

import asyncio
import hashlib
import logging
import os
import random
import socket
import statistics
import threading
import time
from collections.abc import Callable

import pytest
import uvloop

from netgap.address import Address
from netgap.fault.conditions import Loss
from netgap.fault.link import RTO_MIN_S, retransmission_timeout_s
from netgap.fault.spec import Faults
from tests.harness import free_port
from tests.netgap.fault.conftest import (
    TIMEOUT_S,
    RunningProxy,
    connect,
    echo,
    ping,
    recv_exactly,
    round_trip_s,
    running_proxy,
    sink_then_ack,
    tcp_server,
    upload_s,
)

pytestmark = pytest.mark.timeout(30)

BIG = 8 * 1024 * 1024


def median_round_trip_s(sock: socket.socket, times: int = 5) -> float:
    return statistics.median(round_trip_s(sock) for _ in range(times))


def test_relays_both_ways_without_faults(proxy: RunningProxy) -> None:
    with connect(proxy.address) as sock:
        for size in (1, 1000, 300_000):
            payload = os.urandom(size)
            sock.sendall(payload)
            assert recv_exactly(sock, size) == payload
        assert proxy.proxy.open_connections == 1
    assert proxy.proxy.accepted == 1


@pytest.mark.parametrize(("direction", "times"), [("both", 2), ("upstream", 1), ("downstream", 1)])
def test_latency_is_added_in_each_faulted_direction(
    echo_server: Address, direction: str, times: int
) -> None:
    latency = 0.05
    faults = Faults.from_json({"latency": "50ms", "direction": direction})
    with (
        running_proxy(echo_server, faults) as running,
        connect(echo_server) as direct,
        connect(running.address) as relayed,
    ):
        added = median_round_trip_s(relayed) - median_round_trip_s(direct)
    assert 0.9 * times * latency <= added <= times * latency + 0.06


def test_jitter_never_reorders_bytes(echo_server: Address) -> None:
    # 20 ms +- 20 ms on messages 2 ms apart: without order kept, many would overtake.
    messages = [f"{i:07d},".encode() for i in range(60)]
    with (
        running_proxy(echo_server, Faults(latency_s=0.02, jitter_s=0.02), seed=1) as running,
        connect(running.address) as sock,
    ):
        for message in messages:
            sock.sendall(message)
            time.sleep(0.002)
        assert recv_exactly(sock, sum(map(len, messages))) == b"".join(messages)


def test_rate_caps_a_bulk_transfer() -> None:
    size = 200_000
    with (
        tcp_server(sink_then_ack) as server,
        running_proxy(server, Faults(rate_bps=800_000)) as running,
    ):
        elapsed = upload_s(running.address, size)
    assert size * 8 / elapsed == pytest.approx(800_000, rel=0.15)


def test_rate_is_shared_by_all_connections() -> None:
    # Each upload alone takes 1 s at 800 kbit/s; sharing one cap, two take 2 s together.
    size = 100_000
    elapsed: list[float] = []
    with (
        tcp_server(sink_then_ack) as server,
        running_proxy(server, Faults(rate_bps=800_000)) as running,
    ):
        start = time.perf_counter()
        uploads = [
            threading.Thread(target=lambda: elapsed.append(upload_s(running.address, size)))
            for _ in range(2)
        ]
        for upload in uploads:
            upload.start()
        for upload in uploads:
            upload.join(20)
        total = time.perf_counter() - start
    assert len(elapsed) == 2
    assert 2 * size * 8 / total == pytest.approx(800_000, rel=0.15)


def ping_with_loss(upstream: Address, seed: int) -> tuple[list[Loss], list[float]]:
    """30 round trips of one chunk each way at 10% loss: the losses, and each trip's time."""
    with (
        running_proxy(upstream, Faults(loss=0.1), seed=seed) as running,
        connect(running.address) as sock,
    ):
        times = [round_trip_s(sock) for _ in range(30)]
        return running.proxy.losses, times


def test_loss_with_a_seed_stalls_the_same_chunks_every_run(echo_server: Address) -> None:
    losses, times = ping_with_loss(echo_server, seed=7)
    again, _ = ping_with_loss(echo_server, seed=7)
    other, _ = ping_with_loss(echo_server, seed=8)

    def pattern(records: list[Loss]) -> list[tuple[int, str, int, int]]:
        return [(r.connection, r.stream, r.chunk, r.lost) for r in records]

    assert pattern(losses), "seed 7 loses some of the 60 chunks"
    assert pattern(again) == pattern(losses)
    assert pattern(other) != pattern(losses)
    for record in losses:
        # 200 ms, doubling for each retransmission lost too.
        assert record.stall_s == pytest.approx(sum(RTO_MIN_S * 2**i for i in range(record.lost)))
        assert times[record.chunk] >= record.stall_s * 0.95  # one chunk per trip each way


def test_the_retransmission_timeout_counts_the_round_trip_the_faults_add() -> None:
    assert retransmission_timeout_s(Faults(loss=0.01)) == pytest.approx(0.2)
    assert retransmission_timeout_s(Faults(latency_s=0.5, loss=0.01)) == pytest.approx(1.2)
    one_way = Faults(latency_s=0.5, loss=0.01, direction="upstream")
    assert retransmission_timeout_s(one_way) == pytest.approx(0.7)


def test_faults_change_on_a_live_connection(proxy: RunningProxy) -> None:
    with connect(proxy.address) as sock:
        assert median_round_trip_s(sock) < 0.05
        proxy.set_faults(Faults(latency_s=0.1))
        assert round_trip_s(sock) >= 0.19
        proxy.set_faults(Faults())
        assert median_round_trip_s(sock) < 0.05
        assert proxy.proxy.open_connections == 1
    assert proxy.proxy.accepted == 1


def test_clearing_releases_what_the_faults_held_back(proxy: RunningProxy) -> None:
    with connect(proxy.address) as sock:
        proxy.set_faults(Faults(latency_s=5.0, rate_bps=8))
        start = time.perf_counter()
        sock.sendall(b"ping")
        time.sleep(0.2)
        proxy.set_faults(Faults())
        assert recv_exactly(sock, 4) == b"ping"
        assert time.perf_counter() - start < 2.0


def exchange(size: int) -> Callable[[socket.socket], None]:
    """Sends `size` bytes of its own while reading the client's to the end, then the
    sha256 of what it read."""

    def handle(sock: socket.socket) -> None:
        sender = threading.Thread(target=sock.sendall, args=(random.Random(1).randbytes(size),))
        sender.start()
        digest = hashlib.sha256()
        while chunk := sock.recv(1 << 16):
            digest.update(chunk)
        sender.join(20)
        sock.sendall(digest.digest())

    return handle


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
@pytest.mark.parametrize(
    ("faults", "seed"),
    [
        (Faults(), None),
        (Faults(latency_s=0.002, jitter_s=0.002), 1),
        (Faults(latency_s=0.001, jitter_s=0.001, rate_bps=200_000_000, loss=0.002), 3),
    ],
    ids=["no faults", "jitter", "everything"],
)
def test_large_transfers_arrive_whole_and_in_order_both_ways(
    faults: Faults, seed: int | None, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    sent = random.Random(2).randbytes(BIG)
    with (
        tcp_server(exchange(BIG)) as server,
        running_proxy(server, faults, seed=seed, loop_factory=loop_factory) as running,
        connect(running.address) as sock,
    ):

        def upload() -> None:
            sock.sendall(sent)
            sock.shutdown(socket.SHUT_WR)

        uploading = threading.Thread(target=upload)
        uploading.start()
        received = bytearray()
        while chunk := sock.recv(1 << 20):
            received += chunk
        uploading.join(20)
    expected = random.Random(1).randbytes(BIG)
    assert len(received) == BIG + 32
    assert hashlib.sha256(received[:BIG]).digest() == hashlib.sha256(expected).digest()
    assert received[BIG:] == hashlib.sha256(sent).digest()


def slow_sink_then_ack(sock: socket.socket) -> None:
    """Reads to the end, slowly, so that the proxy's writes to it stall and resume; then says
    how much it read."""
    size = 0
    while chunk := sock.recv(1 << 16):
        size += len(chunk)
        time.sleep(0.001)
    sock.sendall(b"%d" % size)


@pytest.mark.parametrize("faults", [Faults(), Faults(latency_s=0.02)], ids=["none", "latency"])
def test_the_end_of_a_stream_is_relayed_once_after_all_its_bytes(faults: Faults) -> None:
    # Flow control that stops and restarts reading a socket past its end must not read the
    # end twice, which would close the connection before the rest has gone through.
    size = 8 * 1024 * 1024
    with (
        tcp_server(slow_sink_then_ack) as server,
        running_proxy(server, faults) as running,
        connect(running.address) as sock,
    ):
        sock.sendall(bytes(size))
        sock.shutdown(socket.SHUT_WR)
        assert recv_exactly(sock, len(str(size))) == str(size).encode()
        assert sock.recv(10) == b""


def test_reset_closes_with_rst(echo_server: Address) -> None:
    with (
        running_proxy(echo_server, Faults(reset=1.0)) as running,
        connect(running.address) as sock,
    ):
        sock.sendall(b"hello")
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
        assert running.proxy.open_connections == 0


def test_an_upstream_refusing_at_run_time_resets_the_client() -> None:
    with tcp_server(echo) as gone:
        pass  # nothing listens there any more
    with running_proxy(gone) as running:
        # On loopback the reset can come back before connect() itself has returned.
        with pytest.raises(ConnectionResetError), connect(running.address) as sock:
            sock.recv(10)
        assert running.proxy.accepted == 1


def test_an_upstream_outage_is_logged_once_and_traffic_resumes_after_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="netgap.fault.proxy")
    upstream = Address("127.0.0.1", free_port())
    with running_proxy(upstream) as running:
        with tcp_server(echo, upstream.port), connect(running.address) as sock:
            round_trip_s(sock)
        # The upstream has stopped (an API tier restarting): nothing listens on its port.
        for _ in range(5):
            with pytest.raises(ConnectionError):
                ping(running.address)
        with tcp_server(echo, upstream.port), connect(running.address) as sock:
            round_trip_s(sock)
        assert running.proxy.accepted == 7
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0] == (
        f"upstream {upstream} is down (Connection refused):"
        " client connections are reset at once until it answers"
    )
    assert lines[1].startswith(f"upstream {upstream} answers again after ")
    assert lines[1].endswith(" s down; 5 client connections reset meanwhile")


def test_an_upstream_that_does_not_answer_resets_the_client_after_the_connect_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="netgap.fault.proxy")
    with socket.create_server(("127.0.0.1", 0), backlog=0) as silent:
        # Never accepted: with its queue full, Linux drops the next SYNs, unanswered.
        upstream = Address("127.0.0.1", int(silent.getsockname()[1]))
        queued = socket.create_connection((upstream.host, upstream.port), timeout=TIMEOUT_S)
        with queued, running_proxy(upstream, connect_timeout_s=0.2) as running:
            with pytest.raises(ConnectionError):
                ping(running.address)
            assert running.proxy.accepted == 1
            assert running.proxy.open_connections == 0
    assert [record.getMessage() for record in caplog.records] == [
        f"upstream {upstream} is down (no answer in 0.2 s):"
        " client connections are reset at once until it answers"
    ]


def test_stopping_closes_live_connections(echo_server: Address) -> None:
    with running_proxy(echo_server) as running:
        sock = connect(running.address)
        round_trip_s(sock)
    with sock:
        assert sock.recv(10) == b""
