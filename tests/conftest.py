"""Strict test settings: float64 (via the package entry), no silent rank promotion."""

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import diffdesign  # noqa: F401  (enables float64 once, as users get it)

jax.config.update("jax_numpy_rank_promotion", "raise")

# The studies live in the repository's experiments/ package (not installed with the library).
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)
