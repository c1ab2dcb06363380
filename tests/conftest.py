"""Strict test settings: float64 (via the package entry), no silent rank promotion."""

import gc
import os
import sys
from pathlib import Path

import hypothesis
import jax
import numpy as np
import pytest

import diffdesign  # noqa: F401  (enables float64 once, as users get it)

jax.config.update("jax_numpy_rank_promotion", "raise")

# Property-based tests draw the same examples on every run (a red CI names a reproducible
# failure, not a draw of that day) and keep no example database in the working tree.
hypothesis.settings.register_profile("diffdesign", derandomize=True, database=None)
hypothesis.settings.load_profile("diffdesign")

# The diffdesign command keeps compiled programs on disk between runs (~/.cache/diffdesign);
# tests that call it in process must not turn that cache on for the rest of their worker
# (every later compilation would read and write the user's cache, from several workers at
# once). Tests of the cache itself set DIFFDESIGN_JAX_CACHE to a folder of their own.
os.environ.setdefault("DIFFDESIGN_JAX_CACHE", "off")

# The studies live in the repository's experiments/ package (not installed with the library).
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Free the XLA programs a test module compiled once it is done.

    A pytest worker lives for hundreds of test files; every compiled program keeps ~3 memory
    maps of JIT code alive, and with ~17,000 programs a worker reached 52,000 maps of the
    kernel's limit of 65,530 (vm.max_map_count), after which LLVM's next allocation failed
    and the worker died with a segfault inside an XLA compile. Programs reused within a file
    stay compiled; across files they compile again.
    """
    yield
    jax.clear_caches()
    gc.collect()
    if os.environ.get("DIFFDESIGN_TEST_MAPS"):  # diagnostics: the worker's map count
        with open("/proc/self/maps") as maps:
            print(f"\n[memory maps after the module: {sum(1 for _ in maps)}]")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)
