"""Errors the CLI turns into a message and an exit code.

NetgapError          exit 1: something went wrong while running
 └── UsageError      exit 2: the command line asks for something we cannot do
"""


class NetgapError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(NetgapError):
    exit_code = 2
