"""Noise: what else used the CPU while the bench measured (machine-wide busy CPU less ours)."""

import resource
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from bench import stack
from netgap.supervisor import Child


@dataclass
class Usage:
    wall_s: float = 0.0
    ours_s: float = 0.0  # our long-running children, wrk, this process
    other_s: float = 0.0  # everything else on the machine (another engineer's tests, ...)


class Meter:
    """Machine-wide busy CPU (/proc/stat) minus ours, over a `with` block."""

    def __init__(self, procs: Sequence[Child]) -> None:
        self.procs = procs
        self.wall_s = 0.0  # summed over every measured interval
        self.other_s = 0.0

    def _ours(self) -> float:
        total = 0.0
        for proc in self.procs:
            if proc.proc is not None and proc.proc.poll() is None:
                total += proc.cpu_s()
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            total += usage.ru_utime + usage.ru_stime
        return total

    @contextmanager
    def measure(self) -> Iterator[Usage]:
        usage = Usage()
        ours, busy, wall = self._ours(), stack.machine_busy_s(), time.monotonic()
        yield usage
        usage.wall_s = time.monotonic() - wall
        usage.ours_s = self._ours() - ours
        usage.other_s = max(0.0, stack.machine_busy_s() - busy - usage.ours_s)
        self.wall_s += usage.wall_s
        self.other_s += usage.other_s

    def noise(self) -> str:
        """How much of the machine other processes took while we measured."""
        share = self.other_s / (self.wall_s * len(stack.cores())) if self.wall_s else 0.0
        return (
            f"other processes used {self.other_s:.0f} CPU-s over {self.wall_s:.0f} s of "
            f"measured intervals ({share:.0%} of the machine); per run in 'other_cpu_s'"
        )
