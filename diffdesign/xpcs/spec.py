"""The XPCS model's physical parameters as a design-layer spec (bounds, transforms, steps).

D0 and gamma_dot_t0 are positive and span decades, so the optimiser moves their logarithms
(:class:`~diffdesign.core.Log`, steps relative); the others move through the Box bijection of
the bounded least squares (:class:`~diffdesign.core.Box`). Bounds default to
:data:`~diffdesign.xpcs.likelihood.DEFAULT_BOUNDS`, units are homodyne's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from diffdesign.core import Box, Log, Param
from diffdesign.xpcs.likelihood import DEFAULT_BOUNDS
from diffdesign.xpcs.model import parameter_names

#: Units of the physical parameters (homodyne's).
UNITS = {
    "D0": "A^2/s^(1+alpha)", "alpha": "", "D_offset": "A^2/s", "gamma_dot_t0": "1/s^(1+beta)",
    "beta": "", "gamma_dot_t_offset": "1/s", "phi0": "deg",
    "D0_ref": "A^2/s^(1+alpha_ref)", "alpha_ref": "", "D_offset_ref": "A^2/s",
    "D0_sample": "A^2/s^(1+alpha_sample)", "alpha_sample": "", "D_offset_sample": "A^2/s",
    "v0": "A/s^(1+v_beta)", "v_beta": "", "v_offset": "A/s", "f0": "", "f1": "1/s", "f2": "s",
    "f3": "", "phi0_het": "deg",
}  # fmt: skip
#: Parameters moved in log space.
LOG_SCALE = ("D0", "gamma_dot_t0", "D0_ref", "D0_sample", "v0")


def parameter_spec(
    mode: str,
    initial: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    *,
    step: float = 0.05,
) -> dict[str, Param]:
    """``{name: Param}`` for the physical parameters of ``mode`` ("static", "laminar_flow"
    or "two_component"), starting at ``initial`` (default: the box's centre, geometric for the
    log-scaled ones), inside ``bounds`` (default ``DEFAULT_BOUNDS``), each labelled by name.

    Raises:
        ValueError: an unknown mode or parameter name, or a start outside its bounds.
    """
    names = parameter_names(mode)
    initial, bounds = dict(initial or {}), {**DEFAULT_BOUNDS, **dict(bounds or {})}
    unknown = sorted((set(initial) | set(bounds)) - set(DEFAULT_BOUNDS))
    if unknown:
        raise ValueError(f"unknown XPCS parameter names {unknown}; allowed {list(names)}")
    spec = {}
    for name in names:
        lower, upper = bounds[name]
        log = name in LOG_SCALE
        centre = math.sqrt(lower * upper) if log and lower > 0 else 0.5 * (lower + upper)
        spec[name] = Param(initial.get(name, centre), lower, upper, step=step, label=name,
                           transform=Log() if log else Box(), unit=UNITS[name])  # fmt: skip
    return spec
