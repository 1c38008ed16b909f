"""Request headers that opentelemetry-instrumentation-asgi can read.

Contrib's ASGI middleware decodes the header values it reads (the trace context, user-agent,
host, captured headers) with Python's `unicode_escape` codec, which raises on some bytes a
client may send, such as a value ending in a backslash (`traceparent: x\\`): the request then
ends in a 500 from inside the instrumentation, before the app runs (the same class of bug as
opentelemetry-python-contrib #1478 and #1814). This wrapper, outside the instrumentation, leaves
such a header out of the scope, so a malformed trace header is ignored (a new trace starts) as
without tracing, and any other such header is simply not seen. Only values with a backslash can
fail that codec, so the others are not decoded at all.
"""

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("tierkit.headers")


def _decodable(value: bytes) -> bool:
    if b"\\" not in value:
        return True
    try:
        value.decode("unicode_escape")
    except UnicodeDecodeError:
        return False
    return True


class DecodableHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not all(_decodable(v) for _, v in scope["headers"]):
            kept = [(name, value) for name, value in scope["headers"] if _decodable(value)]
            left_out = sorted({name for name, value in scope["headers"] if not _decodable(value)})
            log.debug("left out undecodable request headers: %s", left_out)
            scope = {**scope, "headers": kept}
        await self.app(scope, receive, send)
