"""The fault proxy's upstream, as its dials find it: a one-off check, why a dial failed in words,
and the watch that logs an outage once when it begins and once when it ends."""

import asyncio
import contextlib
import logging
import os

from netgap.address import Address

# The proxy's log (`netgap fault proxy -v` raises it), whichever of its modules writes.
log = logging.getLogger("netgap.fault.proxy")


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
