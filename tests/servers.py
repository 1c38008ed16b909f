"""API stand-ins, misbehaving or slow on purpose, each a real server on a loopback port."""

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager


@contextmanager
def raw_http_server(
    script: bytes, *, pause_after: int = -1, pause_s: float = 0.0, keep_alive: bool = False
) -> Iterator[str]:
    """Answers each request with `script`, pausing `pause_s` after `pause_after` bytes
    (-1: no pause), then closes the connection unless `keep_alive`. With an empty script it
    accepts and never answers. Yields its base URL."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    async def answer(writer: asyncio.StreamWriter) -> None:
        split = len(script) if pause_after < 0 else pause_after
        writer.write(script[:split])
        await writer.drain()
        if split < len(script):
            await asyncio.sleep(pause_s)
            writer.write(script[split:])
            await writer.drain()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                if not script:
                    await asyncio.sleep(3600)
                await answer(writer)
                if not keep_alive:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, sock=listener)
        ready.set()
        async with server:
            await server.serve_forever()

    thread = threading.Thread(target=lambda: _run(loop, main()), daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        thread.join(5)


def _run(loop: asyncio.AbstractEventLoop, main: object) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)  # type: ignore[arg-type]
    except asyncio.CancelledError:
        pass
    finally:
        loop.close()


def http_response(status: str, body: bytes, extra_headers: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {len(body)}\r\n"
        f"{extra_headers}connection: close\r\n\r\n"
    ).encode() + body


class Server:
    """An HTTP/1.1 server with keep-alive on a loopback port, in a thread of its own. It holds
    the n-th request it receives (from 0) for `delay(n)` seconds, then answers 200."""

    def __init__(self, delay: Callable[[int], float]) -> None:
        self.delay = delay
        self.count = 0
        self.connections = 0
        self.heads: list[bytes] = []
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                n = self.count
                self.count += 1
                self.heads.append(head)
                if wait := self.delay(n):
                    await asyncio.sleep(wait)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextmanager
def asyncio_server(handle: StreamHandler) -> Iterator[str]:
    """`handle` serving each connection on 127.0.0.1, from an event loop in a thread of its
    own; yields the server's URL, and cancels everything on the way out."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    url = ""

    async def main() -> None:
        nonlocal url
        listener = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/"
        ready.set()
        async with listener:
            await listener.serve_forever()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass
        finally:
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        thread.join(5)


@contextmanager
def serve(delay: Callable[[int], float] = lambda n: 0.0) -> Iterator[Server]:
    server = Server(delay)
    with asyncio_server(server.handle) as url:
        server.url = url
        yield server
