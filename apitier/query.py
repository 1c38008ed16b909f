import asyncio
import time

from opentelemetry import trace


class SimulatedQuery:
    """Stands in for the database call of the story: a span around an awaited delay."""

    def __init__(self, delay_ms: float, tracer: trace.Tracer) -> None:
        self._delay_s = delay_ms / 1000
        self._tracer = tracer

    async def run(self) -> None:
        with self._tracer.start_as_current_span("fast-query") as span:
            span.set_attribute("netgap.query.delay_ms", self._delay_s * 1000)
            await sleep_at_least(self._delay_s)


async def sleep_at_least(seconds: float) -> None:
    # Event-loop timers may fire a little early (libuv keeps time in whole milliseconds);
    # the span must never look shorter than the delay it claims.
    if seconds <= 0:
        return
    deadline = time.perf_counter() + seconds
    await asyncio.sleep(seconds)
    while (remaining := deadline - time.perf_counter()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(remaining)
