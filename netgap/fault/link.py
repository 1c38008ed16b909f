"""One direction of a relayed connection (a `Link`): the bytes one socket reads go out through
the other, with the faults of the moment.

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

The end of a stream (FIN) goes on after the bytes ahead of it, as a half-close. Chunks still
queued when the faults are cleared go out at once, in order.
"""

import asyncio
import functools
import logging
import random
from collections import deque
from typing import Protocol, cast

from netgap.fault.conditions import Conditions, Loss, Shaper, Stream
from netgap.fault.spec import Faults

# The proxy's log (`netgap fault proxy -v` raises it), whichever of its modules writes.
log = logging.getLogger("netgap.fault.proxy")

RTO_MIN_S = 0.2  # Linux TCP_RTO_MIN
RTO_MAX_S = 120.0  # Linux TCP_RTO_MAX
MAX_RETRANSMITS = 15  # Linux tcp_retries2: then the connection is given up
# Bytes a link reads ahead of what its faults have let out (a receive window of sorts): beyond
# this it stops reading, so a slow link pushes back on the sender instead of filling memory.
QUEUE_LIMIT_BYTES = 4 * 1024 * 1024


def retransmission_timeout_s(faults: Faults) -> float:
    """The first RTO after a loss: TCP_RTO_MIN plus the round trip these faults add."""
    added_rtt = faults.latency_s * (faults.applies_upstream() + faults.applies_downstream())
    return RTO_MIN_S + added_rtt


class End(Protocol):
    """A socket of the connection, as a link reads from it or writes to it."""

    transport: asyncio.Transport | None


class Connection(Protocol):
    """The connection a link belongs to, as the link closes it and reports its end."""

    number: int  # numbered from 1 in accept order
    closed: bool

    def close(self, *, reset: bool, reason: str) -> None: ...

    def eof_sent(self) -> None: ...


class Link:
    """One direction of a connection: bytes read from `source` go out through `sink`."""

    def __init__(
        self,
        connection: Connection,
        conditions: Conditions,
        stream: Stream,
        source: End,
        sink: End,
    ) -> None:
        self.connection = connection
        self.conditions = conditions
        self.stream = stream
        self.fast_index = 1 if stream == "upstream" else 2  # into Conditions.state
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
        if self.pump is None and not self.conditions.state[self.fast_index]:
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
        self.pending.append((self.conditions.loop.time(), data))
        if data is not None:
            self.pending_bytes += len(data)
            self._update_reading()
        if self.pump is None:
            self.pump = self.conditions.loop.create_task(self.run_pump())

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

    async def run_pump(self) -> None:
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
        state = self.conditions.state
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
        rate_bps = self.conditions.faults.rate_bps  # the latest: a new rate applies from now
        if faulted and rate_bps:
            await self._write_shaped(data, self.conditions.shaper(self.stream, rate_bps))
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
            self.conditions.losses.append(Loss(number, self.stream, chunk, lost, stall, gave_up))
        return stall, gave_up

    def _random(self, purpose: str) -> random.Random:
        rng = self._randoms.get(purpose)
        if rng is None:
            rng = self.conditions.random(self.connection.number, self.stream, purpose)
            self._randoms[purpose] = rng
        return rng

    async def _write_shaped(self, data: bytes, shaper: Shaper) -> None:
        view = memoryview(data)
        step = shaper.slice_bytes
        for start in range(0, len(data), step):
            piece = view[start : start + step]
            if not await self._wait_until(shaper.reserve(len(piece), self.conditions.loop.time())):
                await self._write(bytes(view[start:]))  # no cap any more: the rest at once
                return
            await self._write(bytes(piece))

    async def _wait_until(self, when: float) -> bool:
        """Waits until `when`, unless this link's faults are cleared first: then False, at
        once, so that clearing them releases what they were holding back."""
        loop = self.conditions.loop
        while loop.time() < when:
            if not self.conditions.state[self.fast_index]:
                return False
            waiter: asyncio.Future[bool] = loop.create_future()
            timer = loop.call_at(when, _settle, waiter, True)
            changes = self.conditions.changes()
            on_change = functools.partial(_settle_on, waiter)
            changes.add_done_callback(on_change)
            try:
                if await waiter:  # the time has come (call_at may run a hair early)
                    break
            finally:
                timer.cancel()
                changes.remove_done_callback(on_change)
        return bool(self.conditions.state[self.fast_index])

    async def _wait_writable(self) -> None:
        while self.sink_full:
            self._writable = self.conditions.loop.create_future()
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
