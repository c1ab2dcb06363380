"""First-order maps of the element bodies, frames and edges (pure functions of numbers).

Coordinates are Cheetah's: (x, px, y, py, tau, p, 1) with px, py the transverse momenta
over the reference momentum, tau the longitudinal position relative to the reference
particle (m) and p = dE / (p0 c). Energies are total energies in eV.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from diffdesign.beamline import _affine
from diffdesign.beamline._affine import Map
from diffdesign.beamline._special import cos_like, one_minus_cos, one_minus_sin, sin_like


def relativistic_factors(energy: ArrayLike, mass_eV: float) -> tuple[Array, Array, Array]:
    """(gamma, 1/gamma^2, beta) of the reference particle with total ``energy`` (eV)."""
    gamma = jnp.asarray(energy) / mass_eV
    igamma2 = 1.0 / gamma**2
    return gamma, igamma2, jnp.sqrt(1.0 - igamma2)


def drift(length: Array, energy: ArrayLike, mass_eV: float) -> Map:
    """Field-free drift of ``length`` (m)."""
    _, igamma2, beta = relativistic_factors(energy, mass_eV)
    return _affine.from_entries(
        {(0, 1): length, (2, 3): length, (4, 5): -length * igamma2 / beta**2}
    )


def steerer(
    length: Array, horizontal: Array | float, vertical: Array | float, energy, mass_eV: float
) -> Map:
    """A drift of ``length`` (m) followed by kicks of ``horizontal`` and ``vertical`` (rad).

    A kick given as the Python float 0.0 stays out of the map (see ``_affine``).
    """
    kick = _affine.from_entries({(1, 6): horizontal, (3, 6): vertical})
    return _affine.compose(kick, drift(length, energy, mass_eV))


def body(length: Array, k1: Array, hx: Array | float, energy: ArrayLike, mass_eV: float) -> Map:
    """Sector magnet body: quadrupole strength ``k1`` (1/m^2), curvature ``hx`` (1/m).

    ``hx`` may be the Python float 0.0 for a straight magnet, which keeps the dispersive
    entries out of the map altogether.
    """
    _, igamma2, beta = relativistic_factors(energy, mass_eV)
    kx2 = k1 + hx**2
    ky2 = -k1
    ux, uy = kx2 * length**2, ky2 * length**2
    cx, sx = cos_like(ux), length * sin_like(ux)
    cy, sy = cos_like(uy), length * sin_like(uy)
    entries = {
        (0, 0): cx,
        (0, 1): sx,
        (1, 0): -kx2 * sx,
        (1, 1): cx,
        (2, 2): cy,
        (2, 3): sy,
        (3, 2): -ky2 * sy,
        (3, 3): cy,
        (4, 5): -length * igamma2 / beta**2,
    }
    if not (isinstance(hx, float) and hx == 0.0):
        dx = hx * length**2 * one_minus_cos(ux)
        entries |= {
            (0, 5): dx / beta,
            (1, 5): sx * hx / beta,
            (4, 0): sx * hx / beta,
            (4, 1): dx / beta,
            (4, 5): hx**2 * length**3 * one_minus_sin(ux) / beta**2 - length * igamma2 / beta**2,
        }
    return _affine.from_entries(entries)


def solenoid(length: Array, k: Array, energy: ArrayLike, mass_eV: float) -> Map:
    """Solenoid body of ``length`` (m) and strength ``k`` = B_s / (2 B rho) (1/m).

    The transverse motion rotates by kL while it focuses in both planes; k = 0 is a drift.
    """
    _, igamma2, beta = relativistic_factors(energy, mass_eV)
    c, s = jnp.cos(k * length), jnp.sin(k * length)
    s_over_k = length * sin_like((k * length) ** 2)  # sin(kL) / k, smooth through k = 0
    return _affine.from_entries(
        {
            (0, 0): c**2, (0, 1): c * s_over_k, (0, 2): s * c, (0, 3): s * s_over_k,
            (1, 0): -k * s * c, (1, 1): c**2, (1, 2): -k * s**2, (1, 3): s * c,
            (2, 0): -s * c, (2, 1): -s * s_over_k, (2, 2): c**2, (2, 3): c * s_over_k,
            (3, 0): k * s**2, (3, 1): -s * c, (3, 2): -k * s * c, (3, 3): c**2,
            (4, 5): -length * igamma2 / beta**2,
        }
    )  # fmt: skip


def undulator(
    length: Array, period: Array, kx: Array, ky: Array, energy: ArrayLike, mass_eV: float
) -> Map:
    """Planar undulator body (Cheetah's): natural focusing sqrt2 pi K / (period gamma beta)
    (1/m) from each deflection parameter in the other plane (``kx`` focuses y, ``ky`` x),
    and the slower longitudinal slip of the wiggling orbit, r56 = -L / gamma^2 (1 / beta^2 +
    (kx^2 + ky^2) / 2)."""
    gamma, igamma2, beta = relativistic_factors(energy, mass_eV)
    frequency = math.sqrt(2.0) * math.pi / (period * gamma * beta)  # per unit K, 1/m
    entries = {(4, 5): -length * igamma2 * (1.0 / beta**2 + 0.5 * (kx**2 + ky**2))}
    for plane, k in ((0, ky), (2, kx)):
        omega2 = (frequency * k) ** 2
        u = omega2 * length**2
        c, s = cos_like(u), length * sin_like(u)  # cos(wL), sin(wL) / w
        entries |= {(plane, plane): c, (plane, plane + 1): s, (plane + 1, plane): -omega2 * s,
                    (plane + 1, plane + 1): c}  # fmt: skip
    return _affine.from_entries(entries)


def rotation(tilt: Array) -> Map:
    """Rotation of the transverse frame by ``tilt`` (rad) about the reference orbit."""
    c, s = jnp.cos(tilt), jnp.sin(tilt)
    return _affine.from_entries(
        {
            (0, 0): c,
            (0, 2): s,
            (1, 1): c,
            (1, 3): s,
            (2, 0): -s,
            (2, 2): c,
            (3, 1): -s,
            (3, 3): c,
        }
    )


def shift(offset: Array) -> Map:
    """Translation of the transverse position by ``offset`` = (dx, dy) (m)."""
    return _affine.from_entries({(0, 6): offset[..., 0], (2, 6): offset[..., 1]})


def magnet_frames(misalignment: Array, tilt: Array | None) -> tuple[Map, Map]:
    """Entry and exit frames of a magnet displaced by ``misalignment`` and rolled by ``tilt``.

    The magnet is displaced by ``misalignment`` = (dx, dy) (m) and rolled by ``tilt``
    (rad, or None for no roll): coordinates enter its frame by subtracting the
    displacement, then rotating, and leave by rotating back and adding it again.
    """
    entry = shift(-misalignment)
    leave = shift(misalignment)
    if tilt is not None:
        roll = rotation(tilt)
        entry = _affine.compose(roll, entry)
        leave = _affine.compose(leave, _affine.transpose(roll))
    return entry, leave


def in_magnet_frame(body_map: Map, misalignment: Array, tilt: Array | None) -> Map:
    """A body map seen from outside a displaced, rolled magnet (see `magnet_frames`)."""
    entry, leave = magnet_frames(misalignment, tilt)
    return _affine.compose_all([entry, body_map, leave])


def dipole_edge(hx: Array, edge_angle: Array, fringe_phase: Array) -> Map:
    """Thin edge focusing of a pole face rotated by ``edge_angle`` (rad)."""
    return _affine.from_entries(
        {(1, 0): hx * jnp.tan(edge_angle), (3, 2): -hx * jnp.tan(edge_angle - fringe_phase)}
    )


def fringe_phase(hx: Array, edge_angle: Array, gap: Array, fringe_integral: Array) -> Array:
    """The vertical edge-focusing correction of a finite fringe field (MAD's psi)."""
    return fringe_integral * hx * gap / jnp.cos(edge_angle) * (1.0 + jnp.sin(edge_angle) ** 2)
