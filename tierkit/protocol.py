"""uvicorn's HTTP protocol (httptools, what its `auto` picks here), telling each request which
connection it came in on and when its head was read: ASGI's scope has neither, and TCP_INFO
needs the socket.

`scope["extensions"]["tierkit.connection"]` is a Connection: the socket, how many requests
that connection has carried, this one included (1: it is new), and when the request's head was
complete. Passed to uvicorn as `http=`; the protocol holds its transport, so the socket is one
call away (checked in uvicorn 0.54).
"""

import asyncio
import socket
import time
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

CONNECTION = "tierkit.connection"


@dataclass(frozen=True)
class Connection:
    sock: socket.socket | None
    requests: int
    # time.time_ns() once the request's head was parsed, before uvicorn dispatched it: what
    # follows (a task to schedule, a queue behind pipelined requests, the app's call chain) is
    # this server's own time, which a span started later would count as the network's.
    head_ns: int


class ConnectionScopedProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._requests = 0
        self._sock = transport.get_extra_info("socket")  # once: the same for every request

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._requests += 1

    def on_headers_complete(self) -> None:
        connection = Connection(self._sock, self._requests, time.time_ns())
        self.scope["extensions"] = {CONNECTION: connection}  # type: ignore[dict-item]
        super().on_headers_complete()  # dispatches the request with this scope
