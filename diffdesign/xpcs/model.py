"""Two-time correlation functions of homodyne XPCS under flow, in `homodyne`'s conventions.

The model (Fluerasu, He, Chen, Chen et al.; the `homodyne` package) on a uniform time grid
``t`` (s) and for each scattering angle ``phi`` (degrees):

    g2(phi, t1, t2) = offset + contrast * (g1_diff * g1_shear)^2
    g1_diff  = exp(-q^2 / 2 * |int_{t1}^{t2} D(t) dt|),        D(t) = D0 t^alpha + D_offset
    g1_shear = sinc^2(q L / (2 pi) * cos(phi0 - phi) * |int_{t1}^{t2} gamma_dot(t) dt|),
               gamma_dot(t) = gamma_dot_t0 t^beta + gamma_dot_t_offset,   sinc(x) = sin(x) / x

with q in 1/Angstrom, L in Angstrom, D in Angstrom^2/s, gamma_dot in 1/s. Static mode has the
first three parameters only (g1_shear = 1).

Two discretisations of the time integrals:

- ``"trapezoid"`` (default) reproduces `homodyne`'s code exactly: the rates are evaluated on the
  grid with t floored at dt/2 (so t = 0 stays finite for negative exponents) and the values
  floored at 1e-10, integrated by a cumulative trapezoid, and ``|C_i - C_j|`` taken as
  ``sqrt((C_i - C_j)^2 + 1e-12)`` in grid steps; ``log g1_diff`` is clipped to [-700, 0] and
  ``g1`` floored at 1e-10. (homodyne's README and CLI help quote other units and formulas
  than its code; this follows the code.)
- ``"exact"``: the same floored-time rate integrated analytically, without the 1e-10 value
  floor (so it assumes D(t) > 0 and gamma_dot(t) > 0). It shows the trapezoid's bias, which
  is largest at the earliest lags where t^alpha is most curved.

Everything is a pure function over arrays: jittable, vmappable and differentiable in every
parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from diffdesign._validation import check_positive
from diffdesign.xpcs._matrices import all_pairs, checked_grid, trapezoid_cumulative
from diffdesign.xpcs.heterodyne import TWO_COMPONENT_PARAMETERS, check_two_component

STATIC_PARAMETERS = ("D0", "alpha", "D_offset")
SHEAR_PARAMETERS = ("gamma_dot_t0", "beta", "gamma_dot_t_offset", "phi0")
LAMINAR_PARAMETERS = STATIC_PARAMETERS + SHEAR_PARAMETERS
#: The physical parameters of each mode; ``"two_component"`` is the heterodyne model of
#: :mod:`diffdesign.xpcs.heterodyne` (xpcsjax's name for it).
MODES = {
    "static": STATIC_PARAMETERS,
    "laminar_flow": LAMINAR_PARAMETERS,
    "two_component": TWO_COMPONENT_PARAMETERS,
}
INTEGRALS = ("trapezoid", "exact")

_RATE_FLOOR = 1e-10  # homodyne's floor on D(t) and gamma_dot(t)
_ABS_EPS = 1e-12  # homodyne's smooth |x| = sqrt(x^2 + eps), in grid steps squared
_G1_FLOOR = 1e-10
_SINC_SERIES = 1e-4  # below this |x|, sinc by its Taylor series (smooth gradients)


def parameter_names(mode: str) -> tuple[str, ...]:
    """The physical parameter names of a mode, in homodyne's order."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}; got {mode!r}")
    return MODES[mode]


def mode_of(params: Mapping[str, ArrayLike]) -> str:
    """``"two_component"`` for the heterodyne names, else ``"laminar_flow"`` when the shear
    parameters are present, else ``"static"``."""
    if any(name in params for name in TWO_COMPONENT_PARAMETERS):
        check_two_component(params)
        return "two_component"
    missing = [name for name in STATIC_PARAMETERS if name not in params]
    if missing:
        raise ValueError(f"params lacks {missing}; expected names {list(LAMINAR_PARAMETERS)}")
    shear = [name in params for name in SHEAR_PARAMETERS]
    if any(shear) and not all(shear):
        absent = [n for n, s in zip(SHEAR_PARAMETERS, shear, strict=True) if not s]
        raise ValueError(f"laminar_flow params lack {absent}; give all four shear names or none")
    unknown = sorted(set(params) - set(LAMINAR_PARAMETERS))
    if unknown:
        raise ValueError(f"unknown parameter names {unknown}; allowed {list(LAMINAR_PARAMETERS)}")
    return "laminar_flow" if all(shear) else "static"


def sinc(x: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    """Unnormalised sinc, sin(x)/x, with its Taylor series near 0 (smooth derivatives)."""
    x = jnp.asarray(x)
    small = jnp.abs(x) < _SINC_SERIES
    safe = jnp.where(small, 1.0, x)
    x2 = x * x
    return jnp.where(small, 1.0 - x2 / 6.0 + x2 * x2 / 120.0, jnp.sin(safe) / safe)


def time_floor(t: Float[Array, " n"]) -> Float[Array, ""]:
    """The smallest time a rate is evaluated at: half the grid step (at least 1e-8 s)."""
    step = jnp.abs(t[jnp.minimum(1, t.shape[0] - 1)] - t[0])
    return jnp.maximum(0.5 * step, 1e-8)


def power_rate(t: Float[ArrayLike, " n"], amplitude, exponent, offset, floor) -> Float[Array, " n"]:
    """``amplitude * max(t, floor)^exponent + offset``: D(t) or gamma_dot(t)."""
    t_safe = jnp.maximum(jnp.asarray(t), floor)
    return amplitude * t_safe**exponent + offset


def cumulative_integral(
    t: Float[Array, " n"], amplitude, exponent, offset, integral: str = "trapezoid"
) -> Float[Array, " n"]:
    """``C_k = int_{t_0}^{t_k} rate(s) ds`` on the grid, in the rate's units times s.

    ``"trapezoid"`` is homodyne's cumulative trapezoid of the floored rate (values floored at
    1e-10); ``"exact"`` integrates the time-floored power law analytically.
    """
    floor = time_floor(t)
    if integral == "trapezoid":
        dt = t[1] - t[0]
        rate = power_rate(t, amplitude, exponent, offset, floor)
        rate = jnp.where(rate > _RATE_FLOOR, rate, _RATE_FLOOR)
        return trapezoid_cumulative(rate, dt)
    if integral == "exact":
        antiderivative = _floored_power_antiderivative(t, amplitude, exponent, offset, floor)
        return antiderivative - antiderivative[0]
    raise ValueError(f"integral must be one of {INTEGRALS}; got {integral!r}")


def _floored_power_antiderivative(t, amplitude, exponent, offset, floor):
    """``F(t) = int_0^t (amplitude max(s, floor)^exponent + offset) ds``, smooth in exponent."""
    head = amplitude * floor**exponent * jnp.minimum(t, floor)
    # int_floor^t s^a ds = floor^(a+1) * expm1((a+1) log(t/floor)) / (a+1), finite at a = -1.
    log_ratio = jnp.log(jnp.maximum(t, floor) / floor)
    power = exponent + 1.0
    small = jnp.abs(power) < 1e-6
    safe = jnp.where(small, 1.0, power)
    pl = power * log_ratio  # series of expm1(pl)/p to O(p^3), exact in value and slope here
    ratio = jnp.where(
        small,
        log_ratio * (1.0 + pl / 2.0 + pl * pl / 6.0),
        jnp.expm1(safe * log_ratio) / safe,
    )
    return head + amplitude * floor**power * ratio + offset * t


def pair_integral(
    cumulative: Float[Array, " n"], i: Int[ArrayLike, "*shape"], j: Int[ArrayLike, "*shape"], dt
) -> Float[Array, "*shape"]:
    """``|int_{t_i}^{t_j} rate dt|`` with homodyne's smooth absolute value (eps in steps^2)."""
    steps = (cumulative[j] - cumulative[i]) / dt
    return dt * jnp.sqrt(steps**2 + _ABS_EPS)


def g1_pairs(
    params: Mapping[str, ArrayLike],
    t: Float[Array, " n"],
    phi: Float[ArrayLike, " n_phi"],
    q,
    L,
    angle: Int[ArrayLike, "*shape"],
    i: Int[ArrayLike, "*shape"],
    j: Int[ArrayLike, "*shape"],
    integral: str = "trapezoid",
) -> Float[Array, "*shape"]:
    """g1 at time-index pairs (i, j) of angle index ``angle``; all three broadcast together.

    The rates are integrated once over the grid and gathered per pair, so the cost is the
    number of pairs, whatever subset of the two-time matrix is asked for.
    """
    t = jnp.asarray(t, dtype=float)
    dt = t[1] - t[0]
    diff = cumulative_integral(t, params["D0"], params["alpha"], params["D_offset"], integral)
    log_g1 = -0.5 * q**2 * pair_integral(diff, i, j, dt)
    if integral == "trapezoid":
        log_g1 = jnp.clip(log_g1, -700.0, 0.0)
    g1 = jnp.exp(log_g1)
    if mode_of(params) == "laminar_flow":
        shear = cumulative_integral(
            t,
            params["gamma_dot_t0"],
            params["beta"],
            params["gamma_dot_t_offset"],
            integral,
        )
        phi = jnp.atleast_1d(jnp.asarray(phi, dtype=float))
        cosine = jnp.cos(jnp.deg2rad(params["phi0"] - phi))
        phase = q * L / (2.0 * jnp.pi) * cosine[angle] * pair_integral(shear, i, j, dt)
        g1 = g1 * sinc(phase) ** 2
    if integral == "trapezoid":
        g1 = jnp.where(g1 > _G1_FLOOR, g1, _G1_FLOOR)
    # Static g1 does not depend on the angle; still broadcast against it, as documented.
    return jnp.broadcast_to(g1, jnp.broadcast_shapes(g1.shape, jnp.shape(angle)))


def g2_pairs(
    params: Mapping[str, ArrayLike],
    t: Float[Array, " n"],
    phi: Float[ArrayLike, " n_phi"],
    q,
    L,
    contrast: Float[ArrayLike, "*shape"],
    offset: Float[ArrayLike, "*shape"],
    angle: Int[ArrayLike, "*shape"],
    i: Int[ArrayLike, "*shape"],
    j: Int[ArrayLike, "*shape"],
    integral: str = "trapezoid",
) -> Float[Array, "*shape"]:
    """``offset + contrast * g1^2`` at index pairs; contrast/offset per pair (already gathered)."""
    g1 = g1_pairs(params, t, phi, q, L, angle, i, j, integral)
    return offset + contrast * g1**2


def g2(
    params: Mapping[str, ArrayLike],
    t: Float[ArrayLike, " n_t"],
    phi: Float[ArrayLike, " n_phi"],
    q: ArrayLike,
    L: ArrayLike,
    contrast: Float[ArrayLike, " n_phi"] = 1.0,
    offset: Float[ArrayLike, " n_phi"] = 1.0,
    *,
    integral: str = "trapezoid",
) -> Float[Array, "n_phi n_t n_t"]:
    """The full two-time correlation matrices, shape (n_phi, n_t, n_t).

    Args:
        params: homodyne's parameter names to values (scalars): ``D0`` (Angstrom^2/s),
            ``alpha``, ``D_offset`` (Angstrom^2/s), and for laminar flow ``gamma_dot_t0`` (1/s),
            ``beta``, ``gamma_dot_t_offset`` (1/s), ``phi0`` (degrees).
        t: uniform time grid (s), at least two points.
        phi: scattering angles (degrees); a scalar counts as one angle.
        q: scattering vector (1/Angstrom).
        L: gap / characteristic length (Angstrom).
        contrast: a scalar or one value per angle.
        offset: a scalar or one value per angle.
        integral: ``"trapezoid"`` (homodyne's discretisation) or ``"exact"``.

    Raises:
        ValueError: ``t`` not 1-D with two or more points, no angle, contrast or offset of
            another length than ``phi``, or (where known) q or L not finite and > 0.
    """
    if mode_of(params) == "two_component":
        raise ValueError(
            "g2 is the homodyne model; the two-component parameters go to "
            "diffdesign.xpcs.two_component_g2(params, t, phi, q, contrast, offset)"
        )
    t, phi = checked_grid(t, phi, q, contrast, offset, "g2")
    check_positive(L, "L", "g2", "Angstrom")
    return _g2(params, t, phi, q, L, contrast, offset, integral=integral)


@partial(jax.jit, static_argnames="integral")
def _g2(params, t, phi, q, L, contrast, offset, *, integral):
    def g1_squared(angle, i, j):
        return g1_pairs(params, t, phi, q, L, angle, i, j, integral) ** 2

    return all_pairs(g1_squared, phi.shape[0], t.shape[0], contrast, offset)


@partial(jax.jit, static_argnames="integral")
def synthetic_c2(
    key: jax.Array,
    params: Mapping[str, ArrayLike],
    t: Float[ArrayLike, " n_t"],
    phi: Float[ArrayLike, " n_phi"],
    q,
    L,
    contrast: Float[ArrayLike, " n_phi"],
    offset: Float[ArrayLike, " n_phi"],
    noise: float,
    *,
    integral: str = "trapezoid",
) -> Float[Array, "n_phi n_t n_t"]:
    """Noisy two-time data: the model plus Gaussian noise of std ``noise``, symmetric in (t1, t2).

    Measured two-time matrices are symmetric by construction, so the noise is drawn for the
    upper triangle and diagonal and mirrored (the lower triangle carries no new information).
    """
    clean = g2(params, t, phi, q, L, contrast, offset, integral=integral)
    return clean + noise * symmetric_noise(key, clean.shape, clean.dtype)


def symmetric_noise(key: jax.Array, shape: tuple[int, ...], dtype=float) -> Array:
    """Standard normal noise on the upper triangle and diagonal of the last two axes, mirrored
    to the lower triangle (a two-time matrix's lower half carries no new information)."""
    upper = jnp.triu(jax.random.normal(key, shape, dtype=dtype))
    return upper + jnp.swapaxes(jnp.triu(upper, 1), -1, -2)
