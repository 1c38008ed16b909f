"""One exchange measured as the scenario does (httpx, a fresh connection), against a server
that counts the bytes it reads and writes on the socket."""

import socket
import threading
from pathlib import Path

from netgap.scenario.exchange import measure_exchange

ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-length: 25\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"server-timing: app;dur=2.484\r\n\r\nHello, from the API tier!"
)


def test_the_bytes_counted_are_the_bytes_on_the_wire(tmp_path: Path) -> None:
    received: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer_once() -> None:
            conn, _ = server.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                received.append(data)
                conn.sendall(ANSWER)

        thread = threading.Thread(target=answer_once, daemon=True)
        thread.start()
        # The web tier would call the proxy on another port: its Host is the proxy's.
        exchange = measure_exchange("http://127.0.0.1:45678/", "127.0.0.1", port, tmp_path)
        thread.join(5)
    [request] = received
    assert b"\r\nHost: 127.0.0.1:45678\r\n" in request
    assert b"\r\ntraceparent: 00-" in request
    assert exchange.request_bytes == len(request)
    assert exchange.response_bytes == len(ANSWER)
