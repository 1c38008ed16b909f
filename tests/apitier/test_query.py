import asyncio
import time

import pytest

from apitier.query import sleep_at_least


@pytest.mark.parametrize("seconds", [0.0, 0.0004, 0.002, 0.0105])
def test_sleep_is_never_shorter_than_asked(seconds: float) -> None:
    async def timed() -> float:
        start = time.perf_counter()
        await sleep_at_least(seconds)
        return time.perf_counter() - start

    for _ in range(5):
        assert asyncio.run(timed()) >= seconds
