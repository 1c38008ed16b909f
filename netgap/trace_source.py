"""Reading traces over Jaeger's query API v3: a real Jaeger 2.x, or `netgap collect`.

The facts this relies on (../shared/jaeger/FACTS.md): snake_case query names work on every 2.x;
`query.start_time_min`/`max` are required; a search returns every matching trace's spans
merged into one document (so spans are grouped by trace id here); no match is a 404.
"""

import functools
import itertools
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import orjson

from netgap.breakdown import Chain, TraceBreakdown
from netgap.errors import NetgapError
from netgap.model import Span
from netgap.otlp_json import OtlpJsonError, breakdowns_from_json, spans_from_json
from netgap.timeparse import format_rfc3339_ns

DEFAULT_SOURCE = "http://127.0.0.1:16686"
# Traces asked for per search; a slice that returns this many may have been cut, so it is
# split in two and asked again.
PER_QUERY = 1000
MIN_SLICE_NS = 1_000_000  # 1 ms
SLICE_NS = 10_000_000_000  # the first slice; the next ones are sized from what it held
WORKERS = 3  # searches in flight at once
T = TypeVar("T")


class TraceSourceError(NetgapError):
    """The trace source could not be read; the message says which and why."""


class JaegerQuery:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        per_query: int = PER_QUERY,
        workers: int = WORKERS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.per_query = per_query
        self.workers = workers
        # one connection per worker, kept
        limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
        self._client = httpx.Client(
            base_url=self.base_url, timeout=timeout_s, trust_env=False, limits=limits
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "JaegerQuery":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any | None:
        """The JSON body, or None for Jaeger's 404 ("nothing found")."""
        try:
            response = self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise TraceSourceError(
                f"cannot reach the trace source at {self.base_url} ({type(exc).__name__})",
                hint="start `netgap collect` or Jaeger, or point --source at the query port",
            ) from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise TraceSourceError(
                f"{self.base_url}{path} answered {response.status_code}: {_error_message(response)}"
            )
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise TraceSourceError(f"{self.base_url}{path} did not answer JSON") from exc

    def services(self) -> list[str]:
        body = self._get("/api/v3/services")
        return [str(s) for s in (body or {}).get("services", []) or []]

    def trace(self, trace_id: str) -> list[Span]:
        """The trace's spans; empty when the source does not have it (yet)."""
        body = self._get(f"/api/v3/traces/{trace_id}", {"raw_traces": "true"})
        return self._spans(body)

    def search(
        self, service: str, start_ns: int, end_ns: int, *, lean: bool = False
    ) -> dict[str, list[Span]]:
        """Traces with a span of `service` starting in [start_ns, end_ns), by trace id.
        `lean`: only the attributes and events of CLIENT spans are decoded, all a breakdown
        reads (otlp_json.spans_from_json)."""
        grouped: dict[str, list[Span]] = defaultdict(list)
        for span in self._spans(self._search(service, start_ns, end_ns), lean=lean):
            grouped[span.trace_id].append(span)
        return dict(grouped)

    def search_breakdowns(
        self, service: str, start_ns: int, end_ns: int
    ) -> dict[str, TraceBreakdown | Chain]:
        """As search, each trace broken down (otlp_json.breakdowns_from_json: no span is
        decoded for a trace of the common shape)."""
        body = self._search(service, start_ns, end_ns)
        try:
            return {} if body is None else breakdowns_from_json(body)
        except OtlpJsonError as exc:
            raise TraceSourceError(f"{self.base_url} sent traces we cannot read: {exc}") from exc

    def _search(self, service: str, start_ns: int, end_ns: int) -> Any | None:
        return self._get(
            "/api/v3/traces",
            {
                "query.service_name": service,
                "query.start_time_min": format_rfc3339_ns(start_ns),
                "query.start_time_max": format_rfc3339_ns(end_ns),
                "query.num_traces": str(self.per_query),
                "query.raw_traces": "true",
            },
        )

    def traces(
        self,
        service: str,
        start_ns: int,
        end_ns: int,
        *,
        slice_ns: int = SLICE_NS,
        limit: int | None = None,
        lean: bool = False,
    ) -> Iterator[list[Span]]:
        """Every trace of `service` in the window, oldest slice first, each once. `lean`: as
        in search."""
        read = functools.partial(self.search, lean=lean)
        slices = self._sliced(read, service, start_ns, end_ns, slice_ns)
        ordered = (
            found[trace_id]
            for found in slices
            for trace_id in sorted(found, key=lambda t: min(s.start_ns for s in found[t]))
        )
        yield from itertools.islice(ordered, limit)

    def breakdowns(
        self,
        service: str,
        start_ns: int,
        end_ns: int,
        *,
        slice_ns: int = SLICE_NS,
        limit: int | None = None,
    ) -> Iterator[TraceBreakdown | Chain]:
        """The breakdown of each trace traces() would give, in its order."""
        slices = self._sliced(self.search_breakdowns, service, start_ns, end_ns, slice_ns)
        ordered = (b for found in slices for b in sorted(found.values(), key=_start))
        yield from itertools.islice(ordered, limit)

    def _sliced(
        self,
        read: "Callable[[str, int, int], dict[str, T]]",
        service: str,
        start_ns: int,
        end_ns: int,
        slice_ns: int,
    ) -> Iterator[dict[str, T]]:
        """`read` over the window in time slices, the oldest first, each trace once.

        Slices keep memory bounded and each search under the store's cap; a slice that comes
        back full is split in two and asked again, and later slices are sized from the
        density seen so far, so that few are. `workers` slices are asked at once: while one
        answer is decoded here, the next ones are being searched and encoded at the source,
        on another core."""
        seen: set[str] = set()
        size = slice_ns
        next_lo = start_ns
        pending: deque[tuple[int, int, Future[dict[str, T]]]] = deque()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="api-v3") as pool:

            def ask(lo: int, hi: int) -> tuple[int, int, Future[dict[str, T]]]:
                return lo, hi, pool.submit(read, service, lo, hi)

            try:
                while pending or next_lo < end_ns:
                    while len(pending) < self.workers and next_lo < end_ns:
                        hi = min(next_lo + size, end_ns)
                        pending.append(ask(next_lo, hi))
                        next_lo = hi
                    lo, hi, future = pending.popleft()
                    found = future.result()
                    if len(found) >= self.per_query and hi - lo > MIN_SLICE_NS:
                        mid = lo + (hi - lo) // 2
                        pending.extendleft([ask(mid, hi), ask(lo, mid)])
                        size = max(MIN_SLICE_NS, min(size, (hi - lo) // 4))
                        continue
                    if found:  # aim at half the cap per slice
                        size = max(MIN_SLICE_NS, (hi - lo) * self.per_query // (2 * len(found)))
                    # a trace that straddles two slices comes back in both
                    fresh = {t: found[t] for t in found if t not in seen}
                    seen.update(fresh)
                    yield fresh
            finally:
                for _, _, future in pending:
                    future.cancel()

    def _spans(self, body: Any | None, *, lean: bool = False) -> list[Span]:
        if body is None:
            return []
        try:
            return spans_from_json(body, lean=lean)
        except OtlpJsonError as exc:
            raise TraceSourceError(f"{self.base_url} sent traces we cannot read: {exc}") from exc


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def _start(breakdown: TraceBreakdown | Chain) -> int:
    return breakdown.start_ns
