"""Reading traces over Jaeger's query API v3: a real Jaeger 2.x, or `netgap collect`.

One of netgap.analysis's TraceSources. What this relies on of Jaeger 2.x's api_v3, which
`netgap collect` answers alike (tests/netgap/collector/test_contract.py holds its answers to
Jaeger's published API description): snake_case query names work on every 2.x;
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
import msgspec

from netgap.breakdown import TraceBreakdown
from netgap.collector.chains import Chain
from netgap.errors import NetgapError
from netgap.model import Span
from netgap.otlp_fast import Found, breakdowns_from_bytes
from netgap.otlp_json import OtlpJsonError, spans_from_json
from netgap.timeparse import format_rfc3339_ns

DEFAULT_SOURCE = "http://127.0.0.1:16686"
# Traces asked for per search; a slice that returns this many may have been cut, so it is
# split in two and asked again.
PER_QUERY = 1000
MIN_SLICE_NS = 1_000_000  # 1 ms
# The first slices: small, so that even busy traffic (1,000 traces/s) does not fill one; the
# next ones are sized from what they held (see _sliced).
SLICE_NS = 1_000_000_000
MAX_GROWTH = 4
SPLIT = 4
WORKERS = 3  # searches in flight at once
_DECODE = msgspec.json.Decoder().decode
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

    @property
    def location(self) -> str:
        return self.base_url

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "JaegerQuery":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any | None:
        """The JSON body, or None for Jaeger's 404 ("nothing found")."""
        body = self._get_bytes(path, params)
        if body is None:
            return None
        try:
            return _DECODE(body)
        except msgspec.DecodeError as exc:
            raise TraceSourceError(f"{self.base_url}{path} did not answer JSON") from exc

    def _get_bytes(self, path: str, params: dict[str, str] | None = None) -> bytes | None:
        """The body of a 200, or None for Jaeger's 404 ("nothing found")."""
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
        return response.content

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

    def search_breakdowns(self, service: str, start_ns: int, end_ns: int) -> dict[str, Found]:
        """As search, each trace's start (its earliest span's) and breakdown
        (otlp_fast.breakdowns_from_bytes: only what a breakdown reads is decoded, and no span
        is made for a trace of the common shape)."""
        body = self._get_bytes("/api/v3/traces", self._search_params(service, start_ns, end_ns))
        try:
            return {} if body is None else breakdowns_from_bytes(body)
        except OtlpJsonError as exc:
            raise TraceSourceError(f"{self.base_url} sent traces we cannot read: {exc}") from exc

    def _search(self, service: str, start_ns: int, end_ns: int) -> Any | None:
        return self._get("/api/v3/traces", self._search_params(service, start_ns, end_ns))

    def _search_params(self, service: str, start_ns: int, end_ns: int) -> dict[str, str]:
        return {
            "query.service_name": service,
            "query.start_time_min": format_rfc3339_ns(start_ns),
            "query.start_time_max": format_rfc3339_ns(end_ns),
            "query.num_traces": str(self.per_query),
            "query.raw_traces": "true",
        }

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
        # in each slice, by the traces' start, as the store orders them
        ordered = (b for found in slices for _, b in sorted(found.values(), key=_first))
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
        back full is split and asked again, and later slices are sized from the density seen
        so far, so that few are. `workers` slices are asked at once: while one
        answer is decoded here, the next ones are being searched and encoded at the source,
        on another core."""
        seen: set[str] = set()
        size = slice_ns
        next_lo = start_ns
        # How many slices to have in flight: one while the size is a guess (at the start, or
        # after empty slices), `workers` once the last answer said how dense the traces are.
        in_flight = 1
        pending: deque[tuple[int, int, Future[dict[str, T]]]] = deque()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="api-v3") as pool:

            def ask(lo: int, hi: int) -> tuple[int, int, Future[dict[str, T]]]:
                return lo, hi, pool.submit(read, service, lo, hi)

            try:
                while pending or next_lo < end_ns:
                    while len(pending) < in_flight and next_lo < end_ns:
                        hi = min(next_lo + size, end_ns)
                        pending.append(ask(next_lo, hi))
                        next_lo = hi
                    lo, hi, future = pending.popleft()
                    found = future.result()
                    if len(found) >= self.per_query and hi - lo > MIN_SLICE_NS:
                        # cut: asked again in quarters (a full answer is work thrown away,
                        # so halves that come back full again cost more), and slices to come
                        # no larger than those
                        size = max(MIN_SLICE_NS, min(size, (hi - lo) // SPLIT))
                        step = max(MIN_SLICE_NS, (hi - lo) // SPLIT)
                        cuts = [*list(range(lo, hi, step))[:SPLIT], hi]
                        pending.extendleft(
                            ask(a, b) for a, b in reversed(list(itertools.pairwise(cuts)))
                        )
                        continue
                    # aim at half the cap per slice; grow slowly (an empty slice says little
                    # of the next ones, and a slice that comes back full is work wasted)
                    aim = (hi - lo) * self.per_query // (2 * len(found)) if found else 2 * size
                    size = max(MIN_SLICE_NS, min(aim, (hi - lo) * MAX_GROWTH))
                    in_flight = self.workers if found else 1
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


def _first(found: Found) -> int:
    return found[0]
