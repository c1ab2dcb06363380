"""The ARES design variables as specs, and its calibration and tuning as problems.

Domains contribute models, losses and their parameter specs; the loop is the design
layer's (``diffdesign.core.run`` / ``multistart``). The specs carry the magnets' ranges
and the offsets' prior box with step sizes that are safe for Adam, so that ARES can be
optimised jointly with any other problem without re-deriving them:

- :func:`settings_spec`: the five settings (q1, q2, cv, q3, ch) in 1/m^2 and rad inside
  ``SETTING_LOWER``/``SETTING_UPPER``, through a :class:`Box` bijection (the quadrupoles'
  30 1/m^2 and the correctors' 6 mrad become one dimensionless scale);
- :func:`offsets_spec`: the quadrupoles' (dx, dy) in m inside +-``DEFAULT_BOUND``.

:class:`CalibrationProblem` is the calibration's one likelihood
(:func:`~diffdesign.beamline.ares.calibration.whitened_residuals`) as a residual problem;
:class:`TuningProblem` is the target-beam objective through the model. The D-optimal choice
of calibration settings is :class:`~diffdesign.beamline.ares.experiment_design.DOptimalProblem`.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from diffdesign._validation import check_finite, check_trailing_shape
from diffdesign.beamline.ares._lattice import (
    SETTING_LOWER,
    SETTING_UPPER,
    incoming_beam,
    mae,
    screen_beam,
)
from diffdesign.beamline.ares._likelihood import (
    DEFAULT_BOUND,
    _validate_measurements,
    _validate_noise,
    _validate_settings,
    whitened_residuals,
)
from diffdesign.beamline.beams import ParameterBeam
from diffdesign.core import Box, Param, ResidualProblem
from diffdesign.core.problem import Problem

#: Adam steps in the Box coordinate: ~5 % of the half-range per step at the centre.
SETTINGS_STEP = 0.05
#: Adam step of the offsets in the Box coordinate (~10 um per step at the centre).
OFFSETS_STEP = 0.02
#: Adam step of the settings in the Box coordinate for the multi-start searches
#: (``tune_with_gradients``, ``design_calibration_settings``): 0.025 is the historical 0.05
#: in the logistic coordinate u of the same box (settings = lower + (upper - lower)
#: sigmoid(u) = centre + half_width tanh(u / 2), so z = u / 2), which keeps their paths.
MULTISTART_STEP = 0.025
#: Adam's eps for it: gradients in the Box coordinate are twice the sigmoid's, so eps doubles
#: too and the multistart follows the sigmoid-parameterised path it replaced.
MULTISTART_EPS = 2e-8


def settings_spec(
    settings: Float[ArrayLike, "... 5"] | None = None, *, step: float = SETTINGS_STEP
) -> Param:
    """The magnet settings (q1, q2, cv, q3, ch) as a design variable (default: all zero);
    any leading shape (e.g. (n, 5) for n calibration settings)."""
    value = jnp.zeros(5) if settings is None else jnp.asarray(settings, dtype=float)
    if value.shape[-1:] != (5,):
        raise ValueError(f"ARES settings must have shape (..., 5); got {value.shape}")
    lower = np.broadcast_to(SETTING_LOWER, value.shape)
    upper = np.broadcast_to(SETTING_UPPER, value.shape)
    return Param(value, lower, upper, step=step, label="settings", transform=Box(),
                 unit="1/m^2 (q1, q2, q3), rad (cv, ch)")  # fmt: skip


def offsets_spec(
    offsets: Float[ArrayLike, "3 2"] | None = None,
    *,
    bound: float = DEFAULT_BOUND,
    step: float = OFFSETS_STEP,
) -> Param:
    """The quadrupoles' displacements (dx, dy) in m, inside +-``bound`` (default: zero)."""
    value = jnp.zeros((3, 2)) if offsets is None else jnp.asarray(offsets, dtype=float)
    if value.shape != (3, 2):
        raise ValueError(f"ARES offsets must have shape (3, 2); got {value.shape}")
    if not bound > 0:
        raise ValueError(f"offsets bound must be > 0 m; got {bound}")
    return Param(value, -bound, bound, step=step, label="offsets", transform=Box(), unit="m")


def settings_starts(key: jax.Array, shape: tuple[int, ...]) -> Float[Array, "... 5"]:
    """Random settings inside the magnet ranges for multi-start searches:
    ``centre + half_width tanh(u / 2)`` with ``u`` standard normal (Box coordinates
    ``u / 2``; the logistic starts ``lower + (upper - lower) sigmoid(u)``). ``shape`` must
    end in 5, e.g. (num_starts, 5) or (num_starts, n, 5)."""
    if tuple(shape)[-1:] != (5,):
        raise ValueError(f"settings starts need a shape ending in 5; got {tuple(shape)}")
    shape = tuple(shape)
    u = jax.random.normal(key, shape)
    lower, upper = np.broadcast_to(SETTING_LOWER, shape), np.broadcast_to(SETTING_UPPER, shape)
    return Box().to_physical(0.5 * u, lower, upper)


class CalibrationProblem(ResidualProblem):
    """Offsets from the screen measurements at ``settings``: the whitened residuals
    (model - measured) / noise of :func:`whitened_residuals`, spec ``{"offsets"}``.

    Args:
        settings: (n, 5) calibration settings (inside the magnet ranges).
        measurements: ``{mu_x, sigma_x, mu_y, sigma_y}``, each (n,) in m.
        noise: their standard deviations (m), scalars or (n,); default 10 um.
        incoming: the incoming beam (default ``incoming_beam()``).
        offsets: the starting offsets (m), default zero.
    """

    settings: Array
    measurements: dict[str, Array]
    noise: dict[str, Array]
    incoming: ParameterBeam
    start: Param

    def __init__(
        self,
        settings: Float[ArrayLike, "n 5"],
        measurements: Mapping[str, ArrayLike],
        noise: Mapping[str, ArrayLike] | None = None,
        incoming: ParameterBeam | None = None,
        offsets: Float[ArrayLike, "3 2"] | None = None,
    ):
        self.settings = _validate_settings(settings)
        n = self.settings.shape[0]
        self.noise = _validate_noise(noise, n)
        self.measurements = _validate_measurements(measurements, n, self.noise)
        self.incoming = incoming_beam() if incoming is None else incoming
        self.start = offsets_spec(offsets)

    @property
    def spec(self):
        return {"offsets": self.start}

    @property
    def name(self):
        return "calibration"

    def residuals(self, params, key):
        return whitened_residuals(
            params["offsets"], self.settings, self.measurements, self.noise, self.incoming
        )


class TuningProblem(Problem):
    """The settings that bring the model's screen beam to ``target`` (``ares.mae``, m).

    Spec ``{"settings"}``, plus ``{"offsets"}`` when ``offsets`` is None: then the model
    uses the offsets of the joint parameters (e.g. those a :class:`CalibrationProblem` in the
    same sum is fitting) without pulling them, since the beam objective must not move the
    offsets' estimate (a stop-gradient), so tuning follows the calibration.

    Args:
        offsets: (3, 2) fixed offsets (m), or None to share the ``"offsets"`` parameter.
        target: target beam (see ``ares.mae``); None for a centred, smallest beam.
        incoming: the incoming beam (default ``incoming_beam()``).
        settings: the starting settings (default zero).
        step: Adam step of the settings in their Box coordinate (see :func:`settings_spec`).
    """

    offsets: Array | None
    target: dict[str, float]
    incoming: ParameterBeam
    start: Param

    def __init__(
        self,
        offsets: Float[ArrayLike, "3 2"] | None = None,
        target: Mapping[str, float] | None = None,
        incoming: ParameterBeam | None = None,
        settings: Float[ArrayLike, " 5"] | None = None,
        *,
        step: float = SETTINGS_STEP,
    ):
        if offsets is not None:
            offsets = jnp.asarray(offsets, dtype=float)
            check_trailing_shape(offsets, "offsets", (3, 2), "TuningProblem")
            check_finite(offsets, "offsets", "TuningProblem")
        self.offsets = offsets
        self.target = dict(target or {})
        self.incoming = incoming_beam() if incoming is None else incoming
        self.start = settings_spec(settings, step=step)

    @property
    def spec(self):
        if self.offsets is None:
            return {"settings": self.start, "offsets": offsets_spec()}
        return {"settings": self.start}

    @property
    def name(self):
        return "tuning"

    def loss(self, params, key):
        offsets = self.offsets
        if offsets is None:
            offsets = jax.lax.stop_gradient(params["offsets"])
        beam = screen_beam(params["settings"], offsets, self.incoming)
        return mae(beam, self.target), {"sigma_x": beam["sigma_x"], "sigma_y": beam["sigma_y"]}
