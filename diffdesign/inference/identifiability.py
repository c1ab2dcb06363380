"""How well data determine parameters: the spectrum and correlations of a Jacobian.

For whitened residuals r(x), the Fisher information is F = J^T J with J = dr/dx. Its
singular values say how strongly each direction in parameter space is measured; a large
condition number means some combination of parameters is (nearly) confounded, and a
direction the data do not measure at all leaves the parameters along it undetermined.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float

from diffdesign._validation import check_finite

#: A parameter whose unit vector has more than this squared weight on unmeasured
#: directions is reported as undetermined (infinite variance).
_UNDETERMINED_WEIGHT = 1e-12


class Identifiability(NamedTuple):
    """Attributes:
    singular_values: (p,) singular values of J, largest first, zero-padded when J has
        fewer rows than columns (1/parameter units).
    condition_number: largest over smallest singular value (inf if rank-deficient).
    weakest_direction: (p,) unit vector in parameter space that J measures least.
    correlation: (p, p) correlation matrix of the Gaussian posterior; rows and columns of
        undetermined parameters are those of the identity.
    rank: numerical rank of J.
    undetermined: (p,) True for parameters the data do not determine.
    """

    singular_values: Array
    condition_number: Array
    weakest_direction: Array
    correlation: Array
    rank: Array
    undetermined: Array


def gaussian_covariance(jacobian: Float[Array, "m p"]) -> tuple[Array, Identifiability]:
    """Covariance (J^T J)^-1 of the parameters, honest when J is rank-deficient.

    Parameters along directions J does not measure get infinite variance (and zero
    covariance with the others) instead of the small finite values a pseudo-inverse
    would report; the rest get their exact Gaussian covariance.

    Raises:
        ValueError: ``jacobian`` not 2-D, or (where known) not finite.
    """
    if jnp.ndim(jacobian) != 2:
        raise ValueError(f"jacobian must have shape (m, p); got {jnp.shape(jacobian)}")
    check_finite(jacobian, "jacobian", "gaussian_covariance")
    m, p = jacobian.shape
    # vt must be (p, p); full matrices are needed (and cheap) only when m < p.
    _, s, vt = jnp.linalg.svd(jacobian, full_matrices=m < p)
    s = jnp.zeros(p).at[: s.shape[0]].set(s[:p])
    tolerance = s[0] * max(m, p) * jnp.finfo(jacobian.dtype).eps
    measured = s > tolerance
    inverse_s2 = jnp.where(measured, 1.0 / jnp.where(measured, s, 1.0) ** 2, 0.0)
    covariance = (vt.T * inverse_s2[None, :]) @ vt
    undetermined = jnp.sum(jnp.where(measured[:, None], 0.0, vt**2), axis=0) > _UNDETERMINED_WEIGHT
    either = undetermined[:, None] | undetermined[None, :]
    covariance = jnp.where(either, jnp.where(jnp.eye(p, dtype=bool), jnp.inf, 0.0), covariance)
    determined_scale = jnp.sqrt(jnp.where(undetermined, 1.0, jnp.diagonal(covariance)))
    correlation = jnp.where(
        either,
        jnp.eye(p),
        covariance / (determined_scale[:, None] * determined_scale[None, :]),
    )
    rank = jnp.sum(measured)
    condition = jnp.where(measured[-1], s[0] / jnp.where(measured[-1], s[-1], 1.0), jnp.inf)
    return covariance, Identifiability(s, condition, vt[-1], correlation, rank, undetermined)


def identifiability(jacobian: Float[Array, "m p"]) -> Identifiability:
    """Singular values, condition number, correlations and undetermined parameters of J."""
    return gaussian_covariance(jacobian)[1]
