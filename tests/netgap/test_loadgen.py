"""netgap.loadgen against real servers on loopback: counts, latency from the schedule, drops,
errors by kind, Poisson arrivals and stopping. Counts are asserted exactly where the schedule
fixes them; timing only with wide margins."""

import asyncio
import itertools
import socket
import statistics
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from netgap.loadgen import (
    CANCELLED,
    CONNECT,
    DROPPED,
    PROTOCOL,
    TIMEOUT,
    IntervalStats,
    LoadConfig,
    LoadGenerator,
    LoadResult,
    arrival_offsets,
    run_load,
)
from tests.harness import free_port
from tests.servers import asyncio_server, http_response, raw_http_server, serve

pytestmark = pytest.mark.timeout(60)


def load(url: str, **settings: object) -> LoadResult:
    config = LoadConfig(url=url, **settings)  # type: ignore[arg-type]
    return asyncio.run(run_load(config))


def stopped_after(seconds: float, *stops: float, **settings: object) -> LoadResult:
    """A run of duration 0 (until stopped), stopped `seconds` in; `stops` are further stops."""
    generator = LoadGenerator(LoadConfig(duration_s=0, **settings))  # type: ignore[arg-type]

    async def main() -> LoadResult:
        loop = asyncio.get_running_loop()
        for at in (seconds, *stops):
            loop.call_later(at, generator.stop)
        return await generator.run()

    return asyncio.run(main())


def test_sends_rate_times_duration_requests_and_times_them() -> None:
    with serve() as server:
        result = load(server.url, rate=100, duration_s=2)
    assert result.sent == 200  # due at 0, 0.01, ..., 1.99 s
    assert server.count == 200
    assert result.ok == 200
    assert result.errors == {}
    assert result.elapsed_s == pytest.approx(2.0, abs=0.25)
    assert result.rate == pytest.approx(100, rel=0.1)
    latency = result.latency_ms
    assert list(latency) == ["p50", "p90", "p99", "p99.9", "max"]
    values = [v for v in latency.values() if v is not None]
    assert len(values) == 5
    assert values == sorted(values)
    assert 0 < values[0] < 1000


def test_latency_counts_from_the_scheduled_time_not_the_send() -> None:
    # The generator's own event loop stalls for 300 ms in the middle of the run: the requests
    # due meanwhile go out late, in a burst. Their latency must include the wait (the server
    # answers them at once), and none may be skipped.
    async def main(url: str) -> LoadResult:
        asyncio.get_running_loop().call_later(0.5, time.sleep, 0.3)
        return await run_load(LoadConfig(url=url, rate=100, duration_s=1))

    with serve() as server:
        result = asyncio.run(main(server.url))
    assert result.sent == 100
    assert result.ok == 100
    # About 30 requests came due during the stall; the 10 due in its first 100 ms waited 200 ms
    # or more, the first of them nearly the whole 300 ms.
    assert result.latency_ms["max"] is not None
    assert result.latency_ms["max"] >= 250
    assert result.latency_ms["p99"] is not None
    assert result.latency_ms["p99"] >= 200
    assert result.latency_ms["p50"] is not None
    assert result.latency_ms["p50"] < 100
    assert result.send_lag_max_ms >= 250


def test_a_request_due_at_max_inflight_is_dropped_not_queued() -> None:
    # The first request is held 450 ms; with one allowed in flight, those due at 0.1 .. 0.4 s
    # are dropped, and the schedule goes on: the one due at 0.5 s goes out on time.
    with serve(lambda n: 0.45 if n == 0 else 0.0) as server:
        result = load(server.url, rate=10, duration_s=1, max_inflight=1)
    dropped = result.errors.get(DROPPED, 0)
    assert 3 <= dropped <= 5  # 4, give or take the edges of the 450 ms
    assert result.sent + dropped == 10
    assert result.errors == {DROPPED: dropped}
    assert result.ok == result.sent == server.count
    assert result.elapsed_s == pytest.approx(1.0, abs=0.25)
    assert result.latency_ms["max"] is not None
    assert result.latency_ms["max"] >= 450
    assert result.latency_ms["p50"] is not None
    assert result.latency_ms["p50"] < 200


def test_connection_refused_counts_as_connect() -> None:
    result = load(f"http://127.0.0.1:{free_port()}/", rate=20, duration_s=0.25)
    assert result.sent == 5
    assert result.errors == {CONNECT: 5}
    assert result.ok == 0
    assert result.all_failed
    assert set(result.latency_ms.values()) == {None}  # no answers, nothing timed


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("500 Internal Server Error", "5xx"),
        ("503 Service Unavailable", "5xx"),
        ("404 Not Found", "4xx"),
    ],
)
def test_an_error_status_counts_by_its_class(status: str, kind: str) -> None:
    with raw_http_server(http_response(status, b"no")) as url:
        result = load(f"{url}/", rate=20, duration_s=0.25)
    assert result.errors == {kind: 5}
    assert result.ok == 0
    assert result.latency_ms["p50"] is not None  # answers are timed whatever their status


def test_a_redirect_counts_as_ok_and_is_not_followed() -> None:
    script = http_response("302 Found", b"", "location: /elsewhere\r\n")
    with raw_http_server(script) as url:
        result = load(f"{url}/", rate=20, duration_s=0.25)
    assert result.ok == 5
    assert result.errors == {}


def test_no_answer_within_the_timeout_counts_as_timeout() -> None:
    started = time.monotonic()
    with raw_http_server(b"") as url:  # accepts, never answers
        result = load(f"{url}/", rate=20, duration_s=0.25, timeout_s=0.2)
    assert result.errors == {TIMEOUT: 5}
    assert result.sent == 5
    # The run waits for the requests in flight, but only as long as the timeout.
    assert time.monotonic() - started < 0.25 + 0.2 + 2.0


def test_a_body_cut_short_counts_as_protocol_under_httpx_name() -> None:
    # The server promises 100 bytes, sends 5 and hangs up.
    with raw_http_server(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort") as url:
        result = load(f"{url}/", rate=20, duration_s=0.25)
    assert result.errors == {"RemoteProtocolError": 5}
    assert PROTOCOL == "RemoteProtocolError"  # the kind's name in every earlier run's output


def test_an_answer_that_is_not_http_counts_as_protocol() -> None:
    with raw_http_server(b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as url:
        result = load(f"{url}/", rate=20, duration_s=0.25)
    assert result.errors == {PROTOCOL: 5}
    assert result.ok == 0


@contextmanager
def hanging_up(*, reset: bool) -> Iterator[str]:
    """A server that accepts each connection and at once closes it, without reading; with
    `reset`, it reads the request's head, then resets the connection (an RST, not a FIN).
    It never answers. Yields its URL."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if reset:
                # Reset at accept, the RST could race the client's connect and fail that.
                await reader.readuntil(b"\r\n\r\n")
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    with asyncio_server(handle) as url:
        yield url


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
def test_a_server_that_hangs_up_counts_as_errors_at_once_not_timeouts(reset: bool) -> None:
    started = time.monotonic()
    with hanging_up(reset=reset) as url:
        result = load(url, rate=20, duration_s=0.25, timeout_s=5.0)
    took = time.monotonic() - started
    assert result.sent == 5
    assert result.errors == {PROTOCOL: 5}
    assert result.ok == 0
    assert result.all_failed
    assert took < 2.0  # each failed when the server hung up, not at the 5 s timeout


def test_connections_are_kept_alive_and_reused() -> None:
    # 100 requests answered at once: a handful of connections carry them all.
    with serve() as server:
        result = load(server.url, rate=100, duration_s=1)
    assert result.ok == 100
    assert 1 <= server.connections <= 10


def test_max_inflight_bounds_the_connections_too() -> None:
    # Every answer is held 300 ms: at 50 req/s about 15 would be in flight, but only 3 may be,
    # over 3 connections at most, and the schedule drops the rest rather than queueing them.
    with serve(lambda n: 0.3) as server:
        result = load(server.url, rate=50, duration_s=1, max_inflight=3)
    dropped = result.errors.get(DROPPED, 0)
    assert result.errors == {DROPPED: dropped}
    assert result.sent + dropped == 50
    assert result.ok == result.sent == server.count
    assert server.connections <= 3
    assert result.latency_ms["p50"] is not None
    assert result.latency_ms["p50"] < 450  # sent when due: held 300 ms, never queued behind


def test_headers_are_sent_as_given() -> None:
    headers = (("X-Netgap-Test", "a"), ("X-Netgap-Test", "b"))
    with serve() as server:
        load(server.url, rate=20, duration_s=0.1, headers=headers)
        load(server.url, rate=20, duration_s=0.1, headers=(("user-agent", "mine"),))
    assert len(server.heads) == 4
    for head in server.heads[:2]:
        lines = head.decode().lower().splitlines()
        assert lines[0] == "get / http/1.1"
        # Nothing asks for a compressed answer, which the server would spend CPU on.
        assert not [line for line in lines if line.startswith("accept-encoding")]
        assert [line for line in lines if line.startswith("x-netgap-test")] == [
            "x-netgap-test: a",
            "x-netgap-test: b",
        ]
        assert "user-agent: netgap-load" in lines
    for head in server.heads[2:]:
        lines = head.decode().lower().splitlines()
        assert [line for line in lines if line.startswith("user-agent")] == ["user-agent: mine"]


def test_constant_arrivals_are_evenly_spaced() -> None:
    assert list(itertools.islice(arrival_offsets(4), 5)) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_poisson_arrivals_repeat_with_a_seed_and_average_the_rate() -> None:
    def first_second(seed: int) -> list[float]:
        offsets = arrival_offsets(200, poisson=True, seed=seed)
        return list(itertools.takewhile(lambda t: t < 1.0, offsets))

    assert first_second(7) == first_second(7)
    assert first_second(7) != first_second(8)
    offsets = list(itertools.islice(arrival_offsets(200, poisson=True, seed=1), 20_001))
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert statistics.fmean(gaps) == pytest.approx(1 / 200, rel=0.05)
    # Exponential gaps: the standard deviation equals the mean (constant ones would have 0).
    assert statistics.stdev(gaps) == pytest.approx(1 / 200, rel=0.1)


def test_a_seeded_poisson_run_sends_the_same_count_each_time() -> None:
    expected = sum(
        1
        for _ in itertools.takewhile(lambda t: t < 0.5, arrival_offsets(200, poisson=True, seed=42))
    )
    with serve() as server:
        counts = [
            load(server.url, rate=200, duration_s=0.5, poisson=True, seed=42).sent for _ in range(2)
        ]
    assert counts == [expected, expected]
    assert server.count == 2 * expected


def test_stop_ends_sending_and_waits_for_the_requests_in_flight() -> None:
    with serve(lambda n: 0.2) as server:
        started = time.monotonic()
        result = stopped_after(0.5, url=server.url, rate=20)
        took = time.monotonic() - started
    assert 8 <= result.sent <= 12  # due every 50 ms for 0.5 s
    assert result.ok == result.sent == server.count  # none abandoned
    assert result.errors == {}
    assert result.elapsed_s == pytest.approx(0.5, abs=0.25)
    assert took >= 0.5 + 0.15  # the last ones were answered 200 ms after they went out


def test_a_second_stop_abandons_the_requests_in_flight() -> None:
    with serve(lambda n: 30.0) as server:
        started = time.monotonic()
        result = stopped_after(0.25, 0.5, url=server.url, rate=20)
        took = time.monotonic() - started
    assert result.sent >= 4
    assert result.errors == {CANCELLED: result.sent}
    assert took < 5.0  # not the 10 s timeout, nor the 30 s the server holds them


def test_on_interval_reports_each_interval() -> None:
    intervals: list[IntervalStats] = []
    with serve() as server:
        config = LoadConfig(url=server.url, rate=100, duration_s=0, interval_s=0.25)
        generator = LoadGenerator(config, on_interval=intervals.append)

        async def main() -> LoadResult:
            asyncio.get_running_loop().call_later(0.9, generator.stop)
            return await generator.run()

        result = asyncio.run(main())
    assert 2 <= len(intervals) <= 3  # at 0.25, 0.5 and 0.75 s
    for interval in intervals:
        assert interval.sent == 25  # those due within it: 0, 0.01, ... 0.24 s (and so on)
        assert interval.ok == pytest.approx(25, abs=5)  # those answered within it
        assert interval.errors == 0
        assert interval.rate == 100
        assert interval.p50_ms is not None
        assert interval.p99_ms is not None
        assert set(interval.to_dict()) == {
            "time",
            "elapsed_s",
            "sent",
            "ok",
            "errors",
            "rate",
            "latency_ms",
        }
    assert sum(i.sent for i in intervals) < result.sent


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("url", "ftp://example.com/"),
        ("rate", 0.0),
        ("rate", float("nan")),
        ("duration_s", -1.0),
        ("max_inflight", 0),
        ("timeout_s", 0.0),
        ("interval_s", 0.0),
    ],
)
def test_config_rejects_values_it_cannot_run(setting: str, value: object) -> None:
    settings: dict[str, object] = {"url": "http://127.0.0.1:1/", "rate": 1.0, setting: value}
    with pytest.raises(ValueError, match=setting.split("_")[0]):
        LoadConfig(**settings)  # type: ignore[arg-type]
