"""Hostile request heads against each tier, a real server on a real socket: never a 5xx, never a
traceback in the answer or the logs, and it keeps serving (tests/fuzz_http.py).

The web tier runs in front of a live API tier, so a 502 or 504 is a bug here too; the trace
headers it receives are propagated to the API tier, which must take them too: each test watches
the logs of both.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz_http import (
    Headers,
    assert_survived,
    exchange,
    fuzz,
    hosts,
    many_headers,
    no_traceback_logged,
    numbered_headers,
    request_bytes,
    targets,
    trace_headers,
)
from tests.harness import OtlpReceiver, Tier, api_tier, running, web_tier


@dataclass(frozen=True)
class Target:
    tier: Tier  # what the requests go to
    watched: tuple[Tier, ...]  # whose logs must hold no traceback: it and what it calls


@pytest.fixture(scope="module", params=["apitier", "webtier"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    logdir = tmp_path_factory.mktemp(request.param)
    receiver = OtlpReceiver()
    try:
        with running(api_tier(logdir, receiver, QUERY_DELAY_MS="0")) as api:
            if request.param == "apitier":
                yield Target(api, (api,))
                return
            with running(web_tier(logdir, receiver, f"{api.url}/")) as web:
                yield Target(web, (web, api))
            # Each test watched its own run; this is the web tier's start and stop.
            assert "Traceback" not in api.logs()
    finally:
        receiver.close()


def test_trace_headers(target: Target) -> None:
    @fuzz(60)
    @given(headers=trace_headers)
    def survives(headers: Headers) -> None:
        request = request_bytes(b"/", headers)
        assert_survived(target.tier, request, exchange(target.tier.port, request))

    with no_traceback_logged(*target.watched):
        survives()


def test_targets_and_hosts(target: Target) -> None:
    @fuzz(60)
    @given(request_target=targets, host=hosts)
    def survives(request_target: bytes, host: bytes | None) -> None:
        request = request_bytes(request_target, [], host)
        assert_survived(target.tier, request, exchange(target.tier.port, request))

    with no_traceback_logged(*target.watched):
        survives()


def test_thousands_of_headers(target: Target) -> None:
    @fuzz(15)
    @given(spec=many_headers, repeat=st.booleans())
    def survives(spec: tuple[int, bytes, bytes], repeat: bool) -> None:
        request = request_bytes(b"/", numbered_headers(*spec, repeat))
        assert_survived(target.tier, request, exchange(target.tier.port, request))

    with no_traceback_logged(*target.watched):
        survives()
