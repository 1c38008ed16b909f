"""What the trace store takes and gives (netgap.collector.store.Store): a search, the summaries
and listings it answers with, and its errors."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from netgap.breakdown import TraceBreakdown
from netgap.collector.chains import Chain
from netgap.errors import NetgapError

DEFAULT_SEARCH_LIMIT = 100  # Jaeger's default query.searchDepth (v2.20)


class StoreError(NetgapError):
    """The store cannot be opened or used (not ours, newer schema, disk full, closed, ...)."""


class UnstorableSpanError(ValueError):
    """A span with a value the store cannot hold (an integer past 64 bits, text that is not
    Unicode, an id that is not hex); nothing of its request was stored."""


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    root_service: str
    root_name: str
    start_ns: int
    end_ns: int
    span_count: int

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True)
class Listings:
    """What Store.listings read: each trace's summary and breakdown (None: no spans to
    break down), the services stored, and how many spans."""

    traces: list[tuple[TraceSummary, TraceBreakdown | Chain | None]]
    services: list[str]
    span_count: int


@dataclass(frozen=True)
class Operation:
    name: str
    span_kind: str  # Jaeger's name: "server", "client", "internal", ...


@dataclass(frozen=True)
class TraceQuery:
    """A trace matches when ONE of its spans matches every field given; times in ns."""

    start_min_ns: int  # inclusive
    start_max_ns: int  # exclusive
    service: str | None = None
    operation: str | None = None
    duration_min_ns: int | None = None
    duration_max_ns: int | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    limit: int = DEFAULT_SEARCH_LIMIT
