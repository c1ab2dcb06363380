"""Two-component (heterodyne) two-time correlation, in `xpcsjax`'s conventions.

A reference component and a sample component scatter together; the sample drifts with a
velocity v(t) relative to the reference, so their cross term beats. With the sample's
fraction ``f_s(t)`` (``f_r = 1 - f_s``) at the two times and each component's transport
integral, the model that `xpcsjax` 0.1.8 fits (its two-component kernel) is

    g2(phi, t1, t2) = offset + contrast * G / N
    G = (f_r1 f_r2)^2 e_r^2 + (f_s1 f_s2)^2 e_s^2
        + 2 f_r1 f_s1 f_r2 f_s2 e_r e_s cos(q cos(phi + phi0_het) int_{t1}^{t2} v dt)
    N = (f_s1^2 + f_r1^2) (f_s2^2 + f_r2^2)
    e_c = exp(-q^2 / 2 |int_{t1}^{t2} J_c dt|),   J_c(t) = max(D0_c t^alpha_c + D_offset_c, 0)
    v(t) = v0 t^v_beta + v_offset
    f_s(t) = smoothclip(f0 exp(f1 (t - f2)) + f3, 0, 1)

with q in 1/Angstrom, D in Angstrom^2/s, v in Angstrom/s, angles in degrees, t in s. As in
the code it reproduces (xpcsjax's), not an idealisation of it:

- rates are evaluated at the grid times themselves, with ``t^a := 0`` at t = 0 (xpcsjax's
  grids start at one frame, t = dt, ..., so this matters only for a grid starting at 0);
- the time integrals are cumulative trapezoids; ``|x|`` of a transport integral is
  ``sqrt(x^2 + 1e-12)`` in its own units (Angstrom^2), the exponent clipped to [-700, 0];
- the exponent of the fraction is clipped to [-700, 700] and the fraction is bounded by a
  softplus clip of sharpness 50 (it departs from the identity by exp(-50 d) / 50 at a
  distance d from the nearer bound: 9e-7 at 0.2, 3e-13 at 0.5);
- N is floored at 1e-10.

Only the combination ``f0 exp(-f1 f2)`` enters: f0 and f2 are one direction of the data, so a
fit fixes one of them (``fixed={"f2": 0.0}``), as xpcsjax's own configurations do.

Everything is a pure function over arrays: jittable, vmappable, differentiable in every
parameter.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from diffdesign.xpcs._matrices import all_pairs, checked_grid, trapezoid_cumulative

#: The 14 physical parameters, in xpcsjax's order.
TWO_COMPONENT_PARAMETERS = (
    "D0_ref", "alpha_ref", "D_offset_ref", "D0_sample", "alpha_sample", "D_offset_sample",
    "v0", "v_beta", "v_offset", "f0", "f1", "f2", "f3", "phi0_het",
)  # fmt: skip

_TIME_FLOOR = 1e-10  # below this a time is floored before the power (xpcsjax's)
_ABS_EPS = 1e-12  # smooth |x| = sqrt(x^2 + eps), x in the integral's own units
_EXP_LIMIT = 700.0
_CLIP_SHARPNESS = 50.0
_NORM_FLOOR = 1e-10


def _power(t: Array, exponent) -> Array:
    """``t^exponent`` with ``0^exponent := 0`` (finite and differentiable for any exponent)."""
    safe = jnp.where(t > _TIME_FLOOR, t, _TIME_FLOOR)
    return jnp.where(t > 0, safe**exponent, 0.0)


def smooth_clip(x: ArrayLike, low: float, high: float) -> Array:
    """``x`` bounded to [low, high] by two softplus corners of sharpness 50 (gradient kept)."""
    k = _CLIP_SHARPNESS
    above_low = low + jax.nn.softplus(k * (jnp.asarray(x) - low)) / k
    return high - jax.nn.softplus(k * (high - above_low)) / k


def sample_fraction(t: Float[ArrayLike, " n"], f0, f1, f2, f3) -> Float[Array, " n"]:
    """The sample's fraction ``f_s(t)`` in [0, 1] (the reference's is ``1 - f_s``)."""
    exponent = jnp.clip(f1 * (jnp.asarray(t) - f2), -_EXP_LIMIT, _EXP_LIMIT)
    return smooth_clip(f0 * jnp.exp(exponent) + f3, 0.0, 1.0)


def two_component_pairs(
    params: Mapping[str, ArrayLike],
    t: Float[Array, " n"],
    phi: Float[ArrayLike, " n_phi"],
    q,
    angle: Int[ArrayLike, "*shape"],
    i: Int[ArrayLike, "*shape"],
    j: Int[ArrayLike, "*shape"],
) -> Float[Array, "*shape"]:
    """``G / N`` (the part of g2 that contrast multiplies) at time-index pairs (i, j) of angle
    index ``angle``; all three broadcast together. Rates are integrated once over the grid and
    gathered per pair."""
    t = jnp.asarray(t, dtype=float)
    dt = t[1] - t[0]

    def decay(d0, alpha, d_offset):
        rate = jnp.maximum(d0 * _power(t, alpha) + d_offset, 0.0)
        cumulative = trapezoid_cumulative(rate, dt)
        integral = jnp.sqrt((cumulative[j] - cumulative[i]) ** 2 + _ABS_EPS)
        return jnp.exp(jnp.clip(-0.5 * q * q * integral, -_EXP_LIMIT, 0.0))

    e_ref = decay(params["D0_ref"], params["alpha_ref"], params["D_offset_ref"])
    e_sample = decay(params["D0_sample"], params["alpha_sample"], params["D_offset_sample"])
    velocity = params["v0"] * _power(t, params["v_beta"]) + params["v_offset"]
    travel = trapezoid_cumulative(velocity, dt)
    phi = jnp.atleast_1d(jnp.asarray(phi, dtype=float))
    cosine = jnp.cos(jnp.deg2rad(phi + params["phi0_het"]))
    beat = jnp.cos(q * cosine[angle] * (travel[j] - travel[i]))

    fraction = sample_fraction(t, params["f0"], params["f1"], params["f2"], params["f3"])
    s1, s2 = fraction[i], fraction[j]
    r1, r2 = 1.0 - s1, 1.0 - s2
    shape = (
        (r1 * r2) ** 2 * e_ref**2
        + (s1 * s2) ** 2 * e_sample**2
        + 2.0 * (r1 * s1) * (r2 * s2) * e_ref * e_sample * beat
    )
    norm = (s1**2 + r1**2) * (s2**2 + r2**2)
    return shape / jnp.where(norm > _NORM_FLOOR, norm, _NORM_FLOOR)


def two_component_g2(
    params: Mapping[str, ArrayLike],
    t: Float[ArrayLike, " n_t"],
    phi: Float[ArrayLike, " n_phi"],
    q: ArrayLike,
    contrast: Float[ArrayLike, " n_phi"] = 1.0,
    offset: Float[ArrayLike, " n_phi"] = 1.0,
) -> Float[Array, "n_phi n_t n_t"]:
    """The full two-time matrices of the two-component model, shape (n_phi, n_t, n_t).

    Args:
        params: the 14 names of :data:`TWO_COMPONENT_PARAMETERS` to scalar values.
        t: uniform time grid (s), at least two points (xpcsjax's starts at dt).
        phi: detector angles (degrees); a scalar counts as one angle.
        q: scattering vector (1/Angstrom).
        contrast: a scalar or one value per angle.
        offset: a scalar or one value per angle.

    Raises:
        ValueError: a parameter name missing or unknown, ``t`` not 1-D with two or more
            points, no angle, contrast/offset of another length than ``phi``, q not > 0.
    """
    check_two_component(params)
    t, phi = checked_grid(t, phi, q, contrast, offset, "two_component_g2")
    return _two_component_g2(params, t, phi, q, contrast, offset)


@jax.jit
def _two_component_g2(params, t, phi, q, contrast, offset):
    return all_pairs(
        lambda angle, i, j: two_component_pairs(params, t, phi, q, angle, i, j),
        phi.shape[0], t.shape[0], contrast, offset,
    )  # fmt: skip


def check_two_component(params: Mapping[str, ArrayLike]) -> None:
    """A ValueError naming the missing or unknown names unless ``params`` has exactly the 14."""
    missing = [n for n in TWO_COMPONENT_PARAMETERS if n not in params]
    unknown = sorted(set(params) - set(TWO_COMPONENT_PARAMETERS))
    if missing or unknown:
        raise ValueError(
            f"two-component params lack {missing} and have unknown {unknown}; expected "
            f"{list(TWO_COMPONENT_PARAMETERS)}"
        )
