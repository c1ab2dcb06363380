"""The ring's design variables for the design layer (:mod:`diffdesign.core.spec`)."""

from __future__ import annotations

import math

import jax.numpy as jnp

from diffdesign.core.spec import Identity, Param
from diffdesign.ring.lattice import Lattice
from diffdesign.ring.model import fitted_quadrupoles

__all__ = ["k1_error_spec"]


def k1_error_spec(
    lattice: Lattice, quadrupoles: str = "", *, bound: float = 0.02, step: float = 1e-4
) -> Param:
    """The spec of relative quadrupole gradient errors, ``K1 = K1_design (1 + k)``.

    The values are the argument of :meth:`diffdesign.ring.RingModel.observables` for the
    same quadrupoles: zero (the design), bounded to ``[-bound, bound]`` by projection
    (:class:`~diffdesign.core.bounds.Identity`), one step size for all, label
    ``"k1_errors"``.

    Args:
        lattice: the design ring.
        quadrupoles: regular expression of quadrupole names (whole-name match), or empty:
            every ``Quadrupole`` with non-zero K1 (:func:`~diffdesign.ring.fitted_quadrupoles`).
        bound: largest relative error, in (0, 1]; the default 2 % is 20 times the 1e-3 rms
            of series magnets after calibration and the upper end of the studies' range.
        step: optimiser step size (relative error per step), in (0, bound]; the default is
            a tenth of that rms.

    Raises:
        ValueError: ``bound`` or ``step`` out of range (naming it), or no matching
            quadrupole with non-zero K1.

    Example:
        >>> spec = k1_error_spec(load_lattice("nsls2"))  # 300 errors  # doctest: +SKIP
    """
    if isinstance(bound, bool) or not (isinstance(bound, int | float) and 0.0 < bound <= 1.0):
        raise ValueError(f"k1_error_spec: bound must be a number in (0, 1]; got {bound!r}")
    if isinstance(step, bool) or not (
        isinstance(step, int | float) and math.isfinite(step) and 0.0 < step <= bound
    ):
        raise ValueError(
            f"k1_error_spec: step must be a number in (0, bound={bound:g}]; got {step!r}"
        )
    index = fitted_quadrupoles(lattice, quadrupoles)
    return Param(
        jnp.zeros(index.size),
        -float(bound),
        float(bound),
        step=float(step),
        label="k1_errors",
        transform=Identity(),
        unit="relative",
    )
