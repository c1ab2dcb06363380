"""The ARES experimental-area lattice: quadrupole triplet, two steerers and a screen.

Example:
    >>> from diffdesign.beamline import ares
    >>> beam = ares.screen_beam(jnp.array([10.0, -10.0, 0.0, 10.0, 0.0]), jnp.zeros((3, 2)))
    >>> float(ares.mae(beam))
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from diffdesign._validation import (
    broadcast_leading_shapes,
    check_finite,
    check_range,
    check_trailing_shape,
    float_array,
    refuse_traced_or_known,
)
from diffdesign.beamline.beams import ParameterBeam
from diffdesign.beamline.elements import (
    Drift,
    HorizontalCorrector,
    Quadrupole,
    Screen,
    VerticalCorrector,
)
from diffdesign.beamline.segment import Segment

QUADRUPOLES = ("AREAMQZM1", "AREAMQZM2", "AREAMQZM3")
SETTING_NAMES = (
    "AREAMQZM1.k1",
    "AREAMQZM2.k1",
    "AREAMCVM1.angle",
    "AREAMQZM3.k1",
    "AREAMCHM1.angle",
)
SCREEN = "AREABSCR1"
OBSERVABLES = ("mu_x", "sigma_x", "mu_y", "sigma_y")

#: Magnet ranges used for tuning and experiment design: (low, high) per setting.
SETTING_LOWER = np.array([-30.0, -30.0, -6e-3, -30.0, -6e-3])
SETTING_UPPER = -SETTING_LOWER
#: the unit of each setting.
SETTING_UNITS = ("1/m^2", "1/m^2", "rad", "1/m^2", "rad")

QUADRUPOLE_LENGTH = 0.122  # m
CORRECTOR_LENGTH = 0.02  # m
ENERGY = 107.32e6  # eV

#: Incoming beam at AREASOLA1 (Cheetah's ARES example beam).
INCOMING_PARAMETERS = {
    "mu_x": 8.2413e-7,
    "mu_px": 5.9885e-8,
    "mu_y": -1.7276e-6,
    "mu_py": -1.1746e-7,
    "sigma_x": 2e-4,
    "sigma_px": 3.6794e-6,
    "sigma_y": 2e-4,
    "sigma_py": 3.6941e-6,
    "sigma_tau": 8.0116e-6,
    "sigma_p": 2.3e-3,
}
TOTAL_CHARGE = 5e-13  # C


def incoming_beam(**overrides: ArrayLike) -> ParameterBeam:
    """The default incoming beam; keyword arguments replace any of its parameters.

    Example:
        >>> incoming_beam(sigma_y=100e-6)   # the calibration study's beam
    """
    parameters = INCOMING_PARAMETERS | overrides
    energy = parameters.pop("energy", ENERGY)
    total_charge = parameters.pop("total_charge", TOTAL_CHARGE)
    return ParameterBeam.from_parameters(energy=energy, total_charge=total_charge, **parameters)


def check_setting_ranges(
    settings: Float[ArrayLike, "... 5"],
    field: str = "settings[..., {i}] ({name})",
    owner: str = "ARES",
    hint: str = "",
) -> Array:
    """``settings``, refused where an entry lies outside the magnet ranges
    ``SETTING_LOWER``/``SETTING_UPPER`` (a ValueError naming the setting by ``field``, a
    format of its index ``i`` and magnet ``name``, with the range, unit and value, then
    ``hint``). Known values are checked now; traced ones when the program runs
    (``equinox.error_if``), so a jitted call fails instead of returning absurd beams. A
    relative slack of 1e-9 lets a setting that ends on a bound a few ulps beyond it pass."""
    settings = jnp.asarray(settings, dtype=float)

    def explain(values: np.ndarray) -> None:
        for i, name in enumerate(SETTING_NAMES):
            column = values[..., i]
            outside = (column < _LOW[i]) | (column > _HIGH[i])
            if np.any(outside):
                try:
                    check_range(
                        column[outside], field.format(i=i, name=name), low=float(SETTING_LOWER[i]),
                        high=float(SETTING_UPPER[i]), owner=owner, unit=SETTING_UNITS[i],
                    )  # fmt: skip
                except ValueError as error:
                    raise ValueError(f"{error}{hint}") from None

    def bad(traced: Array) -> Array:
        low, high = (jnp.broadcast_to(b, traced.shape) for b in (_LOW, _HIGH))
        return jnp.any((traced < low) | (traced > high))

    message = f"settings of {owner} outside the magnet ranges {_RANGES}{hint}"
    return refuse_traced_or_known(settings, settings, bad, message, explain)


_LOW = SETTING_LOWER * (1 + 1e-9)  # lower bounds are negative: the slack lowers them
_HIGH = SETTING_UPPER * (1 + 1e-9)
_RANGES = ", ".join(
    f"{n} [{lo:g}, {hi:g}] {u}"
    for n, lo, hi, u in zip(SETTING_NAMES, SETTING_LOWER, SETTING_UPPER, SETTING_UNITS, strict=True)
)
_ALLOW = "; pass allow_outside_ranges=True to compute it anyway"


def segment(
    settings: ArrayLike | None = None,
    misalignments: ArrayLike | None = None,
    *,
    allow_outside_ranges: bool = False,
) -> Segment:
    """The ARES experimental-area segment AREAMQZM1 ... AREABSCR1.

    Args:
        settings: (..., 5) magnet settings (q1, q2, cv, q3, ch) in 1/m^2 and rad; zeros
            if None.
        misalignments: (..., 3, 2) quadrupole displacements in m; zeros if None.
        allow_outside_ranges: accept settings outside the magnet ranges
            ``SETTING_LOWER``/``SETTING_UPPER`` (refused by default).

    Raises:
        ValueError: wrong trailing shapes, or a setting outside the magnet ranges.
    """
    settings = jnp.zeros(5) if settings is None else float_array(settings, "settings", "ARES")
    misalignments = (
        jnp.zeros((3, 2))
        if misalignments is None
        else float_array(misalignments, "misalignments", "ARES")
    )
    check_trailing_shape(settings, "settings", (5,), "ARES")
    check_trailing_shape(misalignments, "misalignments", (3, 2), "ARES")
    if not allow_outside_ranges:
        settings = check_setting_ranges(settings, owner="ARES", hint=_ALLOW)
    q1, q2, cv, q3, ch = (settings[..., i] for i in range(5))
    return Segment(
        [
            Drift(0.17504, name="Drift_AREASOLA1"),
            Quadrupole(QUADRUPOLE_LENGTH, q1, misalignments[..., 0, :], name="AREAMQZM1"),
            Drift(0.428, name="Drift_AREAMQZM1"),
            Quadrupole(QUADRUPOLE_LENGTH, q2, misalignments[..., 1, :], name="AREAMQZM2"),
            Drift(0.204, name="Drift_AREAMQZM2"),
            VerticalCorrector(CORRECTOR_LENGTH, cv, name="AREAMCVM1"),
            Drift(0.204, name="Drift_AREAMCVM1"),
            Quadrupole(QUADRUPOLE_LENGTH, q3, misalignments[..., 2, :], name="AREAMQZM3"),
            Drift(0.179, name="Drift_AREAMQZM3"),
            HorizontalCorrector(CORRECTOR_LENGTH, ch, name="AREAMCHM1"),
            Drift(0.45, name="Drift_AREAMCHM1"),
            Screen(
                resolution=(2448, 2040),
                pixel_size=(3.3198e-6, 2.4469e-6),
                binning=4,
                is_active=True,
                name=SCREEN,
            ),
        ],
        name="ARES-EA",
    )


def screen_beam(
    settings: Float[ArrayLike, "... 5"],
    misalignments: Float[ArrayLike, "... 3 2"] | None = None,
    incoming: ParameterBeam | None = None,
    *,
    allow_outside_ranges: bool = False,
) -> dict[str, Float[Array, ...]]:
    """Beam centroid and size on the screen AREABSCR1, in m.

    Broadcasts over the leading axes of ``settings`` and ``misalignments``; jittable and
    differentiable w.r.t. settings, misalignments and the incoming beam.

    Args:
        settings: (..., 5) settings (q1, q2, cv, q3, ch) in 1/m^2 and rad.
        misalignments: (..., 3, 2) quadrupole displacements (dx, dy) in m; zeros if None.
        incoming: the beam entering AREAMQZM1's upstream drift; `incoming_beam()` if None.
        allow_outside_ranges: track settings outside the magnet ranges
            ``SETTING_LOWER``/``SETTING_UPPER`` too (refused by default: the machine cannot
            set them, and far outside them the beam blows up to absurd sizes).

    Returns:
        ``{"mu_x", "sigma_x", "mu_y", "sigma_y"}``, each of the broadcast leading shape.

    Raises:
        ValueError: for wrong trailing shapes, shapes that do not broadcast, NaNs, or
            settings outside the magnet ranges (unless ``allow_outside_ranges``); traced
            settings outside them fail when the program runs.
    """
    settings = float_array(settings, "settings", "screen_beam")
    misalignments = (
        jnp.zeros((3, 2))
        if misalignments is None
        else float_array(misalignments, "misalignments", "screen_beam")
    )
    check_trailing_shape(settings, "settings", (5,), "screen_beam")
    check_trailing_shape(misalignments, "misalignments", (3, 2), "screen_beam")
    batch = broadcast_leading_shapes(
        {"settings": settings.shape[:-1], "misalignments": misalignments.shape[:-2]}
    )
    check_finite(settings, "settings", "screen_beam")
    check_finite(misalignments, "misalignments", "screen_beam")
    if not allow_outside_ranges:
        settings = check_setting_ranges(settings, owner="screen_beam", hint=_ALLOW)
    settings = jnp.broadcast_to(settings, (*batch, 5))
    misalignments = jnp.broadcast_to(misalignments, (*batch, 3, 2))
    out = segment(settings, misalignments, allow_outside_ranges=True).track(
        incoming_beam() if incoming is None else incoming
    )
    return {name: getattr(out, name) for name in OBSERVABLES}


def mae(
    observation: Mapping[str, ArrayLike], target: Mapping[str, ArrayLike] | None = None
) -> Array:
    """Mean absolute difference of (mu_x, sigma_x, mu_y, sigma_y) from ``target`` (m).

    With no target this is the tuning objective of the ARES studies,
    mean(|mu_x|, |sigma_x|, |mu_y|, |sigma_y|): a centred beam that is as small as possible.
    """
    target = {} if target is None else target
    unknown = sorted(set(target) - set(OBSERVABLES))
    if unknown:
        raise ValueError(f"target keys must be among {list(OBSERVABLES)}; got {unknown}")
    deviations = [jnp.abs(observation[k] - target.get(k, 0.0)) for k in OBSERVABLES]
    return sum(deviations) / len(deviations)
