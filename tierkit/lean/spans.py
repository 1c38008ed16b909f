"""Lean mode's HTTP spans: one SERVER span per request, one CLIENT span per outbound call, in
place of opentelemetry-instrumentation-fastapi/-httpx (see tierkit.lean for what it saves).

They emit the spans the contrib instrumentation does with `OTEL_SEMCONV_STABILITY_OPT_IN=http`
(names, kinds, parents, the stable HTTP attributes, statuses, exceptions; checked by
tests/tierkit/lean/test_conformance.py against contrib's, from the same run), with the W3C
context taken from and put into headers by the globally configured propagators
(`OTEL_PROPAGATORS`), and `traceresponse` by the global response propagator, as contrib's.

Two deliberate differences: `server.address` is the Host header's host without its port (as the
semantic conventions define it; contrib keeps the port), and the SERVER span is named after the
matched route once routing is done (`GET /`), so samplers see the method alone.
"""

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tierkit.exchange import EXCHANGE, Exchange
from tierkit.lean.headstamp import HEAD_NS

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
    starts once the request's head was read (tierkit.lean.headstamp) and ends after the last
    byte of the response is handed to the server.
    """

    def __init__(self, app: ASGIApp, *, tracer: trace.Tracer, excluded_paths: Iterable[str]):
        self.app = app
        self.tracer = tracer
        self.excluded_paths = frozenset(excluded_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.excluded_paths:
            await self.app(scope, receive, send)
            return
        # What precedes the span counts as remote calls in the breakdown, and uvicorn's
        # dispatch and the bookkeeping below are not the network.
        start_ns = scope.get("extensions", {}).get(HEAD_NS) or time.time_ns()
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
        current = trace.set_span_in_context(span, parent)
        token = otel_context.attach(current)
        sent_ns: int | None = None  # when the response's last byte was handed to the server
        responder = get_global_response_propagator()  # type: ignore[no-untyped-call]

        async def send_noting_status(message: Message) -> None:
            nonlocal sent_ns
            if message["type"] == "http.response.start":
                status = message["status"]
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_attribute("error.type", str(status))
                    span.set_status(StatusCode.ERROR)
                if responder is not None:
                    responder.inject(MutableHeaders(scope=message), context=current)
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                sent_ns = time.time_ns()

        try:
            await self.app(scope, receive, send_noting_status)
        except BaseException as exc:
            _record_failure(span, exc)
            raise
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route is not None:
                span.set_attribute("http.route", route)
                span.update_name(f"{name} {route}")
            # The span ends with the response, not after the bookkeeping here and in the inner
            # middleware (the caller has the answer by then): that would come off remote time.
            span.end(end_time=sent_ns)
            otel_context.detach(token)


ResponseHook = Callable[[trace.Span, Mapping[str, Any]], None]


class TracedTransport(httpx.AsyncBaseTransport):
    """A CLIENT span around each request the wrapped transport makes, current while it runs,
    with the trace context injected into the request; `response_hook` adds to it before it
    ends. Under tierkit.exchange's transport the span ends when the response's last byte was
    read (its Exchange says when), not after the bookkeeping that follows: that would count as
    remote calls in the breakdown, and it is not the network."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        tracer: trace.Tracer,
        peer: Mapping[str, str],
        response_hook: ResponseHook,
    ) -> None:
        self._inner = inner
        self._tracer = tracer
        self._peer = peer
        self._response_hook = response_hook
        # The web tier calls one URL: its attributes are worked out once.
        self._static: dict[tuple[str, str], Mapping[str, Any]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attributes = self._attributes(request)
        span = self._tracer.start_span(
            _span_name(attributes), kind=SpanKind.CLIENT, attributes=attributes
        )
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
            exchange = response.extensions.get(EXCHANGE)
            if isinstance(exchange, Exchange):
                end_ns = exchange.body_done_ns
            if span.is_recording():
                attributes = {"http.response.status_code": response.status_code}
                if response.status_code >= 400:
                    attributes["error.type"] = str(response.status_code)
                    span.set_status(StatusCode.ERROR)
                span.set_attributes(attributes)
                self._response_hook(span, response.extensions)
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
