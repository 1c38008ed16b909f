"""Running the toolkit's event loops."""

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`main` to its end on uvloop where it is built (asyncio's own loop elsewhere): about half
    the CPU per request or relayed chunk here, CPU the tiers being measured then keep."""
    try:
        import uvloop
    except ImportError:  # not built for this platform (Windows)
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
