"""The recent-traces page as a search, over a real store of traces with known answers:
filters, sorting by every column, the scatter plot's marks, one read of the store, and bad
parameters answered with a 400 naming them."""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from netgap.collector.store import Store
from netgap.tracepage import index_page
from netgap.tracesearch import COLUMNS
from tests.netgap.traces import BASE, MS, chain

NOW = BASE + 120_000 * MS  # two minutes after the first trace


class CountingStore(Store):
    """A real store that counts its read transactions."""

    reads = 0

    @contextmanager
    def _reading(self) -> Iterator[object]:  # type: ignore[override]
        type(self).reads += 1
        with super()._reading() as cur:
            yield cur


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[CountingStore, dict[str, dict[str, int]]]]:
    """40 traces one second apart, the middle ten through a slow network; their answers."""
    answers: dict[str, dict[str, int]] = {}
    opened = CountingStore(tmp_path / "traces.db")
    with opened:
        for i in range(40):
            slow = 15 <= i < 25
            legs = (400 * MS, 600 * MS) if slow else (100_000 + i * 1000, 200_000)
            spans, answer = chain(
                start=BASE + i * 1000 * MS, web_api_remote=legs, with_db=i % 2 == 0
            )
            opened.add(spans)
            answers[spans[0].trace_id] = {
                "start": spans[0].start_ns,
                "total": answer["total"],
                "remote": sum(v for k, v in answer.items() if k.endswith(" remote")),
                "spans": len(spans),
            }
        yield opened, answers


def rows(html: str) -> list[str]:
    """The listed trace ids, in the table's order."""
    return re.findall(r'<tr data-trace="([0-9a-f]{32})">', html)


def dots(html: str) -> list[str]:
    return re.findall(r'<circle class="dot" data-trace="([0-9a-f]{32})"', html)


def page(store: Store, **params: str) -> str:
    status, html = index_page(store, params, NOW)
    assert status == 200, html
    return html


def test_filters_select_exactly_the_traces_that_pass_them(
    store: tuple[CountingStore, dict[str, dict[str, int]]],
) -> None:
    opened, answers = store
    everything = page(opened)
    assert sorted(rows(everything)) == sorted(answers)
    slow = {t for t, a in answers.items() if a["remote"] >= 5 * MS}
    assert len(slow) == 10
    assert set(rows(page(opened, min_remote="5ms"))) == slow
    big = {t for t, a in answers.items() if a["total"] >= 1000 * MS}
    assert set(rows(page(opened, min_total="1s"))) == big == slow
    with_db = {t for t, a in answers.items() if a["spans"] > 5}
    assert set(rows(page(opened, service="db"))) == with_db
    recent = {t for t, a in answers.items() if a["start"] >= NOW - 100_000 * MS}
    assert set(rows(page(opened, lookback="100s"))) == recent
    assert rows(page(opened, lookback="1s")) == []
    assert set(rows(page(opened, service="webtier", min_remote="5ms", limit="3"))) < slow
    assert len(rows(page(opened, min_remote="5ms", limit="3"))) == 3


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_every_column_sorts_both_ways(
    store: tuple[CountingStore, dict[str, dict[str, int]]], column: str, order: str
) -> None:
    opened, answers = store
    listed = rows(page(opened, sort=column, order=order))
    keys = [answers[t].get(column, t) if column != "root" else "webtier GET /" for t in listed]
    assert keys == sorted(keys, reverse=order == "desc")
    assert len(listed) == len(answers)


def test_the_headers_link_to_their_sort_keeping_the_filters(
    store: tuple[CountingStore, dict[str, dict[str, int]]],
) -> None:
    opened, _ = store
    html = page(opened, min_remote="5ms", sort="total", order="desc")
    links = re.findall(r'<a href="/\?([^"]*)" data-sort="(\w+)"', html)
    by_column = {column: query for query, column in links}
    assert set(by_column) == set(COLUMNS)
    assert "min_remote=5ms" in by_column["remote"]
    assert "sort=total&amp;order=asc" in by_column["total"]  # the current sort, turned round
    assert "sort=remote&amp;order=desc" in by_column["remote"]


def test_one_mark_per_listed_trace_and_one_read_of_the_store(
    store: tuple[CountingStore, dict[str, dict[str, int]]],
) -> None:
    opened, answers = store
    CountingStore.reads = 0
    html = page(opened, limit="25")
    assert CountingStore.reads == 1
    assert len(rows(html)) == 25
    assert sorted(dots(html)) == sorted(rows(html))
    CountingStore.reads = 0
    html = page(opened, lookback="all", limit="1000")
    assert CountingStore.reads == 1
    assert sorted(dots(html)) == sorted(rows(html)) == sorted(answers)


def test_the_slow_traces_sit_decades_above_the_others(
    store: tuple[CountingStore, dict[str, dict[str, int]]],
) -> None:
    opened, answers = store
    html = page(opened)
    ys = {
        t: float(y)
        for t, y in re.findall(
            r'data-trace="([0-9a-f]{32})" data-remote-ms="[^"]*" cx="[^"]*" cy="([^"]*)"', html
        )
    }
    slow = [ys[t] for t, a in answers.items() if a["remote"] >= 5 * MS]
    fast = [ys[t] for t, a in answers.items() if a["remote"] < 5 * MS]
    assert max(slow) < min(fast) - 50  # SVG y grows downwards


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"min_total": "fast"}, "min_total"),
        ({"min_remote": "-5ms"}, "min_remote"),
        ({"lookback": "yesterday"}, "lookback"),
        ({"sort": "colour"}, "sort"),
        ({"order": "up"}, "order"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(
    store: tuple[CountingStore, dict[str, dict[str, int]]], params: dict[str, str], named: str
) -> None:
    opened, _ = store
    status, html = index_page(opened, params, NOW)
    assert status == 400
    message = re.search(r'<p id="message">(.*?)</p>', html, re.S)
    assert message is not None
    assert message.group(1).startswith(f"bad query parameter {named}:")
    assert len(message.group(1)) < 200
    assert "Traceback" not in html


def test_a_trace_with_remote_time_below_zero_is_listed_unless_a_minimum_is_set(
    tmp_path: Path,
) -> None:
    """On loopback a server may close its span after answering: remote < 0. Such a trace is
    real and listed (and drawn on the plot's floor); a min_remote leaves it out."""
    with Store(tmp_path / "traces.db") as opened:
        spans, answer = chain(start=BASE, web_api_remote=(-30_000, 10_000), with_db=False)
        assert answer["webtier->apitier remote"] < 0
        opened.add(spans)
        html = page(opened)
        assert rows(html) == dots(html) == [spans[0].trace_id]
        assert rows(page(opened, min_remote="1us")) == []
