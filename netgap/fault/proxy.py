"""The fault proxy: a userspace TCP relay that does to traffic what a `Faults` value says.

Each accepted connection is dialled through to the upstream at once (the handshake itself is not
delayed, as in toxiproxy) and relayed both ways. The upstream may be down, at start or later:
then the client's connection is reset as soon as the dial fails (refused at once, or unanswered
for `connect_timeout_s`), not held, as toxiproxy closes it, and the next connection dials again,
so traffic flows as soon as the upstream listens. An outage is logged once, when a dial first
fails, and its end once, when one succeeds again (netgap/fault/upstream.py). A connection has
two links: `upstream` (client -> server) and `downstream` (server -> client), toxiproxy's
names. What a link forwards is one chunk per socket read, with the faults of the moment
(reset, latency and jitter, loss, rate: netgap/fault/link.py). The faults are read once per
chunk, so changing `FaultProxy.faults` takes effect on live connections at their next chunk;
none is dropped (netgap/fault/conditions.py).

The end of a stream (FIN) goes on after the bytes ahead of it, as a half-close: the other
direction carries on until it ends too, and then both sockets close. A reset (or error) on one
side resets the other. Chunks still queued when the faults are cleared go out at once, in
order. With `seed`, every random draw comes from generators seeded with (seed, connection
number, link): the same sequence of chunks meets the same jitter, losses and resets on every
run.
"""

import asyncio
import contextlib
import logging
import socket
import struct
from typing import cast

from netgap.address import Address
from netgap.fault.conditions import Conditions, Loss
from netgap.fault.link import Link
from netgap.fault.spec import Faults
from netgap.fault.upstream import UpstreamWatch, check_upstream, dial_error

log = logging.getLogger("netgap.fault.proxy")

CONNECT_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 2.0
_LINGER_0 = struct.pack("ii", 1, 0)


class FaultProxy:
    """Relays TCP from `listen` to `upstream` with the faults of the moment.

    `await start()` binds (OSError if it cannot), `await stop()` closes the listener and every
    connection. `faults` may be set at any time, from the event loop's thread (or through
    `loop.call_soon_threadsafe`): live connections pick the new value up at their next
    chunk, and chunks held back by faults since removed go out at once."""

    def __init__(
        self,
        listen: Address,
        upstream: Address,
        faults: Faults | None = None,
        *,
        seed: int | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.listen = listen
        self.upstream = upstream
        self.seed = seed
        self.connect_timeout_s = connect_timeout_s
        self.conditions = Conditions(faults or Faults(), seed)
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._accepted = 0
        self.watch = UpstreamWatch(upstream)

    @property
    def faults(self) -> Faults:
        return self.conditions.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.conditions.faults = faults

    @property
    def address(self) -> Address:
        """Where it listens: `listen` with port 0 resolved once started."""
        if self._server is None or not self._server.sockets:
            return self.listen
        return Address(self.listen.host, int(self._server.sockets[0].getsockname()[1]))

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        return self._accepted

    @property
    def losses(self) -> list[Loss]:
        """Every stall so far (the latest 100 000), in the order they were drawn."""
        return list(self.conditions.losses)

    async def start(self) -> None:
        loop = self.conditions.loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._accept, self.listen.host, self.listen.port, reuse_address=True, backlog=1024
        )

    async def probe_upstream(self) -> bool:
        """One dial to the upstream, closed at once, that the watch records: a proxy started
        before its upstream says so at once rather than at its first client."""
        loop = asyncio.get_running_loop()
        try:
            await check_upstream(self.upstream, self.connect_timeout_s)
        except OSError as exc:  # TimeoutError too
            reason = dial_error(exc, self.connect_timeout_s)
            self.watch.failed(reason, loop.time(), client=False)
            return False
        self.watch.answered(loop.time())
        return True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close(reset=False, reason="the proxy is stopping")
        if self._server is not None:
            # Python 3.12+ waits here for the connections too: those closed above flush first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), STOP_TIMEOUT_S)

    def _accept(self) -> "_Side":
        self._accepted += 1
        return _Connection(self, self._accepted).client


class _Side(asyncio.Protocol):
    """One socket of a relayed connection: what it reads goes out on `out`, and it is the
    sink of `into`."""

    out: Link
    into: Link

    def __init__(self, connection: "_Connection", name: str) -> None:
        self.connection = connection
        self.name = name
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.connection.side_made(self)

    def data_received(self, data: bytes) -> None:
        self.out.feed(data)

    def eof_received(self) -> bool:
        self.out.feed_eof()
        return True  # keep the socket: the other direction may still be sending

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.connection.side_lost(self, exc)

    def pause_writing(self) -> None:
        self.into.set_sink_full(True)

    def resume_writing(self) -> None:
        self.into.set_sink_full(False)


class _Connection:
    def __init__(self, proxy: FaultProxy, number: int) -> None:
        self.proxy = proxy
        self.number = number
        self.client = _Side(self, "client")
        self.server = _Side(self, "upstream")
        self.up = Link(self, proxy.conditions, "upstream", self.client, self.server)
        self.down = Link(self, proxy.conditions, "downstream", self.server, self.client)
        self.client.out = self.server.into = self.up
        self.server.out = self.client.into = self.down
        self.closed = False
        self.eofs = 0
        self.peer = "?"
        self._dialling: asyncio.Task[None] | None = None

    def side_made(self, side: _Side) -> None:
        if side is self.client:
            self.proxy._connections.add(self)
            self.peer = _peer_name(side)
            loop = asyncio.get_running_loop()
            # Until the upstream answers, what the client sends waits in the queue (uvloop
            # reads once before a pause in connection_made takes), and reading is held.
            self.up.gate = loop.create_future()
            self.up.pump = loop.create_task(self.up.run_pump())
            self.up.hold(True)
            self._dialling = loop.create_task(self._dial())

    async def _dial(self) -> None:
        upstream = self.proxy.upstream
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: self.server, upstream.host, upstream.port),
                self.proxy.connect_timeout_s,
            )
        except OSError as exc:  # TimeoutError too
            reason = dial_error(exc, self.proxy.connect_timeout_s)
            # One line per outage (the watch's), not one per connection turned away.
            self.proxy.watch.failed(reason, loop.time())
            self.close(reset=True, reason=f"upstream {upstream}: {reason}")
            return
        self.proxy.watch.answered(loop.time())
        if self.closed:  # the client left while we dialled
            if self.server.transport is not None:
                self.server.transport.close()
            return
        log.debug("connection %d from %s: open to %s", self.number, self.peer, upstream)
        self.up.hold(False)
        if self.up.gate is not None:
            self.up.gate.set_result(None)

    def side_lost(self, side: _Side, exc: Exception | None) -> None:
        if exc is None:
            self.close(reset=False, reason=f"{side.name} closed")
        else:  # a reset (or an error) reaches the other end as a reset, as without a proxy
            self.close(reset=True, reason=f"{side.name}: {exc}")

    def eof_sent(self) -> None:
        self.eofs += 1
        if self.eofs == 2:
            self.close(reset=False, reason="closed by both ends")

    def close(self, *, reset: bool, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy._connections.discard(self)
        if self._dialling is not None and not self._dialling.done():
            self._dialling.cancel()
        self.up.cancel()
        self.down.cancel()
        for side in (self.client, self.server):
            if side.transport is None:
                continue
            if reset:
                _abort_with_rst(side.transport)
            else:
                side.transport.close()
        log.debug(
            "connection %d from %s: %s (%s), %d bytes up, %d down",
            self.number,
            self.peer,
            "reset" if reset else "closed",
            reason,
            self.up.bytes,
            self.down.bytes,
        )


def _abort_with_rst(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0: close() sends RST at once instead of FIN, what the peer sees as ECONNRESET.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
    transport.abort()


def _peer_name(side: _Side) -> str:
    peer = side.transport.get_extra_info("peername") if side.transport else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(Address(str(peer[0]), int(peer[1])))
    return "?"
