"""`netgap scenario`: the incident replayed on one machine (run), the amplification model that
explains its numbers (model), the web tier's answers by cause (answers), kernel mode's veth
and tc faults (kernel), and what a run found (result: typed, its JSON from it).

The report reads the result: the numbers and the terminal's table (text), the diagnosis in
words (diagnosis), the SVG plots drawn through netgap.svg (plots), the HTML page rendered
from netgap/templates/scenario.html (page), and the JSON and page written side by side
(report)."""
