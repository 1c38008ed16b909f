"""The `python -m <tier>` entry point both tiers share."""

import sys
from collections.abc import Callable
from typing import Protocol, TypeVar

from fastapi import FastAPI
from starlette.types import ASGIApp

from tierkit.env import SettingsError
from tierkit.headers import DecodableHeaders
from tierkit.logs import configure_logging
from tierkit.serve import serve
from tierkit.settings import ServerSettings
from tierkit.telemetry import TelemetrySettings
from tierkit.testimony import TestifyingApp


class TierSettings(Protocol):
    @property
    def server(self) -> ServerSettings: ...

    @property
    def telemetry(self) -> TelemetrySettings: ...


S = TypeVar("S", bound=TierSettings)


def run_tier(
    name: str,
    read_settings: Callable[[], S],
    create_app: Callable[[S], FastAPI],
    *,
    testify: bool = False,
) -> None:
    """Serve the tier `create_app` makes from `read_settings()`; with `testify` (the callee of
    an edge), its SERVER spans carry their connection's TCP_INFO (tierkit.testimony)."""
    try:
        settings = read_settings()
        configure_logging(name, settings.server.log_level)
        # Building the app checks what only the SDK knows (OTEL_BSP_* sizes against each other)
        app = create_app(settings)
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(2)
    traced = not settings.telemetry.disabled
    served: ASGIApp = app
    if testify and traced and settings.server.tcp_info:
        served = TestifyingApp(served)
    if traced and not settings.telemetry.lean:  # contrib's middleware reads the headers
        served = DecodableHeaders(served)
    serve(served, settings.server, head_stamped=settings.telemetry.lean)
