"""The fault flags, declared once for `netgap fault proxy`, `fault set`, `fault k8s` and
`netgap scenario`: their spellings, types, help and error messages, and how they read back.

A flag's value is kept as the control API's JSON field would carry it (text, checked already),
so that `fault set` sends only the fields given, and the other commands build their `Faults`
the way the control API does: a preset's fields, then the flags given over them.
"""

import argparse
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from netgap.errors import UsageError
from netgap.fault.spec import (
    DIRECTIONS,
    PRESETS,
    Faults,
    FaultSpecError,
    parse_duration_s,
    parse_fraction,
    parse_rate_bps,
)

FIELDS = ("latency", "jitter", "rate", "loss", "reset", "direction")
# What tc can do too (`fault k8s`, `scenario --kernel`); reset and direction are the proxy's.
SHAPING = ("latency", "jitter", "rate", "loss")
NO_PRESET = "none"
# The default of every fault flag: `--rate none` stores None, so None cannot mean "not given".
_UNSET: Any = object()


@dataclass(frozen=True)
class Spelling:
    """One way to write a field on the command line."""

    flag: str
    metavar: str | None
    type: Callable[[str], str | None] = str
    choices: tuple[str, ...] | None = None
    # Said when it is not the field's first spelling in the command at hand, which `{main}`
    # stands for.
    aside: str = "{main}, by another name"


@dataclass(frozen=True)
class FaultFlag:
    help: str  # said by the field's first spelling in the command at hand
    spellings: tuple[Spelling, ...]


def add_fault_arguments(
    parser: argparse.ArgumentParser,
    *,
    fields: Collection[str] = FIELDS,
    title: str = "faults",
    default_preset: str | None = None,
    taken: Collection[str] = (),
) -> "argparse._ArgumentGroup":
    """The flags for `fields`, in a group titled `title` (returned, for a command's own flags
    about its faults), then --preset (`default_preset` when none is given, and then `none` for
    no preset). A field written several ways takes one of them; a spelling in `taken` means
    something else in this command and is left out."""
    group = parser.add_argument_group(title)
    for field in (field for field in FIELDS if field in fields):
        flag = FAULT_FLAGS[field]
        spellings = [s for s in flag.spellings if s.flag not in taken]
        exclusive = group.add_mutually_exclusive_group() if len(spellings) > 1 else group
        for spelling in spellings:
            main = spelling is spellings[0]
            exclusive.add_argument(
                spelling.flag,
                dest=_dest(field),
                default=_UNSET,
                type=spelling.type,
                choices=spelling.choices,
                metavar=spelling.metavar,
                help=flag.help if main else spelling.aside.replace("{main}", spellings[0].flag),
            )
    choices = sorted(PRESETS) + ([NO_PRESET] if default_preset is not None else [])
    group.add_argument(
        "--preset", choices=choices, default=default_preset, help=_preset_help(default_preset)
    )
    return group


def fault_changes(args: argparse.Namespace) -> dict[str, str | None]:
    """The fault fields the command line sets, as the control API takes them: the preset's,
    then the flags given over them."""
    changes: dict[str, str | None] = {}
    if args.preset in PRESETS:
        changes.update(PRESETS[args.preset].to_json())
    for field in FIELDS:
        value = getattr(args, _dest(field), _UNSET)
        if value is not _UNSET:
            changes[field] = value
    return changes


def faults_from_args(args: argparse.Namespace) -> Faults:
    """The faults the command line asks for; UsageError when the values do not go together."""
    try:
        return Faults.from_json(fault_changes(args))
    except FaultSpecError as exc:
        raise UsageError(str(exc)) from None


def _dest(field: str) -> str:
    # Prefixed: `netgap scenario --rate` is requests a second, not the cap.
    return f"fault_{field}"


def _preset_help(default: str | None) -> str:
    presets = "; ".join(f"{name}: {faults.describe()}" for name, faults in PRESETS.items())
    text = f"a named set of faults, the flags given overriding its fields; {presets}"
    if default is not None:
        text += f"; {NO_PRESET}: only the flags given ({default})"
    return text.replace("%", "%%")  # argparse formats help with %


# -- argument types: each checks a value as the control API would, and keeps it as text


def _checked(parse: Callable[[str, str], object], field: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        try:
            parse(text, field)
        except FaultSpecError as exc:
            raise argparse.ArgumentTypeError(_without_field(str(exc), field)) from None
        return text.strip()

    check.__name__ = field  # argparse names the type in some messages
    return check


def _rate(text: str) -> str | None:
    if text.strip().lower() in ("none", "0"):
        return None
    try:
        parse_rate_bps(text)
    except FaultSpecError as exc:
        raise argparse.ArgumentTypeError(_without_field(str(exc), "rate")) from None
    return text.strip()


def _kbit(text: str) -> str:
    """Comcast's --target-bw: a number of kbit/s, as the rate field takes it."""
    try:
        kbit = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of kbit/s: {text!r}") from None
    if not (math.isfinite(kbit) and kbit * 1000 >= 1):
        raise argparse.ArgumentTypeError(f"must be more than 0 kbit/s, got {text}")
    return f"{round(kbit * 1000)}bit"


def _without_field(message: str, field: str) -> str:
    # argparse already names the flag; "argument --rate: rate: ..." would say it twice.
    return message.removeprefix(f"{field}: ")


_LOSS = _checked(parse_fraction, "loss")

# Each field's spellings, the usual one first; Comcast's names are accepted too.
FAULT_FLAGS: dict[str, FaultFlag] = {
    "latency": FaultFlag(
        "added one way, in each faulted direction: 500ms, 1.5s, or milliseconds",
        (Spelling("--latency", "TIME", _checked(parse_duration_s, "latency")),),
    ),
    "jitter": FaultFlag(
        "+- spread of the latency, uniform, at most the latency",
        (Spelling("--jitter", "TIME", _checked(parse_duration_s, "jitter")),),
    ),
    "rate": FaultFlag(
        "bandwidth cap per direction, shared by all connections: 50kbit, 1mbit, 6250bps"
        " (bytes/s); none: no cap",
        (
            Spelling("--rate", "RATE", _rate),
            Spelling("--bandwidth", "RATE", _rate, aside="{main}, as netgap scenario names it"),
            Spelling("--target-bw", "KBITS", _kbit, aside="{main} in kbit/s, as Comcast takes it"),
        ),
    ),
    "loss": FaultFlag(
        "chance a chunk is lost and waits for TCP's retransmission: 1%%, 0.1%%",
        (
            Spelling("--loss", "PERCENT", _LOSS),
            Spelling("--packet-loss", "PERCENT", _LOSS, aside="{main}, as Comcast names it"),
        ),
    ),
    "reset": FaultFlag(
        "chance a connection is closed with RST, per chunk forwarded",
        (Spelling("--reset", "PERCENT", _checked(parse_fraction, "reset")),),
    ),
    "direction": FaultFlag(
        "which way they apply: upstream is client to server, downstream back; both at first",
        (Spelling("--direction", None, choices=DIRECTIONS),),
    ),
}
