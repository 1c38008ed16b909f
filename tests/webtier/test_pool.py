"""The web tier's pool of connections to the API (issue 19, item 3), from outside the process:

- more calls at once than API_MAX_CONNECTIONS never open more connections than that: counted
  as the connections a relay in front of the API accepted, every one, not as the pool believes;
- the API killed mid-load: every pooled connection is released (the web tier's sockets to the
  API's port, in every state, and its http_client_open_connections gauge go to 0), the pages
  answer 502 meanwhile, and 200 again once the API is back, with no restart.

Real tier processes on loopback; the relay is a plain asyncio TCP forwarder."""

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Tier, api_tier, running, web_tier

POOL = 4  # API_MAX_CONNECTIONS
CALLS = 20  # pages at once: five times the pool
QUERY_DELAY_MS = 300  # each call holds its connection this long: all of them queue for one
DEADLINE_S = 10.0  # for what must happen soon after the kill, not a timing claim


@dataclass
class Relay:
    """What the relay saw: connections accepted in all, and the most open at once."""

    url: str = ""
    accepted: int = 0
    open: int = 0
    most_open: int = 0


@contextmanager
def counting_relay(upstream_port: int) -> Iterator[Relay]:
    """A TCP relay on loopback to 127.0.0.1:`upstream_port`, counting what it accepts."""
    relay = Relay()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stopped = asyncio.Event()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        relay.accepted += 1
        relay.open += 1
        relay.most_open = max(relay.most_open, relay.open)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except OSError:
            writer.close()
        finally:
            relay.open -= 1

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        relay.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        ready.set()
        async with server:
            await stopped.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield relay
    finally:
        loop.call_soon_threadsafe(stopped.set)
        thread.join(5)


async def pages_at_once(url: str, count: int) -> list[int]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        responses = await asyncio.gather(*(client.get(url) for _ in range(count)))
    return [r.status_code for r in responses]


def test_calls_beyond_the_pool_wait_for_it_and_never_open_another_connection(
    tmp_path: Path,
) -> None:
    api = api_tier(tmp_path, None, QUERY_DELAY_MS=str(QUERY_DELAY_MS))
    with running(api), counting_relay(api.port) as relay:
        web = web_tier(tmp_path, None, f"{relay.url}/", API_MAX_CONNECTIONS=str(POOL))
        with running(web):
            statuses = asyncio.run(pages_at_once(f"{web.url}/", CALLS))
            again = asyncio.run(pages_at_once(f"{web.url}/", CALLS))  # on the same connections
    assert statuses == again == [200] * CALLS
    assert relay.accepted <= POOL, f"{relay.accepted} connections accepted, pool {POOL}"
    assert relay.most_open <= POOL
    assert relay.accepted == POOL, "the calls never filled the pool: the bound went untested"


def sockets_to(tier: Tier, port: int) -> list[str]:
    """The TCP states (hex, as /proc/net/tcp lists them) of the tier process's own sockets
    whose peer is `port`: every state, whatever its pool believes."""
    assert tier.proc is not None
    fds = Path(f"/proc/{tier.proc.pid}/fd")
    inodes = set()
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[9] in inodes:
                states.append(fields[3])
    return states


def open_connections_gauge(web: Tier) -> float:
    text = httpx.get(f"{web.url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "http_client_open_connections"
    )


class Load:
    """Pages requested back to back by `workers` threads until stopped; the statuses seen."""

    def __init__(self, url: str, workers: int) -> None:
        self.url = url
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                self.statuses.append(client.get(self.url).status_code)

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(35)


def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_the_api_killed_mid_load_releases_every_pooled_connection(tmp_path: Path) -> None:
    api = api_tier(tmp_path, None, QUERY_DELAY_MS="50")
    restarted = api_tier(tmp_path, None, PORT=str(api.port))
    api.start()
    try:
        web = web_tier(tmp_path, None, f"{api.url}/", API_MAX_CONNECTIONS=str(POOL))
        with running(web):
            with Load(f"{web.url}/", workers=2 * POOL) as load:
                until(lambda: len(sockets_to(web, api.port)) == POOL, "the load filled the pool")
                until(lambda: open_connections_gauge(web) == POOL, "the gauge counts the pool")
                before = len(load.statuses)
                assert api.proc is not None
                api.proc.send_signal(signal.SIGKILL)  # mid-load: calls in flight on each
                api.proc.wait(10)
                until(lambda: sockets_to(web, api.port) == [], "a socket to the dead API stayed")
                until(lambda: open_connections_gauge(web) == 0, "the gauge stayed above 0")
                until(lambda: 502 in load.statuses[before:], "no 502 while the API was down")
                restarted.start()
                back = len(load.statuses)
                until(lambda: 200 in load.statuses[back:], "no 200 after the API came back")
            answered = set(load.statuses[before:])
            assert web.proc is not None
            assert web.proc.poll() is None  # never restarted
    finally:
        if api.proc is not None and api.proc.poll() is None:
            api.proc.kill()
        restarted.stop()
    assert answered <= {200, 502}, answered
    print(
        f"\n{len(load.statuses)} pages: {load.statuses.count(502)} answered 502 while the API"
        f" was down; sockets to it and the gauge back to 0 after the kill"
    )
