"""The fault proxy: a userspace TCP relay that does to traffic what a `Faults` value says.

Each accepted connection is dialled through to the upstream at once (the handshake itself is not
delayed, as in toxiproxy) and relayed both ways. The upstream may be down, at start or later:
then the client's connection is reset as soon as the dial fails (refused at once, or unanswered
for `connect_timeout_s`), not held, as toxiproxy closes it, and the next connection dials again,
so traffic flows as soon as the upstream listens. An outage is logged once, when a dial first
fails, and its end once, when one succeeds again. A connection has two links: `upstream` (client
-> server) and `downstream` (server -> client), toxiproxy's names. What a link forwards is one
chunk per socket read. The faults are read once per chunk, so changing `FaultProxy.faults` takes
effect on live connections at their next chunk; none is dropped.

With no fault on a link, a chunk is written out from the read callback itself: no queue, no
timer, no task. With faults, chunks queue on the link and one task forwards them in order:

  reset    with probability `reset` the connection is closed with RST (SO_LINGER 0) instead of
           forwarding the chunk.
  latency  the chunk leaves `latency +- jitter` after it was read, and never before the chunk
           read ahead of it: jitter varies delays, it does not reorder bytes.
  loss     TCP is reliable, so a lost segment is a stall, not missing bytes: with probability
           `loss` the chunk waits one retransmission timeout before it goes, and while its
           retransmission is lost too (drawn again) the timeout doubles, as Linux backs off.
           The timeout starts at `retransmission_timeout_s(faults)`: 200 ms (TCP_RTO_MIN)
           plus the round trip the faults add, as Linux's SRTT + 200 ms with a steady RTT. A
           delivered chunk resets it. After 15 lost retransmissions (tcp_retries2) TCP gives
           up: the connection is reset. Each stall is kept in `FaultProxy.losses`.
  rate     one shaper per direction, shared by every connection, as on a shaped interface: a
           chunk is delivered once its last byte has crossed a link of `rate` (netem's `rate`:
           every chunk pays its serialization time, and chunks of all connections queue behind
           one another). Big chunks go in slices of 100 ms of link time, as toxiproxy does.

The end of a stream (FIN) goes on after the bytes ahead of it, as a half-close: the other
direction carries on until it ends too, and then both sockets close. A reset (or error) on one
side resets the other. Chunks still queued when the faults are cleared go out at once, in
order. With `seed`, every random draw comes from generators seeded with (seed, connection
number, link): the same sequence of chunks meets the same jitter, losses and resets on every
run.
"""

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import struct
from collections import deque
from dataclasses import dataclass
from typing import Literal, cast

from netgap.address import Address
from netgap.fault.spec import Faults

log = logging.getLogger("netgap.fault.proxy")

Stream = Literal["upstream", "downstream"]

RTO_MIN_S = 0.2  # Linux TCP_RTO_MIN
RTO_MAX_S = 120.0  # Linux TCP_RTO_MAX
MAX_RETRANSMITS = 15  # Linux tcp_retries2: then the connection is given up
SLICE_S = 0.1  # link time of one slice of a rate-capped chunk (toxiproxy's 100 ms)
# A shaper busy until a moment ago is still busy: the few ms a sleep overshoots must not count
# as idle time, or back-to-back slices would run below the rate.
SHAPER_SLACK_S = 0.005
# Bytes a link reads ahead of what its faults have let out (a receive window of sorts): beyond
# this it stops reading, so a slow link pushes back on the sender instead of filling memory.
QUEUE_LIMIT_BYTES = 4 * 1024 * 1024
CONNECT_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 2.0
MAX_LOSS_RECORDS = 100_000
_LINGER_0 = struct.pack("ii", 1, 0)


@dataclass(frozen=True)
class Loss:
    """One chunk that TCP would have had to retransmit."""

    connection: int  # numbered from 1 in accept order
    stream: Stream
    chunk: int  # among the chunks this link forwarded under faults, from 0
    lost: int  # transmissions lost before one got through (or before giving up)
    stall_s: float  # what the retransmission timeouts added to its delivery
    gave_up: bool = False  # every retransmission lost: the connection was reset


def retransmission_timeout_s(faults: Faults) -> float:
    """The first RTO after a loss: TCP_RTO_MIN plus the round trip these faults add."""
    added_rtt = faults.latency_s * (faults.applies_upstream() + faults.applies_downstream())
    return RTO_MIN_S + added_rtt


async def check_upstream(address: Address, timeout_s: float = 5.0) -> None:
    """One TCP connect to `address`, closed at once; OSError or TimeoutError if it fails."""
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(address.host, address.port), timeout_s
    )
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def dial_error(exc: OSError, timeout_s: float) -> str:
    """Why a dial failed, as a person reads it: "Connection refused", "no answer in 10 s"."""
    if isinstance(exc, TimeoutError):
        return f"no answer in {timeout_s:g} s"
    if exc.errno:  # asyncio's own loop words it "Connect call failed (...)", uvloop not
        return os.strerror(exc.errno)
    return exc.strerror or repr(exc)


class UpstreamWatch:
    """Whether the upstream answers, as the dials find it: one log line when an outage begins
    and one when it ends, however many client connections it turned away in between."""

    def __init__(self, upstream: Address) -> None:
        self.upstream = upstream
        self.down_since: float | None = None  # loop time of the first failed dial
        self.turned_away = 0  # client connections reset in this outage
        self.outages = 0

    @property
    def up(self) -> bool:
        return self.down_since is None

    def failed(self, reason: str, now: float, *, client: bool = True) -> None:
        self.turned_away += 1 if client else 0
        if self.down_since is not None:
            return
        self.down_since = now
        self.outages += 1
        log.warning(
            "upstream %s is down (%s): client connections are reset at once until it answers",
            self.upstream,
            reason,
        )

    def answered(self, now: float) -> None:
        if self.down_since is None:
            return
        log.warning(
            "upstream %s answers again after %.1f s down; %d client connection%s reset meanwhile",
            self.upstream,
            now - self.down_since,
            self.turned_away,
            "" if self.turned_away == 1 else "s",
        )
        self.down_since = None
        self.turned_away = 0


class FaultProxy:
    """Relays TCP from `listen` to `upstream` with the faults of the moment.

    `await start()` binds (OSError if it cannot), `await stop()` closes the listener and every
    connection. `faults` may be set at any time, from the event loop's thread (or through
    `loop.call_soon_threadsafe`): live connections pick the new value up at their next
    chunk, and chunks held back by faults since removed go out at once."""

    _loop: asyncio.AbstractEventLoop  # from start()
    _changed: "asyncio.Future[None] | None" = None  # done at the next change of `faults`

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
        self.faults = faults or Faults()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._accepted = 0
        self._shapers: dict[Stream, _Shaper] = {}
        self._losses: deque[Loss] = deque(maxlen=MAX_LOSS_RECORDS)
        self.watch = UpstreamWatch(upstream)

    @property
    def faults(self) -> Faults:
        return self._state[0]

    @faults.setter
    def faults(self, faults: Faults) -> None:
        # One assignment, so a chunk never sees new faults with the old fast-path flags.
        self._state = (
            faults,
            faults.active and faults.applies_upstream(),
            faults.active and faults.applies_downstream(),
        )
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)  # wakes the chunks waiting under the old faults

    def _changes(self) -> "asyncio.Future[None]":
        """Done at the next change of the faults."""
        if self._changed is None:
            self._changed = self._loop.create_future()
        return self._changed

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
        return list(self._losses)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
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

    def _shaper(self, stream: Stream, rate_bps: int) -> "_Shaper":
        shaper = self._shapers.get(stream)
        if shaper is None or shaper.rate_bps != rate_bps:
            shaper = self._shapers[stream] = _Shaper(rate_bps)
        return shaper

    def _random(self, connection: int, stream: Stream, purpose: str) -> random.Random:
        if self.seed is None:
            return random.Random()  # noqa: S311 (a fault model, not a secret)
        return random.Random(f"{self.seed}/{connection}/{stream}/{purpose}")  # noqa: S311


class _Shaper:
    """A link of `rate_bps` in one direction: each reservation ends where the one before it
    did, plus its own bytes' serialization time."""

    def __init__(self, rate_bps: int) -> None:
        self.rate_bps = rate_bps
        self.bytes_per_s = rate_bps / 8
        self.slice_bytes = max(1, int(self.bytes_per_s * SLICE_S))
        self.free_at = 0.0

    def reserve(self, size: int, now: float) -> float:
        """When `size` bytes handed over `now` have crossed the link."""
        start = self.free_at if self.free_at >= now - SHAPER_SLACK_S else now
        self.free_at = start + size / self.bytes_per_s
        return self.free_at


class _Side(asyncio.Protocol):
    """One socket of a relayed connection: what it reads goes out on `out`, and it is the
    sink of `into`."""

    out: "_Link"
    into: "_Link"

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
        self.up = _Link(self, "upstream", self.client, self.server)
        self.down = _Link(self, "downstream", self.server, self.client)
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
            self.up.pump = loop.create_task(self.up._run_pump())
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


class _Link:
    """One direction of a connection: bytes read from `source` go out through `sink`."""

    def __init__(self, connection: _Connection, stream: Stream, source: _Side, sink: _Side):
        self.connection = connection
        self.proxy = connection.proxy
        self.stream = stream
        self.fast_index = 1 if stream == "upstream" else 2  # into FaultProxy._state
        self.source = source
        self.sink = sink
        self.bytes = 0
        self.pending: deque[tuple[float, bytes | None]] = deque()  # None: the end (EOF)
        self.pending_bytes = 0
        self.pump: asyncio.Task[None] | None = None
        self.chunks = 0
        self.sink_full = False
        self.held = False
        self.source_ended = False  # it sent FIN: nothing more to read
        self.gate: asyncio.Future[None] | None = None  # the pump waits for it: a sink to write to
        self._writable: asyncio.Future[None] | None = None
        self._randoms: dict[str, random.Random] = {}

    # -- reading side: the event loop calls these from the source's protocol

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        if self.pump is None and not self.proxy._state[self.fast_index]:
            # The zero-fault path: straight out, in the read callback.
            cast(asyncio.Transport, self.sink.transport).write(data)
            return
        self._enqueue(data)

    def feed_eof(self) -> None:
        if self.source_ended:
            return
        self.source_ended = True
        if self.pump is None and not self.pending:
            self._send_eof()
        else:
            self._enqueue(None)

    def _enqueue(self, data: bytes | None) -> None:
        self.pending.append((self.proxy._loop.time(), data))
        if data is not None:
            self.pending_bytes += len(data)
            self._update_reading()
        if self.pump is None:
            self.pump = self.proxy._loop.create_task(self._run_pump())

    def hold(self, held: bool) -> None:
        self.held = held
        self._update_reading()

    def set_sink_full(self, full: bool) -> None:
        self.sink_full = full
        self._update_reading()
        if not full and self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _update_reading(self) -> None:
        pause = self.held or self.sink_full or self.pending_bytes > QUEUE_LIMIT_BYTES
        transport = self.source.transport
        # Past the end, resume_reading would read the end again (asyncio's transports). And
        # asking the transport, not a flag of ours: uvloop starts reading after
        # connection_made whatever it was told there.
        if self.source_ended or transport is None or transport.is_closing():
            return
        if pause != transport.is_reading():
            return
        if pause:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def cancel(self) -> None:
        if self.pump is not None:
            self.pump.cancel()
        self.pending.clear()
        self.pending_bytes = 0

    # -- the pump: forwards queued chunks in order, with the faults of the moment

    async def _run_pump(self) -> None:
        try:
            if self.gate is not None:
                await self.gate
                self.gate = None
            while self.pending and not self.connection.closed:
                received_at, data = self.pending.popleft()
                if data is None:
                    await self._wait_writable()
                    self._send_eof()
                    continue
                self.pending_bytes -= len(data)
                self._update_reading()
                await self._forward(received_at, data)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # a bug here must not leave the connection hanging
            log.exception("connection %d: %s link failed", self.connection.number, self.stream)
            self.connection.close(reset=True, reason=f"proxy error: {exc!r}")
        finally:
            self.pump = None

    async def _forward(self, received_at: float, data: bytes) -> None:
        state = self.proxy._state
        faults = state[0]
        if not state[self.fast_index]:  # cleared, or not this direction
            await self._write(data)
            return
        chunk = self.chunks
        self.chunks += 1
        if faults.reset and self._random("reset").random() < faults.reset:
            self.connection.close(reset=True, reason=f"reset fault on {self.stream} chunk")
            return
        stall, gave_up = self._loss_stall(faults, chunk)
        faulted = await self._wait_until(received_at + self._latency_s(faults) + stall)
        if faulted and gave_up:
            self.connection.close(reset=True, reason="every retransmission lost")
            return
        rate_bps = self.proxy.faults.rate_bps  # the latest: a new rate applies from now
        if faulted and rate_bps:
            await self._write_shaped(data, self.proxy._shaper(self.stream, rate_bps))
        else:
            await self._write(data)

    def _latency_s(self, faults: Faults) -> float:
        if not faults.jitter_s:
            return faults.latency_s
        return faults.latency_s + self._random("jitter").uniform(-faults.jitter_s, faults.jitter_s)

    def _loss_stall(self, faults: Faults, chunk: int) -> tuple[float, bool]:
        """The retransmission wait this chunk meets, and whether TCP gives up on it."""
        if not faults.loss:
            return 0.0, False
        draw = self._random("loss").random
        rto = retransmission_timeout_s(faults)
        stall = 0.0
        lost = 0
        gave_up = False
        while draw() < faults.loss:  # this transmission is lost: wait an RTO, send again
            lost += 1
            stall += rto
            rto = min(rto * 2, RTO_MAX_S)
            if lost > MAX_RETRANSMITS:
                gave_up = True
                break
        if lost:
            number = self.connection.number
            self.proxy._losses.append(Loss(number, self.stream, chunk, lost, stall, gave_up))
        return stall, gave_up

    def _random(self, purpose: str) -> random.Random:
        rng = self._randoms.get(purpose)
        if rng is None:
            rng = self.proxy._random(self.connection.number, self.stream, purpose)
            self._randoms[purpose] = rng
        return rng

    async def _write_shaped(self, data: bytes, shaper: _Shaper) -> None:
        view = memoryview(data)
        step = shaper.slice_bytes
        for start in range(0, len(data), step):
            piece = view[start : start + step]
            if not await self._wait_until(shaper.reserve(len(piece), self.proxy._loop.time())):
                await self._write(bytes(view[start:]))  # no cap any more: the rest at once
                return
            await self._write(bytes(piece))

    async def _wait_until(self, when: float) -> bool:
        """Waits until `when`, unless this link's faults are cleared first: then False, at
        once, so that clearing them releases what they were holding back."""
        loop = self.proxy._loop
        while loop.time() < when:
            if not self.proxy._state[self.fast_index]:
                return False
            waiter: asyncio.Future[bool] = loop.create_future()
            timer = loop.call_at(when, _settle, waiter, True)
            changes = self.proxy._changes()
            on_change = functools.partial(_settle_on, waiter)
            changes.add_done_callback(on_change)
            try:
                if await waiter:  # the time has come (call_at may run a hair early)
                    break
            finally:
                timer.cancel()
                changes.remove_done_callback(on_change)
        return bool(self.proxy._state[self.fast_index])

    async def _wait_writable(self) -> None:
        while self.sink_full:
            self._writable = self.proxy._loop.create_future()
            await self._writable

    async def _write(self, data: bytes) -> None:
        await self._wait_writable()
        transport = self.sink.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _send_eof(self) -> None:
        transport = self.sink.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()
        self.connection.eof_sent()


def _settle(waiter: "asyncio.Future[bool]", timed_out: bool) -> None:
    if not waiter.done():
        waiter.set_result(timed_out)


def _settle_on(waiter: "asyncio.Future[bool]", _changes: "asyncio.Future[None]") -> None:
    _settle(waiter, False)


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
