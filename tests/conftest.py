"""Strict test settings: float64 (via the package entry), no silent rank promotion."""

import os
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import diffdesign  # noqa: F401  (enables float64 once, as users get it)

jax.config.update("jax_numpy_rank_promotion", "raise")

# The diffdesign command keeps compiled programs on disk between runs (~/.cache/diffdesign);
# tests that call it in process must not turn that cache on for the rest of their worker
# (every later compilation would read and write the user's cache, from several workers at
# once). Tests of the cache itself set DIFFDESIGN_JAX_CACHE to a folder of their own.
os.environ.setdefault("DIFFDESIGN_JAX_CACHE", "off")

# The studies live in the repository's experiments/ package (not installed with the library).
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)
