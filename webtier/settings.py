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
    # An idle pooled connection is closed after this. Well below the API tier's keep-alive
    # timeout: the API's idle clock starts when it sends an answer, ours when the answer has
    # arrived, so near the API's timeout the pool would reuse connections the API is closing.
    keepalive_expiry_s: float = 2.0
    # The API tier's keep-alive timeout as the web tier is told it (its KEEPALIVE_TIMEOUT_S,
    # which the web tier cannot see): only for the warning at start when the expiry is not
    # below it.
    keepalive_timeout_hint_s: float = 5.0

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
            keepalive_timeout_hint_s=env_float(
                environ,
                "API_KEEPALIVE_TIMEOUT_S",
                cls.keepalive_timeout_hint_s,
                low=0.1,
                high=3600,
            ),
        )

    def keepalive_warning(self) -> str | None:
        """What to warn about at start when the pool keeps idle connections as long as the API
        tier does (or longer), or None."""
        if self.keepalive_expiry_s < self.keepalive_timeout_hint_s:
            return None
        return (
            f"API_KEEPALIVE_EXPIRY_S ({self.keepalive_expiry_s:g} s) is not below the API tier's"
            f" keep-alive timeout (API_KEEPALIVE_TIMEOUT_S, {self.keepalive_timeout_hint_s:g} s):"
            " calls will be sent on connections the API is closing, each then waiting for the close"
            " and sent again; set it well below (the defaults are 2 s and 5 s)"
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
