"""RF cavities: energy gain, the first-order maps of both cavity types, and the longitudinal
kick of the RF wave (pure functions of numbers; the elements live in ``elements``).

Coordinates are Cheetah's (x, px, y, py, tau, p, 1). A cavity of voltage ``V`` (V) and phase
``phi`` (degrees, 0 on crest) gives the reference particle of charge ``q e`` the energy
``dE = -q V cos(phi)`` (eV): positive voltage accelerates electrons, as in Cheetah.

Standing wave: Rosenzweig & Serafini, Phys. Rev. E 49, 1599 (1994), the transverse map of a
pi-mode standing-wave linac with its ponderomotive focusing, in terms of the phase-space
angle alpha = ln(E1 / E0) / (2 sqrt(2) cos phi). Travelling wave: a body of constant
gradient E' = dE / L (x' damped by E0 / E1) between the thin entrance and exit lenses
-E' / (2 E0) and +E' / (2 E1) of the fringe fields (Chambers' approximation).

Longitudinally both follow Cheetah 0.8.4: tau and p change by the first-order entries of
the map, and a particle's relative energy by the exact RF kick
``p1 = (p0 P0 + dE_eff (cos(phi - k beta0 tau) - cos(phi))) / P1`` with P = beta E, plus
Cheetah's second-order path-length terms T555, T556, T566 (tau += T566 p^2 + ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike
from scipy.constants import speed_of_light

from diffdesign.beamline import _affine
from diffdesign.beamline._affine import Map

_LOG_SERIES_RADIUS = 1e-2
_LOG_SERIES_TERMS = 9  # first omitted term 1e-18 / 10 inside the radius


def log1p_over_x(x: ArrayLike) -> Array:
    """log(1 + x) / x, 1 at x = 0, smooth there (series near 0, closed form elsewhere)."""
    x = jnp.asarray(x, dtype=float)
    small = jnp.abs(x) < _LOG_SERIES_RADIUS
    x_series = jnp.where(small, x, 0.0)
    x_closed = jnp.where(small, 1.0, x)
    series = jnp.zeros_like(x_series)
    for n in reversed(range(_LOG_SERIES_TERMS)):  # sum (-x)^n / (n + 1)
        series = series * -x_series + 1.0 / (n + 1)
    return jnp.where(small, series, jnp.log1p(x_closed) / x_closed)


class RF(NamedTuple):
    """The reference particle through a cavity: what every map entry is built from."""

    length: Array  # m
    phi: Array  # rad
    k: Array  # RF wave number 2 pi f / c, 1/m
    voltage_eff: Array  # -q V: energy gain on crest, eV
    delta_energy: Array  # eV
    energy0: Array  # eV, total, entering
    energy1: Array  # eV, total, leaving
    gamma0: Array
    gamma1: Array
    beta0: Array
    beta1: Array


def reference(
    length: Array,
    voltage: Array,
    phase: Array,
    frequency: Array,
    energy: ArrayLike,
    mass_eV: float,
    num_elementary_charges: float,
    check_outgoing: Callable[[Array], Array] = lambda energy1: energy1,
) -> RF:
    """The reference particle's energies and velocities before and after the cavity;
    ``check_outgoing`` may refuse an outgoing energy (it returns it, or raises)."""
    phi = jnp.deg2rad(phase)
    voltage_eff = -num_elementary_charges * voltage
    delta_energy = voltage_eff * jnp.cos(phi)
    energy0 = jnp.asarray(energy, dtype=float)
    energy1 = check_outgoing(energy0 + delta_energy)
    gamma0, gamma1 = energy0 / mass_eV, energy1 / mass_eV
    return RF(
        length=length,
        phi=phi,
        k=2.0 * math.pi * frequency / speed_of_light,
        voltage_eff=voltage_eff,
        delta_energy=delta_energy,
        energy0=energy0,
        energy1=energy1,
        gamma0=gamma0,
        gamma1=gamma1,
        beta0=jnp.sqrt(1.0 - 1.0 / gamma0**2),
        beta1=jnp.sqrt(1.0 - 1.0 / gamma1**2),
    )


def _map(transverse: tuple[Array, Array, Array, Array], longitudinal) -> Map:
    r11, r12, r21, r22 = transverse
    r55, r56, r65, r66 = longitudinal
    return _affine.from_entries(
        {
            (0, 0): r11, (0, 1): r12, (1, 0): r21, (1, 1): r22,
            (2, 2): r11, (2, 3): r12, (3, 2): r21, (3, 3): r22,
            (4, 4): r55, (4, 5): r56, (5, 4): r65, (5, 5): r66,
        }
    )  # fmt: skip


def _slip_factor(g0: Array, g1: Array, bg0: Array, bg1: Array) -> Array:
    """(1 - gamma0 gamma1 (1 - beta0 beta1)) / (beta1 gamma1 (gamma1 - gamma0)), the factor
    of r55, 0 at gamma1 = gamma0.

    The numerator vanishes to second order in gamma1 - gamma0, so evaluated as written it
    loses ~ gamma^2 / (gamma1 - gamma0)^2 of float64's digits (Cheetah 0.8.4 does: 3% off at
    gamma = 5000 with gamma1 - gamma0 = 1); with bg = beta gamma the identity
    bg0 g0 - bg1 g1 = (g0^2 - g1^2)(g0^2 + g1^2 - 1) / (bg0 g0 + bg1 g1) removes the
    cancellation and the division by gamma1 - gamma0 alike.
    """
    return -(
        (g1 - g0) * (g0 + g1) * (g0**2 + g1**2 - 1.0)
        / ((bg0 * g0 + bg1 * g1) * (bg0 + bg1) * (g0 * g1 + bg0 * bg1) * bg1)
    )  # fmt: skip


def standing_wave_map(rf: RF) -> Map:
    """First-order map of a standing-wave cavity (Rosenzweig-Serafini, as Cheetah)."""
    length, phi, g0, g1, b0, b1 = rf.length, rf.phi, rf.gamma0, rf.gamma1, rf.beta0, rf.beta1
    cos_phi = jnp.cos(phi)
    log_ratio = log1p_over_x(rf.delta_energy / rf.energy0)  # ln(E1/E0) / (dE/E0)
    # alpha = ln(E1/E0) / (2 sqrt2 cos phi), written so that cos phi = 0 stays finite
    alpha = rf.voltage_eff / (math.sqrt(8.0) * rf.energy0) * log_ratio
    sin_alpha, cos_alpha = jnp.sin(alpha), jnp.cos(alpha)
    transverse = (
        cos_alpha - math.sqrt(2.0) * cos_phi * sin_alpha,
        jnp.sinc(alpha / math.pi) * log_ratio * length,
        -rf.voltage_eff / (rf.energy1 * math.sqrt(2.0) * length) * (0.5 + cos_phi**2) * sin_alpha,
        g0 / g1 * (cos_alpha + math.sqrt(2.0) * cos_phi * sin_alpha),
    )
    r55 = 1.0 + rf.k * length * b0 * jnp.tan(phi) * _slip_factor(g0, g1, b0 * g0, b1 * g1)
    longitudinal = (
        r55,
        -length / (g1**2 * g0 * b1) * (g1 + g0) / (b1 + b0),
        rf.k * jnp.sin(phi) * rf.voltage_eff / (b1 * rf.energy1),
        g0 / g1 * b0 / b1,
    )
    return _map(transverse, longitudinal)


def traveling_wave_map(rf: RF) -> Map:
    """First-order map of a travelling-wave cavity: fringe lens, body, fringe lens."""
    length, g0, g1 = rf.length, rf.gamma0, rf.gamma1
    gradient = (g1 - g0) / length  # d gamma / ds
    entrance = -gradient / (2.0 * g0)
    exit_ = gradient / (2.0 * g1)
    body12 = length * log1p_over_x((g1 - g0) / g0)  # integral of gamma0 / gamma(s) ds
    body22 = g0 / g1
    # [[1, 0], [exit_, 1]] @ [[1, body12], [0, body22]] @ [[1, 0], [entrance, 1]]
    r11 = 1.0 + body12 * entrance
    r12 = body12
    r21 = exit_ * r11 + body22 * entrance
    r22 = exit_ * body12 + body22
    longitudinal = (1.0, 0.0, rf.k * jnp.sin(rf.phi) * rf.voltage_eff / rf.energy1, r22)
    return _map((r11, r12, r21, r22), longitudinal)


def path_length_terms(rf: RF) -> tuple[Array, Array, Array]:
    """Cheetah's second-order terms (T555, T556, T566) of tau (m^-1, 1, m).

    Accelerating (dE > 0): Cheetah's expressions; decelerating: T566 = 3 L / (2 gamma0^2
    beta0^3), the others 0; an unpowered cavity (V = 0) is a drift, as Cheetah's segments
    skip it: all three 0.
    """
    length, k, b0, g0 = rf.length, rf.k, rf.beta0, rf.gamma0
    accelerating = rf.delta_energy > 0.0
    # the accelerating branch divides by gamma0 - gamma1; feed it a safe gamma1 elsewhere
    g1 = jnp.where(accelerating, rf.gamma1, g0 + 1.0)
    b1 = jnp.sqrt(1.0 - 1.0 / g1**2)
    d_gamma_crest = rf.voltage_eff / (rf.energy0 / g0)  # V_eff / m c^2
    sin_phi, cos_phi = jnp.sin(rf.phi), jnp.cos(rf.phi)
    bg0, bg1 = b0 * g0, b1 * g1
    t566_up = length * (bg0**3 - bg1**3) / (2.0 * b0 * b1**3 * g0 * (g0 - g1) * g1**3)
    t556_up = (
        b0 * k * length * d_gamma_crest * g0 * (bg1**3 + b0 * (g0 - g1**3)) * sin_phi
        / (bg1**3 * (g0 - g1) ** 2)
    )  # fmt: skip
    t555_up = (
        b0**2 * k**2 * length * d_gamma_crest / 2.0
        * (
            d_gamma_crest
            * (2.0 * g0 * g1**3 * (b0 * b1**3 - 1.0) + g0**2 + 3.0 * g1**2 - 2.0)
            / (bg1**3 * (g0 - g1) ** 3) * sin_phi**2
            - (g1 * g0 * (b1 * b0 - 1.0) + 1.0) / (bg1 * (g0 - g1) ** 2) * cos_phi
        )
    )  # fmt: skip
    powered = rf.voltage_eff != 0.0
    t566_down = jnp.where(powered, 1.5 * length / (g0**2 * b0**3), 0.0)
    return (
        jnp.where(accelerating, t555_up, 0.0),
        jnp.where(accelerating, t556_up, 0.0),
        jnp.where(accelerating, t566_up, t566_down),
    )


def longitudinal_kick(rf: RF, r55: Array, r56: Array, tau: Array, p: Array) -> tuple[Array, Array]:
    """(tau, p) after the cavity for (tau, p) before it (shapes broadcast with ``rf``'s).

    p follows the exact RF energy kick (a particle at tau sees the phase phi - k beta0 tau),
    tau its first-order entries plus :func:`path_length_terms`.
    """
    t555, t556, t566 = path_length_terms(rf)
    momentum_ratio = rf.energy0 * rf.beta0 / (rf.energy1 * rf.beta1)  # P0 / P1
    p_out = momentum_ratio * p + rf.voltage_eff * rf.beta0 / (rf.energy1 * rf.beta1) * (
        jnp.cos(rf.phi - tau * rf.beta0 * rf.k) - jnp.cos(rf.phi)
    )
    tau_out = r55 * tau + r56 * p + t566 * p**2 + t556 * tau * p + t555 * tau**2
    return tau_out, p_out
