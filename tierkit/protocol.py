"""uvicorn's HTTP protocol (httptools, what its `auto` picks here), telling each request which
connection it came in on: ASGI's scope has no socket, and TCP_INFO needs it.

`scope["extensions"]["tierkit.connection"]` is a Connection: the socket, and how many requests
that connection has carried, this one included (1: it is new). Passed to uvicorn through its
documented `http=` option (a protocol class); the protocol holds its transport, so the socket is
one call away. It subclasses uvicorn's HttpToolsProtocol and sets the scope before calling its
`on_headers_complete`, which dispatches the request with that scope: pinned with uvicorn
0.54 in pyproject.toml and tested by tests/tierkit/test_protocol.py.
"""

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

CONNECTION = "tierkit.connection"


@dataclass(frozen=True)
class Connection:
    sock: socket.socket | None
    requests: int


class ConnectionScopedProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._requests = 0
        self._sock = transport.get_extra_info("socket")  # once: the same for every request

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._requests += 1
        connection = Connection(self._sock, self._requests)
        self._scope_extensions: dict[str, Any] = {CONNECTION: connection}

    def on_headers_complete(self) -> None:
        self.scope["extensions"] = self._scope_extensions
        super().on_headers_complete()  # dispatches the request with this scope
