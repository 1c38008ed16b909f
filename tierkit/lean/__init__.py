"""Lean mode (`TRACING_MODE=lean`, opt-in): hand-written replacements for library parts on the
tracing path, kept because they pay, measured side by side in `make bench` (bench/).

The default (`standard`) runs the libraries themselves; this package is the one place where our
own code stands in for them. Per piece:

- `spans` replaces opentelemetry-instrumentation-fastapi (its ASGI middleware) and
  opentelemetry-instrumentation-httpx with one SERVER and one CLIENT span of the same names,
  kinds and stable HTTP attributes. It gives up contrib's hooks, `OTEL_PYTHON_*_EXCLUDED_URLS`,
  `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`, old-semconv output, contrib's OTel metrics and
  `url.full` redaction of query-string secrets (the web tier calls one fixed URL).
- `headstamp` starts the SERVER span once the request's head was read, before uvicorn's
  dispatch, so that dispatch is not counted as network (a lower remote-calls floor). It gives
  up nothing but needs uvicorn's httptools protocol (`http=`, pinned).
- `encoder` replaces the SDK's OTLP protobuf encoding (a protobuf object per span, attribute
  and value) with bytes written directly, checked byte for byte against the SDK's encoder at
  start (`probe`). It gives up the exporter's self-metrics and reads a private field of the
  SDK's spans (their attribute dict): the probe fails loudly at start if that changes.

What each saves is measured by `make bench` (the README's table: lean against standard); a
piece that saves less than 5% of a traced request's CPU there is deleted rather than kept.
"""
