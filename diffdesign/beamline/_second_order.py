"""Second-order maps T (out_i = sum_jk T_ijk v_j v_k, v = (x, px, y, py, tau, p, 1)).

The layout is Cheetah's: the first-order map R sits in T[..., :, 6, :], so with v_6 = 1 the
linear part is R @ v, and each quadratic term v_j v_k (j <= k < 6) is stored once, in
T[..., i, j, k], with its full coefficient (twice the symmetric tensor's entry when j < k).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from diffdesign.beamline import _special

SIZE = 7


def lift(first_order: Float[Array, "... 7 7"]) -> Float[Array, "... 7 7 7"]:
    """A second-order map that acts exactly as the first-order map ``first_order``."""
    shape = first_order.shape[:-2]
    tensor = jnp.zeros((*shape, 7, 7, 7))
    return tensor.at[..., :, 6, :].set(first_order)


def sandwich(
    after: Float[Array, "... 7 7"],
    tensor: Float[Array, "... 7 7 7"],
    before: Float[Array, "... 7 7"],
) -> Float[Array, "... 7 7 7"]:
    """The second-order map of the linear map ``before``, then ``tensor``, then ``after``.

    Exact for the quadratic terms of the composition: ``after`` and ``before`` are linear
    (affine through their seventh column, which the v_6 = 1 slot of ``tensor`` carries).
    """
    return jnp.einsum("...ij,...jkl,...kn,...lm->...inm", after, tensor, before, before)


def apply(
    tensor: Float[Array, "... 7 7 7"], vectors: Float[Array, "... n 7"]
) -> Float[Array, "... n 7"]:
    """Apply a second-order map to a batch of phase-space vectors (last entry 1).

    out[..., n, i] = sum_jk tensor[..., i, j, k] vectors[..., n, j] vectors[..., n, k].
    """
    return jnp.einsum("...ijk,...nj,...nk->...ni", tensor, vectors, vectors)


# --- The body of a sector magnet -------------------------------------------------------------
#
# TRANSPORT's second-order map of a sector magnet with curvature h, gradient k1 and sextupole
# k2, in the form of MAD8's subroutine TMSECT. MAD writes the symmetric tensor te(i, j, k)
# in coordinates (x, px, y, py, t, pt) with t = -c dt = -tau, so its fifth row changes sign
# here. The ingredients are
#
#   cx, sx, dx = cos_like(u), L sin_like(u), L^2 one_minus_cos(u)       u = (k1 + h^2) L^2
#   cy, sy     = cos_like(v), L sin_like(v)                             v = -k1 L^2
#   j1, j2, j3 = int_0^L d ds, int_0^L d^2 ds, int_0^L d^3 ds           d(s) = (1 - cx(s)) / kx2
#                (MAD's fx, gx, hx)
#   zc, zs, zd, zf: divided differences of (cx, sx, dx, j1) between u and 4 v, the
#                   horizontal response to the vertical motion's second harmonic.


class _Value:
    """A number that keeps structural zeros: a Python float stays one through + - * / **.

    Adding a Python 0.0 or multiplying by it (or by 1.0) costs nothing in the traced program,
    so a drift, a quadrupole or a sextupole only computes the terms it actually has.
    """

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value.value if isinstance(value, _Value) else value

    @property
    def constant(self) -> bool:
        return isinstance(self.value, float | int)

    def equals(self, number: float) -> bool:
        return self.constant and self.value == number

    def __add__(self, other):
        other = _Value(other)
        if self.equals(0.0):
            return other
        if other.equals(0.0):
            return self
        return _Value(self.value + other.value)

    __radd__ = __add__

    def __neg__(self):
        return self if self.equals(0.0) else _Value(-self.value)

    def __sub__(self, other):
        return self + (-_Value(other))

    def __rsub__(self, other):
        return _Value(other) + (-self)

    def __mul__(self, other):
        other = _Value(other)
        if self.equals(0.0) or other.equals(0.0):
            return _Value(0.0)
        if self.equals(1.0):
            return other
        if other.equals(1.0):
            return self
        return _Value(self.value * other.value)

    __rmul__ = __mul__

    def __truediv__(self, other):
        other = _Value(other)
        if self.equals(0.0) or other.equals(1.0):
            return self
        return _Value(self.value / other.value)

    def __rtruediv__(self, other):
        return _Value(other) / self

    def __pow__(self, exponent: int):
        return self if self.equals(0.0) or self.equals(1.0) else _Value(self.value**exponent)


_ONE_ARGUMENT = (
    "cos_like",
    "sin_like",
    "one_minus_cos",
    "one_minus_sin",
    "dispersion_integral_2",
    "dispersion_integral_3",
)


def _evaluate(function, at_zero, *arguments: _Value) -> tuple[_Value, ...]:
    """``function`` of the arguments' values; Python floats when they all are (``at_zero()``
    when they are all 0.0: a drift or a sextupole, without evaluating anything)."""
    if all(a.equals(0.0) for a in arguments):
        return tuple(_Value(v) for v in at_zero())
    if all(a.constant for a in arguments):
        with jax.ensure_compile_time_eval():  # a number now, also while tracing
            values = function(*(float(a.value) for a in arguments))
            return tuple(_Value(float(v)) for v in values)
    arrays = jnp.broadcast_arrays(*(jnp.asarray(a.value, dtype=float) for a in arguments))
    return tuple(_Value(v) for v in function(*arrays))


def _horizontal_and_vertical(u, v):
    """The one-argument family at u (horizontal) and at v (vertical), in one evaluation."""
    values = _special.family(jnp.stack([u, v], axis=-1), _ONE_ARGUMENT)
    return tuple(x[..., 0] for x in values) + tuple(x[..., 1] for x in values[:2])


def _horizontal_and_vertical_at_zero():
    values = _special.family_at_zero(_ONE_ARGUMENT)
    return values + values[:2]


def _unless_zero(denominator: _Value, value, fallback) -> _Value:
    """``value(denominator)`` where the denominator is nonzero, else ``fallback`` (a branch
    on an exact zero, as Cheetah takes it; the division never sees the zero)."""
    if denominator.constant:
        return _Value(fallback) if denominator.value == 0.0 else _Value(value(denominator))
    nonzero = denominator.value != 0.0
    safe = _Value(jnp.where(nonzero, denominator.value, 1.0))
    return _Value(jnp.where(nonzero, _Value(value(safe)).value, _Value(fallback).value))


def _cheetah_integrals(L, kx2, ky2, u, v, k2, sx, j1, j2, j3):
    """Cheetah 0.8.4's (j2, j3, zc, zs, zd, zf), from MAD's j2, j3 (see element_tensor)."""
    j2 = kx2 * j2  # L^3 (3 - 4 S + S C) / (2u): a factor L^2 / u short of int d^2
    # Its inline j3 exceeds int d^3 by kx2 sx^3 / 2 / (6 kx2^3), a pole at kx2 = 0, where
    # it switches to MAD's value.
    j3 = _unless_zero(kx2, lambda k: j3 + sx**3 / (12.0 * k**2), j3)
    if k2.equals(0.0):
        return j2, j3, _Value(0.0), _Value(0.0), _Value(0.0), _Value(0.0)
    at_zero = _special.divided_differences_at_zero
    dd_c, dd_s, _, _ = _evaluate(_special.divided_differences, at_zero, u, v)  # not (u, 4v)
    _, _, dd_d, _ = _evaluate(_special.divided_differences, at_zero, 4.0 * u, 4.0 * v)
    (f_4v,) = _evaluate(
        lambda x: _special.family(x, ("one_minus_sin",)),
        lambda: _special.family_at_zero(("one_minus_sin",)),
        4.0 * v,
    )
    # (L - sy cy) / ky2 = 4 L^3 one_minus_sin(4v), but 1/6 L^3 (not 4/6) at ky2 = 0.
    f2y = _unless_zero(v, lambda _: 4.0 * L**3 * f_4v, L**3 / 6.0)
    zf = _unless_zero(kx2 - 4.0 * ky2, lambda d: (f2y - j1) / d, L**5 / 120.0)
    # (si(v)^2 - si(u)^2) / (u - v), si(x)^2 = 2 one_minus_cos(4x).
    return j2, j3, -(L**2) * dd_c, -(L**3) * dd_s, -8.0 * L**4 * dd_d, zf


def _symmetric_coefficients(
    length, k1, k2, h, beta, igamma2, reproduce_cheetah: bool = False
) -> dict[tuple[int, int, int], _Value]:
    """MAD's te(i, j, k) (1-based, j <= k, symmetric half) of the sector-magnet body."""
    L, k1, k2, h = (_Value(x) for x in (length, k1, k2, h))
    kx2 = k1 + h**2
    ky2 = -k1
    u = kx2 * L**2
    v = ky2 * L**2

    c_u, s_u, d_u, f_u, g_u, h_u, c_v, s_v = _evaluate(
        _horizontal_and_vertical, _horizontal_and_vertical_at_zero, u, v
    )
    cx, sx, dx, j1, j2, j3 = c_u, L * s_u, L**2 * d_u, L**3 * f_u, L**5 * g_u, L**7 * h_u
    cy, sy = c_v, L * s_v
    if k2.equals(0.0):  # they only ever multiply k2
        zc = zs = zd = zf = _Value(0.0)
    else:
        dd_c, dd_s, dd_d, dd_f = _evaluate(
            _special.divided_differences, _special.divided_differences_at_zero, u, 4.0 * v
        )
        zc, zs, zd, zf = -(L**2) * dd_c, -(L**3) * dd_s, -(L**4) * dd_d, -(L**5) * dd_f
    t566_cheetah = _Value(0.0)
    if reproduce_cheetah:
        j2_mad = j2
        j2, j3, zc, zs, zd, zf = _cheetah_integrals(L, kx2, ky2, u, v, k2, sx, j1, j2, j3)
        # Cheetah writes the k1 part of te(5, 6, 6) as (sx dx^2 - j2 (1 + 2 cx)) / 6, MAD as
        # (j1 dx - j2) / 2: equal for int d^2, apart by (j2 - int d^2) (1 - cx) / 3 for its j2.
        t566_cheetah = k1 * (j2 - j2_mad) * (1.0 - cx) / 3.0

    bi = _Value(1.0 / beta)
    bi2 = bi**2
    bi2gi2 = _Value(igamma2) * bi2  # 1 / (beta gamma)^2
    xs6 = (k2 + 2.0 * h * k1) / 6.0
    ys2 = (k2 + h * k1) / 2.0
    h2 = h / 2.0
    q1 = k1 / 4.0

    # Horizontal and longitudinal terms.
    t116 = xs6 * (3.0 * sx * j1 - dx**2) - h * sx**2
    t126 = xs6 * (sx * dx**2 - 2.0 * cx * j2) - h * sx * dx
    t166 = xs6 * (dx**3 - 2.0 * sx * j2) - h2 * dx**2
    t216 = xs6 * (3.0 * cx * j1 + sx * dx)
    t226 = xs6 * (3.0 * sx * j1 + dx**2)
    t266 = xs6 * (sx * dx**2 - 2.0 * cx * j2)
    t516 = h * xs6 * (3.0 * dx * j1 - 4.0 * j2) + 2.0 * q1 * (j1 + sx * dx)
    t526 = h * xs6 * (dx**3 - 2.0 * sx * j2) + 2.0 * q1 * dx**2
    t566 = h * xs6 * (3.0 * j3 - 2.0 * dx * j2) + 2.0 * q1 * j2 - j1
    t1 = 2.0 * q1 * (dx**2 - sx * j1) - dx
    t2 = 2.0 * q1 * (L * dx - j1)
    t5 = j1 - k1 * (j2 - j1 * dx / 2.0)

    # Terms that couple in the vertical plane.
    t336 = k2 * (cy * zd - 2.0 * k1 * sy * zf) + h * k1 * j1 * sy
    t346 = k2 * (sy * zd - 2.0 * cy * zf) + h * j1 * cy
    t436 = 2.0 * ys2 * j1 * cy - k2 * k1 * (sy * zd - 2.0 * cy * zf)
    t446 = 2.0 * ys2 * j1 * sy - k2 * (cy * zd - 2.0 * k1 * sy * zf)

    return {
        (1, 1, 1): -xs6 * (sx**2 + dx) - h2 * kx2 * sx**2,
        (1, 1, 2): (-xs6 * dx + h2 * cx) * sx,
        (1, 2, 2): (-xs6 * dx + h2 * cx) * dx,
        (1, 1, 6): (-h2 * t116 + q1 * L * sx) * bi,
        (1, 2, 6): (-h2 * t126 + q1 * (L * dx - j1) - sx / 2.0) * bi,
        (1, 6, 6): (-(h**2) * t166 + h * t1) * bi2 - h2 * dx * bi2gi2,
        (2, 1, 1): -xs6 * (1.0 + 2.0 * cx) * sx,
        (2, 1, 2): -xs6 * (1.0 + 2.0 * cx) * dx,
        (2, 2, 2): -(2.0 * xs6 * dx + h2) * sx,
        (2, 1, 6): (-h2 * t216 - q1 * (sx - L * cx)) * bi,
        (2, 2, 6): (-h2 * t226 + q1 * L * sx) * bi,
        (2, 6, 6): (-(h**2) * t266 + h * t2) * bi2 - h2 * sx * bi2gi2,
        (5, 1, 1): (h2 * xs6 * (sx * dx + 3.0 * j1) - q1 * (L - cx * sx)) * bi,
        (5, 1, 2): (h2 * xs6 * dx**2 + q1 * sx**2) * bi,
        (5, 2, 2): (h * xs6 * j2 - q1 * (j1 - sx * dx) - sx / 2.0) * bi,
        (5, 1, 6): h2 * ((t516 - 2.0 * q1 * (L * dx - j1)) * bi2 + sx * bi2gi2),
        (5, 2, 6): h2 * ((t526 - 2.0 * q1 * (dx**2 - sx * j1)) * bi2 + dx * bi2gi2),
        (5, 6, 6): (h**2 * (t566 + t5 + t566_cheetah) * bi2 + 1.5 * (h**2 * j1 - L) * bi2gi2) * bi,
        (1, 3, 3): k2 * k1 * zd + ys2 * dx,
        (1, 3, 4): k2 * zs / 2.0,
        (1, 4, 4): k2 * zd - h2 * dx,
        (2, 3, 3): k2 * k1 * zs + ys2 * sx,
        (2, 3, 4): k2 * zc / 2.0,
        (2, 4, 4): k2 * zs - h2 * sx,
        (3, 1, 3): k2 * (cy * zc / 2.0 - k1 * sy * zs) + h2 * k1 * sx * sy,
        (3, 1, 4): k2 * (sy * zc / 2.0 - cy * zs) + h2 * sx * cy,
        (3, 2, 3): k2 * (cy * zs / 2.0 - k1 * sy * zd) + h2 * k1 * dx * sy,
        (3, 2, 4): k2 * (sy * zs / 2.0 - cy * zd) + h2 * dx * cy,
        (3, 3, 6): (h2 * t336 - q1 * L * sy) * bi,
        (3, 4, 6): (h2 * t346 - (sy + L * cy) / 4.0) * bi,
        (4, 1, 3): k2 * k1 * (cy * zs - sy * zc / 2.0) + ys2 * sx * cy,
        (4, 1, 4): k2 * (k1 * sy * zs - cy * zc / 2.0) + ys2 * sx * sy,
        (4, 2, 3): k2 * k1 * (cy * zd - sy * zs / 2.0) + ys2 * dx * cy,
        (4, 2, 4): k2 * (k1 * sy * zd - cy * zs / 2.0) + ys2 * dx * sy,
        (4, 3, 6): (h2 * t436 + q1 * (sy - L * cy)) * bi,
        (4, 4, 6): (h2 * t446 - q1 * L * sy) * bi,
        (5, 3, 3): (-h * k2 * k1 * zf - h * ys2 * j1 + q1 * (L - cy * sy)) * bi,
        (5, 3, 4): (-h * k2 * zd / 2.0 - q1 * sy**2) * bi,
        (5, 4, 4): (-h * k2 * zf + h * h2 * j1 - (L + sy * cy) / 4.0) * bi,
    }


def _assemble(
    coefficients: dict[tuple[int, int, int], _Value], first_order: Array, shape: tuple[int, ...]
) -> Array:
    """The (..., 7, 7, 7) tensor from MAD's symmetric te (1-based) and R in T[..., :, 6, :].

    The two conventions meet here, once: the time row flips sign (t = -tau), and the
    quadratic term v_j v_k, j < k, carries both symmetric halves te_ijk + te_ikj.
    """
    indices, values = [], []
    for (i, j, k), value in coefficients.items():
        if value.equals(0.0):
            continue
        factor = (-1.0 if i == 5 else 1.0) * (2.0 if j < k else 1.0)
        indices.append((i - 1, j - 1, k - 1))
        values.append(jnp.broadcast_to(factor * jnp.asarray(value.value, dtype=float), shape))
    tensor = jnp.zeros((*shape, SIZE, SIZE, SIZE)).at[..., :, SIZE - 1, :].set(first_order)
    if not values:
        return tensor
    i, j, k = (jnp.asarray(index) for index in zip(*indices, strict=True))
    return tensor.at[..., i, j, k].set(jnp.stack(values, axis=-1))


def element_tensor(
    length: ArrayLike,
    k1: ArrayLike,
    k2: ArrayLike,
    hx: ArrayLike,
    energy: ArrayLike,
    mass_eV: float,
    first_order: Float[Array, "... 7 7"],
    *,
    reproduce_cheetah: bool = False,
) -> Float[Array, "... 7 7 7"]:
    """Second-order map of a sector-magnet body (TRANSPORT / MAD8 TMSECT, no fringe fields).

    Args:
        length: arc length in m.
        k1: quadrupole strength in 1/m^2 (> 0 focuses in x).
        k2: sextupole strength in 1/m^3.
        hx: curvature 1/rho in 1/m.
        energy: total energy of the reference particle in eV.
        mass_eV: rest energy of the particle in eV.
        first_order: the body's first-order map (..., 7, 7), placed in T[..., :, 6, :].

    Any of ``length``, ``k1``, ``k2``, ``hx``, ``energy`` may be a Python float (0.0 for an
    absent field keeps its terms out) or an array; array shapes broadcast with each other
    and with ``first_order``'s leading shape. The result is smooth in all of them, through
    k1 = 0, hx = 0, k1 + hx^2 = 0 and k1 + hx^2 = -4 k1 included.

    Cheetah 0.8.4's ``base_ttensor`` has the same layout and the same term formulas, but
    five of its integrals differ from MAD8's (tests/beamline/test_second_order.py lists them):
    int d^2 (a factor u / L^2 off), int d^3 (another formula, with a pole at k1 + hx^2 = 0),
    and the sextupole's coupling integrals (wrong harmonic, a factor 8 at k = 0, a factor 4).
    Where they enter (bends with k1 != 0; any k2 != 0), Cheetah's map breaks
    T(L) = T(L/2) o T(L/2), which this one keeps to rounding. ``reproduce_cheetah=True``
    reproduces Cheetah's integrals instead, for comparisons with it: that map is not
    smooth where Cheetah's is not (k1 + hx^2 = 0 with hx (k2 + 2 hx k1) != 0;
    k1 + hx^2 = -4 k1 or k1 = 0 with hx k2 != 0).
    """
    parameters = (length, k1, k2, hx, energy)
    shapes = [jnp.shape(p) for p in parameters if not isinstance(p, float | int)]
    shape = jnp.broadcast_shapes(*shapes, first_order.shape[:-2])
    length, k1, k2, hx, energy = (
        p if isinstance(p, float | int) else jnp.broadcast_to(p, shape) for p in parameters
    )
    gamma = jnp.broadcast_to(jnp.asarray(energy, dtype=float), shape) / mass_eV
    igamma2 = 1.0 / gamma**2
    beta = jnp.sqrt(1.0 - igamma2)
    coefficients = _symmetric_coefficients(length, k1, k2, hx, beta, igamma2, reproduce_cheetah)
    return _assemble(coefficients, jnp.broadcast_to(first_order, (*shape, SIZE, SIZE)), shape)
