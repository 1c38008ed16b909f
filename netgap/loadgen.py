"""Open-loop HTTP load: requests go out on a fixed schedule, whatever the server does.

Each request is due at an absolute time (start + i/rate, or Poisson arrivals) and is sent then,
whether or not earlier ones have answered. Its latency counts from when it was *due*, not from
when it went out: if the generator falls behind (a stalled event loop, a burst of answers to
handle), the lateness is part of what the caller of the service would have seen. Measuring from
the actual send would hide it (coordinated omission; wrk2 measures the same way).

Outstanding requests are bounded: one due while `max_inflight` are outstanding is not sent but
counted as an error of kind DROPPED, so the schedule never slows down and nothing queues.

Requests go through one aiohttp ClientSession: a well-kept client, whose TCPConnector pool (its
limit the max in flight, connections kept alive) is the same one the web tier's httpx transport
(httpx-aiohttp) sends through, and whose C parser keeps a request's CPU small, so that the
generator is not what saturates first (httpx's own transport cost 1 to 2 ms of CPU per request
here, which at 200 req/s is most of a core). One scheduler task sleeps to each deadline and starts
one task per request.
"""

import asyncio
import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

# Error kinds besides "4xx"/"5xx" (by status class) and, for anything unforeseen, the exception's
# class name.
DROPPED = "dropped (max in-flight)"
TIMEOUT = "timeout"
CONNECT = "connect"
# The server closed or reset the connection before the whole answer came, or sent one that is not
# HTTP. httpx's name for it, which this kind has always been called here: runs stay comparable.
PROTOCOL = "RemoteProtocolError"
# Requests abandoned by a second stop(), or when run() itself is cancelled.
CANCELLED = "cancelled (stopped)"

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))

# Microseconds, 1 us to 1 hour, 3 significant digits.
_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000
_DIGITS = 3

# uvloop's timers have millisecond resolution and can fire up to 1 ms early. A request that close
# to its time goes at once instead of spinning; its latency then counts from the real send.
_EARLY_S = 0.001

# Each request bounds itself with the timeout; this only covers the loop's own lag at the end.
_DRAIN_SLACK_S = 1.0

# Unless the caller sets one: lets a server's logs tell this traffic apart.
_USER_AGENT = ("User-Agent", "netgap-load")

# aiohttp's defaults that this traffic does without: compressed answers (the server's work to
# compress and ours to inflate are not what is measured) and cookies (each request stands alone).
_SKIP_AUTO_HEADERS = ("Accept-Encoding",)


@dataclass(frozen=True)
class LoadConfig:
    url: str
    rate: float  # requests per second
    duration_s: float = 10.0  # 0: until stop()
    poisson: bool = False  # exponential gaps between requests instead of constant ones
    seed: int | None = None  # the Poisson arrivals' random sequence (None: a new one each run)
    max_inflight: int = 256
    timeout_s: float = 10.0  # per request, the whole exchange
    interval_s: float = 10.0  # how often on_interval is called
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # The CLI checks its flags first; these guard other callers with the same rules.
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must be http:// or https://, got {self.url!r}")
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a number more than 0, got {self.rate}")
        if not (self.duration_s >= 0 and math.isfinite(self.duration_s)):
            raise ValueError(f"duration_s must be 0 or more, got {self.duration_s}")
        if self.max_inflight < 1:
            raise ValueError(f"max_inflight must be 1 or more, got {self.max_inflight}")
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ValueError(f"timeout_s must be more than 0, got {self.timeout_s}")
        if not (self.interval_s > 0 and math.isfinite(self.interval_s)):
            raise ValueError(f"interval_s must be more than 0, got {self.interval_s}")

    @property
    def arrivals(self) -> str:
        return "poisson" if self.poisson else "constant"


@dataclass(frozen=True)
class LoadResult:
    """The whole run. Every request that came due ends up in `ok` or in one error kind, so
    ok + sum(errors) == sent + errors[DROPPED]."""

    config: LoadConfig
    elapsed_s: float  # from the first request's due time until sending stopped
    sent: int
    ok: int  # 2xx and 3xx answers
    errors: dict[str, int]  # by kind: "5xx", TIMEOUT, CONNECT, PROTOCOL, DROPPED...
    latency_ms: dict[str, float | None]  # PERCENTILES and "max", of the answered requests
    # How late the latest request went out: near 0 unless the generator itself fell behind.
    send_lag_max_ms: float

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def rate(self) -> float:
        """Requests actually sent per second of elapsed time."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def all_failed(self) -> bool:
        """Requests came due and not one of them succeeded."""
        return self.ok == 0 and self.error_count > 0

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable, with stable keys."""
        return {
            "url": self.config.url,
            "arrivals": self.config.arrivals,
            "rate_asked": self.config.rate,
            "duration_asked_s": self.config.duration_s,
            "elapsed_s": round(self.elapsed_s, 6),
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.error_count,
            "errors_by_kind": dict(sorted(self.errors.items())),
            "rate": round(self.rate, 3),
            "latency_ms": dict(self.latency_ms),
            "send_lag_max_ms": round(self.send_lag_max_ms, 3),
        }


@dataclass(frozen=True)
class IntervalStats:
    """One interval of a run: the requests due in it (sent or dropped), and the answers and
    errors that arrived in it."""

    time: float  # the interval's end, seconds since the epoch
    elapsed_s: float
    sent: int
    ok: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable, with stable keys."""
        return {
            "time": datetime.fromtimestamp(self.time, UTC).isoformat(timespec="milliseconds"),
            "elapsed_s": round(self.elapsed_s, 6),
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "rate": round(self.rate, 3),
            "latency_ms": {"p50": self.p50_ms, "p99": self.p99_ms},
        }


@dataclass(frozen=True)
class Progress:
    elapsed_s: float
    sent: int
    ok: int
    errors: int
    inflight: int
    stopping: bool


def arrival_offsets(
    rate: float, *, poisson: bool = False, seed: int | None = None
) -> Iterator[float]:
    """Seconds from the start at which each request is due, endlessly: i/rate, or with `poisson`
    exponential gaps of mean 1/rate drawn from Random(seed). The first is due at 0 either way."""
    if not poisson:
        # i/rate rather than a running sum: no rounding error builds up over a long run.
        return (i / rate for i in itertools.count())
    rng = random.Random(seed)  # noqa: S311 - arrival times, not secrets
    gaps = (rng.expovariate(rate) for _ in itertools.count())
    return itertools.accumulate(gaps, initial=0.0)


class _Target:
    """The request, prepared once: what each send needs and nothing to parse again."""

    def __init__(self, config: LoadConfig) -> None:
        self.url = config.url
        self.tls = config.url.startswith("https://")
        names = {name.lower() for name, _ in config.headers}
        self.headers = (*(() if "user-agent" in names else (_USER_AGENT,)), *config.headers)

    def session(self, max_inflight: int) -> aiohttp.ClientSession:
        """One pool for the run: at most `max_inflight` connections (one per request in flight),
        each kept alive for the next request."""
        connector = aiohttp.TCPConnector(
            limit=max_inflight,
            limit_per_host=0,
            # One context for all (each costs ~40 ms to build); it honours SSL_CERT_FILE/DIR.
            ssl=httpx.create_ssl_context() if self.tls else True,
        )
        return aiohttp.ClientSession(
            connector=connector,
            # None: each request is bounded whole, its body included, by asyncio.timeout in _get.
            timeout=aiohttp.ClientTimeout(),
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # no proxy from the environment: the URL is what is measured
        )


class _Latencies:
    def __init__(self) -> None:
        self._histogram = HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)

    def record(self, seconds: float) -> None:
        self._histogram.record_value(min(max(round(seconds * 1e6), _LOWEST_US), _HIGHEST_US))

    def percentile_ms(self, percentile: float) -> float | None:
        if self._histogram.get_total_count() == 0:
            return None
        return int(self._histogram.get_value_at_percentile(percentile)) / 1000

    def summary_ms(self) -> dict[str, float | None]:
        summary = {name: self.percentile_ms(p) for name, p in PERCENTILES}
        empty = self._histogram.get_total_count() == 0
        summary["max"] = None if empty else int(self._histogram.get_max_value()) / 1000
        return summary


class _Tally:
    __slots__ = ("errors", "latencies", "ok", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.latencies = _Latencies()


class LoadGenerator:
    """One run of `config`: `await run()` once. `on_interval`, if given, is called every
    `config.interval_s` with that interval's numbers (from the event loop: keep it quick)."""

    def __init__(
        self, config: LoadConfig, on_interval: Callable[[IntervalStats], None] | None = None
    ) -> None:
        self.config = config
        self._on_interval = on_interval
        self._total = _Tally()
        self._window = _Tally()
        # Where each outcome is counted: the run's totals, and the interval's if reported.
        self._tallies = (self._total, self._window) if on_interval else (self._total,)
        self._inflight: set[asyncio.Task[None]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._stops = 0
        self._started_at: float | None = None
        self._stopped_at: float | None = None
        self._send_lag_max_s = 0.0
        self._next_report = math.inf  # when the current interval ends (never, unreported)

    def stop(self) -> None:
        """Stop sending; run() then waits, up to the timeout, for the requests in flight. A second
        call abandons those too. Call it from the event loop's thread (a handler added with
        loop.add_signal_handler runs there)."""
        self._stops += 1
        if self._stops == 1:
            if self._scheduler is not None:
                self._scheduler.cancel()
        else:
            for task in list(self._inflight):
                task.cancel()

    def progress(self) -> Progress:
        now = time.monotonic()
        start = self._started_at if self._started_at is not None else now
        end = self._stopped_at if self._stopped_at is not None else now
        total = self._total
        return Progress(
            elapsed_s=end - start,
            sent=total.sent,
            ok=total.ok,
            errors=sum(total.errors.values()),
            inflight=len(self._inflight),
            stopping=self._stops > 0 or self._stopped_at is not None,
        )

    async def run(self) -> LoadResult:
        if self._started_at is not None:
            raise RuntimeError("a LoadGenerator runs once; make a new one")
        config = self.config
        target = _Target(config)
        session = target.session(config.max_inflight)
        self._started_at = start = time.monotonic()
        if self._on_interval is not None:
            self._next_report = start + config.interval_s
        self._scheduler = asyncio.create_task(self._schedule(target, session, start))
        if self._stops:
            self._scheduler.cancel()
        try:
            await asyncio.wait({self._scheduler})
            self._stopped_at = time.monotonic()
            failure = None if self._scheduler.cancelled() else self._scheduler.exception()
            if failure is not None:
                raise failure
            await self._drain()
        finally:
            if self._stopped_at is None:
                self._stopped_at = time.monotonic()
            # Nothing is left after a drain; everything on an error or when run() is cancelled.
            leftovers = [self._scheduler, *self._inflight]
            for leftover in leftovers:
                leftover.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
            await session.close()
        total = self._total
        return LoadResult(
            config=config,
            elapsed_s=self._stopped_at - start,
            sent=total.sent,
            ok=total.ok,
            errors=dict(total.errors),
            latency_ms=total.latencies.summary_ms(),
            send_lag_max_ms=self._send_lag_max_s * 1000,
        )

    async def _schedule(
        self, target: _Target, session: aiohttp.ClientSession, start: float
    ) -> None:
        config = self.config
        duration = config.duration_s
        inflight = self._inflight
        for offset in arrival_offsets(config.rate, poisson=config.poisson, seed=config.seed):
            if duration and offset >= duration:
                break
            due = start + offset
            late = await self._wait_until(due)
            if len(inflight) >= config.max_inflight:
                for tally in self._tallies:
                    tally.errors[DROPPED] += 1
            else:
                task = asyncio.create_task(self._request(target, session, due))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
                for tally in self._tallies:
                    tally.sent += 1
            if late:
                # Catching up: let answers be handled between the overdue sends.
                await asyncio.sleep(0)
        if duration:
            # Sending stops at the end of the duration, not at the last request's due time.
            await self._wait_until(start + duration)

    async def _wait_until(self, when: float) -> bool:
        """Sleep until `when`, ending any interval that ends first, so that an interval's sends
        are exactly the requests due within it. True if `when` had passed already."""
        late = True
        while True:
            wait = min(when, self._next_report) - time.monotonic()
            if wait > _EARLY_S:
                late = False
                await asyncio.sleep(wait)
            elif self._next_report <= when:
                self._end_interval()
            else:
                return late

    async def _request(self, target: _Target, session: aiohttp.ClientSession, due: float) -> None:
        now = time.monotonic()
        if now - due > self._send_lag_max_s:
            self._send_lag_max_s = now - due
        # Sent a little early (see _EARLY_S), the latency counts from the real send.
        start = min(due, now)
        try:
            status = await self._get(target, session)
        except asyncio.CancelledError:
            self._count_error(CANCELLED)
            raise
        if isinstance(status, str):
            self._count_error(status)
            return
        seconds = time.monotonic() - start
        for tally in self._tallies:
            if 200 <= status < 400:
                tally.ok += 1
            else:
                tally.errors[f"{status // 100}xx"] += 1
            tally.latencies.record(seconds)

    async def _get(self, target: _Target, session: aiohttp.ClientSession) -> int | str:
        """The answer's status code once its body is read whole, or the kind of error."""
        try:
            async with (
                asyncio.timeout(self.config.timeout_s),
                session.get(target.url, headers=target.headers, allow_redirects=False) as response,
            ):
                content = response.content
                while await content.readany():
                    pass
                return response.status
        # aiohttp's timeouts (ServerTimeoutError, ConnectionTimeoutError) are TimeoutErrors too.
        except TimeoutError:
            return TIMEOUT
        # Refused, unreachable, name not found, TLS handshake or certificate refused.
        except aiohttp.ClientConnectorError:
            return CONNECT
        # Connected, then: closed or reset without an answer (after aiohttp sent the GET once more,
        # as RFC 9112 allows for idempotent requests), a body cut short or badly framed, or an
        # answer that is not HTTP.
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientResponseError,
        ):
            return PROTOCOL
        except Exception as exc:  # whatever fails, it is this request's outcome, not the run's
            return type(exc).__name__

    def _count_error(self, kind: str) -> None:
        for tally in self._tallies:
            tally.errors[kind] += 1

    async def _drain(self) -> None:
        if not self._inflight:
            return
        pending = set(self._inflight)
        await asyncio.wait(pending, timeout=self.config.timeout_s + _DRAIN_SLACK_S)

    def _end_interval(self) -> None:
        window = self._window
        self._window = _Tally()
        self._tallies = (self._total, self._window)
        self._next_report += self.config.interval_s
        if self._on_interval is not None:
            self._on_interval(
                IntervalStats(
                    time=time.time(),
                    elapsed_s=self.config.interval_s,
                    sent=window.sent,
                    ok=window.ok,
                    errors=sum(window.errors.values()),
                    p50_ms=window.latencies.percentile_ms(50.0),
                    p99_ms=window.latencies.percentile_ms(99.0),
                )
            )


async def run_load(
    config: LoadConfig, on_interval: Callable[[IntervalStats], None] | None = None
) -> LoadResult:
    """Run `config` to its end (duration_s 0: until the task is cancelled, which returns no
    result; use LoadGenerator and its stop() to end such a run with one)."""
    return await LoadGenerator(config, on_interval).run()
