"""Calibrate the quadrupole misalignments of the ARES experimental area from screen data.

A misalignment and a magnet strength can make the same beam at one setting; measurements
at several settings separate them. All estimates come from one likelihood: the whitened
residuals r = (model(settings, offsets) - measured) / noise of the four screen observables,
used by bounded least squares (Levenberg-Marquardt with exact Jacobians), by the Fisher
information J^T J (uncertainties, identifiability, experiment design) and by NUTS. The
estimator is the ``method`` object of :func:`calibrate_offsets`: ``LeastSquares()`` or
``Nuts(num_samples=..., ...)``.
"""

from __future__ import annotations

import abc
import functools
import json
from collections.abc import Mapping
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from diffdesign._validation import check_positive, check_range, float_array
from diffdesign.beamline.ares._lattice import incoming_beam as default_incoming_beam
from diffdesign.beamline.ares._likelihood import (
    DEFAULT_BOUND,
    DEFAULT_NOISE,
    CalibrationResult,
    _validate_measurements,
    _validate_noise,
    _validate_settings,
    flat_residuals,
    residual_table,
    whitened_residuals,
)
from diffdesign.beamline.beams import ParameterBeam
from diffdesign.inference.least_squares import bounded_least_squares, least_squares_path

__all__ = [
    "DEFAULT_BOUND", "DEFAULT_NOISE", "CalibrationMethod", "CalibrationResult", "LeastSquares",
    "Nuts", "calibrate_offsets", "calibration_history", "flat_residuals",
    "least_squares_offsets", "load_offsets",
    "residual_table", "save_offsets", "whitened_residuals",
]  # fmt: skip


class CalibrationMethod(eqx.Module):
    """How :func:`calibrate_offsets` turns the likelihood into estimates: the ``method``.

    Subclasses (:class:`LeastSquares`, :class:`Nuts`) carry their own settings, so no keyword
    of :func:`calibrate_offsets` applies to one method only.
    """

    @abc.abstractmethod
    def calibrate(
        self,
        settings: Float[Array, "n 5"],
        measured: Mapping[str, Float[Array, " n"]],
        sigmas: Mapping[str, Float[Array, " n"]],
        incoming: ParameterBeam,
        bound: float,
    ) -> CalibrationResult:
        """The estimate from validated inputs (``sigmas`` the noise per observable, m)."""


class LeastSquares(CalibrationMethod):
    """Bounded Levenberg-Marquardt with exact Jacobians; Gaussian errors from the exact
    Fisher information.

    Attributes:
        initial_offsets: (3, 2) starting point (m) within ``[-bound, bound]``; zeros if None.
    """

    initial_offsets: Float[ArrayLike, "3 2"] | None = None

    def calibrate(self, settings, measured, sigmas, incoming, bound):
        if self.initial_offsets is None:
            x0 = jnp.zeros(6)
        else:
            x0 = jnp.asarray(self.initial_offsets, dtype=float)
            if x0.shape != (3, 2):
                raise ValueError(f"initial_offsets must have shape (3, 2) (m); got {x0.shape}")
            check_range(
                x0, "initial_offsets", low=-bound, high=bound, owner="ARES calibration", unit="m"
            )
            x0 = x0.reshape(6)
        fit, table = _fit_and_table(settings, measured, sigmas, incoming, x0, bound)
        return CalibrationResult(
            offsets=fit.x.reshape(3, 2),
            std=fit.std.reshape(3, 2),
            covariance=fit.covariance,
            residuals=table,
            chi2=float(fit.chi2),
            dof=4 * settings.shape[0] - 6,
            identifiability=fit.identifiability,
            at_bound=fit.at_bound.reshape(3, 2),
            converged=bool(fit.converged),
            method="least_squares",
            num_steps=int(fit.num_steps),
        )


class Nuts(CalibrationMethod):
    """NumPyro NUTS posterior with uniform priors on ``[-bound, bound]``, returned as ArviZ
    InferenceData in ``posterior`` (estimates: posterior means and covariance; converged when
    no transition diverged and R-hat < 1.01).

    Attributes:
        num_warmup: NUTS warm-up iterations per chain.
        num_samples: NUTS samples per chain.
        num_chains: NUTS chains (they run in parallel when there are enough devices).
        fit_incoming_centroid: also sample the incoming centroid (mu_x, mu_px, mu_y, mu_py)
            with Normal priors around the nominal beam of widths ``centroid_prior_std``
            (m, rad, m, rad).
        key: PRNG key of the sampler; ``jax.random.key(0)`` if None.

    Example:
        >>> calibrate_offsets(settings, measured, method=Nuts(num_samples=500)).posterior
    """

    num_warmup: int = eqx.field(default=500, static=True)
    num_samples: int = eqx.field(default=1000, static=True)
    num_chains: int = eqx.field(default=2, static=True)
    fit_incoming_centroid: bool = eqx.field(default=False, static=True)
    centroid_prior_std: Float[ArrayLike, 4] = (50e-6, 5e-6, 50e-6, 5e-6)
    key: jax.Array | None = None

    def __check_init__(self):
        for name, low in (("num_warmup", 0), ("num_samples", 1), ("num_chains", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Nuts: {name} must be an integer >= {low}; got {value!r}")

    def calibrate(self, settings, measured, sigmas, incoming, bound):
        # NumPyro and ArviZ load only when sampling
        from diffdesign.beamline.ares._posterior import sample_offsets

        return sample_offsets(
            settings, measured, sigmas, incoming, bound, self.num_warmup, self.num_samples,
            self.num_chains, self.fit_incoming_centroid,
            jnp.asarray(self.centroid_prior_std, float),
            jax.random.key(0) if self.key is None else self.key,
        )  # fmt: skip


def calibrate_offsets(
    settings: Float[ArrayLike, "n 5"],
    measurements: Mapping[str, ArrayLike],
    *,
    noise: Mapping[str, ArrayLike] | None = None,
    incoming_beam: ParameterBeam | None = None,
    bound: float = DEFAULT_BOUND,
    method: CalibrationMethod | None = None,
) -> CalibrationResult:
    """Fit the three quadrupoles' displacements to screen measurements.

    Args:
        settings: (n, 5) magnet settings (q1, q2, cv, q3, ch) in 1/m^2 and rad, within
            the magnet ranges ``SETTING_LOWER``/``SETTING_UPPER``.
        measurements: arrays ``mu_x, mu_y, sigma_x, sigma_y`` of shape (n,) in m, from a
            real machine, Cheetah or our own model.
        noise: standard deviation (m) per observable, scalar or (n,); missing ones default
            to ``DEFAULT_NOISE`` (10 um, about one binned camera pixel).
        incoming_beam: the beam entering the segment; ``ares.incoming_beam()`` if None.
        bound: hard bound (m) on each offset: |offset| <= bound.
        method: :class:`LeastSquares` (the default: Levenberg-Marquardt, Gaussian errors from
            the exact Fisher information) or :class:`Nuts` (the posterior by NumPyro), each
            with its own settings.

    Raises:
        TypeError: ``method`` is not a :class:`CalibrationMethod`.
        ValueError: for wrong shapes, NaNs, settings outside the magnet ranges, beam sizes
            below -5 noise standard deviations (``SIZE_NOISE_LIMIT``), non-positive noise or
            bound, or initial offsets outside the bound.

    Example:
        >>> result = calibrate_offsets(settings, ares.screen_beam(settings, true_offsets))
        >>> result.offsets, result.std
        >>> calibrate_offsets(settings, measured, method=Nuts(num_chains=1)).posterior
    """
    method = LeastSquares() if method is None else method
    if not isinstance(method, CalibrationMethod):
        raise TypeError(
            f"method must be a CalibrationMethod, LeastSquares(...) or Nuts(...); got {method!r}"
        )
    settings = _validate_settings(settings)
    n = settings.shape[0]
    sigmas = _validate_noise(noise, n)
    measured = _validate_measurements(measurements, n, sigmas)
    check_positive(bound, "bound", "ARES calibration", "m")
    incoming = incoming_beam if incoming_beam is not None else default_incoming_beam()
    return method.calibrate(settings, measured, sigmas, incoming, bound)


#: Solver tolerances on the unconstrained variables z (offset = bound * tanh z): a change
#: below 1e-9 in z is below 1e-12 m in the offsets.
_TOLERANCE = 1e-9


@jax.jit
def _least_squares(settings, measured, sigmas, incoming, x0, bound):
    return bounded_least_squares(
        flat_residuals(settings, measured, sigmas, incoming),
        x0,
        -bound * jnp.ones(6),
        bound * jnp.ones(6),
        rtol=_TOLERANCE,
        atol=_TOLERANCE,
    )


def least_squares_offsets(
    settings: Float[Array, "n 5"],
    measured: Mapping[str, Float[Array, " n"]],
    sigmas: Mapping[str, Float[Array, " n"]],
    incoming: ParameterBeam,
    bound: Float[ArrayLike, ""],
    x0: Float[Array, " 6"] | None = None,
):
    """The pure core of :class:`LeastSquares`: bounded Levenberg-Marquardt on arrays that
    are already valid (no checks, so it jits and vmaps: programs that run many calibrations
    at once, e.g. sweeps). ``x0`` (6,) m, zeros if None. Returns the solver's result
    (``x`` (6,) m, ``std``, ``covariance``, ``chi2``, ``converged``, ``num_steps``, ...)."""
    x0 = jnp.zeros(6) if x0 is None else x0
    return _least_squares(settings, measured, sigmas, incoming, x0, bound)


@jax.jit
def _fit_and_table(settings, measured, sigmas, incoming, x0, bound):
    """The fit and its residual table in one compiled call."""
    fit = _least_squares(settings, measured, sigmas, incoming, x0, bound)
    return fit, residual_table(fit.x.reshape(3, 2), settings, measured, sigmas, incoming)


@functools.partial(jax.jit, static_argnames="num_steps")
def _least_squares_path(settings, measured, sigmas, incoming, x0, bound, num_steps):
    residuals = flat_residuals(settings, measured, sigmas, incoming)
    box = (-bound * jnp.ones(6), bound * jnp.ones(6))
    return least_squares_path(residuals, x0, *box, num_steps, rtol=_TOLERANCE, atol=_TOLERANCE)


def calibration_history(
    settings: Float[ArrayLike, "n 5"],
    measurements: Mapping[str, ArrayLike],
    *,
    noise: Mapping[str, ArrayLike] | None = None,
    incoming_beam: ParameterBeam | None = None,
    bound: float = DEFAULT_BOUND,
    num_steps: int = 12,
) -> Float[Array, " num_steps+1"]:
    """chi2 (sum of squared normalised residuals) at zero offsets and after each solver
    step of the least-squares calibration: its loss history. Arguments as for
    `calibrate_offsets`."""
    settings = _validate_settings(settings)
    n = settings.shape[0]
    check_positive(bound, "bound", "ARES calibration", "m")
    incoming = incoming_beam if incoming_beam is not None else default_incoming_beam()
    sigmas = _validate_noise(noise, n)
    return _least_squares_path(
        settings, _validate_measurements(measurements, n, sigmas), sigmas, incoming,
        jnp.zeros(6), bound, num_steps,
    )  # fmt: skip


def save_offsets(result: CalibrationResult, path: str | Path) -> Path:
    """Write fitted offsets (and their uncertainties) to a JSON file `load_offsets` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2, allow_nan=False))
    return path


def load_offsets(path: str | Path) -> tuple[Array, Array | None]:
    """Read (offsets (3, 2) in m, std (3, 2) or None) from a JSON file.

    Raises:
        ValueError: naming the problem if the file is not JSON, lacks ``offsets_m``, has the
            wrong shape or non-finite values, or offsets beyond 5 mm (not a misalignment).
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as error:  # also UnicodeDecodeError, JSONDecodeError
        raise ValueError(f"cannot read offsets from {path} (UTF-8 JSON): {error}") from None
    if not isinstance(content, dict) or "offsets_m" not in content:
        raise ValueError(f"{path} has no 'offsets_m' entry (a (3, 2) list of displacements in m)")
    offsets = np.asarray(float_array(content["offsets_m"], f"'offsets_m' in {path}"))
    if offsets.shape != (3, 2):
        raise ValueError(f"'offsets_m' in {path} must have shape (3, 2); got {offsets.shape}")
    check_range(offsets, f"'offsets_m' in {path}", low=-5e-3, high=5e-3, unit="m")
    std = content.get("std_m")
    if std is not None:
        # undetermined offsets are written as null (infinite uncertainty)
        std = np.asarray(std, dtype=object)
        try:
            std = np.where(std == None, np.inf, std).astype(float)  # noqa: E711
        except (TypeError, ValueError):
            std = np.full(1, np.nan)  # not numbers: refused below
        if std.shape != (3, 2) or np.any(std < 0.0) or np.any(np.isnan(std)):
            raise ValueError(f"'std_m' in {path} must be a (3, 2) list of values >= 0 (m)")
        std = jnp.asarray(std)
    return jnp.asarray(offsets), std
