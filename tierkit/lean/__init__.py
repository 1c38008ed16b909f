"""Lean mode (`TRACING_MODE=lean`, opt-in): hand-written replacements for library parts on the
tracing path, kept because they pay, measured side by side in `make bench` (bench/).

The default (`standard`) runs the libraries themselves; this package is the one place where our
own code stands in for them. Per piece:

- `spans` replaces opentelemetry-instrumentation-fastapi (its ASGI middleware) and
  opentelemetry-instrumentation-httpx with one SERVER and one CLIENT span of the same names,
  kinds and stable HTTP attributes. Saves, with `headstamp`, 20% of a standard request's CPU
  (`make bench` 2026-12-05: 1.27 against 1.75 CPU-ms per request for lean and standard, less the
  encoder's share below). It gives up contrib's hooks, `OTEL_PYTHON_*_EXCLUDED_URLS`,
  `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`, old-semconv output, contrib's OTel metrics and
  `url.full` redaction of query-string secrets (the web tier calls one fixed URL).
- `headstamp` starts the SERVER span once the request's head was read, before uvicorn's
  dispatch, so that dispatch is not counted as network: with `spans` (whose CLIENT span ends at
  the last byte), the remote-calls floor is 0.31 ms against standard's 0.62 ms. It gives up
  nothing but needs uvicorn's httptools protocol (`http=`, pinned).
- `encoder` replaces the SDK's OTLP protobuf encoding (a protobuf object per span, attribute
  and value) with bytes written directly, checked byte for byte against the SDK's encoder at
  start (`probe`). Saves 127 us of a request's 5 spans (163 us with the SDK's encoder, 36 with
  this: bench/leancost.py), 7.3% of a standard request's CPU. It gives up the exporter's
  self-metrics and reads a private field of the SDK's spans (their attribute dict): the probe
  fails loudly at start if that changes.

What each saves is measured by `make bench` (the README's table: lean against standard); a
piece that saves less than 5% of a traced request's CPU there is deleted rather than kept.
"""
