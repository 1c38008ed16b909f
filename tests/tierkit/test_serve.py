"""SIGTERM: stop accepting, finish what is in flight, flush spans, exit 0."""

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.harness import CLIENT, SERVER, OtlpReceiver, api_tier, running, web_tier

IN_FLIGHT = 50
QUERY_DELAY_MS = 1500


async def send_concurrently(url: str, count: int, sent: asyncio.Event) -> list[httpx.Response]:
    written = 0

    async def on_phase(event: str, info: dict[str, object]) -> None:
        nonlocal written
        if event == "http11.send_request_body.complete":
            written += 1
            if written == count:
                sent.set()

    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        return await asyncio.gather(
            *(client.get(url, extensions={"trace": on_phase}) for _ in range(count))
        )


@pytest.mark.parametrize("victim", ["webtier", "apitier"])
def test_sigterm_with_requests_in_flight_loses_nothing(
    tmp_path: Path, receiver: OtlpReceiver, victim: str
) -> None:
    api = api_tier(tmp_path, receiver, QUERY_DELAY_MS=str(QUERY_DELAY_MS))
    with running(api):
        web = web_tier(tmp_path, receiver, f"{api.url}/", API_MAX_CONNECTIONS=str(IN_FLIGHT))
        with running(web):
            tier = web if victim == "webtier" else api

            async def scenario() -> tuple[list[httpx.Response], int]:
                sent = asyncio.Event()
                requests = asyncio.create_task(send_concurrently(f"{web.url}/", IN_FLIGHT, sent))
                await asyncio.wait_for(sent.wait(), 10)
                await asyncio.sleep(0.3)  # all of them reach the API, which holds each 1.5 s
                tier.signal(15)
                responses = await requests
                assert tier.proc is not None
                return responses, await asyncio.to_thread(tier.proc.wait, 20)

            started = time.monotonic()
            responses, exit_code = asyncio.run(scenario())
            assert [r.status_code for r in responses] == [200] * IN_FLIGHT
            assert exit_code == 0, tier.logs()
            assert time.monotonic() - started < QUERY_DELAY_MS / 1000 + 8
    # Both tiers are stopped now, so both have flushed: every span of every request arrived.
    spans = receiver.wait_for(lambda s: len(s) >= IN_FLIGHT * 5, timeout_s=5)
    assert sum(s.kind == SERVER and s.service == "webtier" for s in spans) == IN_FLIGHT
    assert sum(s.kind == CLIENT for s in spans) == IN_FLIGHT
    assert sum(s.kind == SERVER and s.service == "apitier" for s in spans) == IN_FLIGHT
    assert sum(s.name == "fast-query" for s in spans) == IN_FLIGHT
    assert len({s.trace_id for s in spans}) == IN_FLIGHT
