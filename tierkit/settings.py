"""Settings every tier has: where it listens, how it stops, how much it logs, its metrics."""

from collections.abc import Mapping
from dataclasses import dataclass

from tierkit.env import LOG_LEVELS, env_bool, env_choice, env_float, env_port, env_str


@dataclass(frozen=True)
class ServerSettings:
    port: int
    host: str = "127.0.0.1"
    # On SIGTERM, how long in-flight requests (and the span flush) may take.
    shutdown_grace_s: float = 10.0
    log_level: str = "INFO"
    # GET /metrics and the observations behind it (off only to measure what they cost).
    metrics: bool = True
    # The kernel's TCP_INFO on the spans and metrics of each exchange with the API (Linux).
    tcp_info: bool = True
    # How long an idle keep-alive connection from a caller stays open (uvicorn's
    # timeout_keep_alive). A caller's pool must let its idle connections go well before this
    # (the web tier's API_KEEPALIVE_EXPIRY_S), or it reuses ones this side is closing.
    keepalive_timeout_s: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str], default_port: int) -> "ServerSettings":
        return cls(
            port=env_port(environ, "PORT", default_port),
            host=env_str(environ, "HOST", cls.host),
            shutdown_grace_s=env_float(
                environ, "SHUTDOWN_GRACE_S", cls.shutdown_grace_s, low=0, high=3600
            ),
            log_level=env_choice(environ, "LOG_LEVEL", cls.log_level, LOG_LEVELS),
            metrics=env_bool(environ, "METRICS_ENABLED", cls.metrics),
            tcp_info=env_bool(environ, "TCP_INFO_ENABLED", cls.tcp_info),
            keepalive_timeout_s=env_float(
                environ, "KEEPALIVE_TIMEOUT_S", cls.keepalive_timeout_s, low=0.1, high=3600
            ),
        )
