"""Inject network faults: a TCP proxy adding latency, a bandwidth cap, loss and resets.

  netgap fault proxy --listen 127.0.0.1:8081 --upstream 127.0.0.1:8080 --preset article
  netgap fault set --control 127.0.0.1:8474 --latency 100ms
  netgap fault clear --control 127.0.0.1:8474

`proxy` relays TCP from --listen to --upstream with the faults asked for, and serves a control
API (toxiproxy-like, JSON on /faults) through which `set` and `clear` change them while it runs,
without dropping connections. `k8s` puts such faults on a Kubernetes node or pod with tc.
Units are tc's: 500ms, 50kbit (kilobits/s), 6250bps (bytes/s), 1% (or 1). Comcast's
--target-bw (kbit/s) and --packet-loss are accepted too, and --bandwidth (as `netgap scenario`
names --rate).
"""

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from netgap import aio
from netgap.address import Address, parse_address
from netgap.commands import fault_k8s
from netgap.commands.fault_flags import add_fault_arguments, fault_changes, faults_from_args
from netgap.errors import UsageError
from netgap.fault.control import (
    DEFAULT_PORT,
    ControlServer,
    clear_faults,
    faults_url,
    put_faults,
)
from netgap.fault.proxy import CONNECT_TIMEOUT_S, FaultProxy
from netgap.fault.spec import Faults, FaultSpecError, parse_duration_s

DEFAULT_CONTROL = f"127.0.0.1:{DEFAULT_PORT}"

PROXY_HELP = """Relay TCP from --listen to --upstream, with faults.

Latency is added in each faulted direction (--direction, default both), so a round trip gains
twice --latency; --jitter spreads it without reordering bytes. --rate caps each direction for
all connections together, as a shaped interface does. A --loss'd chunk arrives late by TCP's
retransmission timeout (200 ms plus the round trip the faults add, doubling while the
retransmission is lost too); --reset closes a connection with RST, per chunk forwarded.

The upstream need not be up: the proxy starts anyway, and each client connection is dialled
through when it arrives. While the upstream is down, a client connection is reset as soon as
its dial fails (at once when the upstream refuses, after --connect-timeout when it does not
answer), not held until the upstream comes back, as toxiproxy closes it. One line is logged
when an outage begins and one when it ends; traffic flows again as soon as the upstream
listens, with no restart, and the control API answers throughout.

The control API (--control, toxiproxy's port by default; off to go without) takes
GET/PUT/DELETE on /faults. SIGTERM or Ctrl-C stops (exit 0). Exit 2 for bad flags or a
--listen or --control address it cannot listen on.
"""
SET_HELP = """Change the faults of a running `netgap fault proxy`.

Only the faults given change; the others stay as they are. With --preset, every fault is set:
the preset's, with the flags given on top. Prints the faults now in force.
"""
CLEAR_HELP = """Remove every fault of a running `netgap fault proxy`.

Connections through it stay open and go on at full speed. Prints the faults now in force.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subcommands = parser.add_subparsers(dest="fault_command", metavar="SUBCOMMAND", required=True)
    _add_subcommand(subcommands, "proxy", PROXY_HELP, _add_proxy_arguments, _run_proxy)
    _add_subcommand(subcommands, "set", SET_HELP, _add_set_arguments, _run_set)
    _add_subcommand(subcommands, "clear", CLEAR_HELP, _add_clear_arguments, _run_clear)
    doc = fault_k8s.__doc__ or ""
    _add_subcommand(subcommands, "k8s", doc, fault_k8s.add_arguments, fault_k8s.run)


def _add_subcommand(
    subcommands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    name: str,
    doc: str,
    add: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
) -> None:
    doc = doc.strip()
    sub = subcommands.add_parser(
        name,
        help=doc.splitlines()[0],
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add(sub)
    sub.set_defaults(fault_run=run, command_name=f"fault {name}")


def run(args: argparse.Namespace) -> int:
    fault_run: Callable[[argparse.Namespace], int] = args.fault_run
    return fault_run(args)


# -- flags


def _add_proxy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", type=_address, required=True, metavar="HOST:PORT", help="where clients connect"
    )
    parser.add_argument(
        "--upstream",
        type=_address,
        required=True,
        metavar="HOST:PORT",
        help="the server to relay to",
    )
    parser.add_argument(
        "--control",
        type=_control_address,
        default=parse_address(DEFAULT_CONTROL),
        metavar="HOST:PORT",
        help=f"the control API's listener, or off ({DEFAULT_CONTROL})",
    )
    parser.add_argument(
        "--connect-timeout",
        type=_connect_timeout,
        default=CONNECT_TIMEOUT_S,
        metavar="TIME",
        help="how long a dial to the upstream may go unanswered before the client's connection"
        f" is reset: 2s, 500ms, a number of ms ({CONNECT_TIMEOUT_S:g}s); a refusal resets it at"
        " once",
    )
    add_fault_arguments(parser)
    parser.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="the random draws (jitter, loss, reset) repeat run after run",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every connection opened and closed"
    )


def _add_set_arguments(parser: argparse.ArgumentParser) -> None:
    _add_control_url_argument(parser)
    add_fault_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the faults as JSON")


def _add_clear_arguments(parser: argparse.ArgumentParser) -> None:
    _add_control_url_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the faults as JSON")


def _add_control_url_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control",
        type=_control_url,
        default=faults_url(DEFAULT_CONTROL),
        metavar="URL",
        help=f"the proxy's control API (http://{DEFAULT_CONTROL})",
    )


def _address(text: str) -> Address:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _connect_timeout(text: str) -> float:
    try:
        seconds = parse_duration_s(text, "connect-timeout")
    except FaultSpecError as exc:
        # argparse already names the flag
        raise argparse.ArgumentTypeError(str(exc).removeprefix("connect-timeout: ")) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text.strip()}")
    return seconds


def _control_address(text: str) -> Address | None:
    return None if text.strip().lower() == "off" else _address(text)


def _control_url(text: str) -> str:
    try:
        return faults_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- set, clear


def _run_set(args: argparse.Namespace) -> int:
    changes = fault_changes(args)
    if not changes:
        raise UsageError(
            "nothing to set", hint="give a fault, e.g. --latency 100ms, or --preset article"
        )
    _print_faults(put_faults(args.control, changes), as_json=args.json)
    return 0


def _run_clear(args: argparse.Namespace) -> int:
    _print_faults(clear_faults(args.control), as_json=args.json)
    return 0


def _print_faults(faults: Faults, *, as_json: bool) -> None:
    print(json.dumps(faults.to_json()) if as_json else faults.describe(), flush=True)


# -- proxy


def _run_proxy(args: argparse.Namespace) -> int:
    faults = faults_from_args(args)
    logging.basicConfig(level=logging.WARNING, format="netgap fault proxy: %(message)s")
    logging.getLogger("netgap.fault").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    proxy = FaultProxy(
        args.listen,
        args.upstream,
        faults,
        seed=args.seed,
        connect_timeout_s=args.connect_timeout,
    )
    control = ControlServer(proxy, args.control) if args.control is not None else None
    aio.run(_serve(proxy, control))
    return 0


async def _serve(proxy: FaultProxy, control: ControlServer | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    probe: asyncio.Task[bool] | None = None
    try:
        await _start(proxy.start(), "--listen", proxy.listen)
        if control is not None:
            await _start(control.start(), "--control", control.address)
        print(_ready_line(proxy, control), file=sys.stderr, flush=True)
        # After the ready line: an upstream that is down is said on the next one, and waiting
        # for its answer holds up neither the listeners nor the control API.
        probe = loop.create_task(proxy.probe_upstream())
        await stop.wait()
    finally:
        if probe is not None:
            probe.cancel()
        if control is not None:
            await control.stop()
        await proxy.stop()


async def _start(starting: Coroutine[Any, Any, None], flag: str, address: Address) -> None:
    try:
        await starting
    except OSError as exc:
        raise UsageError(
            f"{flag} {address}: cannot listen on {address} ({exc.strerror or exc})",
            hint=f"pick a free port with {flag}",
        ) from None


def _ready_line(proxy: FaultProxy, control: ControlServer | None) -> str:
    seed = f" (seed {proxy.seed})" if proxy.seed is not None else ""
    return (
        f"netgap fault proxy: listening on {proxy.address} -> upstream {proxy.upstream}, "
        f"control {control.url if control else 'off'}, "
        f"faults: {proxy.faults.describe()}{seed}"
    )
