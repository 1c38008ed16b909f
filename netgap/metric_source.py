"""Where `netgap breakdown` reads the web tier's `netgap_remote_seconds` (--source with a scheme):

  metrics+http://HOST:PORT/metrics   a tier's own /metrics: every call since the tier started
  prometheus+http://HOST:9090        a Prometheus-compatible query API: the calls that ended in
                                     the window (increase() over it, as PromQL counts them)

The metric counts every call, sampled or not, so beside the traces it says when they disagree:
a trace backend that misses calls (spans dropped, sampling) or a metric from somewhere else.
"""

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from netgap.errors import NetgapError, UsageError
from netgap.promtext import REMOTE, Histogram, histograms_by

METRICS_SCHEME = "metrics+"
PROMETHEUS_SCHEME = "prometheus+"
SCHEMES = (METRICS_SCHEME, PROMETHEUS_SCHEME)
TIMEOUT_S = 10.0
# The trace-based p50 and the metric's disagree when the first lies outside the metric's p50
# bucket widened by this factor and this margin either way. Wide on purpose: the two differ a
# little by construction (the metric subtracts the API's Server-Timing, sent with the headers;
# the traces its SERVER span, which ends after the body), by more on a busy machine, and what
# is worth saying is the large gap of calls missing from the traces.
SLACK_FACTOR = 2.0
SLACK_NS = 2_000_000


class MetricSourceError(NetgapError):
    """The metric source could not be read; the message says which and why."""


class MetricSource(Protocol):
    url: str
    scope: str  # what the numbers cover, in words

    def remote(self, start_ns: int, end_ns: int) -> dict[str, Histogram]:
        """netgap_remote_seconds by edge."""
        ...


def is_metric_source(url: str) -> bool:
    return url.startswith(SCHEMES)


def open_metric_source(url: str) -> MetricSource:
    for scheme, kind in ((METRICS_SCHEME, TierMetrics), (PROMETHEUS_SCHEME, PrometheusApi)):
        if url.startswith(scheme):
            target = url.removeprefix(scheme)
            if not target.startswith(("http://", "https://")):
                raise UsageError(f"--source {url}: after {scheme} comes an http(s) URL")
            return kind(target)
    raise UsageError(f"--source {url}: not a metrics source ({', '.join(SCHEMES)})")


@dataclass
class TierMetrics:
    url: str
    scope: str = "every call since the web tier started"

    def remote(self, start_ns: int, end_ns: int) -> dict[str, Histogram]:
        text = _get(self.url, {}).text
        return histograms_by(text, REMOTE, "edge")


@dataclass
class PrometheusApi:
    url: str
    scope: str = "the calls that ended in the window"

    def remote(self, start_ns: int, end_ns: int) -> dict[str, Histogram]:
        window = f"{max(1, round((end_ns - start_ns) / 1e6))}ms"
        at = f"{end_ns / 1e9:.3f}"
        buckets = self._vector(f"sum by (le, edge) (increase({REMOTE}_bucket[{window}]))", at)
        counts = self._vector(f"sum by (edge) (increase({REMOTE}_count[{window}]))", at)
        sums = self._vector(f"sum by (edge) (increase({REMOTE}_sum[{window}]))", at)
        by_edge: dict[str, dict[float, float]] = {}
        for labels, value in buckets:
            by_edge.setdefault(labels.get("edge", ""), {})[float(labels["le"])] = value
        count = {labels.get("edge", ""): value for labels, value in counts}
        total = {labels.get("edge", ""): value for labels, value in sums}
        return {
            edge: Histogram(tuple(sorted(les.items())), count.get(edge, 0.0), total.get(edge, 0.0))
            for edge, les in by_edge.items()
        }

    def _vector(self, query: str, at: str) -> list[tuple[dict[str, str], float]]:
        body = _get(f"{self.url.rstrip('/')}/api/v1/query", {"query": query, "time": at}).json()
        data = body.get("data") if isinstance(body, dict) else None
        if body.get("status") != "success" or not isinstance(data, dict):
            raise MetricSourceError(f"{self.url}: the query API answered {str(body)[:200]}")
        if data.get("resultType") != "vector":
            raise MetricSourceError(f"{self.url}: expected a vector, got {data.get('resultType')}")
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]


def _get(url: str, params: dict[str, str]) -> httpx.Response:
    try:
        response = httpx.get(url, params=params, timeout=TIMEOUT_S, trust_env=False)
    except httpx.HTTPError as exc:
        raise MetricSourceError(
            f"cannot reach the metric source at {url} ({type(exc).__name__})"
        ) from exc
    if response.status_code != 200:
        raise MetricSourceError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return response


def metric_report(source: MetricSource, start_ns: int, end_ns: int) -> dict[str, Any]:
    """The report's `metric` part: per edge, calls and the remote p50/p99/mean in ns."""
    edges = {}
    for edge, remote in sorted(source.remote(start_ns, end_ns).items()):
        stats = {"p50": remote.quantile(0.5), "p99": remote.quantile(0.99), "mean": remote.mean()}
        bounds = remote.bucket_of(0.5)
        edges[edge] = {
            "calls": remote.count,
            **{k: None if v is None else v * 1e9 for k, v in stats.items()},
            "p50_bucket_ns": None if bounds is None else [b * 1e9 for b in bounds],
        }
    return {"source": source.url, "scope": source.scope, "edges": edges}


def agreement(metric: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """Where the metric and the traces disagree, in words (empty: they agree)."""
    found = []
    for edge, numbers in metric["edges"].items():
        traced = summary["components"].get(f"{edge} remote")
        calls = summary["edges"].get(edge, {}).get("calls", 0)
        if traced is None or numbers["p50"] is None:
            if numbers["calls"] and not calls:
                found.append(
                    f"{edge}: the metric has {numbers['calls']:.0f} calls, the traces none"
                )
            continue
        low, high = numbers["p50_bucket_ns"]
        if not low / SLACK_FACTOR - SLACK_NS <= traced["p50"] <= high * SLACK_FACTOR + SLACK_NS:
            found.append(
                f"{edge}: remote p50 {traced['p50'] / 1e6:.3f} ms in the traces, "
                f"{numbers['p50'] / 1e6:.3f} ms in the metric (its bucket "
                f"{low / 1e6:.3f}..{high / 1e6:.3f} ms): the traces are not all the calls "
                "(sampling, or spans dropped: see netgap_spans_dropped_total), or the two "
                "cover different times"
            )
    return found
