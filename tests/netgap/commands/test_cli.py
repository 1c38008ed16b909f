"""Every subcommand has --help; bad arguments are one line naming the flag, exit 2."""

import subprocess
import sys

import pytest

from netgap.commands import COMMANDS
from tests.harness import ROOT


def netgap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netgap", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command: str | None) -> None:
    result = netgap(*([command] if command else []), "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: netgap")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["breakdown", "--since", "soon"], "argument --since"),
        (["breakdown", "--limit", "0"], "argument --limit"),
        (["breakdown", "--json", "--csv"], "argument --csv"),
        (["load", "http://127.0.0.1:1/", "--rate", "-5"], "--rate"),
        (["collect", "--query", "nowhere"], "argument --query"),
        (["demo", "--web-port", "0"], "argument --web-port"),
        (["check", "--timeout", "x"], "argument --timeout"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args: list[str], named: str) -> None:
    result = netgap(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) in (1, 2), result.stderr  # the error, and at most a hint
    assert named in lines[0]
    assert "Traceback" not in result.stderr
