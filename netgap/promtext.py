"""Prometheus histograms read from a text exposition (a tier's GET /metrics), as PromQL reads
them: a window is the difference of two scrapes, and a quantile is histogram_quantile's linear
interpolation inside the bucket the rank falls in.

The tiers' `netgap_remote_seconds` is the untraced time of every call, sampled or not; reading it
here lets the scenario report and the breakdown put it beside the trace-based numbers.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from netgap.errors import NetgapError

REMOTE = "netgap_remote_seconds"


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts by upper bound (the last is +Inf), the count and the sum."""

    buckets: tuple[tuple[float, float], ...] = ()
    count: float = 0.0
    sum: float = 0.0

    def since(self, earlier: "Histogram") -> "Histogram":
        """What was observed between `earlier` and this scrape (both of one process)."""
        if not earlier.buckets:
            return self
        before = dict(earlier.buckets)
        return Histogram(
            tuple((le, n - before.get(le, 0.0)) for le, n in self.buckets),
            self.count - earlier.count,
            self.sum - earlier.sum,
        )

    def quantile(self, q: float) -> float | None:
        """histogram_quantile(q): None with no observations; the highest finite bound when
        the rank is in the +Inf bucket, as Prometheus answers."""
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(le):
                    return lower
                if cumulative == below:
                    return le
                return lower + (le - lower) * (rank - below) / (cumulative - below)
            lower, below = le, cumulative
        return lower

    def bucket_of(self, q: float) -> tuple[float, float] | None:
        """The bounds (lower, upper] of the bucket the q-quantile falls in: how far the
        interpolated quantile may be from the true one."""
        if self.count <= 0 or not self.buckets:
            return None
        rank, lower = q * self.count, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                return lower, le
            lower = le
        return lower, math.inf

    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None


def histogram(text: str, name: str, labels: Mapping[str, str] | None = None) -> Histogram:
    """The series of `name` whose labels include `labels`, summed (as `sum by (le)` does);
    an empty Histogram if there is none."""
    return histograms_by(text, name, None, labels).get("", Histogram())


def histograms_by(
    text: str, name: str, label: str | None, labels: Mapping[str, str] | None = None
) -> dict[str, Histogram]:
    """`name`'s series whose labels include `labels`, summed by the value of `label` (as
    `sum by (le, label)` does; None: all together, under "")."""
    wanted = dict(labels or {})
    parts: dict[str, tuple[dict[float, float], list[float]]] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise NetgapError(f"not a Prometheus text exposition: {exc}") from exc
    for family in families:
        for sample in family.samples:
            if not sample.name.startswith(name) or not wanted.items() <= sample.labels.items():
                continue
            key = "" if label is None else sample.labels.get(label, "")
            buckets, totals = parts.setdefault(key, ({}, [0.0, 0.0]))
            if sample.name == f"{name}_bucket":
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
            elif sample.name == f"{name}_count":
                totals[0] += sample.value
            elif sample.name == f"{name}_sum":
                totals[1] += sample.value
    return {
        key: Histogram(tuple(sorted(buckets.items())), totals[0], totals[1])
        for key, (buckets, totals) in parts.items()
    }


async def scrape(client: httpx.AsyncClient, url: str) -> str:
    """One exposition; NetgapError naming the URL when there is none."""
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        raise NetgapError(f"cannot scrape {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise NetgapError(f"cannot scrape {url}: HTTP {response.status_code}")
    return response.text
