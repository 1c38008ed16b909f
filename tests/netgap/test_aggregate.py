"""Aggregate's fast paths give the numbers its plain ones do: columns sorted by numpy or by
Python, rows added by name or as dicts, Chains or TraceBreakdowns."""

import json
import random
from array import array

import pytest

from netgap import aggregate
from netgap.aggregate import Aggregate, _Columns, _stats
from netgap.breakdown import NEW, REUSED, UNKNOWN
from netgap.collector.chains import Chain

EXTREMES = (2**63 - 1, -(2**63), 0, -1, 1)


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 1000, 4099])
def test_numpy_and_python_agree_to_the_last_bit(size: int) -> None:
    rnd = random.Random(size)
    for values in (
        [rnd.randrange(-(10**12), 10**13) for _ in range(size)],
        [rnd.choice(EXTREMES) for _ in range(size)],  # sums past 64 bits
        [7] * size,
    ):
        column = array("q", values)
        ordered = sorted(values)
        expected = {
            "p50": aggregate.quantile(ordered, 0.50),
            "p90": aggregate.quantile(ordered, 0.90),
            "p99": aggregate.quantile(ordered, 0.99),
            "max": ordered[-1],
            "mean": sum(values) / len(values),
        }
        got = _stats(column).as_json()
        assert got == expected
        assert all(type(got[k]) is type(expected[k]) for k in expected)
        assert list(column) == values  # left as it was, and still growable
        column.append(1)


def test_rows_by_name_and_dicts_fill_the_same_columns() -> None:
    rnd = random.Random(5)
    shapes = [("a", "b", "total"), ("b", "a", "total"), ("a", "c", "total"), ("total",)]
    by_row, by_dict = _Columns(), _Columns()
    for _ in range(500):
        names = rnd.choice(shapes)
        row = [rnd.randrange(-5, 10**6) for _ in names]
        by_row.add_row(names, row)
        by_dict.add(dict(zip(names, row, strict=True)))
    assert by_row.count == by_dict.count == 500
    assert list(by_row.values) == list(by_dict.values)
    assert by_row.values == by_dict.values


def chain(rnd: random.Random, start: int) -> Chain:
    own, remote, served = rnd.randrange(10**6), rnd.randrange(-(10**4), 10**6), rnd.randrange(10**6)
    phases = tuple(rnd.randrange(-5, 10**5) for _ in range(5)) if rnd.random() < 0.7 else None
    callee = rnd.choice(("apitier", "apitier", "db"))
    return Chain(
        trace_id=f"{start:032x}",
        start_ns=start,
        total_ns=own + remote + served,
        caller="webtier",
        callee=callee,
        caller_self_ns=own,
        remote_ns=remote,
        callee_self_ns=served,
        connection=rnd.choice((REUSED, NEW, UNKNOWN)),
        phases_ns=phases,  # type: ignore[arg-type]  # five of them
        warnings=("webtier->apitier: server span 1 outlasts its client span 2 by 3 ns",)
        if remote < 0
        else (),
    )


@pytest.mark.parametrize("bucket_ns", [None, 10**8])
def test_a_chain_counts_as_its_breakdown(bucket_ns: int | None) -> None:
    rnd = random.Random(bucket_ns)
    chains = [chain(rnd, 10**9 + i * 10**7) for i in range(700)]
    mixed = [c.breakdown() if rnd.random() < 0.3 else c for c in chains]
    expected = json.dumps(Aggregate(bucket_ns).add_all(c.breakdown() for c in chains).summary())
    assert json.dumps(Aggregate(bucket_ns).add_all(chains).summary()) == expected
    assert json.dumps(Aggregate(bucket_ns).add_all(mixed).summary()) == expected


def test_a_trace_starting_at_zero_counts_as_add_counts_it() -> None:
    rnd = random.Random(0)
    chains = [chain(rnd, start) for start in (5, 0, 3, 0, 9)]
    fast = Aggregate().add_all(chains).summary()
    assert fast == Aggregate().add_all(c.breakdown() for c in chains).summary()
