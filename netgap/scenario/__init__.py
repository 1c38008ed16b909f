"""`netgap scenario`: the incident replayed on one machine (run), the amplification model that
explains its numbers (model), and the report it writes (report)."""
