"""Timing shared by the benchmark scripts: compile (first call) and steady state apart."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

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


def environment() -> dict:
    """What this process computes on: Python, JAX, jaxlib, NumPy and diffdesign versions, JAX's
    backend and devices, and the float precision (``jax_enable_x64``, which importing diffdesign
    turns on). Raises what ``jax.devices()`` raises when the requested platform is absent."""
    import os
    import platform

    import jax
    import jaxlib
    import numpy

    import diffdesign

    devices = jax.devices()
    x64 = bool(jax.config.read("jax_enable_x64"))
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "diffdesign": diffdesign.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": numpy.__version__,
        "jax_backend": jax.default_backend(),
        "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in devices],
        "jax_enable_x64": x64,
        "precision": "float64" if x64 else "float32",
    }


def write_report(out: str, benchmark: str, results: dict, *, smoke: bool, versions: dict) -> Path:
    """Write a benchmark's report (name, date, environment, the peers' versions, results)
    as JSON to ``out``, creating its folder; returns the path."""
    import json

    report = {
        "benchmark": benchmark,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "smoke": smoke,
        "environment": environment(),
        "versions": versions,
        "results": results,
    }
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return path
