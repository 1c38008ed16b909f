"""The web tier's client stack (httpx on httpx-aiohttp, tierkit.exchange) against real servers
on loopback that parse what they get with h11, a strict HTTP/1.1 parser: the protocol mistakes
a hand-written client made cannot happen on it."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.h11_server import h11_server
from tierkit.exchange import EXCHANGE, Exchange, ExchangeTransport, PoolSettings


def client(max_connections: int = 100) -> httpx.AsyncClient:
    transport = ExchangeTransport(PoolSettings(max_connections=max_connections))
    return httpx.AsyncClient(transport=transport, timeout=5)


def test_a_header_value_with_cr_lf_is_refused_before_anything_is_sent() -> None:
    async def call(url: str) -> None:
        async with client() as http:
            await http.get(f"{url}/", headers={"x-note": "a\r\nInjected: yes"})

    with h11_server() as (url, received), pytest.raises((httpx.HTTPError, ValueError)):
        asyncio.run(call(url))
    assert not any(received.connections), received.connections
    assert received.requests == []


def test_an_idempotent_request_is_retried_once_on_a_fresh_connection() -> None:
    async def calls(url: str) -> list[Exchange]:
        async with client() as http:
            first = await http.get(f"{url}/")
            second = await http.get(f"{url}/")  # on the connection the server drops
        return [first.extensions[EXCHANGE], second.extensions[EXCHANGE]]

    with h11_server(answer_on_each_connection=1) as (url, received):
        first, second = asyncio.run(calls(url))
    assert [method for method, _, _ in received.requests] == [b"GET", b"GET", b"GET"]
    assert len(received.connections) == 2
    assert second.retried_ns is not None
    assert first.retried_ns is None
    assert "retry" in [name for name, _ in second.events()]
    assert not second.reused  # the answer came on the fresh connection


def test_the_retry_never_lands_on_another_idle_connection_the_server_is_closing() -> None:
    """Two idle connections, each of which the server closes at its next request: the retry of
    a call on the first must not take the second (aiohttp's pool would hand it over, and the
    call would fail), but a new connection."""

    async def calls(url: str) -> Exchange:
        async with client() as http:
            await asyncio.gather(http.get(f"{url}/"), http.get(f"{url}/"))  # two connections
            third = await http.get(f"{url}/")
        exchange: Exchange = third.extensions[EXCHANGE]
        return exchange

    with h11_server(answer_on_each_connection=1) as (url, received):
        third = asyncio.run(calls(url))
    assert len(received.connections) == 3  # the two, then the retry's own
    assert [method for method, _, _ in received.requests] == [b"GET"] * 4
    assert third.retried_ns is not None
    assert not third.reused
    assert third.attempts == 2


def test_a_non_idempotent_request_is_never_sent_twice() -> None:
    async def calls(url: str) -> None:
        async with client() as http:
            await http.post(f"{url}/", content=b"first")
            await http.post(f"{url}/", content=b"second")  # the server drops it unanswered

    with (
        h11_server(answer_on_each_connection=1) as (url, received),
        pytest.raises(httpx.RemoteProtocolError),
    ):
        asyncio.run(calls(url))
    assert [method for method, _, _ in received.requests] == [b"POST", b"POST"]
    assert len(received.connections) == 1  # no second connection: nothing resent


def test_a_streamed_body_is_framed_as_chunks() -> None:
    parts = [b"alpha", b"", b"beta" * 1000, b"\r\n0\r\n\r\n"]  # the last one looks like a frame

    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    async def call(url: str) -> httpx.Response:
        async with client() as http:
            return await http.post(f"{url}/", content=body())

    with h11_server() as (url, received):
        response = asyncio.run(call(url))
    assert response.status_code == 200
    assert received.errors == []
    assert received.bodies == [b"".join(parts)]
    headers = dict(received.requests[0][2])
    assert headers.get(b"transfer-encoding") == b"chunked"
    assert b"content-length" not in headers


def test_a_pool_limit_never_blocks_a_call_an_idle_connection_elsewhere_makes_room_for() -> None:
    async def calls(first: str, second: str) -> list[int]:
        async with client(max_connections=1) as http:
            a = await http.get(f"{first}/")  # leaves an idle connection to the first origin
            async with asyncio.timeout(3):
                b = await http.get(f"{second}/")
        return [a.status_code, b.status_code]

    with h11_server() as (first, _), h11_server() as (second, received):
        assert asyncio.run(calls(first, second)) == [200, 200]
    assert len(received.requests) == 1
