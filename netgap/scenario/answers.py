"""The web tier's answers by cause, from its request log (one JSON line per request, with the
`error` it met for a 502 or a 504): a 502 is not a 502 to the reader of the report until it
says whether the API answered 5xx, could not be reached, or dropped the connection unanswered.

The load generator sees only the status; the web tier knows why. Each page request counts in
the phase whose load had started last when the request started (the log line's time, when it
was written, less its duration): the load counts each request in the phase whose generator
sent it, and a phase's generator starts a moment after the phase (its faults are set first),
so a request at the edge of two phases may count in the other one here. Requests before the
first phase's load (the scenario's warm-up) are not counted; those after the last phase's end
count in the last phase."""

import bisect
import json
import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

OK = "200"
MS = 1_000_000
# The web tier's messages (webtier/api_client.py): the API's status, the transport error's
# class, or the timeout.
_ANSWERED = re.compile(r" answered (\d{3})\b")
_UNREACHABLE = re.compile(r" unreachable: (\w+)")
_TIMEOUT = "did not answer within"


RETRIED = "200 after a retry"


def cause(status: int, error: str | None, retried: bool = False) -> str:
    """One answer's cause, e.g. "200", "200 after a retry" (the call met a connection the API
    closed unanswered and was sent again), "502 API answered 503", "502 ConnectError",
    "504 timeout"."""
    if status == 200:
        return RETRIED if retried else OK
    text = error or ""
    if found := _ANSWERED.search(text):
        return f"{status} API answered {found.group(1)}"
    if found := _UNREACHABLE.search(text):
        return f"{status} {found.group(1)}"
    if _TIMEOUT in text:
        return f"{status} timeout"
    return str(status)


def by_phase(log: Path, starts: Sequence[int], path: str = "/") -> list[dict[str, int]]:
    """Per phase (its load's start, ns since the epoch, in order), the answers to `path` that
    started from then until the next phase's load started, by cause."""
    counts: list[Counter[str]] = [Counter() for _ in starts]
    if not log.exists():
        return [{} for _ in starts]
    for raw in log.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(line, dict) or line.get("msg") != "request" or line.get("path") != path:
            continue
        end_ns = _epoch_ns(line["ts"])
        start_ns = end_ns - round(float(line["duration_ms"]) * 1e6)
        # The log's times are to the millisecond, rounded down: its start may read up to 1 ms
        # early.
        phase = bisect.bisect_right(starts, start_ns + MS) - 1
        if phase >= 0:
            answer = cause(int(line["status"]), line.get("error"), bool(line.get("retried")))
            counts[phase][answer] += 1
    return [dict(sorted(counter.items())) for counter in counts]


def failures(answers: dict[str, int]) -> str:
    """The answers other than 200, for a table cell: "502 API answered 503 x2, 504 timeout x1";
    "" when there were none."""
    return ", ".join(f"{name} x{n}" for name, n in answers.items() if name not in (OK, RETRIED))


def summary_line(answered: dict[str, dict[str, int]]) -> str:
    """One line for the end of a run: each phase's answers by cause (by phase name)."""
    phases = [
        f"{name} " + ", ".join(f"{cause} x{n}" for cause, n in by_cause.items())
        for name, by_cause in answered.items()
    ]
    return "The web tier's answers by cause: " + "; ".join(phases) + "."


def _epoch_ns(stamp: str) -> int:
    # tierkit.logs writes UTC to the millisecond: 2026-12-04T11:16:34.123Z
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return round(moment.timestamp() * 1000) * 1_000_000
