"""Choose calibration settings that tell the most about the quadrupole offsets.

The Fisher information of the offsets is F = J^T J with J the Jacobian of the whitened
screen residuals (see `calibration.whitened_residuals`). At first order the centroids are
affine in the offsets, so F depends on the settings but not on the offsets, and
sqrt(diag F^-1) is the Cramer-Rao bound on the offset errors. D-optimal design maximises
log det F over the settings, by gradient, inside the magnet ranges.
"""

from __future__ import annotations

from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from diffdesign.beamline.ares._lattice import (
    OBSERVABLES,
    SETTING_LOWER,
    SETTING_UPPER,
    incoming_beam,
)
from diffdesign.beamline.ares._likelihood import _validate_noise, flat_residuals
from diffdesign.beamline.beams import ParameterBeam
from diffdesign.design.multistart import minimise_multistart
from diffdesign.inference.identifiability import gaussian_covariance

_LOWER, _UPPER = jnp.asarray(SETTING_LOWER), jnp.asarray(SETTING_UPPER)


def fisher_information(
    settings: Float[Array, "n 5"],
    noise: Mapping[str, ArrayLike] | None = None,
    incoming: ParameterBeam | None = None,
    offsets: Float[Array, "3 2"] | None = None,
) -> Float[Array, "6 6"]:
    """F = J^T J of the calibration's whitened residuals w.r.t. the flattened offsets (1/m^2).

    The residuals are `calibration.whitened_residuals`, the likelihood the fit uses; the
    measured values drop out of the Jacobian. ``noise`` as in `calibrate_offsets`.
    """
    jacobian = _whitened_jacobian(settings, noise, incoming, offsets)
    return jacobian.T @ jacobian


def _whitened_jacobian(settings, noise, incoming, offsets) -> Float[Array, "4n 6"]:
    n = settings.shape[0]
    sigmas = _validate_noise(noise, n)
    incoming = incoming_beam() if incoming is None else incoming
    offsets = jnp.zeros((3, 2)) if offsets is None else offsets
    unused = {k: jnp.zeros(n) for k in OBSERVABLES}
    return jax.jacfwd(flat_residuals(settings, unused, sigmas, incoming))(offsets.reshape(6))


def cramer_rao_std(settings, noise=None, incoming=None) -> Float[Array, "3 2"]:
    """Smallest achievable one-sigma error of each offset (m) from these settings; inf for
    offsets these settings cannot determine."""
    covariance, _ = gaussian_covariance(_whitened_jacobian(settings, noise, incoming, None))
    return jnp.sqrt(jnp.diagonal(covariance)).reshape(3, 2)


def rms_cramer_rao(settings, noise=None, incoming=None) -> Array:
    """Root-mean-square of the Cramer-Rao bounds of the six offsets (m)."""
    return jnp.sqrt(jnp.mean(cramer_rao_std(settings, noise, incoming) ** 2))


def _to_settings(z: Float[Array, "n 5"]) -> Float[Array, "n 5"]:
    return _LOWER[None, :] + (_UPPER - _LOWER)[None, :] * jax.nn.sigmoid(z)


class _NegativeLogDetFisher(eqx.Module):
    """-log det F of the settings lower + (upper - lower) sigmoid(z), z of shape (n, 5)."""

    noise: dict[str, Array]
    incoming: ParameterBeam

    def __call__(self, z: Float[Array, "n 5"]) -> Array:
        fisher = fisher_information(_to_settings(z), self.noise, self.incoming)
        sign, logdet = jnp.linalg.slogdet(fisher)
        return -jnp.where(sign > 0, logdet, -1e3)


def design_calibration_settings(
    n: int,
    key: jax.Array,
    *,
    noise: Mapping[str, ArrayLike] | None = None,
    incoming: ParameterBeam | None = None,
    num_starts: int = 16,
    steps: int = 400,
    learning_rate: float = 0.05,
) -> tuple[Float[Array, "n 5"], Array]:
    """D-optimal calibration settings: maximise log det F by Adam from random starts.

    Settings stay inside the magnet ranges through a sigmoid map. Corrector kicks do not
    change F at first order; they are returned as optimised (they remain in range).

    Args:
        n: number of settings (>= 3: each plane has three offsets and one centroid).
        key: PRNG key for the random starts.
        noise, incoming: as in `calibrate_offsets`.
        num_starts, steps, learning_rate: the multi-start Adam run.

    Returns:
        (settings (n, 5), log det F of the best start).
    """
    if int(n) != n or n < 3:
        raise ValueError(f"n must be an integer >= 3 (three offsets per plane); got {n}")
    incoming = incoming_beam() if incoming is None else incoming

    loss = _NegativeLogDetFisher(_validate_noise(noise, n), incoming)
    starts = jax.random.normal(key, (num_starts, n, 5))
    result = minimise_multistart(loss, starts, steps=steps, learning_rate=learning_rate)
    best = int(result.best)
    return _to_settings(result.params[best]), -result.loss[best]


def random_settings(n: int, key: jax.Array) -> Float[Array, "n 5"]:
    """n settings drawn uniformly in the magnet ranges (the published study's strategy)."""
    return jax.random.uniform(key, (n, 5), minval=_LOWER[None, :], maxval=_UPPER[None, :])
