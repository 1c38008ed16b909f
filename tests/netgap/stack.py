"""The local lab for toolkit tests: a collector in this process, tiers as processes."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from netgap.address import Address
from netgap.collector.server import Collector, Settings, serving_in_thread
from netgap.tracepage import page_routes

ANY_PORT = Address("127.0.0.1", 0)


@contextmanager
def collector(db: Path) -> Iterator[Collector]:
    settings = Settings(db=db, otlp_http=ANY_PORT, otlp_grpc=None, query=ANY_PORT)
    with serving_in_thread(Collector(settings, extra_query_routes=page_routes)) as running:
        yield running


def otlp_url(running: Collector) -> str:
    assert running.settings.otlp_http is not None
    return running.settings.otlp_http.url


def query_url(running: Collector) -> str:
    return running.settings.query.url
