"""Hostile request heads against the web tier, a real server on a real socket calling a live
API tier: never a 5xx, never a traceback in the answer, and it keeps serving (tests/fuzz_http.py).
The trace headers it receives are propagated to the API tier, which must take them too."""

from collections.abc import Iterator

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


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    """The web tier in front of a live API tier: a 502 or 504 would be a bug here."""
    logdir = tmp_path_factory.mktemp("web")
    receiver = OtlpReceiver()
    try:
        with running(api_tier(logdir, receiver, QUERY_DELAY_MS="0")) as api:
            with running(web_tier(logdir, receiver, f"{api.url}/")) as web:
                yield web
            assert "Traceback" not in api.logs()
    finally:
        receiver.close()


def test_trace_headers(web: Tier) -> None:
    @fuzz(60)
    @given(headers=trace_headers)
    def survives(headers: Headers) -> None:
        request = request_bytes(b"/", headers)
        assert_survived(web, request, exchange(web.port, request))

    with no_traceback_logged(web):
        survives()


def test_targets_and_hosts(web: Tier) -> None:
    @fuzz(60)
    @given(target=targets, host=hosts)
    def survives(target: bytes, host: bytes | None) -> None:
        request = request_bytes(target, [], host)
        assert_survived(web, request, exchange(web.port, request))

    with no_traceback_logged(web):
        survives()


def test_thousands_of_headers(web: Tier) -> None:
    @fuzz(15)
    @given(spec=many_headers, repeat=st.booleans())
    def survives(spec: tuple[int, bytes, bytes], repeat: bool) -> None:
        request = request_bytes(b"/", numbered_headers(*spec, repeat))
        assert_survived(web, request, exchange(web.port, request))

    with no_traceback_logged(web):
        survives()
