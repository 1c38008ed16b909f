"""Network faults on purpose: a userspace proxy here, tc/iptables on a cluster node.

The userspace proxy (`netgap fault proxy`):
  proxy.py       the listener: accepts, dials the upstream, closes; the `FaultProxy` to start
  link.py        one direction of a connection: chunks forwarded with latency, loss, reset, rate
  conditions.py  what every connection shares: the faults of the moment, shapers, seeded draws
  upstream.py    the upstream as dials find it: a check, dial errors in words, the outage log
"""
