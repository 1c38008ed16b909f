"""`netgap collect`: an OTLP trace receiver, a durable SQLite store, and the part of Jaeger's
query API v3 that netgap reads, so nothing here needs a Jaeger.

ingest      OTLP/HTTP bodies (protobuf, JSON; gzip, deflate) -> a validated export request
otlp_proto  OTLP protobuf messages <-> netgap.model.Span
store       the SQLite store: one transaction per request, retention, typed reads
receiver    POST /v1/traces (Starlette) and TraceService/Export (grpc.aio)
query       GET /api/v3/services, /operations, /traces, /traces/{id} (Starlette)
timeparse   RFC 3339 times and Go durations, as the query API takes them
server      all of it in one asyncio process, with a graceful stop
"""
