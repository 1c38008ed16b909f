"""Network faults on purpose, as a library: a userspace proxy here, tc/iptables on a cluster node.

spec        the fault vocabulary every injector shares (`Faults`, the units tc takes, presets)
proxy       the userspace TCP relay (`netgap fault proxy`): the listener that accepts, dials
            the upstream and closes; the `FaultProxy` to start
link        one direction of a proxied connection: chunks forwarded with latency, loss, reset,
            rate
conditions  what every proxied connection shares: the faults of the moment, shapers, seeded
            draws
upstream    the upstream as the proxy's dials find it: a check, dial errors in words, the
            outage log
control     the proxy's JSON control API, and the client `netgap fault set/clear` use
tc          plans of tc/iptables commands for a kernel, applied, held and reverted
k8s         the Kubernetes objects (agent Pod, ephemeral container, NetworkChaos) and kubectl
            calls

The command lines that drive them are netgap/commands/fault.py (`netgap fault proxy/set/clear`),
fault_k8s.py (`netgap fault k8s`) and fault_flags.py (the fault flags they and `scenario` share).
"""
