"""A transverse deflecting cavity tracked drift-kick-drift (Bmad's model, as Cheetah 0.8.4).

The cavity kicks px by ``-q V / P0 sin(2 pi (phase - t f))`` at its centre, t being the
particle's arrival time relative to the reference's, and changes its energy by the
Panofsky-Wenzel companion ``-q V k x cos(...)`` (k = 2 pi f / c); exact (nonlinear) drifts
of half the length come before and after. Positions are taken in the cavity's frame
(displaced by ``misalignment``, rolled by ``tilt``: pi/2 deflects vertically). Internally
the longitudinal coordinates are Bmad's (z = -beta tau, pz = P / P0 - 1); in and out they
are Cheetah's (tau, p = dE / P0 c). All functions act on arrays that broadcast.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jaxtyping import Array
from scipy.constants import speed_of_light


def _sqrt_one(x: Array) -> Array:
    """sqrt(1 + x) - 1 without cancellation for small x."""
    return x / (jnp.sqrt(1.0 + x) + 1.0)


def _exact_drift(length, x, px, y, py, z, pz, p0c, mass_eV):
    """Bmad's exact drift of ``length`` (m) in its coordinates."""
    momentum = 1.0 + pz
    px_, py_ = px / momentum, py / momentum
    transverse2 = px_**2 + py_**2
    longitudinal = jnp.sqrt(1.0 - transverse2)
    dz = length * (
        _sqrt_one(mass_eV**2 * (2.0 * pz + pz**2) / ((p0c * momentum) ** 2 + mass_eV**2))
        + _sqrt_one(-transverse2) / longitudinal
    )
    return x + length * px_ / longitudinal, y + length * py_ / longitudinal, z + dz


def _velocity(pz, p0c, mass_eV):
    momentum = (1.0 + pz) * p0c
    return momentum / jnp.sqrt(momentum**2 + mass_eV**2)


def track(
    coordinates: tuple[Array, ...],
    *,
    length: Array,
    voltage: Array,
    phase: Array,
    frequency: Array,
    misalignment: tuple[Array, Array],
    tilt: Array,
    energy: Array,
    mass_eV: float,
    num_elementary_charges: float,
) -> tuple[Array, ...]:
    """(x, px, y, py, tau, p) after the cavity for (x, px, y, py, tau, p) before it.

    ``phase`` is in units of 2 pi (Cheetah's), ``voltage`` in V (positive deflects
    electrons towards +px at phase 1/4), ``misalignment`` the offsets (dx, dy) in m,
    ``energy`` the reference total energy in eV.
    """
    x, px, y, py, tau, p = coordinates
    p0c = jnp.sqrt(energy**2 - mass_eV**2)
    particle_energy = energy + p * p0c
    particle_momentum = jnp.sqrt(particle_energy**2 - mass_eV**2)
    z = -particle_momentum / particle_energy * tau
    pz = (particle_momentum - p0c) / p0c

    c, s = jnp.cos(tilt), jnp.sin(tilt)
    dx, dy = x - misalignment[0], y - misalignment[1]
    x, y = dx * c + dy * s, -dx * s + dy * c
    px, py = px * c + py * s, -px * s + py * c

    half = length / 2.0
    x, y, z = _exact_drift(half, x, px, y, py, z, pz, p0c, mass_eV)
    kick = -num_elementary_charges * voltage / p0c
    beta = _velocity(pz, p0c, mass_eV)
    rf_phase = 2.0 * math.pi * (phase + z / (beta * speed_of_light) * frequency)
    px = px + kick * jnp.sin(rf_phase)
    wave_number = 2.0 * math.pi * frequency / speed_of_light
    energy_in = (1.0 + pz) * p0c / beta
    energy_out = energy_in + kick * jnp.cos(rf_phase) * wave_number * x * p0c
    momentum_out = jnp.sqrt(energy_out**2 - mass_eV**2)
    pz = (momentum_out - p0c) / p0c
    z = z * (momentum_out / energy_out) / beta
    x, y, z = _exact_drift(half, x, px, y, py, z, pz, p0c, mass_eV)

    x, y = x * c - y * s + misalignment[0], x * s + y * c + misalignment[1]
    px, py = px * c - py * s, px * s + py * c

    momentum = (1.0 + pz) * p0c
    particle_energy = jnp.sqrt(momentum**2 + mass_eV**2)
    tau = -z * particle_energy / momentum
    # the reference energy as it follows from p0c (as Cheetah): p = 0 stays exactly 0
    p = (particle_energy - jnp.sqrt(p0c**2 + mass_eV**2)) / p0c
    return x, px, y, py, tau, p
