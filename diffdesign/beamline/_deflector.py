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

from diffdesign.beamline import _bmad


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
    z, pz, p0c = _bmad.from_cheetah(tau, p, energy, mass_eV)
    x, px, y, py = _bmad.into_frame(x, px, y, py, misalignment[0], misalignment[1], tilt)

    half = length / 2.0
    x, y, z = _bmad.exact_drift(half, x, px, y, py, z, pz, p0c, mass_eV)
    kick = -num_elementary_charges * voltage / p0c
    beta = _bmad.velocity(pz, p0c, mass_eV)
    rf_phase = 2.0 * math.pi * (phase + z / (beta * speed_of_light) * frequency)
    px = px + kick * jnp.sin(rf_phase)
    wave_number = 2.0 * math.pi * frequency / speed_of_light
    energy_in = (1.0 + pz) * p0c / beta
    energy_out = energy_in + kick * jnp.cos(rf_phase) * wave_number * x * p0c
    momentum_out = jnp.sqrt(energy_out**2 - mass_eV**2)
    pz = (momentum_out - p0c) / p0c
    z = z * (momentum_out / energy_out) / beta
    x, y, z = _bmad.exact_drift(half, x, px, y, py, z, pz, p0c, mass_eV)

    x, px, y, py = _bmad.out_of_frame(x, px, y, py, misalignment[0], misalignment[1], tilt)
    tau, p = _bmad.to_cheetah(z, pz, p0c, mass_eV)
    return x, px, y, py, tau, p
