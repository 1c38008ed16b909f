"""The control API of a running fault proxy, and the client `netgap fault set/clear` use.

Toxiproxy's model, cut to one proxy: the faults are one JSON resource, changed while the proxy
runs, and live connections pick the change up at their next chunk (none is dropped).

  GET    /faults  200 {"latency": "500ms", "jitter": "0ms", "rate": "50kbit", "loss": "1%",
                       "reset": "0%", "direction": "both"}   (rate null: no cap)
  PUT    /faults  a JSON object with any of those fields; the fields given replace the current
                  ones, the others stay. 200 and the faults now; 400 {"error": "..."} on bad
                  input, and the faults stay as they were.
  DELETE /faults  no faults: 200 and the faults now.

`/` is the same resource. Any other path is a 404, any other method a 405, both with an
{"error": ...} body. GET's output can be PUT back as it is.
"""

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Mapping
from typing import Any, Protocol

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from netgap.address import Address
from netgap.errors import NetgapError, UsageError
from netgap.fault.spec import Faults, FaultSpecError

log = logging.getLogger("netgap.fault.control")

FAULTS_PATH = "/faults"
DEFAULT_PORT = 8474  # toxiproxy's
MAX_BODY_BYTES = 64 * 1024
START_TIMEOUT_S = 10.0
CLIENT_TIMEOUT_S = 10.0


class FaultsHolder(Protocol):
    """What the API controls: a FaultProxy, or anything with settable `faults`."""

    faults: Faults


def create_control_app(holder: FaultsHolder) -> Starlette:
    async def faults(request: Request) -> Response:
        if request.method == "PUT":
            body = await request.body()
            try:
                holder.faults = Faults.from_json(_json_object(body), base=holder.faults)
            except FaultSpecError as exc:
                return _error(400, str(exc))
            _log_change(request, holder.faults)
        elif request.method == "DELETE":
            holder.faults = Faults()
            _log_change(request, holder.faults)
        return JSONResponse(holder.faults.to_json())

    methods = ["GET", "PUT", "DELETE"]
    return Starlette(
        routes=[Route(FAULTS_PATH, faults, methods=methods), Route("/", faults, methods=methods)],
        exception_handlers={HTTPException: _http_error},
    )


def _json_object(body: bytes) -> object:
    if len(body) > MAX_BODY_BYTES:
        raise FaultSpecError(f"body: more than {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError as exc:  # also bad UTF-8
        raise FaultSpecError(f'body: not JSON ({exc}); send e.g. {{"latency": "500ms"}}') from None


def _log_change(request: Request, faults: Faults) -> None:
    client = request.client.host if request.client else "?"
    log.info("faults set by %s: %s", client, faults.describe())


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        raise exc
    message = exc.detail
    if exc.status_code == 404:
        message = f"no {request.url.path}; the faults are at {FAULTS_PATH}"
    return _error(exc.status_code, message, exc.headers)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        # The proxy process handles the signals and stops everything, this server included.
        yield


class ControlServer:
    """The control API on `address` (port 0: any free port), beside the proxy on its loop.

    `await start()` binds (OSError if it cannot) and serves; `await stop()` stops."""

    def __init__(self, holder: FaultsHolder, address: Address) -> None:
        self.holder = holder
        self.address = address
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        """The faults resource, e.g. http://127.0.0.1:8474/faults."""
        return self.address.url + FAULTS_PATH

    async def start(self) -> None:
        sock = self._socket = _listen(self.address)
        self.address = Address(self.address.host, int(sock.getsockname()[1]))
        config = uvicorn.Config(
            create_control_app(self.holder),
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=1,
        )
        server = self._server = _Server(config)
        task = self._task = asyncio.create_task(server.serve(sockets=[sock]))
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while not server.started:
            if task.done():
                task.result()
                raise NetgapError("the control API stopped while starting")
            if asyncio.get_running_loop().time() > deadline:
                raise NetgapError(f"the control API did not start in {START_TIMEOUT_S:g} s")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._socket is not None:
            self._socket.close()


def _listen(address: Address) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


# -- the client side


def faults_url(text: str) -> str:
    """`HOST:PORT`, `http://HOST:PORT` or the full `.../faults` URL -> the faults resource's
    URL. ValueError names the expected form."""
    text = text.strip()
    url = httpx.URL(text if "://" in text else f"http://{text}")
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"want a URL like http://127.0.0.1:{DEFAULT_PORT}, got {text!r}")
    if url.path.rstrip("/") in ("", FAULTS_PATH):
        url = url.copy_with(path=FAULTS_PATH)
    return str(url)


def get_faults(url: str, timeout_s: float = CLIENT_TIMEOUT_S) -> Faults:
    return _call("GET", url, None, timeout_s)


def put_faults(
    url: str, changes: Mapping[str, str | None], timeout_s: float = CLIENT_TIMEOUT_S
) -> Faults:
    """Changes the fields given (the others stay); the faults now."""
    return _call("PUT", url, dict(changes), timeout_s)


def clear_faults(url: str, timeout_s: float = CLIENT_TIMEOUT_S) -> Faults:
    return _call("DELETE", url, None, timeout_s)


def _call(method: str, url: str, body: dict[str, Any] | None, timeout_s: float) -> Faults:
    try:
        response = httpx.request(method, url, json=body, timeout=timeout_s)
    except httpx.TransportError as exc:
        raise NetgapError(
            f"cannot reach the control API at {url} ({exc or type(exc).__name__})",
            hint="is `netgap fault proxy` running with --control there?",
        ) from None
    if response.status_code == 400:
        raise UsageError(_error_message(response))
    if response.status_code != 200:
        status = response.status_code
        raise NetgapError(f"{method} {url}: HTTP {status}: {_error_message(response)}")
    try:
        return Faults.from_json(response.json())
    except (ValueError, FaultSpecError) as exc:
        raise NetgapError(f"{method} {url}: not a faults answer ({exc})") from None


def _error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:200]
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, str) else response.text.strip()[:200]
