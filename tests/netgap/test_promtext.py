"""netgap.promtext reads histograms as PromQL does: from real expositions (prometheus_client
writing them), a window as the difference of two scrapes, histogram_quantile's interpolation."""

import math

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from netgap.errors import NetgapError
from netgap.promtext import histogram

BUCKETS = (0.001, 0.002, 0.005, 0.01)


def exposition(*observations: tuple[str, float]) -> str:
    registry = CollectorRegistry()
    metric = Histogram("netgap_remote_seconds", "", ["edge"], buckets=BUCKETS, registry=registry)
    for edge, seconds in observations:
        metric.labels(edge).observe(seconds)
    return generate_latest(registry).decode()


def test_the_quantile_interpolates_within_the_bucket_as_histogram_quantile_does() -> None:
    # 10 observations: 4 in (0, 1 ms], 6 in (2 ms, 5 ms]
    text = exposition(*[("a->b", 0.0005)] * 4, *[("a->b", 0.003)] * 6)
    found = histogram(text, "netgap_remote_seconds")
    assert found.count == 10
    assert found.sum == pytest.approx(0.02)
    assert found.quantile(0.2) == pytest.approx(0.0005)  # rank 2 of 4 in (0, 1 ms]
    assert found.quantile(0.5) == pytest.approx(0.002 + 0.003 * 1 / 6)  # rank 5: 1 of 6 in
    assert found.quantile(1.0) == pytest.approx(0.005)


def test_a_rank_in_the_inf_bucket_answers_the_highest_finite_bound() -> None:
    found = histogram(exposition(("a->b", 20.0)), "netgap_remote_seconds")
    assert found.quantile(0.5) == 0.01
    assert math.isinf(found.buckets[-1][0])


def test_labels_select_and_sum_series() -> None:
    text = exposition(("a->b", 0.0005), ("c->d", 0.003), ("c->d", 0.004))
    assert histogram(text, "netgap_remote_seconds", {"edge": "c->d"}).count == 2
    assert histogram(text, "netgap_remote_seconds").count == 3
    assert histogram(text, "netgap_remote_seconds", {"edge": "x"}).quantile(0.5) is None


def test_a_window_is_the_difference_of_two_scrapes() -> None:
    before = histogram(exposition(("a->b", 0.0005)), "netgap_remote_seconds")
    after = histogram(
        exposition(("a->b", 0.0005), ("a->b", 0.004), ("a->b", 0.004)), "netgap_remote_seconds"
    )
    window = after.since(before)
    assert window.count == 2
    assert window.sum == pytest.approx(0.008)
    assert window.quantile(0.5) == pytest.approx(0.002 + 0.003 * 0.5)
    assert window.mean() == pytest.approx(0.004)


def test_not_an_exposition_is_a_netgap_error() -> None:
    with pytest.raises(NetgapError, match="not a Prometheus text exposition"):
        histogram("<html>oops</html>\n", "netgap_remote_seconds")
