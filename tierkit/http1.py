"""A lean HTTP/1.1 client connection pool, and an httpx transport on top of it.

Why not httpx's own transport (httpcore): on this path it is most of the web tier's CPU. Per
request httpcore runs a dozen async steps through anyio, polls every pooled socket for
readability (a syscall per idle connection per request) and parses with pure-Python h11; we
measured the client at about three quarters of the untraced web tier's CPU per request. Here one
asyncio Protocol per connection parses with httptools (C, the parser uvicorn already uses), the
pool learns that a server closed an idle connection from `connection_lost` instead of polling,
and the connection phases are stamped in the callbacks where they happen, not an event-loop turn
later. httpx keeps its API, its exceptions and its OpenTelemetry instrumentation, which wraps
whatever transport a client has.

Scope, on purpose: HTTP/1.1 (and https through asyncio's TLS), one request per connection at a
time, request bodies read whole, responses returned whole (the CLIENT span then covers the body;
see webtier.transport). A reused connection that the server had already closed is retried once on
a new one when nothing of the response arrived, as browsers and httpcore do for idempotent
requests.
"""

import asyncio
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
import httpx

# A response bigger than this is an error, not a reason to run out of memory.
MAX_BODY_BYTES = 64 * 1024 * 1024
EXCHANGE = "netgap.exchange"
Headers = list[tuple[bytes, bytes]]


@dataclass
class Phases:
    """Wall-clock nanoseconds (time.time_ns, as span timestamps) of each step of one exchange."""

    start: int = 0
    connect: int | None = None  # None: the connection was reused
    request_sent: int = 0
    first_byte: int = 0
    body_done: int = 0

    @property
    def reused(self) -> bool:
        return self.connect is None

    def events(self) -> list[tuple[str, int]]:
        steps = [("request sent", self.request_sent), ("first byte", self.first_byte)]
        steps.append(("body done", self.body_done))
        return [("connect", self.connect), *steps] if self.connect is not None else steps


@dataclass
class RawResponse:
    status: int
    headers: Headers
    body: bytes
    phases: Phases
    http_version: str = "1.1"
    # The connection's socket, while the caller holds the response (TCP_INFO for a span).
    sock: socket.socket | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Timeouts:
    """Seconds, None for none; the meanings of httpx.Timeout's four."""

    connect: float | None = None
    read: float | None = None  # the longest silence while a response is due
    write: float | None = None  # unused: a request is one write into the socket buffer
    pool: float | None = None


class _Connection(asyncio.Protocol):
    """One TCP connection: sends a request, parses the response with httptools' C parser."""

    def __init__(self, pool: "Http1Pool") -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[RawResponse] | None = None
        self._parser: Any = None
        self._reset_response()

    # -- the parser's callbacks ------------------------------------------------------------

    def _reset_response(self) -> None:
        self._headers: Headers = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._got_bytes = False
        self._headers_done = False
        self._last_activity = 0.0
        self._phases = Phases()
        self._head_request = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        if self._head_request:
            self._finish()  # a HEAD response's Content-Length describes a body never sent

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # Interim (100 Continue, 103 Early Hints): the real response follows.
            self._headers = []
            self._headers_done = False
            return
        self._finish()

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > MAX_BODY_BYTES:
            raise _BodyTooLarge
        self._body.append(body)

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            # Bytes nobody asked for: the connection is out of step, never reuse it.
            self._close()
            return
        if not self._got_bytes:
            self._got_bytes = True
            self._phases.first_byte = time.time_ns()
        self._last_activity = time.monotonic()
        try:
            self._parser.feed_data(data)
        except _BodyTooLarge:
            self._fail(httpx.RemoteProtocolError(f"response body over {MAX_BODY_BYTES} bytes"))
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed response: {exc}"))

    def eof_received(self) -> bool | None:
        self._connection_ended()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._connection_ended(exc)

    # -- what the pool calls ---------------------------------------------------------------

    def send(
        self, head: bytes, body: bytes, phases: Phases, head_request: bool
    ) -> "asyncio.Future[RawResponse]":
        if self.transport is None:  # the pool only sends on a connection it has made
            raise RuntimeError("send() on a connection that is not connected")
        loop = asyncio.get_running_loop()
        self._reset_response()
        self._phases = phases
        self._head_request = head_request
        self._parser = httptools.HttpResponseParser(self)
        self._waiter = loop.create_future()
        self._last_activity = time.monotonic()
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        phases.request_sent = time.time_ns()
        return self._waiter

    def silent_for(self, now: float) -> float:
        return now - self._last_activity

    @property
    def reusable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- internals -------------------------------------------------------------------------

    def _finish(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        self._phases.body_done = time.time_ns()
        if not self._parser.should_keep_alive():
            self.closed = True  # the server said `Connection: close` (or HTTP/1.0)
        sock = self.transport.get_extra_info("socket") if self.transport else None
        waiter.set_result(
            RawResponse(
                status=self._parser.get_status_code(),
                headers=self._headers,
                body=b"".join(self._body),
                phases=self._phases,
                http_version=self._parser.get_http_version(),
                sock=sock,
            )
        )

    def _fail(self, exc: Exception) -> None:
        self.abort()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def _connection_ended(self, exc: Exception | None = None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            self._pool._forget(self)
            return
        if self._headers_done and not self._has_framing():
            self._finish()  # a body delimited by the end of the connection (RFC 9112 6.3)
        elif not self._got_bytes:
            waiter.set_exception(_StaleConnection(exc))
        else:
            waiter.set_exception(
                httpx.RemoteProtocolError("the server closed the connection mid-response")
            )
        self._pool._forget(self)

    def _has_framing(self) -> bool:
        names = {name.lower() for name, _ in self._headers}
        return b"content-length" in names or b"transfer-encoding" in names


class _BodyTooLarge(Exception):
    pass


class _StaleConnection(Exception):
    """The server closed the connection before answering: retry once on a new one."""


@dataclass
class _Origin:
    idle: deque[_Connection] = field(default_factory=deque)


class Http1Pool:
    """Keep-alive connections to any number of origins, `max_connections` open at most in all.

    A request takes the most recently used idle connection (warm, and lets the others expire),
    else opens one, else waits in line for one to be released. Cancelling a request at any point
    closes its connection, so no slot is ever lost (compare encode/httpcore#1093).
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        max_keepalive: int = 20,
        keepalive_expiry_s: float | None = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.max_keepalive = max_keepalive
        self.keepalive_expiry_s = keepalive_expiry_s
        self._ssl_context = ssl_context
        self._origins: dict[tuple[str, str, int], _Origin] = {}
        self._open: set[_Connection] = set()
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def connections(self) -> int:
        return len(self._open) + self._opening

    @property
    def idle_connections(self) -> int:
        return sum(len(origin.idle) for origin in self._origins.values())

    async def request(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int,
        target: str,
        headers: Headers,
        body: bytes = b"",
        timeouts: Timeouts = Timeouts(),
    ) -> RawResponse:
        """One exchange. Errors are httpx's exception classes, as from httpx's own transport."""
        if self._closed:
            raise RuntimeError("the pool is closed")
        head = _request_head(method, host, port, scheme, target, headers, body)
        origin_key = (scheme, host, port)
        started = time.time_ns()
        for attempt in (1, 2):
            phases = Phases(start=started)
            conn = await self._acquire(origin_key, phases, timeouts)
            reused = phases.connect is None
            try:
                response = await self._exchange(conn, head, body, phases, timeouts)
            except _StaleConnection as exc:
                self._release(origin_key, conn, keep=False)
                if reused and attempt == 1:
                    continue
                raise httpx.RemoteProtocolError(
                    "the server closed the connection without sending a response"
                ) from exc.__cause__
            except BaseException:
                self._release(origin_key, conn, keep=False)
                raise
            self._release(origin_key, conn, keep=True)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._open):
            conn.abort()
        self._open.clear()
        self._origins.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError("the pool is closed"))

    # -- acquiring and releasing -----------------------------------------------------------

    async def _acquire(
        self, origin_key: tuple[str, str, int], phases: Phases, timeouts: Timeouts
    ) -> _Connection:
        origin = self._origins.get(origin_key)
        if origin is None:
            origin = self._origins[origin_key] = _Origin()
        now = time.monotonic()
        while origin.idle:
            conn = origin.idle.pop()
            if conn.reusable and not self._expired(conn, now):
                return conn
            self._discard(conn)
        if self.connections >= self.max_connections:
            await self._wait_for_slot(timeouts.pool)
            return await self._acquire(origin_key, phases, timeouts)
        return await self._connect(origin_key, phases, timeouts.connect)

    def _expired(self, conn: _Connection, now: float) -> bool:
        expiry = self.keepalive_expiry_s
        return expiry is not None and now - conn.idle_since > expiry

    async def _wait_for_slot(self, limit_s: float | None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(limit_s):
                await waiter
        except TimeoutError:
            raise httpx.PoolTimeout(f"no connection free within {limit_s:g} s") from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake_one()  # woken but leaving: pass the free slot on
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
                self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(
        self, origin_key: tuple[str, str, int], phases: Phases, limit_s: float | None
    ) -> _Connection:
        scheme, host, port = origin_key
        loop = asyncio.get_running_loop()
        conn = _Connection(self)
        tls = self._tls() if scheme == "https" else None
        self._opening += 1
        connected = False
        try:
            async with asyncio.timeout(limit_s):
                await loop.create_connection(
                    lambda: conn, host, port, ssl=tls, server_hostname=host if tls else None
                )
            connected = True
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"connecting to {host}:{port} took over {limit_s:g} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{host}:{port}: {_describe(exc)}") from exc
        finally:
            self._opening -= 1
            if not connected:
                conn.abort()
                self._wake_one()  # the slot this attempt held is free again
        self._open.add(conn)
        phases.connect = time.time_ns()
        return conn

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _release(self, origin_key: tuple[str, str, int], conn: _Connection, keep: bool) -> None:
        origin = self._origins.get(origin_key)
        if (
            keep
            and conn.reusable
            and origin is not None
            and not self._closed
            and len(origin.idle) < self.max_keepalive
        ):
            conn.idle_since = time.monotonic()
            origin.idle.append(conn)
            self._wake_one()
            return
        self._discard(conn)

    def _discard(self, conn: _Connection) -> None:
        """Closes `conn`. Its slot is freed by connection_lost, once the socket is gone, not
        now: freed before, a new connection could open while this one's socket is still
        there, one over max_connections (seen as 9 of 8 under the story's fault)."""
        transport = conn.transport
        conn.closed = True
        if transport is None:
            self._forget(conn)
            return
        if not transport.is_closing():
            # Unsent bytes would keep the socket (and the slot) until the peer reads them.
            transport.abort() if transport.get_write_buffer_size() else transport.close()

    def _forget(self, conn: _Connection) -> None:
        """A connection is gone for good (closed by us or by the server): free its slot."""
        if conn in self._open:
            self._open.discard(conn)
            for origin in self._origins.values():
                if conn in origin.idle:
                    origin.idle.remove(conn)
            self._wake_one()

    # -- one exchange ----------------------------------------------------------------------

    async def _exchange(
        self, conn: _Connection, head: bytes, body: bytes, phases: Phases, timeouts: Timeouts
    ) -> RawResponse:
        waiter = conn.send(head, body, phases, head_request=head.startswith(b"HEAD "))
        read_timeout = timeouts.read
        if read_timeout is None:
            return await waiter
        # One timer per exchange, re-armed only when it fires early: a response that keeps
        # arriving is never cut off, a silence longer than `read` is.
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def check() -> None:
            nonlocal handle
            silent = conn.silent_for(time.monotonic())
            if waiter.done():
                return
            if silent >= read_timeout:
                conn.abort()
                waiter.set_exception(httpx.ReadTimeout(f"no response data for {read_timeout:g} s"))
            else:
                handle = loop.call_later(read_timeout - silent, check)

        handle = loop.call_later(read_timeout, check)
        try:
            return await waiter
        finally:
            handle.cancel()


def _request_head(
    method: str, host: str, port: int, scheme: str, target: str, headers: Headers, body: bytes
) -> bytes:
    default_port = 443 if scheme == "https" else 80
    lines = [f"{method} {target} HTTP/1.1".encode("ascii")]
    names = {name.lower() for name, _ in headers}
    if b"host" not in names:
        lines.append(b"Host: " + (host if port == default_port else f"{host}:{port}").encode())
    if body and b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.extend(name + b": " + value for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class Http1Transport(httpx.AsyncBaseTransport):
    """An httpx transport over Http1Pool. The response comes back whole, with the exchange's
    Phases in `response.extensions[EXCHANGE]` and the socket under `network_stream`."""

    def __init__(self, pool: Http1Pool) -> None:
        self.pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"{url.scheme!r} is not http or https")
        port = url.port or (443 if url.scheme == "https" else 80)
        timeouts = Timeouts(**request.extensions.get("timeout", {}))
        body = await request.aread()
        raw = await self.pool.request(
            request.method,
            url.scheme,
            url.host,
            port,
            url.raw_path.decode("ascii"),
            request.headers.raw,
            body,
            timeouts,
        )
        # Unread: httpx reads (and decodes) it after this returns, outside the CLIENT span that
        # the instrumentation wraps around this call. The bytes are all here; decoding them is
        # the caller's own work, not time on the network.
        return httpx.Response(
            raw.status,
            headers=raw.headers,
            stream=httpx.ByteStream(raw.body),
            extensions={
                "http_version": f"HTTP/{raw.http_version}".encode(),
                "network_stream": _SocketInfo(raw.sock),
                EXCHANGE: raw.phases,
            },
            request=request,
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


class _SocketInfo:
    """What httpcore's network_stream offers that callers use: get_extra_info("socket")."""

    def __init__(self, sock: socket.socket | None) -> None:
        self._sock = sock

    def get_extra_info(self, name: str) -> Any:
        return self._sock if name == "socket" else None
