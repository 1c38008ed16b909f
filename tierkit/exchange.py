"""One outbound HTTP exchange as the web tier's client sees it, on a well-kept pool: httpx's
`AsyncClient` API over the `httpx-aiohttp` transport (aiohttp's connection pool).

`ExchangeTransport` sits *below* whatever makes the CLIENT span (contrib's httpx
instrumentation wraps the client's transport; lean mode's span wraps it likewise), and returns
only once the response body is read, so the CLIENT span covers the body too: with httpx's own
transport the contrib span ends at the response headers (opentelemetry-python-contrib #2304),
and under a bandwidth cap the body's transfer would count as web time.

Each exchange is one `Exchange` record, found in the response's extensions under `EXCHANGE`:
when each phase happened (stamped by aiohttp's documented `TraceConfig` signals, which run in
the request's own task, so a context variable ties them to the record), whether the connection
was new, its socket (for TCP_INFO), and whether aiohttp retried the request (it does, once, for
idempotent methods whose connection the server closed or reset before an answer: RFC 9110
section 9.2.2). The retry goes on a new connection (`_FreshRetryConnector`): aiohttp would take
the pool's next idle one, which the server may be closing too.

httpx-aiohttp 0.2 maps every `aiohttp.ClientConnectionError` to `httpx.ConnectTimeout`, a
refused connection and a server that hung up included; the web tier must tell those (502) from
a slow API (504), so errors are mapped again here from the aiohttp error it chains.
"""

import asyncio
import functools
import socket
import time
import weakref
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from httpx_aiohttp import AiohttpTransport
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

from tierkit.server_timing import server_timing_durations
from tierkit.tcpinfo import Testimony, Witness

EXCHANGE = "tierkit.exchange"  # response.extensions: the Exchange


@dataclass(eq=False)
class Exchange:
    """Wall-clock nanoseconds (time.time_ns, as span timestamps) of each step of one exchange."""

    start_ns: int
    connect_ns: int | None = None  # None: the connection was reused
    request_sent_ns: int = 0
    first_byte_ns: int = 0  # the response's head read
    body_done_ns: int = 0
    retried_ns: int | None = None  # aiohttp sent it again on a fresh connection
    attempts: int = 0  # connections asked of the pool: 2 for aiohttp's retry
    api_s: float | None = None  # the callee's own time, from its `Server-Timing: app`
    sock: socket.socket | None = field(default=None, repr=False)
    transport: asyncio.BaseTransport | None = field(default=None, repr=False)
    _witness: Witness | None = field(default=None, repr=False)
    _testimony: Testimony | None = field(default=None, repr=False)

    @property
    def reused(self) -> bool:
        return self.connect_ns is None

    @property
    def seconds(self) -> float:
        """From the start (the CLIENT span's, where there is one) to the body's last byte."""
        return (self.body_done_ns - self.start_ns) / 1e9

    @property
    def remote_s(self) -> float | None:
        """What no span explains; 0 rather than the microseconds below it that clocks give
        on loopback when the server ends its span just after answering."""
        return None if self.api_s is None else max(self.seconds - self.api_s, 0.0)

    def events(self) -> list[tuple[str, int]]:
        steps = [
            ("request sent", self.request_sent_ns),
            ("first byte", self.first_byte_ns),
            ("body done", self.body_done_ns),
        ]
        if self.retried_ns is not None:
            steps.insert(0, ("retry", self.retried_ns))
        if self.connect_ns is not None:
            steps.insert(0, ("connect", self.connect_ns))
        return sorted(steps, key=lambda step: step[1])

    def testimony(self) -> Testimony | None:
        """The connection's TCP_INFO at the end of the exchange, read once, when first asked
        (the span and the metrics share it); None with TCP_INFO off or no socket."""
        if self._testimony is None and self._witness is not None and self.sock is not None:
            self._testimony = self._witness.testify(self.sock, not self.reused)
            self._witness = None  # read once
        return self._testimony


def annotate(span: trace.Span, extensions: Mapping[str, Any]) -> None:
    """What one exchange tells, on its CLIENT span (a response hook): the phases as events,
    then the attributes netgap's breakdown reads, last (the TCP testimony's srtt and
    retransmissions end them: its fast path scans from the end), in one call (the SDK checks
    and locks per call as well as per attribute)."""
    exchange = extensions.get(EXCHANGE)
    if not isinstance(exchange, Exchange):
        return
    for name, timestamp in exchange.events():
        span.add_event(name, timestamp=timestamp)
    testimony = exchange.testimony()
    found = testimony.attributes() if testimony is not None else {}
    remote_s = exchange.remote_s
    if remote_s is not None:
        found["netgap.remote_seconds"] = remote_s
    found["netgap.connection.reused"] = exchange.reused
    span.set_attributes(found)


class Census:
    """The pool's connections, counted from the transports the exchanges ran on (aiohttp's
    connector has no public count): open ones are those not closing."""

    def __init__(self) -> None:
        self._transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    def saw(self, transport: asyncio.BaseTransport) -> None:
        self._transports.add(transport)

    def open(self) -> int:
        return sum(1 for transport in list(self._transports) if not transport.is_closing())


_CURRENT: ContextVar[Exchange | None] = ContextVar("tierkit.exchange", default=None)


def _now_into(setter: Callable[[Exchange, Any], None]) -> Any:
    """A TraceConfig callback that hands the current exchange and the signal's params on."""

    async def callback(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
    ) -> None:
        exchange = _CURRENT.get()
        if exchange is not None:
            setter(exchange, params)

    return callback


def _connected(exchange: Exchange, params: Any) -> None:
    exchange.connect_ns = time.time_ns()


def _reused(exchange: Exchange, params: Any) -> None:
    exchange.connect_ns = None


def _headers_sent(exchange: Exchange, params: Any) -> None:
    now = time.time_ns()
    if exchange.request_sent_ns:  # sent before: this is aiohttp's retry
        exchange.retried_ns = now
    exchange.request_sent_ns = now


def _chunk_sent(exchange: Exchange, params: Any) -> None:
    exchange.request_sent_ns = time.time_ns()


def _head_read(exchange: Exchange, params: aiohttp.TraceRequestEndParams) -> None:
    exchange.first_byte_ns = time.time_ns()


class _ConnectionNoting(aiohttp.ClientResponse):
    """aiohttp's response (through ClientSession's documented `response_class=`), noting the
    connection it is read from: no TraceConfig signal carries the connection, and a small
    response releases it to the pool before `on_request_end` fires. `start(connection)` is
    where aiohttp hands it over (aiohttp pinned in pyproject.toml; tested by
    tests/tierkit/test_exchange.py, which fails without a socket on every exchange)."""

    async def start(self, connection: Connection) -> "aiohttp.ClientResponse":
        exchange = _CURRENT.get()
        transport = connection.transport
        if exchange is not None and transport is not None:
            exchange.sock = transport.get_extra_info("socket")
            exchange.transport = transport
        return await super().start(connection)


def trace_config() -> aiohttp.TraceConfig:
    """The aiohttp signals that stamp the current exchange's phases."""
    config = aiohttp.TraceConfig()
    config.on_connection_create_end.append(_now_into(_connected))
    config.on_connection_reuseconn.append(_now_into(_reused))
    config.on_request_headers_sent.append(_now_into(_headers_sent))
    config.on_request_chunk_sent.append(_now_into(_chunk_sent))
    config.on_request_end.append(_now_into(_head_read))
    return config


class _FreshRetryConnector(aiohttp.TCPConnector):
    """aiohttp's pool, where aiohttp's retry of a request always gets a new connection.

    aiohttp retries an idempotent request once when its connection was closed or reset before
    an answer came, typically a kept-alive one the server had just timed out. It asks the pool
    again, and the pool hands out its next idle connection, oldest first (`_get`): one the
    server has kept idle about as long, and may be closing too, and then the retry fails as
    well (8 of 30 retries went on another idle connection in one `netgap scenario` run). Here
    the second connection an exchange asks for skips the idle ones. The new connection fits in
    the pool's bound (`limit` connections in all, idle ones included): the failed connection's
    slot is freed before aiohttp retries, and should another call have taken it meanwhile, the
    oldest idle connections are closed to make room. `_get`, `_conns` and
    `_available_connections` are aiohttp's (pinned in pyproject.toml;
    tests/tierkit/test_exchange.py fails when a retry lands on an idle connection,
    tests/webtier/test_pool.py when the pool opens one connection too many)."""

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> Connection:
        exchange = _CURRENT.get()
        if exchange is not None:
            exchange.attempts += 1
        return await super().connect(req, traces, timeout)

    async def _get(self, key: ConnectionKey, traces: list[Trace]) -> Connection | None:
        exchange = _CURRENT.get()
        if exchange is None or exchange.attempts < 2:
            return await super()._get(key, traces)
        idle = self._conns.get(key)
        # The new connection must fit beside the idle ones: make room, oldest first.
        while idle and len(idle) >= self._available_connections(key):
            protocol, _ = idle.popleft()
            protocol.close()
        if idle is not None and not idle:
            del self._conns[key]
        return None


@dataclass(frozen=True)
class PoolSettings:
    max_connections: int = 100
    keepalive_expiry_s: float = 2.0


def aiohttp_session(pool: PoolSettings) -> aiohttp.ClientSession:
    """aiohttp's pool as the transport uses it: `max_connections` in all, idle ones closed
    after `keepalive_expiry_s`, no proxies or .netrc from the environment (an in-cluster call),
    no cookies kept between calls."""
    connector = _FreshRetryConnector(
        limit=pool.max_connections,
        limit_per_host=0,
        keepalive_timeout=pool.keepalive_expiry_s,
    )
    return aiohttp.ClientSession(
        connector=connector,
        trace_configs=[trace_config()],
        response_class=_ConnectionNoting,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )


class ExchangeTransport(httpx.AsyncBaseTransport):
    """httpx-aiohttp's transport, returning whole responses with their Exchange record."""

    def __init__(self, pool: PoolSettings, *, tcp_info: bool = True) -> None:
        # Made on first use: aiohttp's session belongs to the running event loop.
        self._inner = AiohttpTransport(client=functools.partial(aiohttp_session, pool))
        self._witness = Witness() if tcp_info else None
        self.census = Census()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        exchange = Exchange(start_ns=_span_start_ns(), _witness=self._witness)
        token = _CURRENT.set(exchange)
        try:
            response = await self._inner.handle_async_request(request)
            try:
                body = await response.aread()
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            _failed(exchange)
            raise _remapped(exc) from exc.__cause__
        except aiohttp.ClientResponseError as exc:  # not mapped by httpx-aiohttp: a bad answer
            _failed(exchange)
            raise httpx.RemoteProtocolError(exc.message or type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            _failed(exchange)
            raise httpx.TransportError(str(exc) or type(exc).__name__) from exc
        finally:
            _CURRENT.reset(token)
        exchange.body_done_ns = time.time_ns()
        if exchange.transport is not None:
            self.census.saw(exchange.transport)
        api_ms = server_timing_durations(response.headers.get("server-timing")).get("app")
        exchange.api_s = None if api_ms is None else api_ms / 1e3
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=body,
            extensions={**response.extensions, EXCHANGE: exchange},
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def _failed(exchange: Exchange) -> None:
    """A call that got no answer: the steps it did take, on its CLIENT span (the current span;
    the response hook that notes them for an answer does not run), e.g. "connect",
    "request sent" and "retry" for a call whose retry failed too."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    for name, timestamp in exchange.events():
        if timestamp:
            span.add_event(name, timestamp=timestamp)


def _span_start_ns() -> int:
    """The call starts where the CLIENT span started (the SDK's own stamp), so the exchange is
    measured exactly as the span spans it; now, when there is no recording span."""
    span = trace.get_current_span()
    started = span.start_time if isinstance(span, ReadableSpan) else None
    return started or time.time_ns()


def _remapped(exc: httpx.TransportError) -> httpx.TransportError:
    """httpx's error for what aiohttp reported: a timeout only where aiohttp timed out."""
    cause = exc.__cause__
    if not isinstance(exc, httpx.ConnectTimeout) or isinstance(cause, asyncio.TimeoutError):
        return exc
    message = str(exc) or type(cause).__name__
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(message or "server disconnected without a response")
    if isinstance(cause, aiohttp.ClientOSError):
        return httpx.ReadError(message)
    if isinstance(cause, aiohttp.ClientConnectionError):
        return httpx.NetworkError(message)
    return exc
