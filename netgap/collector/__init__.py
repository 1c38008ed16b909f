"""`netgap collect`: an OTLP trace receiver, a durable SQLite store, and the part of Jaeger's
query API v3 that netgap reads, so nothing here needs a Jaeger. It imports the span model, the
OTLP codecs (netgap.otlp_proto, netgap.otlp_json) and the per-trace arithmetic
(netgap.breakdown), never the analysis above it (netgap.analysis, netgap.aggregate).

ingest           OTLP/HTTP bodies (protobuf, JSON; gzip, deflate) -> a validated export request
receiver         POST /v1/traces (Starlette) and TraceService/Export (grpc.aio)
query            GET /api/v3/services, /operations, /traces, /traces/{id} (Starlette)
server           all of it in one asyncio process, with a graceful stop
store            the SQLite store (Store): one transaction per request, retention, typed reads
records          what the store takes and gives: TraceQuery, TraceSummary, Listings, errors
schema           the store's tables, version, migration, and how a connection is opened
writing          export requests (or spans) as rows, in the writer's transaction
retention        dropping the earliest received traces (--max-spans, --max-age)
search           Jaeger's search rules: which traces match a query; recent summaries
chains           the fast path: a trace of the common shape's breakdown, kept as one row
breakdown_reads  the lean reads for breakdowns (kept chains, lean rows) and page listings
documents        api_v3's OTLP/JSON search answer made straight from stored rows
rows             stored span rows back to netgap.model.Span, with the scope cache
readers          the pool of reader connections, one snapshot per read
"""
