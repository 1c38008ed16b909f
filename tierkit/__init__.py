"""What both tiers share: settings from the environment, OpenTelemetry set-up, request
telemetry (logs, Server-Timing, traceresponse) and serving with a graceful stop.

The tiers import this package; they never import the lab toolkit (`netgap`).
"""
