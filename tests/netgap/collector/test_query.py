"""Jaeger's query API v3 over HTTP: parameters, matching, errors, stable bodies."""

import datetime as dt
import json
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from netgap.collector.server import Collector
from netgap.collector.store import Store
from netgap.model import Span
from netgap.otlp_json import spans_from_json
from netgap.timeparse import format_rfc3339_ns
from tests.netgap.collector.conftest import StartCollector
from tests.netgap.collector.spans import ROUTE, TESTS_SCOPE, S, two_tier_trace
from tests.netgap.spans import NOW_NS, make_span, new_trace_id

WINDOW = {
    "query.start_time_min": format_rfc3339_ns(NOW_NS - 60 * S),
    "query.start_time_max": format_rfc3339_ns(NOW_NS + 60 * S),
}


def search(api: httpx.Client, **params: Any) -> httpx.Response:
    return api.get("/api/v3/traces", params={**WINDOW, **params})


def trace_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return list(dict.fromkeys(s.trace_id for s in spans_from_json(response.json())))


def assert_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == {"error": {"httpCode": status, "message": body["error"]["message"]}}
    for word in words:
        assert word in body["error"]["message"]


@pytest.fixture
def stored(collector: Collector) -> list[list[Span]]:
    """Three two-tier traces a second apart, the last the most recent."""
    traces = [two_tier_trace(start_ns=NOW_NS + i * S) for i in range(3)]
    for trace in traces:
        collector.store.add(trace)
    return traces


def test_services_and_operations(api: httpx.Client, stored: list[list[Span]]) -> None:
    assert api.get("/api/v3/services").json() == {"services": ["apitier", "webtier"]}
    ops = api.get("/api/v3/operations", params={"service": "webtier"}).json()
    assert ops == {
        "operations": [
            {"name": "GET", "spanKind": "client"},
            {"name": "GET /", "spanKind": "server"},
        ]
    }
    for kind_param in ("span_kind", "spanKind"):
        only = api.get("/api/v3/operations", params={"service": "apitier", kind_param: "server"})
        assert only.json() == {"operations": [{"name": "GET /", "spanKind": "server"}]}
    for params in ({"service": "nobody"}, {}, {"service": "webtier", "span_kind": "bogus"}):
        assert api.get("/api/v3/operations", params=params).json() == {"operations": []}


def test_an_empty_store(api: httpx.Client) -> None:
    assert api.get("/api/v3/services").json() == {"services": []}
    assert_error(search(api, **{"query.service_name": "webtier"}), 404, "No traces found")


def test_search_in_snake_case_and_camel_case_alike(
    api: httpx.Client, stored: list[list[Span]]
) -> None:
    snake = search(api, **{"query.service_name": "apitier", "query.operation_name": "fast-query"})
    camel = api.get(
        "/api/v3/traces",
        params={
            "query.serviceName": "apitier",
            "query.operationName": "fast-query",
            "query.startTimeMin": WINDOW["query.start_time_min"],
            "query.startTimeMax": WINDOW["query.start_time_max"],
        },
    )
    assert snake.status_code == 200
    assert snake.content == camel.content
    assert trace_ids(snake) == [t[0].trace_id for t in reversed(stored)]


def test_search_returns_every_span_of_each_matching_trace(
    api: httpx.Client, stored: list[list[Span]]
) -> None:
    response = search(api, **{"query.service_name": "apitier", "query.num_traces": "1"})
    spans = spans_from_json(response.json())
    assert {s.span_id for s in spans} == {s.span_id for s in stored[-1]}
    assert {s.service for s in spans} == {"webtier", "apitier"}
    assert set(response.json()) == {"result"}


def test_search_limits_and_orders(api: httpx.Client, stored: list[list[Span]]) -> None:
    newest_first = [t[0].trace_id for t in reversed(stored)]
    for name in ("query.num_traces", "query.searchDepth", "query.search_depth"):
        assert (
            trace_ids(search(api, **{"query.service_name": "webtier", name: "2"}))
            == (newest_first[:2])
        )
    assert trace_ids(search(api, **{"query.service_name": "webtier"})) == newest_first


def test_search_window_and_durations(api: httpx.Client, stored: list[list[Span]]) -> None:
    second = stored[1][0]
    exact = {
        "query.service_name": "webtier",
        "query.operation_name": "GET /",
        "query.start_time_min": format_rfc3339_ns(second.start_ns),  # inclusive
        "query.start_time_max": format_rfc3339_ns(second.start_ns + S),  # exclusive
    }
    assert trace_ids(api.get("/api/v3/traces", params=exact)) == [second.trace_id]
    # the same instant written with an offset
    offset = {**exact, "query.start_time_min": _plus_two_hours(second.start_ns)}
    assert trace_ids(api.get("/api/v3/traces", params=offset)) == [second.trace_id]
    webtier = {"query.service_name": "webtier", "query.operation_name": "GET /"}
    assert len(trace_ids(search(api, **webtier, **{"query.duration_min": "20ms"}))) == 3
    assert_error(search(api, **webtier, **{"query.duration_min": "20.001ms"}), 404)
    assert len(trace_ids(search(api, **webtier, **{"query.durationMax": "0.02s"}))) == 3
    assert_error(search(api, **webtier, **{"query.duration_max": "19999us"}), 404)
    assert_error(search(api, **webtier, **{"query.duration_min": "1h30m"}), 404)
    # a zero duration sets no limit, as in Jaeger
    assert len(trace_ids(search(api, **webtier, **{"query.duration_max": "0s"}))) == 3


def _plus_two_hours(ns: int) -> str:
    """The instant `ns` written at +02:00: the next day's date from 22:00 UTC on."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    local = dt.datetime.fromtimestamp(seconds, dt.timezone(dt.timedelta(hours=2)))
    return f"{local:%Y-%m-%dT%H:%M:%S}.{fraction:09d}+02:00"


def test_search_by_attributes(api: httpx.Client, collector: Collector) -> None:
    plain, failed = two_tier_trace(), two_tier_trace()
    failed[2] = make_span(
        failed[2].trace_id,
        span_id=failed[2].span_id,
        parent_span_id=failed[2].parent_span_id,
        start_ns=failed[2].start_ns,
        attributes={"http.response.status_code": 503},
        status_code=2,
        scope=TESTS_SCOPE,
    )
    collector.store.add(plain + failed)
    for attributes in ({"http.response.status_code": "503"}, {"error": "true"}):
        found = search(
            api, **{"query.service_name": "apitier", "query.attributes": json.dumps(attributes)}
        )
        assert trace_ids(found) == [failed[0].trace_id]
    for bad in ("{not json", '["a"]', '{"n": 5}'):
        assert_error(
            search(api, **{"query.service_name": "apitier", "query.attributes": bad}),
            400,
            "malformed parameter query.attributes",
        )


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"query.start_time_min": ""}, ["query.startTimeMin and query.startTimeMax are required"]),
        ({"query.start_time_max": None}, ["are required"]),
        ({"query.start_time_min": "yesterday"}, ["malformed parameter query.start_time_min"]),
        ({"query.startTimeMax": "2026-07-19T10:00:00"}, ["malformed parameter query.startTimeMax"]),
        ({"query.start_time_max": "2026-07-19T10:00:00 02:00"}, ["%2B"]),
        (
            {"query.start_time_max": WINDOW["query.start_time_min"]},
            ["query.start_time_min must be before query.start_time_max"],
        ),
        ({"query.num_traces": "many"}, ["malformed parameter query.num_traces"]),
        ({"query.searchDepth": "0"}, ["malformed parameter query.searchDepth"]),
        ({"query.duration_min": "5"}, ["malformed parameter query.duration_min"]),
        ({"query.durationMax": "1d"}, ["malformed parameter query.durationMax"]),
    ],
)
def test_search_parameter_errors(
    api: httpx.Client, params: dict[str, str | None], words: list[str]
) -> None:
    query: dict[str, str] = {**WINDOW, "query.service_name": "webtier"}
    for name, value in params.items():
        if value is None:
            query.pop(name)
        else:
            query[name] = value
    assert_error(api.get("/api/v3/traces", params=query), 400, *words)


def test_trace_by_id(api: httpx.Client, stored: list[list[Span]]) -> None:
    trace_id = stored[0][0].trace_id
    first = api.get(f"/api/v3/traces/{trace_id}")
    assert first.status_code == 200
    assert {s.span_id for s in spans_from_json(first.json())} == {s.span_id for s in stored[0]}
    # byte for byte the same every time, whatever the (checked, unneeded) parameters
    assert api.get(f"/api/v3/traces/{trace_id.upper()}").content == first.content
    with_params = {"start_time": WINDOW["query.start_time_min"], "raw_traces": "true"}
    assert api.get(f"/api/v3/traces/{trace_id}", params=with_params).content == first.content
    camel = {"startTime": WINDOW["query.start_time_min"], "rawTraces": "1"}
    assert api.get(f"/api/v3/traces/{trace_id}", params=camel).content == first.content


def test_trace_by_id_errors(api: httpx.Client, stored: list[list[Span]]) -> None:
    assert_error(api.get(f"/api/v3/traces/{new_trace_id()}"), 404, "No traces found")
    assert_error(api.get("/api/v3/traces/not-hex"), 400, "malformed parameter trace_id")
    assert_error(api.get(f"/api/v3/traces/{'a' * 33}"), 400, "malformed parameter trace_id")
    trace_id = stored[0][0].trace_id
    assert_error(
        api.get(f"/api/v3/traces/{trace_id}", params={"endTime": "soon"}),
        400,
        "malformed parameter endTime",
    )
    assert_error(
        api.get(f"/api/v3/traces/{trace_id}", params={"raw_traces": "maybe"}),
        400,
        "malformed parameter raw_traces",
    )


def test_a_64_bit_trace_id_is_the_low_half(api: httpx.Client, collector: Collector) -> None:
    short = "00f067aa0ba902b7"
    collector.store.add([make_span("0" * 16 + short, attributes=ROUTE, scope=TESTS_SCOPE)])
    assert api.get(f"/api/v3/traces/{short}").status_code == 200
    assert api.get(f"/api/v3/traces/{short.lstrip('0')}").status_code == 200


def test_a_nan_attribute_still_gives_valid_json(api: httpx.Client, collector: Collector) -> None:
    span = make_span(
        new_trace_id(),
        attributes={"ratio": float("nan"), "big": float("inf")},
        scope=TESTS_SCOPE,
    )
    collector.store.add([span])
    response = api.get(f"/api/v3/traces/{span.trace_id}")
    attributes = json.loads(response.text)["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][
        0
    ]["attributes"]
    assert {"key": "ratio", "value": {"doubleValue": "NaN"}} in attributes
    assert {"key": "big", "value": {"doubleValue": "Infinity"}} in attributes


def test_extra_routes_come_after_the_api(
    start_collector: StartCollector, http: httpx.Client
) -> None:
    def routes(store: Store) -> list[Route]:
        def hello(request: Request) -> Response:
            return PlainTextResponse(f"{len(store.services())} services")

        return [Route("/", hello), Route("/api/v3/services", hello)]

    with start_collector(extra_query_routes=routes) as collector:
        collector.store.add(two_tier_trace())
        assert http.get(f"{collector.query_url}/").text == "2 services"
        # the API's own route wins over a later one with the same path
        assert http.get(f"{collector.query_url}/api/v3/services").json() == {
            "services": ["apitier", "webtier"]
        }


def test_a_failing_store_is_an_error_not_a_traceback(
    start_collector: StartCollector, http: httpx.Client
) -> None:
    with start_collector() as collector:
        collector.store.close()  # as if the disk had gone
        assert_error(http.get(f"{collector.query_url}/api/v3/services"), 500, "unavailable")
        refused = http.post(
            collector.otlp_http_url or "",
            content=b"{}",
            headers={"content-type": "application/json"},
        )
        assert refused.status_code == 200  # an empty export needs no store
        refused = http.post(
            collector.otlp_http_url or "",
            content=json.dumps(
                {
                    "resourceSpans": [
                        {
                            "scopeSpans": [
                                {
                                    "spans": [
                                        {"traceId": new_trace_id(), "spanId": "00f067aa0ba902b7"}
                                    ]
                                }
                            ]
                        }
                    ]
                }
            ).encode(),
            headers={"content-type": "application/json"},
        )
        assert refused.status_code == 503
        assert refused.json() == {"code": 14, "message": "the trace store is unavailable"}
