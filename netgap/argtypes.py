"""argparse types that reject bad values with a message naming the expected form."""

import argparse
import math
import re
from typing import NoReturn

import httpx

from netgap.timeparse import TimeFormatError, duration_ns

# RFC 9110 token: what a header name may be.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 1 to 65535, got {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def http_url(text: str) -> str:
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise argparse.ArgumentTypeError(f"not a URL: {text!r} ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, got {text!r}")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 1 to 65535, got {url.port}")
    return text


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments are one line naming the flag (and exit 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {least} or more, got {value}")
    return value


def non_negative_int(text: str) -> int:
    return whole_number(text, 0)


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def header(text: str) -> tuple[str, str]:
    """`Name: value` (or `Name:value`) as a (name, value) pair."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not _TOKEN.fullmatch(name):
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {text!r}")
    if "\r" in value or "\n" in value:
        raise argparse.ArgumentTypeError(f"a header value cannot span lines: {text!r}")
    return name, value


def duration_s(text: str) -> float:
    """Seconds from `20s`, `2m`, `1h30m`, `500ms` or plain seconds (`1.5`); 0 allowed, a
    negative one refused."""
    try:
        seconds = duration_ns(text) / 1e9
    except TimeFormatError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (e.g. 20s, 2m, 1h, 500ms, or plain seconds)"
        ) from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return seconds


def positive_duration_s(text: str) -> float:
    value = duration_s(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value
