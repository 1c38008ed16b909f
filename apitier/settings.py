import os
from collections.abc import Mapping
from dataclasses import dataclass

from tierkit.env import env_float
from tierkit.settings import ServerSettings
from tierkit.telemetry import TelemetrySettings

SERVICE = "apitier"
DEFAULT_PORT = 8801


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    telemetry: TelemetrySettings
    # The simulated database query inside `fast-query`.
    query_delay_ms: float = 2.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        return cls(
            server=ServerSettings.from_env(environ, DEFAULT_PORT),
            telemetry=TelemetrySettings.from_env(environ, default_service=SERVICE),
            query_delay_ms=env_float(
                environ, "QUERY_DELAY_MS", cls.query_delay_ms, low=0, high=600_000
            ),
        )
