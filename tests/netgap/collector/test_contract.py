"""The contract with Jaeger: every /api/v3 answer validates against Jaeger's own OpenAPI
document (jaeger-idl, as Jaeger v2.20 pins it), errors use its GRPCGatewayError envelope, the
parameters it lists are understood, and Jaeger's own example answers read back with
netgap.otlp_json.

The OpenAPI schemas leave objects open (no additionalProperties: false), so a misspelt field
would pass them; each schema is also checked closed, and Jaeger's examples must pass the closed
ones too, which shows the closing is fair.
"""

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from netgap.collector.server import Collector
from netgap.otlp_json import spans_from_json
from netgap.timeparse import format_rfc3339_ns
from tests.netgap.collector.spans import S, hex_id, sdk_trace, two_tier_trace
from tests.netgap.spans import new_trace_id

JAEGER = Path(__file__).resolve().parents[3] / ".." / "shared" / "jaeger"
OPENAPI = JAEGER / "api_v3" / "query_service.openapi.yaml"
PROTO = JAEGER / "api_v3" / "query_service.proto"
EXAMPLES = JAEGER / "examples" / "api_v3"

TRACES_DATA = "opentelemetry.proto.trace.v1.TracesData"
SERVICES = "jaeger.api_v3.GetServicesResponse"
OPERATIONS = "jaeger.api_v3.GetOperationsResponse"
RPC_STATUS = "google.rpc.Status"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    if not OPENAPI.is_file():
        pytest.skip(
            f"Jaeger's OpenAPI document: ../shared/jaeger not found beside the repo ({JAEGER})"
        )
    document: dict[str, Any] = yaml.safe_load(OPENAPI.read_text())
    return document


class Contract:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self._open: Registry[Any] = _registry(spec)
        self._closed: Registry[Any] = _registry(_closed(spec))

    def errors(self, schema_name: str, instance: Any, *, closed: bool = True) -> list[str]:
        registry = self._closed if closed else self._open
        schema = {"$ref": f"urn:jaeger-api-v3#/components/schemas/{schema_name}"}
        validator = OAS30Validator(schema, registry=registry, format_checker=oas30_format_checker)
        return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]

    def assert_valid(self, schema_name: str, instance: Any) -> None:
        assert self.errors(schema_name, instance, closed=False) == []
        assert self.errors(schema_name, instance) == []

    def parameters(self, path: str) -> set[str]:
        return {p["name"] for p in self.spec["paths"][path]["get"].get("parameters", [])}

    def response_schema(self, path: str, status: str) -> str:
        content = self.spec["paths"][path]["get"]["responses"][status]["content"]
        ref: str = content["application/json"]["schema"]["$ref"]
        return ref.rsplit("/", 1)[1]


def _registry(spec: dict[str, Any]) -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(spec, default_specification=DRAFT4)
    registry: Registry[Any] = Registry().with_resource("urn:jaeger-api-v3", resource)
    return registry


def _closed(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with every object schema that lists properties refusing any other."""
    closed = copy.deepcopy(spec)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(closed["components"])
    return closed


@pytest.fixture(scope="module")
def contract(spec: dict[str, Any]) -> Contract:
    return Contract(spec)


def gateway_error_schema() -> dict[str, Any]:
    """JSON Schema for api_v3.GRPCGatewayError, read from the proto (the OpenAPI document
    does not describe the envelope Jaeger's HTTP gateway actually sends)."""
    text = PROTO.read_text()
    details = re.search(r"message GRPCGatewayErrorDetails \{(.*?)\}", text, re.S)
    assert details is not None, "GRPCGatewayErrorDetails is not in the proto any more"
    json_types = {"int32": "integer", "string": "string"}
    fields = {
        name: {"type": json_types[kind]}
        for kind, name in re.findall(r"^\s*(\w+) (\w+) = \d+;", details.group(1), re.M)
    }
    assert "GRPCGatewayErrorDetails error = 1;" in text
    return {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["httpCode", "message"],
                "additionalProperties": False,
                "properties": fields,
            }
        },
    }


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, spec: dict[str, Any]
) -> Iterator[tuple[Collector, str]]:
    """A collector holding one SDK trace and one two-tier trace; and the SDK trace's id."""
    from netgap.collector.server import serving_in_thread
    from tests.netgap.collector.conftest import local_settings

    db = tmp_path_factory.mktemp("contract") / "traces.db"
    with serving_in_thread(Collector(local_settings(db))) as collector:
        spans = sdk_trace(service="apitier")
        assert OTLPSpanExporter(endpoint=collector.otlp_http_url).export(spans) == (
            SpanExportResult.SUCCESS
        )
        collector.store.add(two_tier_trace(start_ns=spans[0].start_time or 0))
        yield collector, hex_id(spans[0])


@pytest.fixture
def query(served: tuple[Collector, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0].query_url, timeout=10) as client:
        yield client


@pytest.fixture
def window(served: tuple[Collector, str]) -> dict[str, str]:
    """A search window around the served traces, which start when the fixture ran: not at
    import, which a long, shuffled run can leave more than ten minutes behind."""
    found = served[0].store.trace(served[1])
    assert found
    start_ns = min(span.start_ns for span in found)
    return {
        "query.startTimeMin": format_rfc3339_ns(start_ns - 600 * S),
        "query.startTimeMax": format_rfc3339_ns(start_ns + 600 * S),
    }


def test_services_answer(contract: Contract, query: httpx.Client) -> None:
    assert contract.response_schema("/api/v3/services", "200") == SERVICES
    contract.assert_valid(SERVICES, query.get("/api/v3/services").json())


def test_operations_answer(contract: Contract, query: httpx.Client) -> None:
    assert contract.response_schema("/api/v3/operations", "200") == OPERATIONS
    assert contract.parameters("/api/v3/operations") == {"service", "spanKind"}
    for params in ({"service": "apitier"}, {"service": "webtier", "spanKind": "client"}, {}):
        body = query.get("/api/v3/operations", params=params).json()
        contract.assert_valid(OPERATIONS, body)
    assert query.get("/api/v3/operations", params={"service": "apitier"}).json()["operations"]


def test_traces_answers(
    contract: Contract,
    query: httpx.Client,
    served: tuple[Collector, str],
    window: dict[str, str],
) -> None:
    assert contract.response_schema("/api/v3/traces", "200") == TRACES_DATA
    assert contract.response_schema("/api/v3/traces/{traceId}", "200") == TRACES_DATA
    search = query.get("/api/v3/traces", params={**window, "query.serviceName": "apitier"})
    by_id = query.get(f"/api/v3/traces/{served[1]}")
    for response in (search, by_id):
        assert response.status_code == 200
        body = response.json()
        # The gateway wraps TracesData in {"result": ...} (GRPCGatewayWrapper in the proto);
        # the OpenAPI document describes only what is inside.
        assert list(body) == ["result"]
        contract.assert_valid(TRACES_DATA, body["result"])
    assert len(spans_from_json(search.json())) == 3 + 4


def test_every_listed_parameter_is_understood(
    contract: Contract,
    query: httpx.Client,
    served: tuple[Collector, str],
    window: dict[str, str],
) -> None:
    listed = contract.parameters("/api/v3/traces")
    assert listed == {
        "query.serviceName",
        "query.operationName",
        "query.startTimeMin",
        "query.startTimeMax",
        "query.durationMin",
        "query.durationMax",
        "query.searchDepth",
        "query.rawTraces",
    }
    valid = {
        **window,
        "query.serviceName": "apitier",
        "query.operationName": "fast-query",
        "query.durationMin": "0.000001s",  # the OpenAPI's own duration pattern
        "query.durationMax": "60s",
        "query.searchDepth": "5",
        "query.rawTraces": "true",
    }
    assert set(valid) == listed
    found = query.get("/api/v3/traces", params=valid)
    assert found.status_code == 200
    assert {s.trace_id for s in spans_from_json(found.json())} >= {served[1]}
    for name in listed - {"query.serviceName", "query.operationName"}:
        refused = query.get("/api/v3/traces", params={**valid, name: "nonsense"})
        assert refused.status_code == 400, name
        assert name in refused.json()["error"]["message"]
    assert contract.parameters("/api/v3/traces/{traceId}") == {
        "traceId",
        "startTime",
        "endTime",
        "rawTraces",
    }
    ok = {
        "startTime": window["query.startTimeMin"],
        "endTime": window["query.startTimeMax"],
        "rawTraces": "false",
    }
    assert query.get(f"/api/v3/traces/{served[1]}", params=ok).status_code == 200
    for name in ok:
        refused = query.get(f"/api/v3/traces/{served[1]}", params={**ok, name: "nonsense"})
        assert refused.status_code == 400, name


def test_error_answers(contract: Contract, query: httpx.Client, window: dict[str, str]) -> None:
    # What the OpenAPI document offers for errors is google.rpc.Status, which is not what the
    # gateway sends; GRPCGatewayError, from the proto, is.
    for path in (
        "/api/v3/services",
        "/api/v3/operations",
        "/api/v3/traces",
        "/api/v3/traces/{traceId}",
    ):
        assert contract.response_schema(path, "default") == RPC_STATUS
    assert "jaeger.api_v3.GRPCGatewayError" not in contract.spec["components"]["schemas"]
    envelope = gateway_error_schema()
    errors = [
        query.get("/api/v3/traces", params={"query.serviceName": "apitier"}),  # no window
        query.get("/api/v3/traces", params={**window, "query.startTimeMin": "now"}),
        query.get("/api/v3/traces", params={**window, "query.serviceName": "nobody"}),
        query.get("/api/v3/traces/xyz"),
        query.get(f"/api/v3/traces/{new_trace_id()}"),
    ]
    assert [r.status_code for r in errors] == [400, 400, 404, 400, 404]
    for response in errors:
        body = response.json()
        assert OAS30Validator(envelope).is_valid(body), body
        assert body["error"]["httpCode"] == response.status_code
        assert contract.errors(RPC_STATUS, body, closed=False) == []  # it is open: anything goes


def test_jaegers_own_answers_pass_the_same_checks(contract: Contract) -> None:
    if not EXAMPLES.is_dir():
        pytest.skip(
            f"Jaeger's example answers: ../shared/jaeger not found beside the repo ({JAEGER})"
        )
    contract.assert_valid(SERVICES, json.loads((EXAMPLES / "GetServices.json").read_text()))
    contract.assert_valid(OPERATIONS, json.loads((EXAMPLES / "GetOperations.json").read_text()))
    for name in ("GetTrace.json", "FindTraces.json"):
        document = json.loads((EXAMPLES / name).read_text())
        contract.assert_valid(TRACES_DATA, document["result"])
        [span] = spans_from_json(document)
        assert (span.trace_id, span.span_id) == ("0" * 31 + "1", "0" * 15 + "2")
        assert (span.name, span.kind, span.status_code) == ("foobar", 2, 2)


def test_jaegers_otlp_json_fixture_goes_in_and_comes_back(
    contract: Contract, served: tuple[Collector, str]
) -> None:
    fixture = JAEGER / "examples" / "internal_api" / "otlp2jaeger-in.json"
    if not fixture.is_file():
        pytest.skip(
            f"Jaeger's OTLP/JSON fixture: ../shared/jaeger not found beside the repo ({JAEGER})"
        )
    collector = served[0]
    with httpx.Client(timeout=10) as client:
        response = client.post(
            collector.otlp_http_url or "",
            content=fixture.read_bytes(),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
        trace_id = "83a9efd15c1c98a977e0711cc93ee28b"
        back = client.get(f"{collector.query_url}/api/v3/traces/{trace_id}")
    contract.assert_valid(TRACES_DATA, back.json()["result"])
    sent = spans_from_json(json.loads(fixture.read_text()))
    assert len(sent) == 2  # the fixture holds the same span twice
    assert spans_from_json(back.json()) == sent[:1]
