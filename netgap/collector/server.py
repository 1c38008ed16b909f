"""The collector as one asyncio process: OTLP/HTTP and the query API under uvicorn, OTLP/gRPC
under grpc.aio, all around one Store.

`Collector(settings)` binds every port first (so a port in use fails before anything starts,
naming its flag) and opens the store; `await collector.serve(stop)` serves until `stop` is set,
then stops accepting, lets requests in flight finish within the grace period and closes the
store. `run_until_signalled` does that until SIGTERM or SIGINT (what `netgap collect` runs);
`serving_in_thread` runs it beside other code, as tests and embedders want.
"""

import asyncio
import contextlib
import gc
import logging
import math
import signal
import socket
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uvicorn
from starlette.routing import BaseRoute

from netgap.address import Address
from netgap.collector.query import create_query_app
from netgap.collector.receiver import OTLP_HTTP_PATH, create_otlp_grpc_server, create_otlp_http_app
from netgap.collector.records import StoreError
from netgap.collector.store import Store
from netgap.errors import NetgapError, UsageError

log = logging.getLogger("netgap.collect")

START_TIMEOUT_S = 10.0


OTLP_HTTP = Address("127.0.0.1", 4318)
OTLP_GRPC = Address("127.0.0.1", 4317)
QUERY = Address("127.0.0.1", 16686)


@dataclass(frozen=True)
class Settings:
    db: Path = Path(".netgap/traces.db")
    otlp_http: Address | None = OTLP_HTTP  # None: off
    otlp_grpc: Address | None = OTLP_GRPC  # None: off
    query: Address = QUERY
    max_age_s: float | None = 24 * 3600.0  # None: keep traces whatever their age
    max_spans: int | None = 1_000_000  # None: no limit
    max_body: int = 8 * 1024 * 1024
    shutdown_grace_s: float = 10.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # One process, several listeners: the collector handles the signals and stops them
        # all; uvicorn's own handlers would stop one and re-raise the signal at exit.
        yield


class Collector:
    def __init__(
        self,
        settings: Settings,
        *,
        extra_query_routes: Callable[[Store], Sequence[BaseRoute]] | None = None,
    ) -> None:
        """Binds the ports (UsageError naming the flag when one is taken) and opens the store
        (StoreError). `extra_query_routes(store)` adds routes to the query port after /api/v3."""
        self._sockets: dict[str, socket.socket] = {}
        try:
            if settings.otlp_http is not None:
                sock = self._bind(settings.otlp_http, "--otlp-http")
                settings = replace(settings, otlp_http=_bound(settings.otlp_http, sock))
            sock = self._bind(settings.query, "--query")
            settings = replace(settings, query=_bound(settings.query, sock))
            if settings.otlp_grpc is not None:
                # grpc binds for itself, later; reserve-and-release resolves port 0 and
                # catches a port in use now, while the error can still name the flag.
                with _listen(settings.otlp_grpc, "--otlp-grpc") as probe:
                    settings = replace(settings, otlp_grpc=_bound(settings.otlp_grpc, probe))
            self.store = Store(
                settings.db, max_spans=settings.max_spans, max_age_s=settings.max_age_s
            )
        except BaseException:
            self._close_sockets()
            raise
        self.settings = settings
        self._extra_routes = extra_query_routes
        self._servers: list[_Server] = []
        self._grpc: Any = None

    @property
    def otlp_http_url(self) -> str | None:
        address = self.settings.otlp_http
        return None if address is None else address.url + OTLP_HTTP_PATH

    @property
    def otlp_grpc_url(self) -> str | None:
        address = self.settings.otlp_grpc
        return None if address is None else address.url

    @property
    def query_url(self) -> str:
        return self.settings.query.url

    def _bind(self, address: Address, flag: str) -> socket.socket:
        sock = self._sockets[flag] = _listen(address, flag)
        return sock

    async def serve(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Serves until `stop` is set (or a listener fails), then stops gracefully and closes
        the store. Call once."""
        settings = self.settings
        tasks: list[asyncio.Task[None]] = []
        retention: asyncio.Task[None] | None = None
        try:
            if settings.otlp_grpc is not None:
                await self._start_grpc(settings.otlp_grpc)
            extra = self._extra_routes(self.store) if self._extra_routes else ()
            apps: list[tuple[str, Any]] = [("--query", create_query_app(self.store, extra))]
            if settings.otlp_http is not None:
                apps.append(("--otlp-http", create_otlp_http_app(self.store, settings.max_body)))
            for flag, app in apps:
                server = _Server(self._uvicorn_config(app))
                self._servers.append(server)
                tasks.append(asyncio.create_task(server.serve(sockets=[self._sockets[flag]])))
            await _wait_started(self._servers, tasks)
            if settings.max_age_s:
                retention = asyncio.create_task(self._expire_regularly(settings.max_age_s))
            if on_ready is not None:
                on_ready()
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            for task in done:
                if task is not stopping:
                    task.result()  # a listener that ended by itself failed: say how
                    raise NetgapError("a listener stopped unexpectedly")
        finally:
            await self._shutdown(tasks, retention)

    async def _start_grpc(self, address: Address) -> None:
        self._grpc = create_otlp_grpc_server(self.store, self.settings.max_body)
        try:
            port = self._grpc.add_insecure_port(str(address))
        except RuntimeError:
            port = 0
        if not port:
            raise UsageError(
                f"--otlp-grpc {address}: cannot listen on {address}",
                hint="pick a free port with --otlp-grpc",
            )
        await self._grpc.start()

    def _uvicorn_config(self, app: Any) -> uvicorn.Config:
        return uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=math.ceil(self.settings.shutdown_grace_s),
        )

    async def _expire_regularly(self, max_age_s: float) -> None:
        interval = min(max(max_age_s / 10, 0.05), 60.0)
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.store.evict)
            except StoreError as exc:
                log.error("%s", exc)

    async def _shutdown(
        self, tasks: list[asyncio.Task[None]], retention: asyncio.Task[None] | None
    ) -> None:
        for server in self._servers:
            server.should_exit = True
        if self._grpc is not None:
            await self._grpc.stop(self.settings.shutdown_grace_s)
        await asyncio.gather(*tasks, return_exceptions=True)
        if retention is not None:
            retention.cancel()
            await asyncio.gather(retention, return_exceptions=True)
        self._close_sockets()
        # Waits for a write in progress, if a request outlived the grace period.
        await asyncio.to_thread(self.store.close)

    def force_exit(self) -> None:
        """Stop waiting for requests in flight (a second Ctrl-C)."""
        for server in self._servers:
            server.force_exit = True

    def _close_sockets(self) -> None:
        for sock in self._sockets.values():
            sock.close()

    def close(self) -> None:
        """Releases the ports and the store of a collector that never served."""
        self._close_sockets()
        self.store.close()


def run_until_signalled(collector: Collector, on_ready: Callable[[], None] | None = None) -> None:
    """Serves until SIGTERM or SIGINT, then stops gracefully (a second signal stops waiting
    for requests in flight). Call from the main thread."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():
                collector.force_exit()
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal)
        await collector.serve(stop, on_ready)

    # As in the tiers (tierkit.serve): what is alive at start lives as long as the process, so
    # full collections need not re-scan it while spans stream in.
    gc.collect()
    gc.freeze()
    asyncio.run(main())


@contextlib.contextmanager
def serving_in_thread(collector: Collector) -> Iterator[Collector]:
    """Serves on an event loop of its own in a background thread while the block runs,
    then stops gracefully."""
    ready = threading.Event()
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            loop.run_until_complete(collector.serve(stop, ready.set))
        except BaseException as exc:
            failure.append(exc)
        finally:
            loop.close()
            ready.set()

    thread = threading.Thread(target=main, name="netgap-collector", daemon=True)
    thread.start()
    ready.wait(START_TIMEOUT_S)
    try:
        if failure:
            raise failure[0]
        if not thread.is_alive():
            raise NetgapError("the collector stopped while starting")
        yield collector
    finally:
        if thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
            thread.join(collector.settings.shutdown_grace_s + START_TIMEOUT_S)
    if failure:
        raise failure[0]


def _listen(address: Address, flag: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it a response's body waits for the client's delayed ACK of its headers (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(2048)
    except OSError as exc:  # in use, not an address of this host, no permission, ...
        sock.close()
        reason = exc.strerror or str(exc)
        raise UsageError(
            f"{flag} {address}: cannot listen on {address} ({reason})",
            hint=f"pick a free port with {flag}",
        ) from None
    return sock


def _bound(address: Address, sock: socket.socket) -> Address:
    return replace(address, port=int(sock.getsockname()[1]))


async def _wait_started(servers: list[_Server], tasks: list[asyncio.Task[None]]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while not all(server.started for server in servers):
        for task in tasks:
            if task.done():
                task.result()
                raise NetgapError("a listener stopped while starting")
        if loop.time() > deadline:
            raise NetgapError(f"the listeners did not start within {START_TIMEOUT_S:g} s")
        await asyncio.sleep(0.01)
