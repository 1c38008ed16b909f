"""`make bench`: every performance figure of the lab measured side by side on this machine.

Run as `python -m bench [--quick] [--out FILE]`; see bench/__main__.py.
"""
