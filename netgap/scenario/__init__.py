"""`netgap scenario`: the incident replayed on one machine.

run       the orchestration: the lab up (netgap.lab), one exchange measured, the phases, the
          traces read back, everything stopped
config    what a run is asked for: ports, phases and their faults, rate, timeouts
exchange  the bytes of one exchange between the tiers (httpx, a fresh connection)
phases    the phase driver: faults at each edge, a load generator a phase, Ctrl-C and SIGTERM
result    the run read back from the collector into the report's data (scenario.json)
answers   the web tier's answers per phase, by cause, from its log
kernel    --kernel: the API tier in a network namespace, the faults by tc/iptables on a veth
model     the amplification model that explains the numbers (expected remote time)
report    the report it writes (table, diagnosis, HTML page)
"""
