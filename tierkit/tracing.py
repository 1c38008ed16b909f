"""The HTTP spans of both tiers: one SERVER span per request, one CLIENT span per outbound call.

Why not opentelemetry-instrumentation-asgi/-fastapi/-httpx: profiled here, they were most of
tracing's cost (the ASGI middleware alone ~45% of the API tier's CPU per request: it decodes
every header on each of ~10 lookups and matches the route twice; the httpx wrapper's attribute
helpers cost 2.6x our transport). These classes emit the same spans the contrib instrumentation
does with `OTEL_SEMCONV_STABILITY_OPT_IN=http` (names, kinds, parents, the stable HTTP
attributes, statuses, exceptions), with the W3C context taken from and put into headers by the
globally configured propagators (`OTEL_PROPAGATORS`), at a fraction of the cost.

Two deliberate differences: `server.address` is the Host header's host without its port (as the
semantic conventions define it; contrib keeps the port), and the SERVER span is named after the
matched route once routing is done (`GET /`), so samplers see the method alone.
"""

import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tierkit.http1 import EXCHANGE, Phases
from tierkit.protocol import CONNECTION, Connection
from tierkit.tcpinfo import Witness

# request.extensions: when the CLIENT span started (time.time_ns, as the SDK stamped it), so a
# transport beneath can measure the call exactly as the span spans it.
CALL_START = "tierkit.call_start_ns"

_KNOWN_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY")
)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

RawHeaders = Iterable[tuple[bytes, bytes]]


class _AsgiHeaders(Getter[RawHeaders]):
    """Reads an ASGI scope's raw headers as the propagators ask, decoding only what they ask
    for. Latin-1, as HTTP/1.1 allows any byte: a malformed value reaches the propagator,
    which rejects it, rather than raising here."""

    def get(self, carrier: RawHeaders, key: str) -> list[str] | None:
        name = key.encode("latin-1").lower()
        values = [value.decode("latin-1") for header, value in carrier if header == name]
        return values or None

    def keys(self, carrier: RawHeaders) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


def _record_failure(span: trace.Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def _span_name(attributes: Mapping[str, Any]) -> str:
    """The method, or `HTTP` for one outside the known set (as the conventions name it)."""
    method: str = attributes["http.request.method"]
    return "HTTP" if method == "_OTHER" else method


class _HttpxHeaders(Setter[httpx.Headers]):
    def set(self, carrier: httpx.Headers, key: str, value: str) -> None:
        carrier[key] = value


_ASGI_HEADERS = _AsgiHeaders()
_HTTPX_HEADERS = _HttpxHeaders()


def _method(raw: str) -> dict[str, str]:
    if raw in _KNOWN_METHODS:
        return {"http.request.method": raw}
    return {"http.request.method": "_OTHER", "http.request.method_original": raw}


def _split_host(host: str) -> tuple[str, int | None]:
    """`host[:port]`, with IPv6 literals in brackets; a port that is not a number is ignored."""
    if host.startswith("["):
        literal, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return literal, int(port) if port.isdigit() else None
    name, sep, port = host.rpartition(":")
    if not sep:
        return host, None
    return name, int(port) if port.isdigit() else None


def server_attributes(scope: Scope) -> dict[str, Any]:
    """The request's attributes under the stable HTTP semantic conventions."""
    scheme = scope.get("scheme", "http")
    attributes: dict[str, Any] = {
        "url.scheme": scheme,
        "url.path": scope["path"],
        "network.protocol.version": scope.get("http_version", "1.1"),
        **_method(scope["method"]),
    }
    if scope.get("query_string"):
        attributes["url.query"] = scope["query_string"].decode("latin-1")
    host = user_agent = None
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1")
        elif name == b"user-agent":
            user_agent = value.decode("latin-1")
    if host:
        address, port = _split_host(host)
        attributes["server.address"] = address
        attributes["server.port"] = port or _DEFAULT_PORTS.get(scheme, 80)
    elif scope.get("server"):
        attributes["server.address"], attributes["server.port"] = scope["server"][:2]
    if user_agent is not None:
        attributes["user_agent.original"] = user_agent
    if scope.get("client"):
        attributes["client.address"], attributes["client.port"] = scope["client"][:2]
    return attributes


class ServerSpanMiddleware:
    """A SERVER span around each HTTP request, child of the caller's context from the headers.

    Outermost of the app's own middleware, so everything inside sees the span as current; it
    ends after the last byte of the response is handed to the server.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer: trace.Tracer,
        excluded_paths: Iterable[str],
        testify: bool = True,
    ):
        self.app = app
        self.tracer = tracer
        self.excluded_paths = frozenset(excluded_paths)
        self.witness = Witness() if testify else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.excluded_paths:
            await self.app(scope, receive, send)
            return
        # The span starts when the request reached us (its head read, tierkit.protocol), not
        # after uvicorn's dispatch or the bookkeeping below: what precedes the span counts as
        # remote calls in the breakdown, and that is not the network.
        connection = scope.get("extensions", {}).get(CONNECTION)
        if not isinstance(connection, Connection):  # served by another protocol: no socket
            connection = None
        start_ns = connection.head_ns if connection is not None else time.time_ns()
        parent = propagate.extract(scope["headers"], getter=_ASGI_HEADERS)
        attributes = server_attributes(scope)
        name = _span_name(attributes)
        span = self.tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=start_ns,
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        sent_ns: int | None = None  # when the response's last byte was handed to the server

        async def send_noting_status(message: Message) -> None:
            nonlocal sent_ns
            if message["type"] == "http.response.start":
                status = message["status"]
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_attribute("error.type", str(status))
                    span.set_status(StatusCode.ERROR)
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                sent_ns = time.time_ns()

        try:
            await self.app(scope, receive, send_noting_status)
        except BaseException as exc:
            _record_failure(span, exc)
            raise
        finally:
            found: dict[str, Any] = {}
            route = getattr(scope.get("route"), "path", None)
            if route is not None:
                found["http.route"] = route
                span.update_name(f"{name} {route}")
            if connection is not None and span.is_recording():
                found.update(self._testimony(connection))
            if found:  # one call: the SDK checks and locks per call as well as per attribute
                span.set_attributes(found)
            # The span ends with the response, not after the bookkeeping here and in the inner
            # middleware (the caller has the answer by then): that would come off remote time.
            span.end(end_time=sent_ns)
            otel_context.detach(token)

    def _testimony(self, connection: Connection) -> dict[str, Any]:
        """The connection's TCP_INFO once the response is written, as span attributes. What
        the response's bytes need resent after this moment is counted with the connection's
        next request."""
        if self.witness is None:
            return {}
        testimony = self.witness.testify(connection.sock, connection.requests == 1)
        return {} if testimony is None else testimony.attributes()


class TracedTransport(httpx.AsyncBaseTransport):
    """A CLIENT span around each request the wrapped transport makes, current while it runs
    (so the transport can add to it), with the trace context injected into the request.

    With tierkit.http1 underneath, the span ends when the response's last byte was read (its
    Phases say when), not after the bookkeeping that follows: that would count as remote
    calls in the breakdown, and it is not the network."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        tracer: trace.Tracer,
        *,
        peer_service: str | None = None,
    ) -> None:
        self._inner = inner
        self._tracer = tracer
        # The callee's service.name (OTel's peer.service): a call that never reached it (a
        # timeout, a refused connection) has no span of the callee's to name the edge by, and
        # the address alone does not say which service it was.
        self._peer = {"peer.service": peer_service} if peer_service else {}
        # The web tier calls one URL: its attributes are worked out once.
        self._static: dict[tuple[str, str], Mapping[str, Any]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attributes = self._attributes(request)
        span = self._tracer.start_span(
            _span_name(attributes), kind=SpanKind.CLIENT, attributes=attributes
        )
        # The call starts once its span is made, as the SDK stamps it (contrib's spans start
        # there too): the SDK's cost of making it (~45 us here) is the web tier's own CPU, and
        # stamped before it, it would count as time between the services.
        request.extensions[CALL_START] = _start_ns(span)
        current = trace.set_span_in_context(span)
        propagate.inject(request.headers, context=current, setter=_HTTPX_HEADERS)
        token = otel_context.attach(current)
        end_ns: int | None = None
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException as exc:
            _record_failure(span, exc)
            raise
        else:
            end_ns = _exchange_end_ns(response)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_attribute("error.type", str(response.status_code))
                span.set_status(StatusCode.ERROR)
            return response
        finally:
            span.end(end_time=end_ns)
            otel_context.detach(token)

    def _attributes(self, request: httpx.Request) -> Mapping[str, Any]:
        key = (request.method, str(request.url))
        found = self._static.get(key)
        if found is None:
            url = request.url.copy_with(username=None, password=None)  # never credentials
            port = url.port or _DEFAULT_PORTS.get(url.scheme, 80)
            found = {
                **_method(request.method),
                "url.full": str(url),
                "server.address": url.host,
                "server.port": port,
                "network.peer.address": url.host,
                "network.peer.port": port,
                "network.protocol.version": "1.1",
                **self._peer,
            }
            if len(self._static) < 64:  # bounded: a caller with endless URLs only loses the cache
                self._static[key] = found
        return found

    async def aclose(self) -> None:
        await self._inner.aclose()


def _start_ns(span: trace.Span) -> int:
    """When the SDK started `span`; now, for a span that does not say (not recording)."""
    started = span.start_time if isinstance(span, ReadableSpan) else None
    return started or time.time_ns()


def _exchange_end_ns(response: httpx.Response) -> int | None:
    """When tierkit.http1 read the last byte, or None (now) under another transport."""
    phases = response.extensions.get(EXCHANGE)
    return phases.body_done if isinstance(phases, Phases) and phases.body_done else None
