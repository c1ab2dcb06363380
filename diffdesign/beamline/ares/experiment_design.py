"""Choose calibration settings that tell the most about the quadrupole offsets.

The Fisher information of the offsets is F = J^T J with J the Jacobian of the whitened
screen residuals (see `calibration.whitened_residuals`). At first order the centroids are
affine in the offsets, so F depends on the settings but not on the offsets, and
sqrt(diag F^-1) is the Cramer-Rao bound on the offset errors. D-optimal design maximises
log det F over the settings, by gradient, inside the magnet ranges: the design layer's
:func:`~diffdesign.core.multistart` on a :class:`DOptimalProblem`.
"""

from __future__ import annotations

from collections.abc import Mapping

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
from diffdesign.beamline.ares.problems import (
    MULTISTART_EPS,
    MULTISTART_STEP,
    settings_spec,
    settings_starts,
)
from diffdesign.beamline.beams import ParameterBeam
from diffdesign.core import Adam, CosineDecay, Param, Problem, multistart
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


#: log det F given to singular designs (1/m^2 units inside the log), far below any design.
SINGULAR_LOG_DET = -1e3


class DOptimalProblem(Problem):
    """Calibration settings that maximise the information on the offsets: the loss is
    -log det F (F in 1/m^2, :func:`fisher_information` of the calibration's
    ``whitened_residuals``), and ``-SINGULAR_LOG_DET`` where F is singular.

    Spec ``{"settings"}``: (n, 5) settings inside the magnet ranges
    (:func:`~diffdesign.beamline.ares.problems.settings_spec`). Aux: ``log_det``.

    Args:
        n: number of settings (>= 3: each plane has three offsets and one centroid).
        noise: screen noise per observable (m), as in `calibrate_offsets`.
        incoming: the incoming beam (default ``incoming_beam()``).
        settings: (n, 5) starting settings (default zero).
        step: Adam step of the settings in their Box coordinate.
    """

    noise: dict[str, Array]
    incoming: ParameterBeam
    start: Param

    def __init__(
        self,
        n: int,
        noise: Mapping[str, ArrayLike] | None = None,
        incoming: ParameterBeam | None = None,
        settings: Float[ArrayLike, "n 5"] | None = None,
        *,
        step: float = MULTISTART_STEP,
    ):
        if isinstance(n, bool) or int(n) != n or n < 3:
            raise ValueError(f"n must be an integer >= 3 (three offsets per plane); got {n}")
        n = int(n)
        settings = jnp.zeros((n, 5)) if settings is None else jnp.asarray(settings, dtype=float)
        if settings.shape != (n, 5):
            raise ValueError(f"settings must have shape ({n}, 5); got {settings.shape}")
        self.noise = _validate_noise(noise, n)
        self.incoming = incoming_beam() if incoming is None else incoming
        self.start = settings_spec(settings, step=step)

    @property
    def spec(self):
        return {"settings": self.start}

    @property
    def name(self):
        return "d_optimal"

    def loss(self, params, key):
        fisher = fisher_information(params["settings"], self.noise, self.incoming)
        sign, log_det = jnp.linalg.slogdet(fisher)
        log_det = jnp.where(sign > 0, log_det, SINGULAR_LOG_DET)
        return -log_det, {"log_det": log_det}


def design_calibration_settings(
    n: int,
    key: jax.Array,
    *,
    noise: Mapping[str, ArrayLike] | None = None,
    incoming: ParameterBeam | None = None,
    num_starts: int = 16,
    steps: int = 400,
    step: float = MULTISTART_STEP,
) -> tuple[Float[Array, "n 5"], Array]:
    """D-optimal calibration settings: maximise log det F by Adam from random starts.

    Settings stay inside the magnet ranges through the Box bijection of ``settings_spec``;
    the step decays by a cosine to 1e-3 of ``step``. Corrector kicks do not change F at
    first order; they are returned as optimised (they remain in range).

    Args:
        n: number of settings (>= 3: each plane has three offsets and one centroid).
        key: PRNG key for the random starts (see ``problems.settings_starts``).
        noise, incoming: as in `calibrate_offsets`.
        num_starts, steps: the multi-start Adam run.
        step: Adam step in the settings' Box coordinate (dimensionless).

    Returns:
        (settings (n, 5), log det F of the best start, F in 1/m^2).

    Raises:
        ValueError: n not an integer >= 3, bad noise, or a bad ``step``/``steps``.
    """
    problem = DOptimalProblem(n, noise, incoming, step=step)
    starts = {"settings": settings_starts(key, (num_starts, int(n), 5))}
    optimiser = Adam(schedule=CosineDecay(steps, final_fraction=1e-3), eps=MULTISTART_EPS)
    result = multistart(problem, starts, steps=steps, key=key, optimiser=optimiser)
    best = int(result.best)
    return result.params["settings"][best], -result.loss[best]


def random_settings(n: int, key: jax.Array) -> Float[Array, "n 5"]:
    """n settings drawn uniformly in the magnet ranges (the published study's strategy)."""
    return jax.random.uniform(key, (n, 5), minval=_LOWER[None, :], maxval=_UPPER[None, :])
