"""Entire functions of u = K L^2 that build transfer maps, exact and smooth through u = 0.

For a focusing strength K (1/m^2) over a length L (m), u = K L^2 and, with w = sqrt(|u|),

    cos_like(u)       = cos(w)  (u > 0)      or cosh(w)  (u < 0)
    sin_like(u)       = sin(w)/w             or sinh(w)/w
    one_minus_cos(u)  = (1 - cos_like(u)) / u
    one_minus_sin(u)  = (1 - sin_like(u)) / u

The second-order maps also need integrals of the dispersion-like orbit
d(s) = s^2 one_minus_cos(K s^2) = (1 - cos_like(K s^2)) / K over the magnet,

    int_0^L d(s)   ds = L^3 one_minus_sin(u)
    int_0^L d(s)^2 ds = L^5 dispersion_integral_2(u) = L^5 (3 - 4 S + S C) / (2 u^2)
    int_0^L d(s)^3 ds = L^7 dispersion_integral_3(u) = L^7 (15 - 22 S + 9 S C - 2 S C^2) / (6 u^3)

(S = sin_like(u), C = cos_like(u)), and divided differences (f(a) - f(b)) / (a - b) of
cos_like, sin_like, one_minus_cos and one_minus_sin, which couple the horizontal motion
(a = Kx L^2) to twice the vertical frequency (b = 4 Ky L^2).

All of them are power series in u with infinite radius. Near u = 0 the closed forms lose
digits (or divide by zero), so small |u| (< 1, or < 2 for the second-order family) uses the
Taylor series, elsewhere the closed form; the unused branch is fed a safe argument, so values
and all derivatives stay finite and exact to rounding on both sides (the "double where"
idiom).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

_SERIES_RADIUS = 1.0
_N_TERMS = 14  # the first omitted term is below u^14 / 28! ~ 3e-30 for |u| < 1


def _coefficients(offset: int) -> tuple[float, ...]:
    """Taylor coefficients (-1)^n / (2n + offset)! for n = 0 .. _N_TERMS - 1."""
    return tuple((-1.0) ** n / math.factorial(2 * n + offset) for n in range(_N_TERMS))


def _horner(coefficients: Sequence[float], u: Array) -> Array:
    result = jnp.zeros_like(u) + coefficients[-1]
    for c in reversed(coefficients[:-1]):
        result = result * u + c
    return result


def _series_or_closed(
    u: ArrayLike, coefficients: Sequence[float], closed: Callable[[Array, Array, Array], Array]
) -> Array:
    """Evaluate a function given by its Taylor series near 0 and ``closed(u, w, positive)`` else."""
    u = jnp.asarray(u, dtype=float)
    small = jnp.abs(u) < _SERIES_RADIUS
    u_series = jnp.where(small, u, 0.0)
    u_closed = jnp.where(small, 2.0 * _SERIES_RADIUS, u)
    w = jnp.sqrt(jnp.abs(u_closed))
    positive = u_closed > 0.0
    return jnp.where(small, _horner(coefficients, u_series), closed(u_closed, w, positive))


def _trig(w: Array, positive: Array) -> tuple[Array, Array]:
    """(cos_like, sin_like) from w = sqrt(|u|) > 0 and the sign of u."""
    return (
        jnp.where(positive, jnp.cos(w), jnp.cosh(w)),
        jnp.where(positive, jnp.sin(w), jnp.sinh(w)) / w,
    )


def cos_like(u: ArrayLike) -> Array:
    """cos(sqrt(u)) continued to cosh(sqrt(-u)) for u < 0."""
    return _series_or_closed(u, _coefficients(0), lambda u, w, pos: _trig(w, pos)[0])


def sin_like(u: ArrayLike) -> Array:
    """sin(sqrt(u)) / sqrt(u) continued to sinh(sqrt(-u)) / sqrt(-u); 1 at u = 0."""
    return _series_or_closed(
        u, _coefficients(1), lambda u, w, pos: jnp.where(pos, jnp.sin(w), jnp.sinh(w)) / w
    )


def one_minus_cos(u: ArrayLike) -> Array:
    """(1 - cos_like(u)) / u; 1/2 at u = 0."""
    return _series_or_closed(u, _coefficients(2), lambda u, w, pos: (1.0 - cos_like(u)) / u)


def one_minus_sin(u: ArrayLike) -> Array:
    """(1 - sin_like(u)) / u; 1/6 at u = 0."""
    return _series_or_closed(u, _coefficients(3), lambda u, w, pos: (1.0 - sin_like(u)) / u)


# --- The family used by second-order maps -----------------------------------------------------
#
# Second-order maps need many of these functions at once, at the same few arguments, and
# under automatic differentiation; evaluating them together shares the branch masks and the
# trigonometry, which keeps the traced program (and its compile time) small. Everything is a
# power series in u, and the closed forms are only used for |u| >= 2, where the worst of
# them (dispersion_integral_3, cancelling ~ u^3 / 9 out of 15) loses under 2 decimal digits.
#
# With S(u) = sum_n s_n u^n, s_n = (-1)^n / (2n + 1)!, the identities sin_like(u) cos_like(u)
# = sin_like(4u) and sin_like(u) cos_like(u)^2 = (sin_like(u) + 3 sin_like(9u)) / 4 turn the
# numerators of the dispersion integrals into 3 - 4 S(u) + S(4u) and
# 15 - 22.5 S(u) + 9 S(4u) - 1.5 S(9u), whose first two (three) Taylor coefficients vanish;
# dividing by u^2 (u^3) shifts the rest down.

_FAMILY_RADIUS = 2.0
_FAMILY_TERMS = 16  # the largest first omitted term, dispersion_integral_3's, is ~ 1e-24


def _exact_coefficient(n: int, offset: int) -> Fraction:
    """(-1)^n / (2n + offset)!, the coefficient of u^n in cos_like (0), sin_like (1), ..."""
    return Fraction((-1) ** n, math.factorial(2 * n + offset))


def _series(coefficient: Callable[[int], Fraction]) -> tuple[float, ...]:
    return tuple(float(coefficient(n)) for n in range(_FAMILY_TERMS))


def _integral_3_numerator(n: int) -> Fraction:
    return (Fraction(-45, 2) + 9 * 4**n - Fraction(3, 2) * 9**n) * _exact_coefficient(n, 1)


assert _integral_3_numerator(0) + 15 == 0 == _integral_3_numerator(1) == _integral_3_numerator(2)

_FAMILY_SERIES = {
    "cos_like": _series(lambda n: _exact_coefficient(n, 0)),
    "sin_like": _series(lambda n: _exact_coefficient(n, 1)),
    "one_minus_cos": _series(lambda n: _exact_coefficient(n, 2)),
    "one_minus_sin": _series(lambda n: _exact_coefficient(n, 3)),
    "dispersion_integral_2": _series(
        lambda n: (4 ** (n + 2) - 4) * _exact_coefficient(n + 2, 1) / 2
    ),
    "dispersion_integral_3": _series(lambda n: _integral_3_numerator(n + 3) / 6),
    "sin_like_prime": _series(lambda n: (n + 1) * _exact_coefficient(n + 1, 1)),
    "one_minus_cos_prime": _series(lambda n: (n + 1) * _exact_coefficient(n + 1, 2)),
    "one_minus_sin_prime": _series(lambda n: (n + 1) * _exact_coefficient(n + 1, 3)),
}


def _family_closed(name: str, u: Array, c: Array, s: Array) -> Array:
    """The closed form of ``name`` at u (|u| >= 2), given c = cos_like(u), s = sin_like(u)."""
    if name == "cos_like":
        return c
    if name == "sin_like":
        return s
    if name == "one_minus_cos":
        return (1.0 - c) / u
    if name == "one_minus_sin":
        return (1.0 - s) / u
    if name == "dispersion_integral_2":
        return (3.0 - 4.0 * s + s * c) / (2.0 * u**2)
    if name == "dispersion_integral_3":
        return (15.0 - s * (22.0 - 9.0 * c + 2.0 * c**2)) / (6.0 * u**3)
    if name == "sin_like_prime":
        return (c - s) / (2.0 * u)
    if name == "one_minus_cos_prime":
        return (0.5 * s - (1.0 - c) / u) / u
    if name == "one_minus_sin_prime":
        return -((1.0 - s) / u + (c - s) / (2.0 * u)) / u
    raise ValueError(f"unknown function {name!r}")


def family(u: ArrayLike, names: Sequence[str]) -> tuple[Array, ...]:
    """Several functions of the family at the same arguments ``u``, in the order of ``names``.

    Names: cos_like, sin_like, one_minus_cos, one_minus_sin, dispersion_integral_2,
    dispersion_integral_3, sin_like_prime, one_minus_cos_prime, one_minus_sin_prime.
    """
    u = jnp.asarray(u, dtype=float)
    small = jnp.abs(u) < _FAMILY_RADIUS
    u_series = jnp.where(small, u, 0.0)
    u_closed = jnp.where(small, 2.0 * _FAMILY_RADIUS, u)
    w = jnp.sqrt(jnp.abs(u_closed))
    c, s = _trig(w, u_closed > 0.0)
    # All the series at once: powers u^n, then one contraction with the coefficient table.
    powers = [jnp.ones_like(u_series)]
    for _ in range(_FAMILY_TERMS - 1):
        powers.append(powers[-1] * u_series)
    table = jnp.asarray([_FAMILY_SERIES[name] for name in names])  # (names, terms)
    series = jnp.einsum("...n,fn->f...", jnp.stack(powers, axis=-1), table)
    return tuple(
        jnp.where(small, series[i], _family_closed(name, u_closed, c, s))
        for i, name in enumerate(names)
    )


def family_at_zero(names: Sequence[str]) -> tuple[float, ...]:
    """``family(0.0, names)`` as Python floats: the series' constant terms."""
    return tuple(_FAMILY_SERIES[name][0] for name in names)


def dispersion_integral_2(u: ArrayLike) -> Array:
    """(3 - 4 S + S C) / (2 u^2) with S, C = sin_like(u), cos_like(u); 1/20 at u = 0.

    L^5 times this is the integral of d(s)^2 over 0 < s < L, d(s) = (1 - cos_like(K s^2)) / K
    (MAD8's ``gx`` in TMSECT).
    """
    return family(u, ("dispersion_integral_2",))[0]


def dispersion_integral_3(u: ArrayLike) -> Array:
    """(15 - 22 S + 9 S C - 2 S C^2) / (6 u^3); 1/56 at u = 0.

    L^7 times this is the integral of d(s)^3 over 0 < s < L (MAD8's ``hx`` in TMSECT).
    """
    return family(u, ("dispersion_integral_3",))[0]


def sin_like_prime(u: ArrayLike) -> Array:
    """d sin_like / du = (cos_like - sin_like) / (2u); -1/6 at u = 0."""
    return family(u, ("sin_like_prime",))[0]


def one_minus_cos_prime(u: ArrayLike) -> Array:
    """d one_minus_cos / du = (sin_like / 2 - one_minus_cos) / u; -1/24 at u = 0."""
    return family(u, ("one_minus_cos_prime",))[0]


def one_minus_sin_prime(u: ArrayLike) -> Array:
    """d one_minus_sin / du = -(one_minus_sin + sin_like') / u; -1/120 at u = 0."""
    return family(u, ("one_minus_sin_prime",))[0]


# --- Divided differences -----------------------------------------------------------------------
#
# (f(a) - f(b)) / (a - b) is evaluated directly only when a and b are well apart. Otherwise it
# is the mean of f' over [b, a], integrated by six-node Gauss-Legendre quadrature on the
# (smooth, exact) derivative above. The functions vary on the scale max(1, sqrt|u|) in u (an
# oscillation, or growth like e^sqrt|u|), and the rule's error grows like (|a - b| / scale)^12:
# against 60-digit references it is below 2e-15 (relative to |f'|) up to |a - b| = 2 scale,
# where the direct quotient has come down to < 7e-15, so that is where the two meet.

_NEAR = 2.0
_NODES, _WEIGHTS = (
    tuple(float(x) for x in values) for values in np.polynomial.legendre.leggauss(6)
)
_GAUSS_NODES = tuple((1.0 + x) / 2.0 for x in _NODES)  # on [0, 1]
_GAUSS_WEIGHTS = tuple(w / 2.0 for w in _WEIGHTS)
_DD_FUNCTIONS = ("cos_like", "sin_like", "one_minus_cos", "one_minus_sin")
_DD_DERIVATIVES = ("sin_like_prime", "one_minus_cos_prime", "one_minus_sin_prime")


def divided_differences(a: ArrayLike, b: ArrayLike) -> tuple[Array, Array, Array, Array]:
    """(f(a) - f(b)) / (a - b) for f = cos_like, sin_like, one_minus_cos, one_minus_sin.

    At a = b each is the derivative f'(a); smooth in a and b everywhere.
    """
    a, b = jnp.broadcast_arrays(jnp.asarray(a, dtype=float), jnp.asarray(b, dtype=float))
    scale = jnp.sqrt(jnp.maximum(1.0, jnp.maximum(jnp.abs(a), jnp.abs(b))))
    near = jnp.abs(a - b) <= _NEAR * scale
    step = jnp.where(near, a - b, 0.0)
    a_far = jnp.where(near, b + 2.0 * _NEAR * scale, a)
    # One evaluation of the family at all points, along a new last axis: the two ends of
    # the direct quotient, then the quadrature nodes.
    nodes = jnp.asarray(_GAUSS_NODES).reshape((1,) * a.ndim + (-1,))
    points = jnp.concatenate(
        [a_far[..., None], b[..., None], b[..., None] + nodes * step[..., None]], axis=-1
    )
    values = family(points, _DD_FUNCTIONS + _DD_DERIVATIVES)
    f = dict(zip(_DD_FUNCTIONS, values[:4], strict=True))
    derivatives = (-0.5 * f["sin_like"], *values[4:])
    weights = jnp.asarray(_GAUSS_WEIGHTS).reshape((1,) * a.ndim + (-1,))
    results = []
    for name, derivative in zip(_DD_FUNCTIONS, derivatives, strict=True):
        quotient = (f[name][..., 0] - f[name][..., 1]) / (a_far - b)
        mean = jnp.sum(weights * derivative[..., 2:], axis=-1)
        results.append(jnp.where(near, mean, quotient))
    return tuple(results)


def divided_differences_at_zero() -> tuple[float, float, float, float]:
    """``divided_differences(0.0, 0.0)`` as Python floats: the functions' slopes at 0."""
    return tuple(_FAMILY_SERIES[name][1] for name in _DD_FUNCTIONS)


def cos_like_dd(a: ArrayLike, b: ArrayLike) -> Array:
    """(cos_like(a) - cos_like(b)) / (a - b); cos_like'(a) = -sin_like(a) / 2 at a = b."""
    return divided_differences(a, b)[0]


def sin_like_dd(a: ArrayLike, b: ArrayLike) -> Array:
    """(sin_like(a) - sin_like(b)) / (a - b); sin_like'(a) at a = b."""
    return divided_differences(a, b)[1]


def one_minus_cos_dd(a: ArrayLike, b: ArrayLike) -> Array:
    """(one_minus_cos(a) - one_minus_cos(b)) / (a - b); one_minus_cos'(a) at a = b."""
    return divided_differences(a, b)[2]


def one_minus_sin_dd(a: ArrayLike, b: ArrayLike) -> Array:
    """(one_minus_sin(a) - one_minus_sin(b)) / (a - b); one_minus_sin'(a) at a = b."""
    return divided_differences(a, b)[3]
