"""The scenario's answers by cause, read from the request logs real web tiers wrote, each in
front of an API stand-in that fails one way: answering 503, refusing the connection, dropping
every connection unanswered, never answering; and one that answers 200."""

import time
from pathlib import Path

import httpx
import pytest

from netgap.scenario import answers, text
from netgap.scenario.result import LoadCounts
from tests.h11_server import h11_server
from tests.harness import Tier, free_port, running, web_tier
from tests.netgap.scenario.samples import load
from tests.servers import http_response, raw_http_server

# One phase whose load started at the epoch: every request counts in it.
EVER = 0


def pages(tmp_path: Path, api_url: str, count: int = 1, **env: str) -> Tier:
    web = web_tier(tmp_path, None, api_url, **env)
    with running(web), httpx.Client(timeout=10) as client:
        for _ in range(count):
            client.get(f"{web.url}/")
    return web  # stopped: its log is whole


def test_each_non_200_answer_is_counted_by_its_cause(tmp_path: Path) -> None:
    with raw_http_server(http_response("503 Service Unavailable", b"busy")) as busy:
        answered_503 = pages(tmp_path, f"{busy}/", 2)
    refused = pages(tmp_path, f"http://127.0.0.1:{free_port()}/")
    with h11_server(answer_on_each_connection=0) as (dropping, _):
        dropped = pages(tmp_path, f"{dropping}/")
    with h11_server(answer_on_each_connection=1) as (once, _):  # the 2nd call is sent twice
        retried = pages(tmp_path, f"{once}/", 2)
    with raw_http_server(b"") as stalled:
        timed_out = pages(tmp_path, f"{stalled}/", API_TIMEOUT_S="0.3")
    with raw_http_server(http_response("200 OK", b"hi"), keep_alive=True) as fine:
        ok = pages(tmp_path, f"{fine}/", 3)

    found = {
        name: answers.by_phase(tier.stderr, [EVER])[0]
        for name, tier in [
            ("503", answered_503),
            ("refused", refused),
            ("dropped", dropped),
            ("retried", retried),
            ("timeout", timed_out),
            ("ok", ok),
        ]
    }
    assert found == {
        "503": {"502 API answered 503": 2},
        "refused": {"502 ConnectError": 1},
        "dropped": {"502 RemoteProtocolError": 1},
        "retried": {"200": 1, "200 after a retry": 1},
        "timeout": {"504 timeout": 1},
        "ok": {"200": 3},
    }


def test_each_answer_counts_in_the_phase_whose_load_had_started_last(tmp_path: Path) -> None:
    with raw_http_server(http_response("200 OK", b"hi"), keep_alive=True) as fine:
        web = web_tier(tmp_path, None, f"{fine}/")
        with running(web), httpx.Client(timeout=10) as client:
            client.get(f"{web.url}/")
            client.get(f"{web.url}/")
            # the log's times are to the millisecond: the edge well clear of any request
            time.sleep(0.05)
            edge = time.time_ns()
            time.sleep(0.05)
            client.get(f"{web.url}/")
            time.sleep(0.05)
            last = time.time_ns()
    phases = [0, edge, last]
    assert answers.by_phase(web.stderr, phases) == [{"200": 2}, {"200": 1}, {}]
    # before the first phase's load started: not counted (the scenario's warm-up)
    assert answers.by_phase(web.stderr, [edge, last]) == [{"200": 1}, {}]
    assert answers.by_phase(tmp_path / "none.log", phases) == [{}, {}, {}]


@pytest.mark.parametrize(
    ("by_cause", "cell"),
    [
        ({"200": 30}, ""),
        ({"200": 28, "200 after a retry": 2}, ""),
        (
            {"200": 28, "502 API answered 503": 1, "504 timeout": 1},
            "502 API answered 503 x1, 504 timeout x1",
        ),
    ],
)
def test_the_failures_read_as_one_table_cell(by_cause: dict[str, int], cell: str) -> None:
    assert answers.failures(by_cause) == cell


def test_the_table_gives_the_web_tiers_causes_beside_the_loads_errors() -> None:
    failed = LoadCounts(**load(sent=30, errors=2, errors_by_kind={"5xx": 2}))
    answered = {"200": 28, "502 ConnectError": 2}
    assert text.errors_cell(failed, answered) == "2 (5xx 2; web tier: 502 ConnectError x2)"
    clean = LoadCounts(**load(sent=30, errors=0, errors_by_kind={}))
    assert text.errors_cell(clean, {}) == "0"


def test_the_summary_line_gives_every_phases_answers() -> None:
    answered = {
        "baseline": {"200": 240},
        "fault": {"200": 440, "200 after a retry": 9, "504 timeout": 1},
    }
    assert answers.summary_line(answered) == (
        "The web tier's answers by cause: baseline 200 x240;"
        " fault 200 x440, 200 after a retry x9, 504 timeout x1."
    )
