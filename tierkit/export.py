"""Getting spans out of a tier: the SDK's batch processor, counting what it drops, and an
exporter wrapper for which a dead backend costs one warning, never a slow request."""

import collections
import logging
import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import Counter

from tierkit.metrics import SpanCounters

log = logging.getLogger("tierkit.telemetry")


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor, counting the spans it drops because its queue is full (the
    SDK only logs it). Swaps in its own queue for the pinned SDK's BatchProcessor's: a private
    detail, checked by tests/tierkit/test_metrics.py."""

    def __init__(self, exporter: SpanExporter, counters: SpanCounters | None) -> None:
        super().__init__(exporter)
        if counters is not None:
            batcher = self._batch_processor
            batcher._queue = _CountingQueue(batcher._max_queue_size, counters.dropped)


class _CountingQueue(collections.deque[ReadableSpan]):
    """A bounded queue as the SDK's (appendleft drops the oldest span when full), which counts
    each span it drops. The check and the drop happen under one lock that the export thread's
    pops take too: checked outside it (as the SDK does to log), a pop between check and
    append would count a span that was not dropped."""

    def __init__(self, limit: int, dropped: Counter) -> None:
        super().__init__()
        self._limit = limit
        self._dropped = dropped
        self._lock = threading.Lock()

    def appendleft(self, span: ReadableSpan) -> None:
        with self._lock:
            if len(self) >= self._limit:
                super().pop()
                self._dropped.inc()
            super().appendleft(span)

    def pop(self) -> ReadableSpan:  # type: ignore[override]  # a deque pops no index
        with self._lock:
            return super().pop()


# The SDK and the exporters log every retry, every failed batch and every dropped span.
_NOISY_LOGGERS = (
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)


class _Complaints(logging.Filter):
    """Drops the noisy loggers' records, keeping the first complaint of the current export
    (for our one warning) and whether there was one (a retry loop in progress)."""

    def __init__(self) -> None:
        super().__init__()
        self.first: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and self.first is None:
            self.first = record.getMessage()
        return False


class OutageAwareExporter(SpanExporter):
    """A dead trace backend costs one warning and some dropped spans, never a slow request.

    Requests only ever enqueue spans (the batch processor's queue is bounded). This wrapper
    keeps the export thread from retrying against a backend known to be down: while it is
    down, batches are dropped at once and the backend is probed again every `probe_every_s`.
    """

    def __init__(
        self,
        inner: SpanExporter,
        endpoint: str,
        probe_every_s: float = 5.0,
        counters: SpanCounters | None = None,
    ) -> None:
        self._inner = inner
        self._counters = counters
        self._endpoint = endpoint
        self._probe_every_s = probe_every_s
        self._down_until = 0.0
        self._down = False
        self._dropped = 0
        self._shut_down = False
        self._complaints = _Complaints()
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).addFilter(self._complaints)

    @property
    def failing(self) -> bool:
        """Down, or retrying right now."""
        return self._down or self._complaints.first is not None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._down and time.monotonic() < self._down_until:
            self._lost(spans)
            return SpanExportResult.FAILURE
        self._complaints.first = None
        try:
            result = self._inner.export(spans)
        except Exception as exc:  # an exporter bug must not kill the export thread
            self._complaints.first = f"{type(exc).__name__}: {exc}"
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            if self._counters is not None:
                self._counters.exported.inc(len(spans))
            self._recovered()
        else:
            self._lost(spans)
            self._failed()
        return result

    def _lost(self, spans: Sequence[ReadableSpan]) -> None:
        self._dropped += len(spans)
        if self._counters is not None:
            self._counters.failed_exports.inc()
            self._counters.dropped.inc(len(spans))

    def _failed(self) -> None:
        self._down_until = time.monotonic() + self._probe_every_s
        if not self._down:
            self._down = True
            log.warning(
                "trace export to %s failing (%s); dropping spans until it recovers, "
                "requests are not affected",
                self._endpoint,
                self._complaints.first or "no detail",
            )

    def _recovered(self) -> None:
        if self._down:
            log.warning(
                "trace export to %s recovered; at least %d spans were dropped",
                self._endpoint,
                self._dropped,
            )
        self._down = False
        self._dropped = 0
        self._complaints.first = None

    def shutdown(self) -> None:
        if not self._shut_down:
            self._shut_down = True
            self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
