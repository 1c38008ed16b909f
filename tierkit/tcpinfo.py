"""What the kernel knows about a TCP connection: Linux's `struct tcp_info` (TCP_INFO), read with
`struct` from its layout in include/uapi/linux/tcp.h, which only ever grows at the end.

A kernel older than a field gives a shorter struct: the field is then None, never garbage. Off
Linux (no TCP_INFO), or on a socket that is not TCP, there is nothing to read and no error.
"""

import socket
import struct
from typing import Any, NamedTuple

TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)

# name -> (offset, struct format), from include/uapi/linux/tcp.h, in offset order (a TcpInfo's
# fields are these, in this order, so one unpack fills it)
_LAYOUT: dict[str, tuple[int, str]] = {
    "state": (0, "B"),
    "rto_us": (8, "I"),
    "lost": (32, "I"),
    "retrans": (36, "I"),
    "srtt_us": (68, "I"),  # tcpi_rtt: the smoothed RTT
    "rttvar_us": (72, "I"),
    "snd_cwnd": (80, "I"),
    "total_retrans": (100, "I"),  # segments retransmitted over the connection's life
    "min_rtt_us": (148, "I"),  # Linux 4.6
    "delivery_rate": (160, "Q"),  # bytes/s, Linux 4.9
    "bytes_retrans": (208, "Q"),  # Linux 4.19
}


class TcpInfo(NamedTuple):
    state: int | None = None
    rto_us: int | None = None
    lost: int | None = None
    retrans: int | None = None
    srtt_us: int | None = None
    rttvar_us: int | None = None
    snd_cwnd: int | None = None
    total_retrans: int | None = None
    min_rtt_us: int | None = None
    delivery_rate: int | None = None
    bytes_retrans: int | None = None


_CODECS = tuple(
    (name, offset, code, offset + struct.calcsize(code)) for name, (offset, code) in _LAYOUT.items()
)


def _whole() -> struct.Struct:
    """Every field in one format, padding between them: one call for a kernel that has all."""
    layout, at = "=", 0
    for _, offset, code, end in _CODECS:
        layout += f"{offset - at}x{code}" if offset > at else code
        at = end
    return struct.Struct(layout)


_WHOLE = _whole()
# Asking for no more than the fields we read: the kernel copies min(asked, its struct's size),
# and says how much it copied, so an older kernel's shorter struct still shows as shorter.
READ_BYTES = _WHOLE.size


def parse(raw: bytes) -> TcpInfo:
    """The fields `raw` is long enough to hold (native byte order, as the kernel wrote it)."""
    if len(raw) >= _WHOLE.size:
        return TcpInfo._make(_WHOLE.unpack_from(raw))
    found = {
        name: struct.unpack_from(code, raw, offset)[0]
        for name, offset, code, end in _CODECS
        if end <= len(raw)
    }
    return TcpInfo(**found)


def read(sock: socket.socket) -> TcpInfo | None:
    """The socket's TCP_INFO now; None where there is none to read."""
    if TCP_INFO is None:
        return None
    try:
        return parse(sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, READ_BYTES))
    except OSError:
        return None


PREFIX = "netgap.tcp."
# The attribute keys, built once: attributes() runs on every exchange.
_NEW = PREFIX + "new_connection"
_DELIVERY_RATE = PREFIX + "delivery_rate_bps"
_BYTES_RETRANSMITTED = PREFIX + "bytes_retransmitted"
_SRTT = PREFIX + "srtt_us"
_RETRANSMITS = PREFIX + "retransmits"
_GAUGES = tuple(
    (PREFIX + name, TcpInfo._fields.index(name))
    for name in ("rttvar_us", "rto_us", "min_rtt_us", "snd_cwnd", "lost")
)


class Testimony(NamedTuple):
    """One exchange's evidence: the connection's state at its end, what it retransmitted."""

    info: TcpInfo
    new_connection: bool
    retransmits: int | None  # segments, during this exchange
    bytes_retransmitted: int | None

    def attributes(self) -> dict[str, Any]:
        """As span attributes, under netgap.tcp.; the fields this kernel lacks left out."""
        info = self.info
        found: dict[str, Any] = {_NEW: self.new_connection}
        for key, at in _GAUGES:
            value = info[at]
            if value is not None:
                found[key] = value
        if info.delivery_rate is not None:
            found[_DELIVERY_RATE] = info.delivery_rate * 8
        if self.bytes_retransmitted is not None:
            found[_BYTES_RETRANSMITTED] = self.bytes_retransmitted
        # Last, in this order: netgap's breakdown reads these two from the span's end.
        if info.srtt_us is not None:
            found[_SRTT] = info.srtt_us
        if self.retransmits is not None:
            found[_RETRANSMITS] = self.retransmits
        return found


class Witness:
    """Reads a connection's TCP_INFO at the end of each exchange, and what it retransmitted
    during it: the delta of the connection's totals since the previous exchange on it. Totals
    are kept by file descriptor (uvloop hands out a new stand-in socket object each time) and
    start again with each new connection, which is how a reused descriptor is told apart."""

    def __init__(self, max_connections: int = 4096) -> None:
        self._totals: dict[int, tuple[int, int]] = {}
        self._max = max_connections

    def testify(self, sock: socket.socket | None, new_connection: bool) -> Testimony | None:
        info = read(sock) if sock is not None else None
        if sock is None or info is None:
            return None
        fd = sock.fileno()
        segments, octets = (0, 0) if new_connection else self._totals.get(fd, (0, 0))
        if len(self._totals) >= self._max:  # closed connections' entries: start afresh
            self._totals.clear()
        self._totals[fd] = (info.total_retrans or 0, info.bytes_retrans or 0)
        return Testimony(
            info,
            new_connection,
            None if info.total_retrans is None else info.total_retrans - segments,
            None if info.bytes_retrans is None else info.bytes_retrans - octets,
        )
