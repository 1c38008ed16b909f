"""Hostile request heads against the API tier, a real server on a real socket: never a 5xx,
never a traceback in the answer, and it keeps serving (tests/fuzz_http.py)."""

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
from tests.harness import OtlpReceiver, Tier, api_tier, running


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    receiver = OtlpReceiver()
    try:
        with running(api_tier(tmp_path_factory.mktemp("api"), receiver, QUERY_DELAY_MS="0")) as t:
            yield t
    finally:
        receiver.close()


def test_trace_headers(api: Tier) -> None:
    @fuzz(60)
    @given(headers=trace_headers)
    def survives(headers: Headers) -> None:
        request = request_bytes(b"/", headers)
        assert_survived(api, request, exchange(api.port, request))

    with no_traceback_logged(api):
        survives()


def test_targets_and_hosts(api: Tier) -> None:
    @fuzz(60)
    @given(target=targets, host=hosts)
    def survives(target: bytes, host: bytes | None) -> None:
        request = request_bytes(target, [], host)
        assert_survived(api, request, exchange(api.port, request))

    with no_traceback_logged(api):
        survives()


def test_thousands_of_headers(api: Tier) -> None:
    @fuzz(15)
    @given(spec=many_headers, repeat=st.booleans())
    def survives(spec: tuple[int, bytes, bytes], repeat: bool) -> None:
        request = request_bytes(b"/", numbered_headers(*spec, repeat))
        assert_survived(api, request, exchange(api.port, request))

    with no_traceback_logged(api):
        survives()
