"""Real processes on real sockets: a test-side OTLP/HTTP receiver and tier processes."""

import gzip
import http.server
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from netgap.lab import Logs, tier
from netgap.supervisor import ChildFailed, Launch
from netgap.supervisor import free_port as free_port  # the tests' port picker too

ROOT = Path(__file__).resolve().parent.parent
SERVER, CLIENT, INTERNAL = 2, 3, 1  # OTLP span kinds


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    service: str
    attributes: dict[str, Any]
    events: list[str] = field(default_factory=list)
    event_ns: dict[str, int] = field(default_factory=dict)
    status_code: int = 0  # 0 unset, 1 ok, 2 error
    scope: str = ""  # the instrumentation scope's name

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """An OTLP/HTTP trace receiver: decodes ExportTraceServiceRequest protobuf bodies."""

    def __init__(self, port: int = 0) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real backend does

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver._ingest(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self._server.server_address[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _ingest(self, body: bytes) -> None:
        self.ingest(ExportTraceServiceRequest.FromString(body))

    def ingest(self, request: ExportTraceServiceRequest) -> None:
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                scope = scope_spans.scope.name
                for s in scope_spans.spans:
                    spans.append(
                        Span(
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            name=s.name,
                            kind=s.kind,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            service=str(resource.get("service.name")),
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            events=[e.name for e in s.events],
                            event_ns={e.name: e.time_unix_nano for e in s.events},
                            status_code=s.status.code,
                            scope=scope,
                        )
                    )
        with self._lock:
            self.requests += 1
            self.spans.extend(spans)

    def snapshot(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.snapshot() if s.trace_id == trace_id]

    def wait_for(
        self, predicate: Callable[[list[Span]], bool], timeout_s: float = 10.0
    ) -> list[Span]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            spans = self.snapshot()
            if predicate(spans):
                return spans
            time.sleep(0.02)
        raise AssertionError(
            f"receiver: condition not met in {timeout_s} s; got {len(spans)} spans"
        )

    def wait_for_trace(self, trace_id: str, count: int, timeout_s: float = 10.0) -> list[Span]:
        self.wait_for(lambda spans: sum(s.trace_id == trace_id for s in spans) >= count, timeout_s)
        return self.trace(trace_id)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class GrpcOtlpReceiver(OtlpReceiver):
    """The same store, fed over OTLP/gRPC instead (the HTTP port stays unused)."""

    def __init__(self) -> None:
        super().__init__()
        receiver = self

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(
                self, request: ExportTraceServiceRequest, context: Any
            ) -> ExportTraceServiceResponse:
                receiver.ingest(request)
                return ExportTraceServiceResponse()

        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), self._grpc)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self.endpoint = f"http://127.0.0.1:{self.grpc_port}"

    def close(self) -> None:
        self._grpc.stop(grace=None)
        super().close()


def tier_env(receiver: OtlpReceiver | None, **overrides: str) -> dict[str, str]:
    """A clean environment: nothing of the caller's OTEL_* or tier settings leaks in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "API_", "QUERY_", "JAEGER_"))
        and k not in ("PORT", "HOST", "SHUTDOWN_GRACE_S", "LOG_LEVEL", "KEEPALIVE_TIMEOUT_S")
    }
    env["OTEL_BSP_SCHEDULE_DELAY"] = "50"
    env["PYTHONUNBUFFERED"] = "1"
    if receiver is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
    env.update(overrides)
    return env


class Tier:
    """A tier as a user runs it: `python -m <module>`, logs to files, stopped with SIGTERM (a
    netgap.lab tier, started with only the environment given, its failures as assertions)."""

    def __init__(
        self,
        module: str,
        env: Mapping[str, str],
        logdir: Path,
        launcher: Sequence[str] = (),
    ) -> None:
        self.module = module
        self.port = int(env["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        # what runs `python -m <module>`, e.g. opentelemetry-instrument (zero-code)
        launch = Launch(launcher=tuple(launcher), inherit_env=False, cwd=ROOT, append=True)
        files = Logs(logdir, ".out", ".err").files(f"{module}-{self.port}")
        self.child = tier(module, [module], "127.0.0.1", self.port, env, files, launch)

    @property
    def proc(self) -> "subprocess.Popen[bytes] | None":
        return self.child.proc

    @property
    def stderr(self) -> Path:
        return self.child.stderr

    def start(self, timeout_s: float = 20.0) -> "Tier":
        self.child.start()
        try:
            self.child.wait_healthy(timeout_s)
        except ChildFailed as exc:
            raise AssertionError(f"{exc}:\n{self.logs()}") from None
        return self

    def signal(self, signum: int) -> None:
        self.child.signal(signum)

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait; the exit code."""
        code = self.child.stop(timeout_s)
        if self.child.killed:
            raise AssertionError(f"{self.module} did not stop in {timeout_s} s")
        return 0 if code is None else code

    def logs(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs().splitlines() if line.strip()]

    def request_logs(self) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line.get("msg") == "request"]


@contextmanager
def running(tier: Tier) -> Iterator[Tier]:
    tier.start()
    try:
        yield tier
    finally:
        code = tier.stop()
        assert code == 0, f"{tier.module} exited {code}:\n{tier.logs()}"


def api_tier(
    logdir: Path, receiver: OtlpReceiver | None, launcher: Sequence[str] = (), **env: str
) -> Tier:
    env.setdefault("PORT", str(free_port()))
    return Tier("apitier", tier_env(receiver, **env), logdir, launcher)


def web_tier(
    logdir: Path,
    receiver: OtlpReceiver | None,
    api_url: str,
    launcher: Sequence[str] = (),
    **env: str,
) -> Tier:
    env.setdefault("PORT", str(free_port()))
    return Tier("webtier", tier_env(receiver, API_URL=api_url, **env), logdir, launcher)


def one_trace(
    tmp_path: Path,
    receiver: OtlpReceiver,
    launcher: Sequence[str] = (),
    **env: str,
) -> tuple[list[Span], httpx.Response]:
    # as the OpenTelemetry Operator sets it: under zero-code instrumentation the provider, and
    # so service.name, is made before a tier's own default applies
    named = (
        {"apitier": {}, "webtier": {}}
        if not launcher
        else {
            "apitier": {"OTEL_SERVICE_NAME": "apitier"},
            "webtier": {"OTEL_SERVICE_NAME": "webtier"},
        }
    )
    with (
        running(api_tier(tmp_path, receiver, launcher, **env, **named["apitier"])) as api,
        running(
            web_tier(tmp_path, receiver, f"{api.url}/", launcher, **env, **named["webtier"])
        ) as web,
    ):
        response = httpx.get(f"{web.url}/", timeout=10)
        trace_id = response.headers["traceresponse"].split("-")[1]
        receiver.wait_for_trace(trace_id, 5)
    # both tiers flushed on SIGTERM: everything of the trace is in
    return receiver.trace(trace_id), response
