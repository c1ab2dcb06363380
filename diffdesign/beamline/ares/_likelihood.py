"""The ARES calibration's one likelihood and its inputs.

The whitened residuals r = (model(settings, offsets) - measured) / noise of the four screen
observables are used by every estimate: bounded least squares
(:mod:`~diffdesign.beamline.ares.calibration`), NUTS (``_posterior``), the Fisher
information of experiment design and the design layer's ``CalibrationProblem``. This module
also holds the checks of their inputs and the result they share, so that those modules
import it and not each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from diffdesign._validation import (
    check_finite,
    check_positive,
    float_array,
    is_concrete,
)
from diffdesign.beamline.ares._lattice import (
    OBSERVABLES,
    QUADRUPOLES,
    check_setting_ranges,
    incoming_beam,
    screen_beam,
)
from diffdesign.beamline.beams import ParameterBeam
from diffdesign.inference.identifiability import Identifiability

#: Default screen noise per observable (m): about one binned camera pixel of AREABSCR1.
DEFAULT_NOISE = {name: 1e-5 for name in OBSERVABLES}
DEFAULT_BOUND = 500e-6  # m


class CalibrationResult(NamedTuple):
    """Fitted quadrupole offsets with their uncertainties.

    Attributes:
        offsets: (3, 2) displacements (dx, dy) of AREAMQZM1..3 in m (Cheetah's convention).
        std: (3, 2) one-sigma uncertainties in m.
        covariance: (6, 6) covariance of the flattened offsets (m^2), order
            (q1 dx, q1 dy, q2 dx, q2 dy, q3 dx, q3 dy).
        residuals: per observable, arrays ``measured``, ``model`` (m) and ``normalised``
            ((model - measured) / noise) over the measurements.
        chi2: sum of squared normalised residuals; ``dof`` its degrees of freedom.
        identifiability: singular values, condition number and correlations of the
            sensitivity of the whitened data to the offsets.
        at_bound: (3, 2) True where an offset sits on the bound (its std is then not a
            valid uncertainty: widen the bound or add data).
        converged: whether the solver met its tolerances.
        method: "least_squares" or "nuts".
        posterior: ArviZ InferenceData for method "nuts", else None.
        num_steps: Levenberg-Marquardt steps (least squares; 0 for NUTS).
    """

    offsets: Array
    std: Array
    covariance: Array
    residuals: dict[str, dict[str, Array]]
    chi2: float
    dof: int
    identifiability: Identifiability
    at_bound: Array
    converged: bool
    method: str
    posterior: Any = None
    num_steps: int = 0

    def to_json(self) -> dict:
        """A JSON-ready summary (offsets and std in m; undetermined values are null)."""
        ident = self.identifiability
        return {
            "method": self.method,
            "quadrupoles": list(QUADRUPOLES),
            "offsets_m": _json(self.offsets),
            "std_m": _json(self.std),
            "covariance_m2": _json(self.covariance),
            "chi2": float(self.chi2),
            "dof": int(self.dof),
            "converged": bool(self.converged),
            "num_steps": int(self.num_steps),
            "at_bound": np.asarray(self.at_bound).tolist(),
            "identifiability": {
                "singular_values": _json(ident.singular_values),
                "condition_number": _json(ident.condition_number),
                "correlation": _json(ident.correlation),
                "rank": int(ident.rank),
                "undetermined": np.asarray(ident.undetermined).tolist(),
            },
            "residuals": {
                k: {field: _json(v) for field, v in table.items()}
                for k, table in self.residuals.items()
            },
        }


def _json(value):
    """Nested lists of floats with non-finite entries as None (valid JSON)."""
    array = np.asarray(value, dtype=float)
    return np.where(np.isfinite(array), array, None).tolist()


def _validate_settings(settings: ArrayLike, field: str = "settings") -> Array:
    settings = np.asarray(settings, dtype=float)
    # At first order the offsets move only the two centroids, three offsets per plane:
    # fewer than three settings cannot determine them.
    if settings.ndim != 2 or settings.shape[1] != 5 or settings.shape[0] < 3:
        raise ValueError(f"{field} must have shape (n, 5) with n >= 3; got {settings.shape}")
    check_finite(settings, field, "ARES calibration")
    return check_setting_ranges(settings, field + "[:, {i}] ({name})", "ARES calibration")


#: measured beam sizes below -SIZE_NOISE_LIMIT noise standard deviations are refused: a size
#: is >= 0, and a Gaussian reading of a small beam dips below 0 by a few sigmas at most.
SIZE_NOISE_LIMIT = 5.0


def _validate_measurements(
    measurements: Mapping[str, ArrayLike], n: int, noise: Mapping[str, Array] | None = None
) -> dict[str, Array]:
    """The four observables as (n,) arrays; with the validated ``noise``, beam sizes below
    ``-SIZE_NOISE_LIMIT * noise`` are refused (not a noisy reading of a size >= 0)."""
    if not isinstance(measurements, Mapping):
        raise TypeError(
            f"measurements must be a mapping of {list(OBSERVABLES)} to (n,) arrays in m; got "
            f"{type(measurements).__name__}"
        )
    missing = [k for k in OBSERVABLES if k not in measurements]
    if missing:
        raise ValueError(f"measurements lack {missing}; need {list(OBSERVABLES)} (m)")
    out = {}
    for k in OBSERVABLES:
        value = np.asarray(float_array(measurements[k], f"measurements['{k}']"))
        if value.shape != (n,):
            raise ValueError(f"measurements['{k}'] must have shape ({n},); got {value.shape}")
        check_finite(value, f"measurements['{k}']", "ARES calibration")
        if k.startswith("sigma") and noise is not None and is_concrete(noise[k]):
            floor = -SIZE_NOISE_LIMIT * np.asarray(noise[k])
            if np.any(value < floor):
                i = int(np.argmax(value < floor))
                raise ValueError(
                    f"measurements['{k}'] is a beam size (m, >= 0); got {value[i]:.6g} m at "
                    f"row {i}, below -{SIZE_NOISE_LIMIT:g} noise standard deviations "
                    f"({floor[i] if floor.ndim else floor:.6g} m) for ARES calibration"
                )
        out[k] = jnp.asarray(value)
    return out


def _validate_noise(noise: Mapping[str, ArrayLike] | None, n: int) -> dict[str, Array]:
    noise = dict(DEFAULT_NOISE) | dict(noise or {})
    unknown = sorted(set(noise) - set(OBSERVABLES))
    if unknown:
        raise ValueError(f"noise keys must be among {list(OBSERVABLES)}; got {unknown}")
    out = {}
    for k in OBSERVABLES:
        raw = noise[k]  # traced inside experiment design's optimisation, else numbers
        value = np.asarray(raw, dtype=float) if is_concrete(raw) else jnp.asarray(raw, dtype=float)
        if value.shape not in ((), (n,)):
            raise ValueError(
                f"noise['{k}'] must be a scalar or have shape ({n},); got {value.shape}"
            )
        check_positive(value, f"noise['{k}']", "ARES calibration", "m")
        out[k] = jnp.broadcast_to(jnp.asarray(value), (n,))
    return out


def whitened_residuals(
    offsets: Float[Array, "3 2"],
    settings: Float[Array, "n 5"],
    measurements: Mapping[str, Array],
    noise: Mapping[str, Array],
    incoming: ParameterBeam,
    diagnostics=None,
) -> Float[Array, " kn"]:
    """(model - measured) / noise for each observable, stacked observable-major.

    This is the calibration's one likelihood: least squares minimises its square norm,
    NUTS samples exp(-|r|^2 / 2) and the Fisher information is J^T J of it.

    Args:
        diagnostics (Diagnostics | None): the screens and their model
            (:class:`~diffdesign.beamline.ares.diagnostics.Diagnostics`): the model of a
            measurement is then the screen's expected reading and the observables are
            ``diagnostics.observables``. None: today's screen read ideally
            (:func:`screen_beam`, the four ``OBSERVABLES``).
    """
    offsets = jnp.broadcast_to(offsets, (settings.shape[0], 3, 2))
    if diagnostics is None:
        model, names = screen_beam(settings, offsets, incoming), OBSERVABLES
    else:
        (model, _), names = diagnostics.reading(settings, offsets, incoming), diagnostics.names
    return jnp.concatenate([(model[k] - measurements[k]) / noise[k] for k in names])


def flat_residuals(settings, measured, sigmas, incoming):
    """`whitened_residuals` as a function of the flattened offsets (6,), for solvers and
    Jacobians."""

    def residuals(x):
        return whitened_residuals(x.reshape(3, 2), settings, measured, sigmas, incoming)

    return residuals


def residual_table(offsets, settings, measured, sigmas, incoming) -> dict[str, dict[str, Array]]:
    """Measured, modelled and normalised residual per observable and measurement."""
    model = screen_beam(settings, jnp.broadcast_to(offsets, (settings.shape[0], 3, 2)), incoming)
    return {
        k: {
            "measured": measured[k],
            "model": model[k],
            "normalised": (model[k] - measured[k]) / sigmas[k],
        }
        for k in OBSERVABLES
    }


#: Incoming-beam parameters a calibration may fit beside the offsets: any of these.
BEAM_PARAMETERS = ("mu_x", "mu_px", "mu_y", "mu_py", "sigma_x", "sigma_px", "sigma_y", "sigma_py")
#: The nuisances of experiment design: the incoming centroid and size (m). The centroid's
#: angle is left out by default: with it free, one screen cannot tell the offsets from the
#: beam's trajectory (quadrupoles and beam on a line rotated about the screen read the same
#: at every setting); a second screen can.
NUISANCE = ("mu_x", "mu_y", "sigma_x", "sigma_y")
#: Scales of the stacked vector x of `beam_residuals` (its weak prior's widths): offsets in
#: units of DEFAULT_BOUND, centroid in 1 mm and 100 urad, sizes as log factors.
CENTROID_SCALE = {"mu_x": 1e-3, "mu_px": 1e-4, "mu_y": 1e-3, "mu_py": 1e-4}


def beam_from_nuisance(
    x: Float[Array, " k"], nominal: Mapping[str, float], names: tuple[str, ...] = NUISANCE
) -> ParameterBeam:
    """The incoming beam with ``names`` moved from ``nominal`` (``ares.INCOMING_PARAMETERS``
    style): centroids by ``x * CENTROID_SCALE``, sizes by the factor ``exp(x)``."""
    moved = {}
    for i, name in enumerate(names):
        if name in CENTROID_SCALE:
            moved[name] = nominal[name] + CENTROID_SCALE[name] * x[i]
        else:
            moved[name] = nominal[name] * jnp.exp(x[i])
    return incoming_beam(**(dict(nominal) | moved))


def beam_residuals(settings, measurements, noise, diagnostics, nominal, names=NUISANCE):
    """`whitened_residuals` as a function of x = (offsets / DEFAULT_BOUND (6,), nuisance
    (len(names),)): the calibration that fits the incoming beam's ``names`` too (see
    :func:`beam_from_nuisance` for their units)."""

    def residuals(x):
        offsets = DEFAULT_BOUND * x[:6].reshape(3, 2)
        beam = beam_from_nuisance(x[6:], nominal, names)
        return whitened_residuals(offsets, settings, measurements, noise, beam, diagnostics)

    return residuals
