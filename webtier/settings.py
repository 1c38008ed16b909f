import os
from collections.abc import Mapping
from dataclasses import dataclass

from tierkit.env import env_float, env_int, env_optional_url, env_str, env_url
from tierkit.settings import ServerSettings
from tierkit.telemetry import TelemetrySettings

SERVICE = "webtier"
DEFAULT_PORT = 8800


@dataclass(frozen=True)
class ApiSettings:
    """How the web tier reaches the API tier."""

    url: str = "http://127.0.0.1:8801/"
    # Its service.name: the edge label of the outbound metrics, as the breakdown names edges,
    # and the CLIENT spans' peer.service, which names the edge of a call that got no answer.
    service: str = "apitier"
    # The whole exchange (pool wait, connect, request, response body) must fit in this.
    timeout_s: float = 5.0
    max_connections: int = 100
    keepalive_expiry_s: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "ApiSettings":
        return cls(
            url=env_url(environ, "API_URL", cls.url),
            service=env_str(environ, "API_SERVICE_NAME", cls.service),
            timeout_s=env_float(environ, "API_TIMEOUT_S", cls.timeout_s, low=0.001, high=3600),
            max_connections=env_int(
                environ, "API_MAX_CONNECTIONS", cls.max_connections, low=1, high=10_000
            ),
            keepalive_expiry_s=env_float(
                environ, "API_KEEPALIVE_EXPIRY_S", cls.keepalive_expiry_s, low=0, high=3600
            ),
        )


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    telemetry: TelemetrySettings
    api: ApiSettings
    # Jaeger's UI, for a link from the page to its trace.
    jaeger_ui_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        return cls(
            server=ServerSettings.from_env(environ, DEFAULT_PORT),
            telemetry=TelemetrySettings.from_env(environ, default_service=SERVICE),
            api=ApiSettings.from_env(environ),
            jaeger_ui_url=env_optional_url(environ, "JAEGER_UI_URL"),
        )
