"""Spans as the toolkit sees them, whatever they were read from (OTLP protobuf, OTLP JSON,
Jaeger's api_v3). Ids are lowercase hex; times are integer nanoseconds since the epoch."""

from dataclasses import dataclass, field
from typing import Any

# OTLP span kinds
UNSPECIFIED, INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = range(6)
KIND_NAMES = {
    UNSPECIFIED: "unspecified",
    INTERNAL: "internal",
    SERVER: "server",
    CLIENT: "client",
    PRODUCER: "producer",
    CONSUMER: "consumer",
}


@dataclass(frozen=True)
class Event:
    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    name: str
    kind: int
    start_ns: int
    end_ns: int
    service: str
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    status_code: int = 0  # 0 unset, 1 ok, 2 error
    status_message: str = ""
    scope_name: str = ""
    scope_version: str = ""

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def host(self) -> str | None:
        """The machine the span was recorded on, when the resource says (node, then host)."""
        value = self.resource.get("k8s.node.name") or self.resource.get("host.name")
        return str(value) if value else None
