"""`netgap scenario`: the incident replayed on one machine.

run        the orchestration: the lab up (netgap.lab), one exchange measured, the phases, the
           traces read back, everything stopped
config     what a run is asked for: ports, phases and their faults, rate, timeouts
exchange   the bytes of one exchange between the tiers (httpx, a fresh connection)
phases     the phase driver: faults at each edge, a load generator a phase, Ctrl-C and SIGTERM
readback   the run read back from the collector into a result
result     what a run found, typed (ScenarioResult and its parts); scenario.json is its JSON
answers    the web tier's answers per phase, by cause, from its log
kernel     --kernel: the API tier in a network namespace, the faults by tc/iptables on a hop
model      the amplification model that explains the numbers (expected remote time)

The report reads the result: the numbers and the terminal's table (text), the diagnosis in
words (diagnosis), the SVG plots drawn through netgap.svg (plots), the HTML page rendered
from netgap/templates/scenario.html (page), and the JSON and page written side by side
(report).
"""
