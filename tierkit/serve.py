"""Running a tier under uvicorn with a graceful stop."""

import signal
import sys

import uvicorn
from starlette.types import ASGIApp

from tierkit.settings import ServerSettings


def serve(app: ASGIApp, settings: ServerSettings) -> None:
    """Serve until SIGTERM or SIGINT: stop accepting, finish in-flight requests within the
    grace period, run the app's lifespan shutdown (span flush), then return."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,  # the request middleware logs one JSON line per request
        log_config=None,  # keep our JSON logging
        server_header=False,
        # uvicorn hands this to asyncio.wait_for, which takes seconds as a float.
        timeout_graceful_shutdown=settings.shutdown_grace_s,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    # After a graceful stop uvicorn re-raises the signal that stopped it, which would end the
    # process with 143 (SIGTERM) instead of 0. A stop asked for is a success here.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda signum, frame: None)
    server.run()
    if not server.started:
        sys.exit(1)
