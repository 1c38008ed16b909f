"""The bytes of one exchange between the tiers, measured as a scenario starts: the model's
transfer time under the fault's bandwidth cap is these bytes over the cap."""

import os
from pathlib import Path

import httpx

from netgap.errors import NetgapError
from netgap.scenario import model

TIMEOUT_S = 5.0


def measure_exchange(web_side_url: str, api_host: str, api_port: int, log: Path) -> model.Exchange:
    """One exchange as the web tier makes it, on a fresh connection: the request httpx builds
    for the web tier's API_URL `web_side_url` (httpx's default headers and a traceparent: what
    the web tier's client sends, httpx's headers, which httpx-aiohttp hands to aiohttp), sent
    straight to the API tier at `api_host`:`api_port` (it runs before the proxy and the web
    tier start), and the API tier's real answer to it, counted as they cross the wire (not
    rebuilt from a template: the answer's headers are the API tier's own). `log`: the API
    tier's, for the hint when it fails."""
    # Not sampled (flags 00): the API answers the same bytes, and no stray trace is stored.
    traceparent = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-00"
    try:
        with httpx.Client(timeout=TIMEOUT_S, trust_env=False) as client:
            request = client.build_request(
                "GET", web_side_url, headers={"traceparent": traceparent}
            )
            # Its Host stays the web tier's API_URL's, as the web tier sends it.
            request.url = request.url.copy_with(host=api_host, port=api_port)
            response = client.send(request)
    except httpx.TransportError as exc:
        raise NetgapError(
            f"one exchange with the API tier at {api_host}:{api_port} failed "
            f"({exc or type(exc).__name__})",
            hint=f"see {log}",
        ) from None
    request_line = f"{request.method} ".encode() + request.url.raw_path + b" HTTP/1.1"
    status = f"{response.http_version} {response.status_code} ".encode()
    status_line = status + response.extensions.get("reason_phrase", b"")
    return model.Exchange(
        request_bytes=wire_bytes(request_line, request.headers.raw),
        response_bytes=wire_bytes(status_line, response.headers.raw)
        + response.num_bytes_downloaded,
    )


def wire_bytes(first_line: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """The size of an HTTP/1.1 head on the wire: the first line, a `name: value` line a header
    (h11 writes a request's so, and uvicorn an answer's; h11 hands on the answer's names and
    values as they came), each ended by CRLF, and the blank line. The body, as it came before
    any decoding, is httpx's num_bytes_downloaded."""
    return len(first_line) + 2 + sum(len(name) + len(value) + 4 for name, value in headers) + 2
