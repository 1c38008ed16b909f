"""Network faults on purpose: a userspace proxy here, tc/iptables on a cluster node."""
