"""`make bench`: every performance figure of the lab measured side by side on this machine.

Run as `python -m bench [--quick] [--out FILE]`; see bench/__main__.py. The modules:

  __main__.py         the command: runs every measurement, prints the table, writes the JSON
  run.py              a run's plan (FULL, QUICK), CPU placement, figures and rounds; one wrk run
  measure.py          the processes lined up and every measurement in the order it runs
  tracing.py          items 1-2: the five stacks, on/off pairs, TCP_INFO in place, lean pieces
  proxycost.py        item 4: the fault proxy with no faults vs direct (HTTP and raw sockets)
  floor.py            item 3: the remote-calls floor, from the lab stack's traces
  ingest.py           item 5: the collector's OTLP ingest on one core
  breakdown_speed.py  item 5: the breakdown from the store and over HTTP api_v3
  breakdown_api.py    issue 18: the breakdown over api_v3 from `netgap collect`
  rss.py              item 6: each tier's RSS after a stretch at load
  tcpcost.py          TCP_INFO's cost per request, alone, in this process
  leancost.py         lean mode's OTLP encoder against the SDK's, in this process
  meter.py            the noise: CPU other processes took while we measured
  report.py           a figure with its target and mark; the table, the details, the JSON
  http.py             wrk: one run, parsed
  stack.py            the processes: tiers, the span sink, a collector, the fault proxy
  sink.py             the span sink: answers OTLP/HTTP, keeps nothing
  soak.py             `python -m bench.soak`: a long steady run watched for leaks
  stock/              the stock anchor: the tiers on every library's defaults
  toggle/             a sitecustomize switching TCP_INFO on and off inside a tier
"""
