"""The netgap lab toolkit: run, observe and break the two tiers. The tiers never import it.
Imports point one way: commands -> scenario, analysis -> collector -> the core modules
(tests/test_layout.py computes the graph and refuses a cycle).

commands/       one module per subcommand (parse, call, print); fault_flags.py the fault flags
                every fault command and `scenario` share
scenario/       `netgap scenario`: the incident replayed, its typed result and its report
fault/          the fault library: the userspace proxy, tc/iptables plans, the k8s objects
collector/      `netgap collect`: OTLP receiver, SQLite store, Jaeger's api_v3 query API
analysis        the TraceSource protocol (the store, an api_v3 endpoint) and the breakdown
                pipeline: source -> breakdowns -> aggregate -> report
aggregate       many traces' breakdowns -> percentiles per component, edge and time bucket
summary         the breakdown summary, typed (its as_json is `netgap breakdown --json`)
breakdown       one trace's arithmetic: self time per service, remote time per call
report          the breakdown's table, CSV, plot and diagnosis
trace_source    the api_v3 client (parallel time slices); otlp_fast its lean reader
otlp_json       OTLP/JSON <-> spans; otlp_proto OTLP protobuf <-> spans (the one AnyValue decoder)
model           the span model every module shares; address: HOST:PORT
tracepage       the trace pages (Jinja2, netgap/templates/); tracesearch the recent-traces
                search and its scatter; trace_reading one call's kernel testimony in words
svg             the one SVG plotting path: scales (linear, log), frame, ticks, marks
promtext, metric_source  netgap_remote_seconds from /metrics or Prometheus
loadgen         the open-loop load generator (aiohttp)
lab             the lab's line-up: collector, API tier, fault proxy and web tier as child processes,
                started in order, pinned apart and stopped in reverse (`netgap demo`, `netgap
                scenario`, the bench and the tests' harness start them through it)
supervisor      one child process: started, ready, pinned, measured (CPU seconds, RSS), stopped
cli, argtypes, errors, timeparse, aio  the command line's plumbing
"""
