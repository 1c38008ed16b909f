"""A listening address, `HOST:PORT`, as the collector, the fault proxy and their commands take it.

Its own module so that the fault tools and the collector share it without importing each other.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Address:
    host: str
    port: int  # 0: any free port, resolved when bound

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self}"


def parse_address(text: str) -> Address:
    """`HOST:PORT` (`[::1]:PORT` for IPv6) -> Address; ValueError names the expected form."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"want HOST:PORT (port 0 to 65535, 0 for any free port), got {text!r}")
    return Address(host, int(port))
