"""What every connection of one fault proxy shares: the faults of the moment (with a future for
their next change), one rate shaper per direction, the seeded random draws, and the record of
the losses drawn so far."""

import asyncio
import random
from collections import deque
from dataclasses import dataclass
from typing import Literal

from netgap.fault.spec import Faults

Stream = Literal["upstream", "downstream"]

SLICE_S = 0.1  # link time of one slice of a rate-capped chunk (toxiproxy's 100 ms)
# A shaper busy until a moment ago is still busy: the few ms a sleep overshoots must not count
# as idle time, or back-to-back slices would run below the rate.
SHAPER_SLACK_S = 0.005
MAX_LOSS_RECORDS = 100_000


@dataclass(frozen=True)
class Loss:
    """One chunk that TCP would have had to retransmit."""

    connection: int  # numbered from 1 in accept order
    stream: Stream
    chunk: int  # among the chunks this link forwarded under faults, from 0
    lost: int  # transmissions lost before one got through (or before giving up)
    stall_s: float  # what the retransmission timeouts added to its delivery
    gave_up: bool = False  # every retransmission lost: the connection was reset


class Shaper:
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


class Conditions:
    """The faults of the moment and the state the links of every connection share.

    `faults` may be set at any time from the event loop's thread: `state` changes in one
    assignment, and the future of `changes()` is done, waking the chunks held under the old
    faults."""

    loop: asyncio.AbstractEventLoop  # the proxy's, from its start()
    _changed: "asyncio.Future[None] | None" = None  # done at the next change of `faults`

    def __init__(self, faults: Faults, seed: int | None) -> None:
        self.seed = seed
        self.faults = faults
        self.shapers: dict[Stream, Shaper] = {}
        self.losses: deque[Loss] = deque(maxlen=MAX_LOSS_RECORDS)

    @property
    def faults(self) -> Faults:
        return self.state[0]

    @faults.setter
    def faults(self, faults: Faults) -> None:
        # One assignment, so a chunk never sees new faults with the old fast-path flags.
        # `state[1]`, `state[2]`: whether faults apply upstream, downstream (Link.fast_index).
        self.state = (
            faults,
            faults.active and faults.applies_upstream(),
            faults.active and faults.applies_downstream(),
        )
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)  # wakes the chunks waiting under the old faults

    def changes(self) -> "asyncio.Future[None]":
        """Done at the next change of the faults."""
        if self._changed is None:
            self._changed = self.loop.create_future()
        return self._changed

    def shaper(self, stream: Stream, rate_bps: int) -> Shaper:
        shaper = self.shapers.get(stream)
        if shaper is None or shaper.rate_bps != rate_bps:
            shaper = self.shapers[stream] = Shaper(rate_bps)
        return shaper

    def random(self, connection: int, stream: Stream, purpose: str) -> random.Random:
        if self.seed is None:
            return random.Random()  # noqa: S311 (a fault model, not a secret)
        return random.Random(f"{self.seed}/{connection}/{stream}/{purpose}")  # noqa: S311
