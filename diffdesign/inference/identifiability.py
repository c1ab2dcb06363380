"""How well data determine parameters: the spectrum and correlations of a Jacobian.

For whitened residuals r(x), the Fisher information is F = J^T J with J = dr/dx. Its
singular values say how strongly each direction in parameter space is measured; a large
condition number means some combination of parameters is (nearly) confounded.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float


class Identifiability(NamedTuple):
    """Attributes:
    singular_values: (p,) singular values of J, largest first (1/parameter units).
    condition_number: largest over smallest singular value (inf if rank-deficient).
    weakest_direction: (p,) unit vector in parameter space that J measures least.
    correlation: (p, p) correlation matrix of the Gaussian posterior (J^T J)^-1.
    rank: numerical rank of J.
    """

    singular_values: Array
    condition_number: Array
    weakest_direction: Array
    correlation: Array
    rank: Array


def identifiability(jacobian: Float[Array, "m p"]) -> Identifiability:
    """Singular values, condition number and correlations of a whitened Jacobian."""
    _, s, vt = jnp.linalg.svd(jacobian, full_matrices=False)
    tolerance = s[0] * max(jacobian.shape) * jnp.finfo(jacobian.dtype).eps
    rank = jnp.sum(s > tolerance)
    condition = jnp.where(s[-1] > tolerance, s[0] / s[-1], jnp.inf)
    covariance = jnp.linalg.pinv(jacobian.T @ jacobian, hermitian=True)
    scale = jnp.sqrt(jnp.diagonal(covariance))
    correlation = covariance / (scale[:, None] * scale[None, :])
    return Identifiability(s, condition, vt[-1], correlation, rank)
