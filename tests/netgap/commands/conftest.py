"""The fixtures the command tests share with the library tests of the same part: a collector
in this process (tests/netgap/collector/conftest.py) and an echo server to relay to
(tests/netgap/fault/conftest.py)."""

from tests.netgap.collector.conftest import collector, start_collector
from tests.netgap.fault.conftest import echo_server

__all__ = ["collector", "echo_server", "start_collector"]
