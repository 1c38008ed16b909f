"""Why a 500 ms delay becomes seconds per request: the expected remote time, term by term.

A fault tool's delay is per packet (per chunk, for a proxy), not per request, and a request
pays it several times over. The model, after fault-tools.md section 5, for one HTTP exchange
over TCP through a link with one-way latency L, a cap of C bytes/s and loss p:

  propagation  N_rtt * RTT, with RTT = 2L. N_rtt = 1 on a kept-alive connection; a new one
               adds the handshake's round trip, if the injector delays the handshake (tc
               netem does, a proxy like toxiproxy or ours accepts at once).
  transfer     bytes on the wire / C, both messages (and SYN, SYN-ACK on a new connection).
               Bytes on the wire = payload (HTTP headers included) + per-packet TCP/IP
               headers (52 B each) for tc; a userspace proxy charges the payload only.
  loss         the expected stall: P(some segment of the exchange is lost) * one retransmission
               timeout; a single-segment message gets no fast retransmit. The timeout is
               SRTT + 200 ms (TCP_RTO_MIN) on an established connection, 3 * RTT on a fresh one
               (tc; the proxy always stalls SRTT + 200 ms), and 1 s (TCP_TIMEOUT_INIT) for a
               lost SYN or SYN-ACK.
  queueing     the cap is shared by every exchange through it. When the steady load offers
               more bytes per second than C, the backlog grows by the excess every second:
               each second of the fault adds excess / C seconds of wait. Requests started
               evenly over a fault of F seconds wait (excess / C) * F / 2 on average, and the
               last ones (excess / C) * F. This, not the per-request terms, is how a steady
               stream turns a 500 ms delay into many seconds. (The proxy lets what it holds go
               at once when the faults are cleared, so the last requests of the fault wait
               less than this: the term overestimates them a little.)

Every term is a mean (means add up; medians do not). Not modelled: congestion control and
slow start (the messages here fit the initial window), the small waits of random arrivals below
the cap, the callers' timeouts, and a qdisc limit dropping packets once the backlog is full.
"""

import math
from dataclasses import dataclass
from typing import Any

TCP_IP_HEADER_BYTES = 52  # IPv4 20 + TCP 20 + timestamps option 12
MSS_BYTES = 1448  # Ethernet MTU 1500 minus the 52 above
RTO_MIN_S = 0.2  # Linux TCP_RTO_MIN
SYN_RTO_S = 1.0  # Linux TCP_TIMEOUT_INIT
FRESH_RTO_RTTS = 3.0  # first RTT sample m gives RTO = 3m

PROPAGATION = "propagation"
TRANSFER = "transfer"
LOSS = "loss"
QUEUEING = "queueing"


@dataclass(frozen=True)
class Injector:
    """What about the fault tool changes the arithmetic."""

    name: str
    delays_handshake: bool  # SYN and SYN-ACK pay the latency too
    overhead_bytes: int  # charged per packet by the cap, besides the payload
    segment_bytes: int  # payload per lost-or-not unit: a packet (MSS), or a proxy's read
    fresh_rto_rtts: float | None  # the RTO on a new connection in RTTs; None: as established


# tc netem on an interface: what Comcast and Chaos Mesh set up (the story's cluster).
NETEM = Injector(
    name="tc netem",
    delays_handshake=True,
    overhead_bytes=TCP_IP_HEADER_BYTES,
    segment_bytes=MSS_BYTES,
    fresh_rto_rtts=FRESH_RTO_RTTS,
)
# `netgap fault proxy`: accepts at once (the handshake is not delayed), shapes the payload it
# relays, draws loss per chunk read and stalls it SRTT + 200 ms.
PROXY = Injector(
    name="netgap fault proxy",
    delays_handshake=False,
    overhead_bytes=0,
    segment_bytes=65536,
    fresh_rto_rtts=None,
)

# `netgap scenario --kernel` on a kernel without netem: the cap is a tbf and the loss an
# iptables rule on the veth (per packet, headers charged, a lost packet waits for the kernel's
# retransmission), the latency the proxy's, which accepts at once: the handshake is not delayed
# (nor charged: SYN and SYN-ACK are left out of the cap's bytes, a few dozen B each). The
# kernel's RTO on the proxy's hop to the API does not see the proxy's hold, so the loss term
# (which assumes it does) is on the high side.
TC_PROXY_LATENCY = Injector(
    name="tc tbf and iptables statistic (rate, loss), netgap fault proxy (latency)",
    delays_handshake=False,
    overhead_bytes=TCP_IP_HEADER_BYTES,
    segment_bytes=MSS_BYTES,
    fresh_rto_rtts=None,
)


@dataclass(frozen=True)
class Link:
    """The fault: one-way latency in each direction, a cap, a loss rate."""

    latency_s: float
    rate_bps: int | None = None  # bits a second; None: no cap
    loss: float = 0.0

    @property
    def round_trip_s(self) -> float:
        return 2 * self.latency_s

    @property
    def cap_bytes_per_s(self) -> float | None:
        return None if self.rate_bps is None else self.rate_bps / 8


@dataclass(frozen=True)
class Exchange:
    """One request and its response as sent: HTTP headers and body, no TCP/IP headers."""

    request_bytes: int
    response_bytes: int


@dataclass(frozen=True)
class Load:
    """The steady traffic through the link while the fault lasts."""

    requests_per_s: float
    fault_s: float  # how long the backlog grows
    new_connection_share: float = 0.0  # of exchanges that open a connection first
    # One cap for both directions (one shaped interface carries requests and responses), or
    # one per direction (the proxy; tc on each node's egress): then the busier direction is
    # the bottleneck.
    shared_cap: bool = False
    other_bytes_per_s: float = 0.0  # anything else through the cap (metrics agents, ...)


@dataclass(frozen=True)
class Term:
    name: str
    seconds: float
    formula: str  # the arithmetic, with the numbers

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": self.seconds, "formula": self.formula}


@dataclass(frozen=True)
class Expectation:
    """The expected mean remote time of a request started during the fault, by term."""

    terms: tuple[Term, ...]
    backlog_growth: float  # seconds of wait added per second of fault (0: no backlog)
    worst_wait_s: float  # the queueing wait at the end of the fault

    @property
    def total_s(self) -> float:
        return sum(term.seconds for term in self.terms)

    @property
    def dominant(self) -> Term:
        return max(self.terms, key=lambda term: term.seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "total_s": self.total_s,
            "dominant": self.dominant.name,
            "backlog_growth_s_per_s": self.backlog_growth,
            "worst_queueing_wait_s": self.worst_wait_s,
            "terms": [term.to_json() for term in self.terms],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Expectation":
        """to_json() read back (its total and dominant term follow from the terms)."""
        return cls(
            terms=tuple(Term(**term) for term in data["terms"]),
            backlog_growth=data["backlog_growth_s_per_s"],
            worst_wait_s=data["worst_queueing_wait_s"],
        )


def segments(payload: int, injector: Injector) -> int:
    """Packets (or proxy reads) one message takes; even an empty one is a segment."""
    return max(1, math.ceil(payload / injector.segment_bytes))


def wire_bytes(payload: int, injector: Injector) -> int:
    """What the cap charges for one message."""
    return payload + segments(payload, injector) * injector.overhead_bytes


def handshake_bytes(injector: Injector) -> int:
    """SYN and SYN-ACK on the wire (the final ACK rides with the request)."""
    return 2 * injector.overhead_bytes if injector.delays_handshake else 0


def round_trips(new_share: float, injector: Injector) -> float:
    """Round trips per exchange: the request's, plus the handshake's on new connections."""
    return 1.0 + (new_share if injector.delays_handshake else 0.0)


def established_rto_s(link: Link) -> float:
    """SRTT + TCP_RTO_MIN with a steady round trip."""
    return link.round_trip_s + RTO_MIN_S


def data_stall_s(link: Link, new_share: float, injector: Injector) -> float:
    """The wait for one lost data segment, mixed over new and kept-alive connections."""
    established = established_rto_s(link)
    if injector.fresh_rto_rtts is None:
        return established
    fresh = injector.fresh_rto_rtts * link.round_trip_s
    return new_share * fresh + (1 - new_share) * established


def loss_chance(loss: float, count: int) -> float:
    """P(at least one of `count` segments is lost)."""
    return 1 - (1 - loss) ** count


def propagation(link: Link, load: Load, injector: Injector) -> Term:
    n = round_trips(load.new_connection_share, injector)
    return Term(
        PROPAGATION,
        n * link.round_trip_s,
        f"{n:.2f} round trips x {_s(link.round_trip_s)} (2 x {_s(link.latency_s)} one way)",
    )


def transfer(link: Link, exchange: Exchange, load: Load, injector: Injector) -> Term:
    cap = link.cap_bytes_per_s
    if cap is None:
        return Term(TRANSFER, 0.0, "no bandwidth cap")
    request = wire_bytes(exchange.request_bytes, injector)
    response = wire_bytes(exchange.response_bytes, injector)
    handshake = load.new_connection_share * handshake_bytes(injector)
    total = request + response + handshake
    extra = f" + {handshake:.0f} B handshake" if handshake else ""
    return Term(
        TRANSFER,
        total / cap,
        f"({request} B request + {response} B response{extra}) / {cap:g} B/s",
    )


def loss(link: Link, exchange: Exchange, load: Load, injector: Injector) -> Term:
    if not link.loss:
        return Term(LOSS, 0.0, "no loss")
    share = load.new_connection_share
    count = segments(exchange.request_bytes, injector) + segments(exchange.response_bytes, injector)
    data_chance = loss_chance(link.loss, count)
    handshake = 0.0
    if injector.delays_handshake:
        handshake = share * loss_chance(link.loss, 2) * SYN_RTO_S
    stall = data_stall_s(link, share, injector)
    data = data_chance * stall
    formula = f"{data_chance:.2%} of exchanges lose one of {count} segments x {_s(stall)} RTO"
    if handshake:
        formula += f" + {share:.0%} new x {loss_chance(link.loss, 2):.2%} SYN/SYN-ACK x 1 s"
    return Term(LOSS, data + handshake, formula)


def offered_bytes_per_s(exchange: Exchange, load: Load, injector: Injector) -> float:
    """Bytes a second the load offers to the busiest cap."""
    share = load.new_connection_share
    up = wire_bytes(exchange.request_bytes, injector) + share * handshake_bytes(injector) / 2
    down = wire_bytes(exchange.response_bytes, injector) + share * handshake_bytes(injector) / 2
    per_request = up + down if load.shared_cap else max(up, down)
    return load.requests_per_s * per_request + load.other_bytes_per_s


def backlog_growth(link: Link, exchange: Exchange, load: Load, injector: Injector) -> float:
    """Seconds of wait each second of fault adds: the excess over the cap, in cap-seconds."""
    cap = link.cap_bytes_per_s
    if cap is None:
        return 0.0
    return max(0.0, offered_bytes_per_s(exchange, load, injector) - cap) / cap


def queueing(link: Link, exchange: Exchange, load: Load, injector: Injector) -> Term:
    cap = link.cap_bytes_per_s
    if cap is None:
        return Term(QUEUEING, 0.0, "no bandwidth cap")
    offered = offered_bytes_per_s(exchange, load, injector)
    growth = backlog_growth(link, exchange, load, injector)
    where = "both directions" if load.shared_cap else "the busier direction"
    if not growth:
        return Term(
            QUEUEING,
            0.0,
            f"{load.requests_per_s:g} req/s offer {offered:.0f} B/s ({where}), under the "
            f"{cap:g} B/s cap: no backlog",
        )
    return Term(
        QUEUEING,
        growth * load.fault_s / 2,
        f"{load.requests_per_s:g} req/s offer {offered:.0f} B/s ({where}) to a {cap:g} B/s "
        f"cap: +{growth:.3f} s of wait per second; mean over {load.fault_s:g} s = "
        f"{growth:.3f} x {load.fault_s:g} / 2",
    )


def expect(link: Link, exchange: Exchange, load: Load, injector: Injector = PROXY) -> Expectation:
    """The expected mean remote time under `link`'s faults, term by term."""
    growth = backlog_growth(link, exchange, load, injector)
    return Expectation(
        terms=(
            propagation(link, load, injector),
            transfer(link, exchange, load, injector),
            loss(link, exchange, load, injector),
            queueing(link, exchange, load, injector),
        ),
        backlog_growth=growth,
        worst_wait_s=growth * load.fault_s,
    )


def exchange_time_s(
    link: Link,
    exchange: Exchange,
    *,
    new_connection: bool,
    injector: Injector = NETEM,
    lost_syn: bool = False,
    lost_data: bool = False,
) -> float:
    """One exchange on an idle link, with or without one loss: fault-tools.md's examples."""
    load = Load(requests_per_s=0.0, fault_s=0.0, new_connection_share=float(new_connection))
    seconds = propagation(link, load, injector).seconds
    seconds += transfer(link, exchange, load, injector).seconds
    if lost_syn:
        seconds += SYN_RTO_S
    if lost_data:
        seconds += data_stall_s(link, float(new_connection), injector)
    return seconds


def _s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
