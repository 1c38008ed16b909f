"""The OTLP trace receivers: `POST /v1/traces` over HTTP and TraceService/Export over gRPC.

A request is stored whole or not at all. A refused one gets a 4xx (gRPC: INVALID_ARGUMENT) and
a one-line reason; the body of an OTLP/HTTP error is a google.rpc.Status in the request's
encoding, as the OTLP specification asks, and never a traceback.
"""

import asyncio
import logging
from typing import Any

import grpc
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from netgap.collector.ingest import (
    CODINGS,
    JSON,
    PROTOBUF,
    IngestError,
    decode_body,
    media_type,
    validate_request,
)
from netgap.collector.records import StoreError, UnstorableSpanError
from netgap.collector.store import Store

OTLP_HTTP_PATH = "/v1/traces"
_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()
# google.rpc.Code for the statuses we answer with
_RPC_CODES = {400: 3, 413: 8, 415: 3, 500: 13, 503: 14}

log = logging.getLogger("netgap.collect")


def create_otlp_http_app(store: Store, max_body: int) -> Starlette:
    """OTLP/HTTP: protobuf or JSON bodies, gzip or deflate or not, of at most `max_body` bytes
    (as sent, and again once decompressed)."""

    async def export(request: Request) -> Response:
        encoding = media_type(request.headers.get("content-type"))
        if encoding is None:
            return _refuse(
                request,
                IngestError(415, f"Content-Type must be {PROTOBUF} or {JSON}"),
                None,
            )
        coding = request.headers.get("content-encoding", "").strip().lower()
        coding = "" if coding == "identity" else coding
        if coding and coding not in CODINGS:
            supported = " and ".join(CODINGS)
            error = IngestError(
                415, f"Content-Encoding {coding!r} is not supported ({supported} are)"
            )
            return _refuse(request, error, encoding)
        try:
            body = await _read_body(request, max_body)
            added = await asyncio.to_thread(_ingest, store, body, encoding, coding, max_body)
        except IngestError as exc:
            return _refuse(request, exc, encoding)
        except UnstorableSpanError as exc:
            return _refuse(request, IngestError(400, str(exc)), encoding)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it
        except StoreError as exc:
            log.error("%s", exc)
            return _refuse(request, IngestError(503, "the trace store is unavailable"), encoding)
        log.debug("stored %d new spans", added)
        if encoding == JSON:
            return Response(b"{}", media_type=JSON)
        return Response(_EMPTY_RESPONSE, media_type=PROTOBUF)

    return Starlette(routes=[Route(OTLP_HTTP_PATH, export, methods=["POST"])])


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise IngestError(413, f"body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise IngestError(413, f"body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _ingest(store: Store, body: bytes, encoding: str, coding: str, max_body: int) -> int:
    # Decoding runs here, in a worker thread, with the write: a big body never holds up the
    # event loop, which keeps the other listeners answering.
    request = decode_body(body, encoding, coding, max_body)
    return store.add_request(request)


def _refuse(request: Request, error: IngestError, encoding: str | None) -> Response:
    message = str(error)
    if error.status < 500:
        client = request.client.host if request.client else "?"
        log.warning("refused an OTLP/HTTP request from %s: %d %s", client, error.status, message)
    code = _RPC_CODES.get(error.status, 2)
    if encoding == PROTOBUF:
        status = Status(code=code, message=message)
        return Response(status.SerializeToString(), error.status, media_type=PROTOBUF)
    if encoding == JSON:
        return JSONResponse({"code": code, "message": message}, error.status)
    return PlainTextResponse(message, error.status)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, store: Store) -> None:
        self._store = store

    async def Export(
        self, request: ExportTraceServiceRequest, context: Any
    ) -> ExportTraceServiceResponse:
        try:
            await asyncio.to_thread(_ingest_request, self._store, request)
        except (IngestError, UnstorableSpanError) as exc:
            log.warning("refused an OTLP/gRPC request from %s: %s", context.peer(), exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except StoreError as exc:
            log.error("%s", exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the trace store is unavailable")
        return ExportTraceServiceResponse()


def _ingest_request(store: Store, request: ExportTraceServiceRequest) -> int:
    validate_request(request)
    return store.add_request(request)


def create_otlp_grpc_server(store: Store, max_body: int) -> Any:
    """An unstarted grpc.aio server with the OTLP TraceService; the caller adds its port.
    Call it with an event loop running."""
    server = grpc.aio.server(
        options=[
            # Without this a second collector could bind the same port and steal half the
            # connections; binding must fail instead.
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", max_body),
        ]
    )
    add_servicer = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
    add_servicer(_TraceService(store), server)  # type: ignore[no-untyped-call]
    return server
