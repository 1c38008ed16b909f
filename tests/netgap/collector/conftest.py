"""A collector on free loopback ports in this process, and spans to feed it."""

import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import BaseRoute

from netgap.address import Address
from netgap.collector.server import Collector, Settings, serving_in_thread
from netgap.collector.store import Store

LOCAL = Address("127.0.0.1", 0)  # any free port

StartCollector = Callable[..., AbstractContextManager[Collector]]


def local_settings(db: Path, **overrides: Any) -> Settings:
    return Settings(
        db=db, otlp_http=LOCAL, otlp_grpc=LOCAL, query=LOCAL, shutdown_grace_s=5, **overrides
    )


@pytest.fixture
def start_collector(tmp_path: Path) -> StartCollector:
    """start_collector(**settings) serves a collector on tmp_path/traces.db while the block
    runs; stopping it is part of the test."""

    @contextmanager
    def start(
        extra_query_routes: Callable[[Store], Sequence[BaseRoute]] | None = None,
        **overrides: Any,
    ) -> Iterator[Collector]:
        overrides.setdefault("db", tmp_path / "traces.db")
        settings = local_settings(**overrides)
        collector = Collector(settings, extra_query_routes=extra_query_routes)
        with serving_in_thread(collector) as running:
            yield running

    return start


@pytest.fixture
def collector(start_collector: StartCollector) -> Iterator[Collector]:
    with start_collector() as running:
        yield running


@pytest.fixture(scope="session")
def tls() -> ssl.SSLContext:
    # Built once: every new httpx client would load the CA bundle again (~50 ms), and the
    # tests' traffic is plain HTTP on loopback anyway.
    return ssl.create_default_context()


@pytest.fixture
def http(tls: ssl.SSLContext) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, verify=tls) as client:
        yield client


@pytest.fixture
def api(collector: Collector, tls: ssl.SSLContext) -> Iterator[httpx.Client]:
    """Requests to the query port: api.get("/api/v3/services")."""
    with httpx.Client(base_url=collector.query_url, timeout=10, verify=tls) as client:
        yield client
