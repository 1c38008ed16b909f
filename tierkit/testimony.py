"""The callee's end of an edge: the TCP_INFO of the connection a request came in on, on the
request's SERVER span, read once the response's last byte is handed to the server.

An ASGI wrapper around the whole app, *outside* the SERVER span's middleware: contrib's ends the
span as soon as the last body message is sent, so the reading must happen inside that send, and
only the send it calls is ours to wrap. The span is current there (the middleware made it
current for the request), so it is reached through the public span API. The connection comes
from the scope (tierkit.protocol). What the response's bytes need resent after this moment
counts with the connection's next request.
"""

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tierkit.protocol import CONNECTION, Connection
from tierkit.tcpinfo import Witness


class TestifyingApp:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.witness = Witness()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = scope.get("extensions", {}).get(CONNECTION)
        if scope["type"] != "http" or not isinstance(connection, Connection):
            await self.app(scope, receive, send)
            return

        async def send_then_testify(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                span = trace.get_current_span()
                if span.is_recording():
                    self._testify(span, connection)

        await self.app(scope, receive, send_then_testify)

    def _testify(self, span: trace.Span, connection: Connection) -> None:
        testimony = self.witness.testify(connection.sock, connection.requests == 1)
        if testimony is not None:
            span.set_attributes(testimony.attributes())
