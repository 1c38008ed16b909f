"""Reading traces over Jaeger's query API v3: a real Jaeger 2.x, or `netgap collect`.

The facts this relies on (../shared/jaeger/FACTS.md): snake_case query names work on every 2.x;
`query.start_time_min`/`max` are required; a search returns every matching trace's spans
merged into one document (so spans are grouped by trace id here); no match is a 404.
"""

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import httpx

from netgap.errors import NetgapError
from netgap.model import Span
from netgap.otlp_json import OtlpJsonError, spans_from_json
from netgap.timeparse import format_rfc3339_ns

DEFAULT_SOURCE = "http://127.0.0.1:16686"
# Traces asked for per search; a slice that returns this many may have been cut, so it is
# split in two and asked again.
PER_QUERY = 1000
MIN_SLICE_NS = 1_000_000  # 1 ms


class TraceSourceError(NetgapError):
    """The trace source could not be read; the message says which and why."""


class JaegerQuery:
    def __init__(
        self, base_url: str, *, timeout_s: float = 30.0, per_query: int = PER_QUERY
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.per_query = per_query
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s, trust_env=False)

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
            return response.json()
        except ValueError as exc:
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
        params = {
            "query.service_name": service,
            "query.start_time_min": format_rfc3339_ns(start_ns),
            "query.start_time_max": format_rfc3339_ns(end_ns),
            "query.num_traces": str(self.per_query),
            "query.raw_traces": "true",
        }
        grouped: dict[str, list[Span]] = defaultdict(list)
        for span in self._spans(self._get("/api/v3/traces", params), lean=lean):
            grouped[span.trace_id].append(span)
        return dict(grouped)

    def traces(
        self,
        service: str,
        start_ns: int,
        end_ns: int,
        *,
        slice_ns: int = 60_000_000_000,
        limit: int | None = None,
        lean: bool = False,
    ) -> Iterator[list[Span]]:
        """Every trace of `service` in the window, oldest slice first, each once.

        The window is read in slices so that memory stays bounded and no single search hits
        the store's cap; a slice that comes back full is split until it does not. `lean`: as
        in search."""
        seen: set[str] = set()
        sent = 0
        pending = [(start_ns, min(start_ns + slice_ns, end_ns))]
        while pending and (limit is None or sent < limit):
            lo, hi = pending.pop(0)
            found = self.search(service, lo, hi, lean=lean)
            if len(found) >= self.per_query and hi - lo > MIN_SLICE_NS:
                mid = lo + (hi - lo) // 2
                pending[:0] = [(lo, mid), (mid, hi)]
                continue
            for trace_id in sorted(found, key=lambda t: min(s.start_ns for s in found[t])):
                if trace_id in seen:
                    continue  # a trace that straddles two slices comes back in both
                seen.add(trace_id)
                yield found[trace_id]
                sent += 1
                if limit is not None and sent >= limit:
                    return
            if not pending and hi < end_ns:
                pending.append((hi, min(hi + slice_ns, end_ns)))

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
