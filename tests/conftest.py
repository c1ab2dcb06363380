"""Strict test settings: float64 (via the package entry), no silent rank promotion."""

import jax
import numpy as np
import pytest

import diffdesign  # noqa: F401  (enables float64 once, as users get it)

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)
