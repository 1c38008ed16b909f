"""Only for `python -m bench`'s `toggled` stack, whose tiers get this directory on PYTHONPATH
(Python's site module imports sitecustomize at start-up): switches TCP_INFO off and on about
every NETGAP_BENCH_TOGGLE_S seconds (0.5) inside the running tier, and keeps, per window, the
process's CPU seconds and requests served, in NETGAP_BENCH_TOGGLE_DIR/<pid>.json (rewritten
each window).

Why: two stacks, one with the feature and one without, differ by more than the feature (this
machine put two identical stacks 5% apart). One process under one load, switching, does not:
its caches, its connections and the machine's speed are the same in both states.
"""

import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

_DIR = os.environ.get("NETGAP_BENCH_TOGGLE_DIR")


def _install(out: Path, every_s: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's root
    from tierkit import tcpinfo

    state = {"on": True, "requests": 0}
    testify = tcpinfo.Witness.testify

    def switched(self: tcpinfo.Witness, sock: Any, new_connection: bool) -> Any:
        state["requests"] += 1  # called once per exchange, on or off
        return testify(self, sock, new_connection) if state["on"] else None

    tcpinfo.Witness.testify = switched  # type: ignore[method-assign]

    def windows() -> None:
        kept: list[dict[str, Any]] = []
        cpu, requests = time.process_time(), state["requests"]
        while True:
            # Jittered: a fixed period can lock in step with the span exports' own rhythm
            # (every 512 spans, or 0.5 s), giving one state more export bursts than the other.
            time.sleep(every_s * random.uniform(0.75, 1.25))  # noqa: S311 (not security)
            now_cpu, now_requests = time.process_time(), state["requests"]
            kept.append({"at": time.time(), "on": state["on"], "cpu_s": now_cpu - cpu,
                         "requests": now_requests - requests})  # fmt: skip
            cpu, requests = now_cpu, now_requests
            state["on"] = not state["on"]
            temporary = out.with_suffix(".tmp")
            temporary.write_text(json.dumps(kept[-4000:]))
            temporary.replace(out)

    threading.Thread(target=windows, name="bench-toggle", daemon=True).start()


if _DIR:
    _install(
        Path(_DIR) / f"{os.getpid()}.json", float(os.environ.get("NETGAP_BENCH_TOGGLE_S", "0.5"))
    )
