"""A strict HTTP/1.1 server on loopback: it parses what it gets with h11, so a client's
protocol mistakes show up as errors, and it can close a keep-alive connection without a word
just as the next request arrives (the race a pool's retry is for)."""

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import h11

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


@dataclass
class Received:
    """What one server saw: the raw bytes of each connection, and each request h11 parsed."""

    connections: list[bytearray] = field(default_factory=list)
    requests: list[tuple[bytes, bytes, list[tuple[bytes, bytes]]]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@contextmanager
def h11_server(answer_on_each_connection: int = 1_000_000) -> Iterator[tuple[str, Received]]:
    """Answers 200 "ok" to each request, keeping the connection open; on each connection,
    after `answer_on_each_connection` answers it reads the next request and closes without
    a word (a server closing an idle keep-alive connection just as a request arrives)."""
    received = Received()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        raw = bytearray()
        received.connections.append(raw)
        parser = h11.Connection(h11.SERVER)
        answered = 0
        body = b""
        conn.settimeout(5)
        with conn:
            while not stop.is_set():
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    try:
                        data = conn.recv(65536)
                    except (TimeoutError, OSError):
                        return
                    raw.extend(data)
                    parser.receive_data(data)
                    if not data:
                        return
                elif isinstance(event, h11.Request):
                    received.requests.append((event.method, event.target, list(event.headers)))
                    if answered >= answer_on_each_connection:
                        return  # closes with the request unanswered
                elif isinstance(event, h11.Data):
                    body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    received.bodies.append(body)
                    body = b""
                    conn.sendall(OK)
                    answered += 1
                    parser = h11.Connection(h11.SERVER)  # our answer was written raw
                elif isinstance(event, h11.ConnectionClosed):
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_guarded, args=(serve, conn, received), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _guarded(
    serve: Callable[[socket.socket], None], conn: socket.socket, received: Received
) -> None:
    try:
        serve(conn)
    except h11.RemoteProtocolError as exc:  # the client framed something wrongly
        received.errors.append(str(exc))
