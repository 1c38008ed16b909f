"""The lab's line-up: the collector, the API tier, the fault proxy and the web tier, each a
netgap.supervisor.Child with the command line and environment it runs with, a log file each
(or two), and its health URL. `netgap demo`, `netgap scenario`, the bench (bench/stack.py) and
the tests' harness (tests/harness.py) start the lab's processes through here.

A LineUp holds one lab: started in order, each ready before the next, the API tier pinned
apart from its callers, and stopped in reverse (SIGTERM, then SIGKILL), the callers first so
that their graceful stop still has a collector to send their last spans to. `running` starts
a group at once (the bench's many tiers), and stops it in reverse whatever happens.
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from netgap.fault.control import FAULTS_PATH
from netgap.supervisor import Child, Launch, pin_apart

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
EXPORT_DELAY_MS = 500  # the tiers' span batches go out twice a second (OTEL_BSP_SCHEDULE_DELAY)

Files = tuple[Path, Path]  # a child's stdout and stderr


@dataclass(frozen=True)
class Logs:
    """A folder of the children's logs: <stem><out> takes stdout, <stem><err> stderr (the same
    suffix: one file for both)."""

    folder: Path
    out: str = ".out"
    err: str = ".log"

    def files(self, stem: str) -> Files:
        return self.folder / f"{stem}{self.out}", self.folder / f"{stem}{self.err}"


def url(host: str, port: int, path: str = "/") -> str:
    return f"http://{host}:{port}{path}"


def export_env(otlp_endpoint: str) -> dict[str, str]:
    """Where a tier sends its spans, and how often."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": str(EXPORT_DELAY_MS),
    }


# -- the processes


def tier(
    name: str,
    args: Sequence[str],
    host: str,
    port: int,
    env: Mapping[str, str],
    files: Files,
    launch: Launch | None = None,
) -> Child:
    """A tier (`python -m <args>`, e.g. ["apitier"]) on `host`:`port`, with `env` (its other
    settings: API_URL, QUERY_DELAY_MS, OTEL_*, ...); ready when GET /healthz answers."""
    return Child(
        name,
        list(args),
        {**env, "HOST": host, "PORT": str(port)},
        url(host, port, "/healthz"),
        *files,
        launch or Launch(),
    )


def collector(
    otlp: str,
    query: str,
    db: Path,
    files: Files,
    *,
    name: str = "collector",
    max_spans: int | None = None,
    launch: Launch | None = None,
) -> Child:
    """`netgap collect` taking OTLP/HTTP on `otlp` (host:port, no gRPC) and answering Jaeger's
    query API and the trace pages on `query`, storing in `db`; `max_spans` as its flag (None:
    its default; 0: no limit)."""
    limit = [] if max_spans is None else ["--max-spans", str(max_spans)]
    return Child(
        name,
        ["netgap", "collect", "--otlp-http", otlp, "--otlp-grpc", "off",
         "--query", query, "--db", str(db), *limit],
        {},
        f"http://{query}/api/v3/services",
        *files,
        launch or Launch(),
    )  # fmt: skip


def fault_proxy(
    listen: str,
    upstream: str,
    control: str,
    files: Files,
    *,
    name: str = "fault proxy",
    seed: int | None = None,
    launch: Launch | None = None,
) -> Child:
    """`netgap fault proxy` on `listen` in front of `upstream` (host:port each), no faults
    until they are set through its control API on `control`; `seed`, its random draws."""
    seeded = [] if seed is None else ["--seed", str(seed)]
    return Child(
        name,
        ["netgap", "fault", "proxy", "--listen", listen, "--upstream", upstream,
         "--control", control, *seeded],
        {},
        f"http://{control}{FAULTS_PATH}",
        *files,
        launch or Launch(),
    )  # fmt: skip


# -- one lab


@dataclass
class LineUp:
    """One lab's processes: the collector, the API tier, the fault proxy (None: this lab has
    none) and the web tier, in that order."""

    collector: Child
    api: Child
    web: Child
    proxy: Child | None = None

    @property
    def children(self) -> list[Child]:
        """In start order."""
        return [c for c in (self.collector, self.api, self.proxy, self.web) if c is not None]

    @property
    def client_side(self) -> list[Child]:
        """The processes that call the API tier."""
        return [c for c in (self.proxy, self.web) if c is not None]

    def names(self) -> str:
        """Their names in a sentence: "collector, API tier and web tier"."""
        names = [child.name for child in self.children]
        return f"{', '.join(names[:-1])} and {names[-1]}"

    def start(self, *children: Child) -> None:
        """Each in turn, ready before the next starts."""
        for child in children:
            child.start()
            child.wait_healthy(START_TIMEOUT_S)

    def pin(self) -> dict[str, list[int]] | None:
        """The API tier on a core, its callers on another (netgap.supervisor.pin_apart)."""
        return pin_apart(self.api, self.client_side)

    def exited(self) -> Child | None:
        """The first that is no longer running."""
        return next((child for child in self.children if child.exited()), None)

    def stop(self, *children: Child) -> dict[str, int | None]:
        """`children` (all when none are named) in reverse order, each gracefully: their exit
        codes by name, in the order they stopped (None: never started)."""
        return {
            child.name: child.stop(STOP_TIMEOUT_S) for child in reversed(children or self.children)
        }


@contextmanager
def running(*children: Child) -> Iterator[None]:
    """Starts them all at once, waits until each is ready; stops them in reverse order."""
    with ExitStack() as stack:
        for child in children:
            stack.callback(child.stop, STOP_TIMEOUT_S)
            child.start()
        for child in children:
            child.wait_healthy(START_TIMEOUT_S)
        yield
