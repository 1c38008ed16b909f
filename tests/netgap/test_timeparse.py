"""RFC 3339 times and Go durations, as Jaeger's HTTP API takes them."""

import datetime

import pytest

from netgap.timeparse import (
    TimeFormatError,
    format_rfc3339_ns,
    parse_go_duration_ns,
    parse_rfc3339_ns,
)

EPOCH_2026 = int(datetime.datetime(2026, 7, 19, 10, 0, tzinfo=datetime.UTC).timestamp())


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2026-07-19T10:00:00Z", EPOCH_2026 * 10**9),
        ("2026-07-19T10:00:00.123456789Z", EPOCH_2026 * 10**9 + 123456789),
        ("2026-07-19T10:00:00.5Z", EPOCH_2026 * 10**9 + 500_000_000),
        ("2026-07-19T12:00:00.000000001+02:00", EPOCH_2026 * 10**9 + 1),
        ("2026-07-19T09:30:00-00:30", EPOCH_2026 * 10**9),
        ("2026-07-19T10:00:00.1234567891Z", EPOCH_2026 * 10**9 + 123456789),  # Go drops the rest
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_rfc3339(text: str, ns: int) -> None:
    assert parse_rfc3339_ns(text) == ns


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-07-19",
        "2026-07-19T10:00:00",  # no offset
        "2026-07-19 10:00:00Z",
        "2026-02-30T10:00:00Z",
        "2026-07-19T24:00:00Z",
        "2026-07-19T10:00:00+25:00",
        "1721383200",
    ],
)
def test_rfc3339_rejects(text: str) -> None:
    with pytest.raises(TimeFormatError):
        parse_rfc3339_ns(text)


def test_rfc3339_explains_an_unescaped_plus() -> None:
    with pytest.raises(TimeFormatError, match="%2B"):
        parse_rfc3339_ns("2026-07-19T12:00:00 02:00")  # what '+' becomes in a query string


def test_format_round_trips() -> None:
    for ns in (0, EPOCH_2026 * 10**9 + 1, EPOCH_2026 * 10**9 + 999_999_999):
        assert parse_rfc3339_ns(format_rfc3339_ns(ns)) == ns
    assert format_rfc3339_ns(EPOCH_2026 * 10**9 + 5) == "2026-07-19T10:00:00.000000005Z"


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("500ms", 500_000_000),
        ("1.5s", 1_500_000_000),
        ("2m", 120 * 10**9),
        ("1h30m", 5400 * 10**9),
        ("250us", 250_000),
        ("250µs", 250_000),
        ("7ns", 7),
        (".5s", 500_000_000),
        ("1.s", 10**9),
        ("-2m", -120 * 10**9),
        ("+1s", 10**9),
        ("0", 0),
        ("0s", 0),
        ("1.000000001s", 1_000_000_001),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    assert parse_go_duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "5", "1d", "s", ".s", "1.5", "ms", "1 s", "1h 30m", "-"])
def test_go_durations_reject(text: str) -> None:
    with pytest.raises(TimeFormatError):
        parse_go_duration_ns(text)


def test_cli_forms() -> None:
    from netgap.timeparse import duration_ns, time_ns

    assert duration_ns("10") == 10_000_000_000
    assert duration_ns("1.5") == 1_500_000_000
    assert duration_ns("15m") == 900_000_000_000
    assert time_ns("now", now_ns=123) == 123
    assert time_ns("-1s", now_ns=5_000_000_000) == 4_000_000_000
    assert time_ns("2026-11-25T12:00:00Z") == 1_795_608_000_000_000_000
