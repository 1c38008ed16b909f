"""Times and durations in integer nanoseconds: the formats Jaeger's HTTP API speaks (RFC 3339 as
Go's time.RFC3339Nano, Go durations as time.ParseDuration), and the CLI's forms built on them.

Integer arithmetic throughout: a float would round nanoseconds away at today's epoch values.
"""

import argparse
import datetime
import re
import time

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_EPOCH_DAY = datetime.date(1970, 1, 1).toordinal()
NS_PER_S = 1_000_000_000
MAX_DURATION_NS = 2**63 - 1  # Go's time.Duration is an int64

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": NS_PER_S,
    "m": 60 * NS_PER_S,
    "h": 3600 * NS_PER_S,
}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")


class TimeFormatError(ValueError):
    """Text that is not the expected time format; the message says what was expected."""


def parse_rfc3339_ns(text: str) -> int:
    """`2026-07-19T10:00:00.123456789+02:00` -> nanoseconds since the epoch. Digits past the
    ninth fractional one are dropped, as Go does."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        hint = " (a '+' in a URL must be sent as %2B)" if " " in text else ""
        raise TimeFormatError(f"{text!r} is not an RFC 3339 time like 2026-07-19T10:00:00.5Z{hint}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    try:
        days = datetime.date(year, month, day).toordinal() - _EPOCH_DAY
    except ValueError as exc:
        raise TimeFormatError(f"{text!r}: {exc}") from None
    if hour > 23 or minute > 59 or second > 59:
        raise TimeFormatError(f"{text!r}: time of day out of range")
    offset_s = 0
    if match.group(9):
        off_hour, off_minute = int(match.group(10)), int(match.group(11))
        if off_hour > 23 or off_minute > 59:
            raise TimeFormatError(f"{text!r}: offset out of range")
        offset_s = (off_hour * 3600 + off_minute * 60) * (1 if match.group(9) == "+" else -1)
    fraction = (match.group(7) or "")[:9].ljust(9, "0")
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_s
    return seconds * NS_PER_S + int(fraction)


def format_rfc3339_ns(ns: int) -> str:
    """Nanoseconds since the epoch as RFC 3339 in UTC with all nine fractional digits."""
    seconds, fraction = divmod(ns, NS_PER_S)
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def parse_go_duration_ns(text: str) -> int:
    """`1h30m`, `1.5s`, `500ms`, `250us`, `-2m`, `0` -> nanoseconds."""
    sign, body = (-1, text[1:]) if text[:1] == "-" else (1, text.removeprefix("+"))
    if body == "0":
        return 0
    total, position = 0, 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None or not (match.group(1) or match.group(2)):
            break
        whole, fraction, unit = match.group(1), match.group(2) or "", match.group(3)
        scale = _UNITS_NS[unit]
        total += int(whole or "0") * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
        position = match.end()
    else:
        if body and total <= MAX_DURATION_NS:
            return sign * total
    raise TimeFormatError(f"{text!r} is not a Go duration like 500ms, 1.5s, 2m or 1h30m")


# The CLI's forms: durations may be bare seconds; times may be relative to now.


def duration_ns(text: str) -> int:
    """`1h30m`, `250ms`, `1.5s`; a bare number is seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        text += "s"
    return parse_go_duration_ns(text)


def time_ns(text: str, now_ns: int | None = None) -> int:
    """RFC 3339 (`2026-11-25T12:00:00Z`), `now`, or a time before now like `-15m`."""
    text = text.strip()
    now = time.time_ns() if now_ns is None else now_ns
    if text == "now":
        return now
    if text.startswith("-"):
        return now - duration_ns(text[1:])
    return parse_rfc3339_ns(text)


def duration_arg(text: str) -> int:
    """argparse type: a duration of more than 0, in ns."""
    try:
        value = duration_ns(text)
    except TimeFormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return value


def time_arg(text: str) -> int:
    """argparse type: a point in time, in ns since the epoch."""
    try:
        return time_ns(text)
    except TimeFormatError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or a time before now like -15m") from None
