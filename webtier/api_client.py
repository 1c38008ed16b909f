"""The web tier's one client for the API tier, and the errors it raises.

ApiError
 ├── ApiUnreachable   no connection, or it broke mid-exchange   -> 502
 ├── ApiBadStatus     the API answered, but not with 2xx        -> 502
 └── ApiTimeout       the exchange did not finish in time       -> 504
"""

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from tierkit.exchange import EXCHANGE, Exchange, ExchangeTransport, PoolSettings, annotate
from tierkit.metrics import OutboundMetrics
from tierkit.telemetry import Telemetry
from webtier.settings import ApiSettings


class ApiError(Exception):
    status_code = 502


class ApiUnreachable(ApiError):
    pass


class ApiBadStatus(ApiError):
    pass


class ApiTimeout(ApiError):
    status_code = 504


@dataclass(frozen=True)
class ApiReply:
    body: str
    exchange: Exchange


class ApiClient:
    def __init__(
        self,
        settings: ApiSettings,
        telemetry: Telemetry,
        metrics: OutboundMetrics | None = None,
        *,
        tcp_info: bool = True,
    ) -> None:
        self._url = settings.url
        self._metrics = metrics
        self._timeout_s = settings.timeout_s
        transport = ExchangeTransport(
            PoolSettings(settings.max_connections, settings.keepalive_expiry_s),
            tcp_info=tcp_info,
        )
        self._in_flight = 0
        if metrics is not None:
            census = transport.census
            metrics.watch_pool(
                lambda: min(self._in_flight, census.open()),
                lambda: max(census.open() - self._in_flight, 0),
            )
        self._client = telemetry.http_client(
            transport,
            peer_service=settings.service,
            response_hook=annotate,
            timeout=httpx.Timeout(settings.timeout_s),
            # An in-cluster call: no proxies or .netrc from the environment.
            trust_env=False,
        )

    async def fetch(self) -> ApiReply:
        start_ns = time.time_ns()
        self._in_flight += 1
        if self._metrics is not None:
            self._metrics.active.inc()
        try:
            # httpx's timeouts are per operation; this one bounds the whole exchange.
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.get(self._url)
        except (TimeoutError, httpx.TimeoutException) as exc:
            self._failed(start_ns, exc)
            raise ApiTimeout(
                f"API at {self._url} did not answer within {self._timeout_s:g} s"
            ) from exc
        except httpx.HTTPError as exc:
            self._failed(start_ns, exc)
            raise ApiUnreachable(f"API at {self._url} unreachable: {_describe(exc)}") from exc
        finally:
            self._in_flight -= 1
            if self._metrics is not None:
                self._metrics.active.dec()
        exchange: Exchange = response.extensions[EXCHANGE]
        self._observe(response.status_code, exchange)
        if not response.is_success:
            raise ApiBadStatus(f"API at {self._url} answered {response.status_code}")
        return ApiReply(response.text, exchange)

    def _observe(self, status: int, exchange: Exchange) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        metrics.observe_call("GET", status, exchange.seconds, not exchange.reused)
        remote_s = exchange.remote_s
        if remote_s is not None:
            metrics.observe_remote(remote_s)
        testimony = exchange.testimony()
        if testimony is not None:
            metrics.observe_tcp(testimony)

    def _failed(self, start_ns: int, exc: Exception) -> None:
        if self._metrics is not None:
            seconds = (time.time_ns() - start_ns) / 1e9
            self._metrics.observe_call("GET", None, seconds, False, type(exc).__qualname__)

    async def aclose(self) -> None:
        await self._client.aclose()


def target(url: str) -> tuple[str, int]:
    """The server address and port a URL calls (the metrics' labels)."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
