"""tierkit.http1 against real servers on loopback, each answering with exact bytes."""

import asyncio
import gzip
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
import pytest

from tierkit.http1 import Http1Pool, Http1Transport, RawResponse, Timeouts

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


class Server:
    """An asyncio server in the test's own loop; counts the connections it accepted."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> "Server":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


def answering(*responses: bytes, keep_alive: bool = True) -> Handler:
    """Reads each request head and writes the next response; then closes unless keep_alive."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses if not keep_alive else _forever(responses):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()

    return handle


def _forever(responses: tuple[bytes, ...]) -> Any:
    while True:
        yield from responses


def ok(body: bytes = b"hello", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def get(pool: Http1Pool, port: int, **kwargs: Any) -> RawResponse:
    return await pool.request("GET", "http", "127.0.0.1", port, "/", [], **kwargs)


def test_keep_alive_reuses_one_connection_and_says_so() -> None:
    async def main() -> None:
        async with Server(answering(ok())) as server:
            pool = Http1Pool()
            first = await get(pool, server.port)
            second = await get(pool, server.port)
            await pool.aclose()
        assert (first.status, first.body, second.body) == (200, b"hello", b"hello")
        assert server.connections == 1
        assert not first.phases.reused
        assert second.phases.reused
        p = first.phases
        assert p.connect is not None
        assert p.start <= p.connect <= p.request_sent <= p.first_byte <= p.body_done
        assert [name for name, _ in first.phases.events()] == [
            "connect",
            "request sent",
            "first byte",
            "body done",
        ]

    run(main())


def test_bodies_framed_by_chunks_and_by_the_end_of_the_connection() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    until_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"

    async def main() -> None:
        async with (
            Server(answering(chunked)) as a,
            Server(answering(until_close, keep_alive=False)) as b,
        ):
            pool = Http1Pool()
            assert (await get(pool, a.port)).body == b"hello world"
            assert (await get(pool, b.port)).body == b"all of it"
            assert pool.connections == 1  # the closed one is gone, the chunked one kept
            await pool.aclose()

    run(main())


def test_head_and_interim_responses() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"  # no body follows a HEAD
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after 100")

    async def main() -> None:
        async with Server(answering(head, ok(b"next"))) as a, Server(answering(interim)) as b:
            pool = Http1Pool()
            response = await pool.request("HEAD", "http", "127.0.0.1", a.port, "/", [])
            assert (response.status, response.body) == (200, b"")
            assert (await get(pool, a.port)).body == b"next"  # same connection, in step
            assert a.connections == 1
            answer = await get(pool, b.port)
            assert (answer.status, answer.body) == (200, b"after 100")
            await pool.aclose()

    run(main())


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error() -> None:
    async def main() -> None:
        async with Server(answering(ok(), keep_alive=False)) as server:
            pool = Http1Pool()
            await get(pool, server.port)
            await asyncio.sleep(0.05)  # the server's close arrives while the connection idles
            assert pool.connections == 0
            assert (await get(pool, server.port)).body == b"hello"
            await pool.aclose()
        assert server.connections == 2

    run(main())


def test_a_stale_reused_connection_is_retried_once_on_a_new_one() -> None:
    async def main() -> None:
        requests = 0

        async def close_after_reading_the_second(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            nonlocal requests
            await reader.readuntil(b"\r\n\r\n")
            requests += 1
            writer.write(ok())
            await reader.readuntil(b"\r\n\r\n")  # read, then hang up without a word
            requests += 1

        async with Server(close_after_reading_the_second) as server:
            pool = Http1Pool()
            await get(pool, server.port)
            second = await get(pool, server.port)
            await pool.aclose()
        assert second.body == b"hello"
        assert not second.phases.reused
        assert (server.connections, requests) == (2, 3)

    run(main())


def test_errors_are_httpx_exceptions() -> None:
    async def main() -> None:
        pool = Http1Pool()
        short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"
        async with Server(answering(short, keep_alive=False)) as s:
            with pytest.raises(httpx.RemoteProtocolError, match="mid-response"):
                await get(pool, s.port, timeouts=Timeouts(read=5))
        async with Server(answering(b"NOT HTTP AT ALL\r\n\r\n")) as s:
            with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
                await get(pool, s.port)
        async with Server(answering(b"", keep_alive=False)) as s:
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                await get(pool, s.port)
            closed = s.port  # nothing listens there once this block ends
        with pytest.raises(httpx.ConnectError, match=str(closed)):
            await get(pool, closed)
        assert pool.connections == 0
        await pool.aclose()

    run(main())


def test_read_timeout_is_a_silence_not_a_total() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(10)

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        for byte in b"steady":
            await asyncio.sleep(0.1)
            writer.write(bytes([byte]))
        await reader.read()  # keep the connection until the client closes it

    async def main() -> None:
        pool = Http1Pool()
        async with Server(silent) as s:
            with pytest.raises(httpx.ReadTimeout):
                await get(pool, s.port, timeouts=Timeouts(read=0.2))
        async with Server(trickle) as s:
            # 0.6 s in all, never 0.3 s without a byte.
            response = await get(pool, s.port, timeouts=Timeouts(read=0.3))
            assert response.body == b"steady"
        assert pool.connections == 1  # the timed-out one is closed, the good one kept
        await pool.aclose()

    run(main())


def test_the_pool_limit_holds_and_queued_requests_all_complete() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.02)
            writer.write(ok())

    async def main() -> None:
        async with Server(slow) as server:
            pool = Http1Pool(max_connections=2, max_keepalive=2)
            answers = await asyncio.gather(*(get(pool, server.port) for _ in range(12)))
            with pytest.raises(httpx.PoolTimeout):
                await asyncio.gather(
                    *(get(pool, server.port, timeouts=Timeouts(pool=0.01)) for _ in range(3))
                )
            await pool.aclose()
        assert [a.status for a in answers] == [200] * 12
        assert server.most_open == 2

    run(main())


def test_cancelled_requests_never_lose_a_slot() -> None:
    """encode/httpcore#1093: a request cancelled while waiting for a connection (or during its
    exchange) must not keep the slot; with one slot, one lost slot would hang everything."""

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.01)
            writer.write(ok())

    async def main() -> None:
        async with Server(slow) as server:
            pool = Http1Pool(max_connections=1)
            for round_ in range(20):
                tasks = [asyncio.create_task(get(pool, server.port)) for _ in range(4)]
                await asyncio.sleep(0.001 * (round_ % 5))
                for task in tasks[round_ % 2 :: 2]:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            async with asyncio.timeout(2):
                assert (await get(pool, server.port)).status == 200
            assert pool.connections <= 1
            await pool.aclose()

    run(main())


def test_as_an_httpx_transport() -> None:
    gzipped = gzip.compress(b"decoded by httpx")
    response_bytes = ok(gzipped, b"Content-Encoding: gzip\r\nX-Thing: 1\r\n")

    async def echo_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = [
            int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if b"length" in line
        ]
        body = await reader.readexactly(length[0]) if length else b""
        writer.write(ok(head + body))

    async def main() -> None:
        async with (
            Server(answering(response_bytes)) as a,
            Server(echo_head) as b,
            httpx.AsyncClient(transport=Http1Transport(Http1Pool())) as client,
        ):
            response = await client.get(f"http://127.0.0.1:{a.port}/x")
            assert response.text == "decoded by httpx"
            assert response.headers["x-thing"] == "1"
            assert response.extensions["network_stream"].get_extra_info("socket") is not None
            echoed = await client.post(f"http://127.0.0.1:{b.port}/path?q=1", content=b"payload")
            assert echoed.content.startswith(b"POST /path?q=1 HTTP/1.1\r\n")
            assert b"\r\nContent-Length: 7\r\n" in echoed.content
            assert echoed.content.endswith(b"payload")
            with pytest.raises(httpx.UnsupportedProtocol):
                await client.get("ftp://127.0.0.1/")

    run(main())
