"""Timing shared by the benchmark scripts: compile (first call) and steady state apart."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

#: Idle time before each measurement (s): OpenMP worker threads of the library measured
#: just before keep spinning for a while after their last job (Intel's KMP_BLOCKTIME is
#: 200 ms) and would steal the two cores from the library measured next.
SETTLE_S = 0.5


def timed(fn: Callable[[], object], reps: int, warmup: int = 5) -> dict[str, float]:
    """First call (s; includes compilation), ``warmup`` unrecorded calls (PyTorch's
    allocator and caches settle over the first few), then median and min of ``reps`` calls.
    ``fn`` must block until its result is ready (``jax.block_until_ready``)."""
    time.sleep(SETTLE_S)
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    median = statistics.median(samples)
    return {
        "first_call_s": first,
        "median_s": median,
        "min_s": min(samples),
        "compile_s": max(first - median, 0.0),
        "reps": reps,
    }
