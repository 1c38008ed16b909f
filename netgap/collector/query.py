"""The read side of Jaeger's HTTP API v3 (`/api/v3/...`, as Jaeger v2.20 serves it), over a
Store: services, operations, trace search and trace by id.

Parameters go by Jaeger's canonical camelCase names (`query.serviceName`) or their snake_case
aliases (`query.service_name`); an empty value counts as absent, as in Jaeger. Errors use
Jaeger's envelope, `{"error": {"httpCode": 400, "message": "..."}}`, and a search or trace id
that finds nothing is a 404 in it, not an empty 200.

Where Jaeger leaves it open: a search returns the traces with the most recent matching span
first (without a service: the latest-starting traces first); `query.startTimeMin` is inclusive
and `query.startTimeMax` exclusive (as the API's proto documents); `query.searchDepth` (alias
`query.num_traces`) defaults to 100, as in Jaeger v2.20. `rawTraces` is accepted and has
nothing to switch off: traces are always given back as stored. The trace by id's
`startTime`/`endTime` are checked and then not needed.
"""

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from netgap.collector.records import DEFAULT_SEARCH_LIMIT, StoreError, TraceQuery
from netgap.collector.store import Store
from netgap.model import Span
from netgap.otlp_json import json_from_spans
from netgap.timeparse import TimeFormatError, parse_go_duration_ns, parse_rfc3339_ns

_HEX = re.compile(r"[0-9a-fA-F]{1,32}")
_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
NOT_FOUND = "No traces found"  # Jaeger's words

log = logging.getLogger("netgap.collect")


class ParameterError(ValueError):
    """A malformed or missing query parameter: a 400 with this message."""


def create_query_app(store: Store, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The /api/v3 routes, then `extra_routes` (say, a trace page at `/`)."""

    # Plain functions: Starlette runs them in its thread pool, so reading the store and
    # rendering a big trace never block the event loop.
    def services(request: Request) -> Response:
        return _json({"services": store.services()})

    def operations(request: Request) -> Response:
        params = request.query_params
        service = params.get("service", "")
        span_kind = _param(params, "spanKind", "span_kind")[0]
        found = store.operations(service, span_kind or None) if service else []
        return _json({"operations": [{"name": o.name, "spanKind": o.span_kind} for o in found]})

    def find_traces(request: Request) -> Response:
        try:
            query = parse_trace_query(request.query_params)
        except ParameterError as exc:
            return error_response(400, str(exc))
        document = store.find_traces_json(query)
        if document is None:
            return error_response(404, NOT_FOUND)
        return _json({"result": document})

    def get_trace(request: Request) -> Response:
        params = request.query_params
        try:
            trace_id = parse_trace_id(request.path_params["trace_id"])
            for canonical, alias in (("startTime", "start_time"), ("endTime", "end_time")):
                _time_param(params, canonical, alias)
            _bool_param(params, "rawTraces", "raw_traces")
        except ParameterError as exc:
            return error_response(400, str(exc))
        return _traces(store.trace(trace_id))

    return Starlette(
        routes=[
            Route("/api/v3/services", services, methods=["GET"]),
            Route("/api/v3/operations", operations, methods=["GET"]),
            Route("/api/v3/traces", find_traces, methods=["GET"]),
            Route("/api/v3/traces/{trace_id}", get_trace, methods=["GET"]),
            *extra_routes,
        ],
        exception_handlers={StoreError: _store_failed},
    )


def _store_failed(request: Request, exc: Exception) -> Response:
    # Jaeger answers a storage failure with a 500 in its envelope; the details go to the log.
    log.error("%s", exc)
    return error_response(500, "the trace store is unavailable")


def parse_trace_query(params: Any) -> TraceQuery:
    """A search's query parameters (a Mapping[str, str]) as a TraceQuery."""
    start_min, min_name = _time_param(params, "query.startTimeMin", "query.start_time_min")
    start_max, max_name = _time_param(params, "query.startTimeMax", "query.start_time_max")
    if start_min is None or start_max is None:
        raise ParameterError("query.startTimeMin and query.startTimeMax are required")
    if start_min >= start_max:
        raise ParameterError(f"{min_name} must be before {max_name}")
    limit = DEFAULT_SEARCH_LIMIT
    depth, name = _param(params, "query.searchDepth", "query.search_depth", "query.num_traces")
    if depth:
        try:
            limit = int(depth)
        except ValueError:
            raise ParameterError(
                f"malformed parameter {name}: {depth!r} is not an integer"
            ) from None
        if limit <= 0:
            raise ParameterError(f"malformed parameter {name}: must be greater than 0")
    _bool_param(params, "query.rawTraces", "query.raw_traces")  # checked; always raw here
    attributes: dict[str, str] = {}
    text, name = _param(params, "query.attributes")
    if text:
        try:
            attributes = json.loads(text)
        except ValueError as exc:
            raise ParameterError(f"malformed parameter {name}: {exc}") from None
        if not isinstance(attributes, dict) or not all(
            isinstance(v, str) for v in attributes.values()
        ):
            raise ParameterError(f"malformed parameter {name}: want a JSON object of strings")
    return TraceQuery(
        start_min_ns=start_min,
        start_max_ns=start_max,
        service=_param(params, "query.serviceName", "query.service_name")[0] or None,
        operation=_param(params, "query.operationName", "query.operation_name")[0] or None,
        duration_min_ns=_duration_param(params, "query.durationMin", "query.duration_min"),
        duration_max_ns=_duration_param(params, "query.durationMax", "query.duration_max"),
        attributes=attributes,
        limit=limit,
    )


def parse_trace_id(text: str) -> str:
    """A trace id as Jaeger takes it (1 to 32 hex digits; a 64-bit id is the low half) ->
    32 lowercase hex digits."""
    if not _HEX.fullmatch(text):
        raise ParameterError(
            f"malformed parameter trace_id: {text!r} is not a hex trace id of up to 32 digits"
        )
    return text.lower().rjust(32, "0")


def error_response(status: int, message: str) -> Response:
    """Jaeger's error envelope (its api_v3 GRPCGatewayError)."""
    return _json({"error": {"httpCode": status, "message": message}}, status)


def _traces(spans: list[Span]) -> Response:
    if not spans:
        return error_response(404, NOT_FOUND)
    return _json({"result": json_from_spans(spans)})


def _param(params: Any, *names: str) -> tuple[str, str]:
    """The first non-empty value among `names` and the name it came by ("", first name)."""
    for name in names:
        value = params.get(name, "")
        if value:
            return value, name
    return "", names[0]


def _time_param(params: Any, *names: str) -> tuple[int | None, str]:
    text, name = _param(params, *names)
    if not text:
        return None, name
    try:
        return parse_rfc3339_ns(text), name
    except TimeFormatError as exc:
        raise ParameterError(f"malformed parameter {name}: {exc}") from None


def _duration_param(params: Any, *names: str) -> int | None:
    text, name = _param(params, *names)
    if not text:
        return None
    try:
        value = parse_go_duration_ns(text)
    except TimeFormatError as exc:
        raise ParameterError(f"malformed parameter {name}: {exc}") from None
    return value or None  # Jaeger: a zero duration sets no limit


def _bool_param(params: Any, *names: str) -> bool:
    text, name = _param(params, *names)
    if not text:
        return False
    if text not in _BOOLS:
        raise ParameterError(f"malformed parameter {name}: {text!r} is not true or false")
    return _BOOLS[text]


def _json(document: Any, status: int = 200) -> Response:
    # msgspec: the search answers are megabytes, and the standard json took a third of their
    # time. Non-finite doubles never get here: json_value writes them as proto3 JSON's text.
    return Response(_ENCODE(document), status, media_type="application/json")


_ENCODE = msgspec.json.Encoder().encode
