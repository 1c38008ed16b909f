"""uvicorn's HTTP protocol (httptools, what its `auto` picks here), telling each request which
connection it came in on: ASGI's scope has no socket, and TCP_INFO needs one.

`scope["extensions"]["tierkit.connection"]` is a Connection: the socket and how many requests
that connection has carried, this one included (1: it is new). Passed to uvicorn as `http=`;
the protocol holds its transport, so the socket is one call away (checked in uvicorn 0.54).
"""

import asyncio
import socket
from dataclasses import dataclass

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

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._requests += 1
        sock = self.transport.get_extra_info("socket")
        extensions = {CONNECTION: Connection(sock, self._requests)}
        self.scope["extensions"] = extensions  # type: ignore[typeddict-item]
