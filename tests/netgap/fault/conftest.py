"""Loopback servers to relay to, and a FaultProxy (with its control API) on an event loop of
its own in a background thread, as the `netgap fault proxy` process runs it."""

import asyncio
import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest

from netgap.address import Address
from netgap.fault.control import ControlServer
from netgap.fault.proxy import CONNECT_TIMEOUT_S, FaultProxy
from netgap.fault.spec import Faults

T = TypeVar("T")
LOCAL = Address("127.0.0.1", 0)
TIMEOUT_S = 15.0

Handler = Callable[[socket.socket], None]


@contextmanager
def tcp_server(handle: Handler, port: int = 0) -> Iterator[Address]:
    """Calls `handle(sock)` for each connection, in a thread of its own."""

    class RequestHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(TIMEOUT_S)
            with contextlib.suppress(OSError):  # the client went away, as some tests mean to
                handle(self.request)

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True  # a port given again after a stop may have TIME_WAITs

    server = Server(("127.0.0.1", port), RequestHandler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Address("127.0.0.1", int(server.server_address[1]))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def echo(sock: socket.socket) -> None:
    while data := sock.recv(65536):
        sock.sendall(data)


@pytest.fixture
def echo_server() -> Iterator[Address]:
    with tcp_server(echo) as address:
        yield address


def connect(address: Address) -> socket.socket:
    sock = socket.create_connection((address.host, address.port), timeout=TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def ping(address: Address) -> bytes:
    """A connection of its own: sends b"ping", returns what comes back first (b"" at a FIN)."""
    with connect(address) as sock:
        sock.sendall(b"ping")
        return sock.recv(10)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise ConnectionError(f"closed with {size} bytes still to come")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def round_trip_s(sock: socket.socket, payload: bytes = b"ping") -> float:
    """Sends `payload` to an echo server and waits for it back: how long that took."""
    start = time.perf_counter()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.perf_counter() - start


class RunningProxy:
    """A started FaultProxy; everything done to it goes through its event loop."""

    def __init__(self, proxy: FaultProxy, loop: asyncio.AbstractEventLoop) -> None:
        self.proxy = proxy
        self.loop = loop
        self.control: ControlServer | None = None

    @property
    def address(self) -> Address:
        return self.proxy.address

    @property
    def control_url(self) -> str:
        assert self.control is not None, "started without control=True"
        return self.control.url

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(TIMEOUT_S)

    def set_faults(self, faults: Faults) -> None:
        async def assign() -> None:
            self.proxy.faults = faults

        self.call(assign())

    def faults(self) -> Faults:
        async def read() -> Faults:
            return self.proxy.faults

        return self.call(read())


@contextmanager
def running_proxy(
    upstream: Address,
    faults: Faults | None = None,
    *,
    seed: int | None = None,
    control: bool = False,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> Iterator[RunningProxy]:
    """`loop_factory=uvloop.new_event_loop` for the loop `netgap fault proxy` runs on."""
    loop = loop_factory()
    thread = threading.Thread(target=loop.run_forever, name="fault-proxy", daemon=True)
    thread.start()
    proxy = FaultProxy(LOCAL, upstream, faults, seed=seed, connect_timeout_s=connect_timeout_s)
    running = RunningProxy(proxy, loop)
    try:
        running.call(running.proxy.start())
        if control:
            running.control = ControlServer(running.proxy, LOCAL)
            running.call(running.control.start())
        yield running
    finally:
        if running.control is not None:
            running.call(running.control.stop())
        running.call(running.proxy.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def proxy(echo_server: Address) -> Iterator[RunningProxy]:
    """A proxy to an echo server, no faults yet."""
    with running_proxy(echo_server) as running:
        yield running


def sink_then_ack(sock: socket.socket) -> None:
    """Reads the size on the first line, then that many bytes, then says done."""
    header = b""
    while not header.endswith(b"\n"):
        header += recv_exactly(sock, 1)
    recv_exactly(sock, int(header))
    sock.sendall(b"done")


def upload_s(address: Address, size: int) -> float:
    with connect(address) as sock:
        start = time.perf_counter()
        sock.sendall(b"%d\n" % size + bytes(size))
        assert recv_exactly(sock, 4) == b"done"
        return time.perf_counter() - start
