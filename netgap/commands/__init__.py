"""One module per subcommand; its docstring is its help. fault_k8s.py is `netgap fault k8s`
(registered by fault.py); fault_flags.py declares the fault flags the fault commands and
`scenario` share."""

import argparse
from typing import Protocol

from netgap.commands import breakdown, check, collect, demo, fault, load, scenario


class Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...
    def run(self, args: argparse.Namespace) -> int: ...


COMMANDS: dict[str, Command] = {
    "demo": demo,
    "collect": collect,
    "load": load,
    "breakdown": breakdown,
    "check": check,
    "fault": fault,
    "scenario": scenario,
}
