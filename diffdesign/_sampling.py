"""Space-filling designs in the unit cube, shared by Bayesian optimisation and L-GSO."""

from __future__ import annotations

import functools

import jax
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray


@functools.partial(jax.jit, static_argnums=(1, 2))
def _latin_hypercube(key: PRNGKeyArray, n: int, d: int) -> Float[Array, "n d"]:
    permutation_key, offset_key = jax.random.split(key)
    permutations = jax.vmap(lambda k: jax.random.permutation(k, n))(
        jax.random.split(permutation_key, d)
    )
    return (permutations.T + jax.random.uniform(offset_key, (n, d))) / n


def latin_hypercube(key: PRNGKeyArray, n: int, d: int) -> np.ndarray:
    """``n`` points in ``[0, 1)^d`` with exactly one point in each of ``n`` slices per axis.

    Args:
        key: PRNG key.
        n: number of points (>= 1).
        d: dimension (>= 1).

    Returns:
        ``(n, d)`` NumPy array (dimensionless: fractions of each axis's range).

    Raises:
        ValueError: if ``n < 1`` or ``d < 1``.
    """
    if n < 1 or d < 1:
        raise ValueError(f"latin_hypercube needs n >= 1 and d >= 1; got n={n}, d={d}")
    return np.asarray(_latin_hypercube(key, n, d))
