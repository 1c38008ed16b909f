"""When each request's head was read, for lean mode's SERVER span to start there.

uvicorn dispatches a request some time after its head is parsed (a task to schedule, a queue
behind pipelined requests, the app's call chain): that is this server's own time, which a span
started later counts as the network's. Contrib's span starts when the ASGI app is called.
"""

import time

from tierkit.protocol import ConnectionScopedProtocol

HEAD_NS = "tierkit.head_ns"  # scope["extensions"]: time.time_ns() once the head was parsed


class HeadStampedProtocol(ConnectionScopedProtocol):
    def on_headers_complete(self) -> None:
        self._scope_extensions[HEAD_NS] = time.time_ns()
        super().on_headers_complete()
