"""The web tier's one client for the API tier, and the errors it raises.

ApiError
 ├── ApiUnreachable   no connection, or it broke mid-exchange   -> 502
 ├── ApiBadStatus     the API answered, but not with 2xx        -> 502
 └── ApiTimeout       the exchange did not finish in time       -> 504
"""

import asyncio
from dataclasses import dataclass

import httpx

from tierkit.http1 import Http1Pool
from tierkit.metrics import OutboundMetrics
from tierkit.telemetry import Telemetry
from webtier.settings import ApiSettings
from webtier.transport import CALL, CallTiming, PhaseRecordingTransport


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
    timing: CallTiming


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
        pool = Http1Pool(
            max_connections=settings.max_connections,
            max_keepalive=settings.max_keepalive,
            keepalive_expiry_s=settings.keepalive_expiry_s,
        )
        self._client = httpx.AsyncClient(
            transport=telemetry.traced(
                PhaseRecordingTransport(pool, metrics, tcp_info=tcp_info),
                peer_service=settings.service,
            ),
            timeout=httpx.Timeout(settings.timeout_s),
            # An in-cluster call: no proxies or .netrc from the environment.
            trust_env=False,
        )

    async def fetch(self) -> ApiReply:
        if self._metrics is not None:
            self._metrics.active.inc()
        try:
            # httpx's timeouts are per operation; this one bounds the whole exchange.
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.get(self._url)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise ApiTimeout(
                f"API at {self._url} did not answer within {self._timeout_s:g} s"
            ) from exc
        except httpx.HTTPError as exc:
            raise ApiUnreachable(f"API at {self._url} unreachable: {_describe(exc)}") from exc
        finally:
            if self._metrics is not None:
                self._metrics.active.dec()
        if not response.is_success:
            raise ApiBadStatus(f"API at {self._url} answered {response.status_code}")
        return ApiReply(response.text, response.extensions[CALL])

    async def aclose(self) -> None:
        await self._client.aclose()


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
