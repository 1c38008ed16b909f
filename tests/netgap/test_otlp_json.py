"""OTLP/JSON reading: lenient where producers differ, a clear error where data is wrong."""

import pytest

from netgap.otlp_json import OtlpJsonError, json_from_spans, spans_from_json
from tests.netgap.traces import chain

SPAN = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "x", "kind": 2}


def doc(**span: object) -> dict[str, object]:
    return {"resourceSpans": [{"scopeSpans": [{"spans": [{**SPAN, **span}]}]}]}


def test_round_trip_is_exact() -> None:
    spans, _ = chain()
    assert spans_from_json(json_from_spans(spans)) == spans
    assert spans_from_json({"result": json_from_spans(spans)}) == spans


def test_snake_case_and_numbers_as_strings_are_read() -> None:
    document = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": "ab" * 16,
                                "span_id": "cd" * 8,
                                "start_time_unix_nano": "5",
                                "end_time_unix_nano": 9,
                            }
                        ]
                    }
                ]
            }
        ]
    }
    (span,) = spans_from_json(document)
    assert (span.start_ns, span.end_ns, span.duration_ns) == (5, 9, 4)


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ([], "expected a JSON object"),
        ({"resourceSpans": {}}, '"resourceSpans" must be a list'),
        ({"resourceSpans": [1]}, "resourceSpans[0] must be an object"),
        ({"resourceSpans": [{"scopeSpans": {}}]}, "resourceSpans[0].scopeSpans must be a list"),
        ({"resourceSpans": [{"resource": [], "scopeSpans": []}]}, "resource must be an object"),
        ({"resourceSpans": [{"scopeSpans": [{"spans": "x"}]}]}, ".spans must be a list"),
        (doc(traceId="xyz"), "traceId must be 32 hex digits"),
        (doc(spanId=7), "spanId must be a string"),
        (doc(startTimeUnixNano="soon"), "startTimeUnixNano must be an integer"),
        (doc(status=[]), "status must be an object"),
        (doc(events={}), "events must be a list"),
    ],
)
def test_malformed_documents_raise_naming_where(document: object, where: str) -> None:
    with pytest.raises(OtlpJsonError, match=None) as caught:
        spans_from_json(document)
    assert where in str(caught.value)
