"""The one factory for netgap.model.Span objects made to measure: every hand-built trace in the
tests (tests/netgap/traces.py, collector/spans.py, collector/odd_traces.py) goes through it.

Its defaults are the model's own (no attributes, no instrumentation scope, the service as the
resource), so a span holds only what its caller asked for."""

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from netgap.model import SERVER, Event, Span

NOW_NS = time.time_ns()
MS = 1_000_000


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def make_span(
    trace_id: str,
    *,
    name: str = "GET /",
    service: str = "apitier",
    kind: int = SERVER,
    start_ns: int = NOW_NS,
    end_ns: int | None = None,
    duration_ns: int | None = None,
    parent_span_id: str = "",
    span_id: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    events: Sequence[Event] = (),
    status_code: int = 0,
    resource: Mapping[str, Any] | None = None,
    scope: tuple[str, str] = ("", ""),
) -> Span:
    """A span from `start_ns` to `end_ns`, or for `duration_ns` (5 ms when neither is given);
    a random span id unless one is given; `scope` is the instrumentation scope's name and
    version."""
    if end_ns is None:
        end_ns = start_ns + (5 * MS if duration_ns is None else duration_ns)
    elif duration_ns is not None:
        raise TypeError("make_span: an end or a duration, not both")
    return Span(
        trace_id=trace_id,
        span_id=span_id or new_span_id(),
        parent_span_id=parent_span_id,
        name=name,
        kind=kind,
        start_ns=start_ns,
        end_ns=end_ns,
        service=service,
        attributes=dict(attributes or {}),
        resource=dict(resource) if resource is not None else {"service.name": service},
        events=tuple(events),
        status_code=status_code,
        scope_name=scope[0],
        scope_version=scope[1],
    )
