"""Nonlinear ("drift-kick-drift", Bmad's) particle tracking through drifts, quadrupoles and
sector bends.

Internally the coordinates are Bmad's: x, px = Px / P0, y, py, z = -beta tau (the distance
ahead of the reference particle) and pz = P / P0 - 1; in and out they are Cheetah's
(x, px, y, py, tau, p = dE / P0 c). Every function acts on arrays that broadcast.

- The drift is exact: with ps = sqrt(1 - (px^2 + py^2) / (1 + pz)^2), x += L px / ((1 + pz)
  ps) and z += L (beta / beta0 - 1 / ps), written without cancellation (Bmad's drift).
- A quadrupole of ``num_steps`` steps transports each step with the 2x2 matrices of the
  particle's own strength k1 / (1 + pz), adds the path length of the oscillation to second
  order (z -= integral of x'^2 / 2 over the step, in closed form) and the velocity
  difference beta / beta0 - 1 over the step: its map depends nonlinearly on the energy and
  is symplectic, but not on the transverse amplitudes beyond the path length (Bmad's).
- A bend without gradient is exact: the body moves each particle on its helix from the
  entrance face to the exit face (closed forms in :func:`bend_body`), between Bmad's linear
  edges (:func:`edge_kick`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array


def sqrt_one(x: Array) -> Array:
    """sqrt(1 + x) - 1 without cancellation for small x."""
    return x / (jnp.sqrt(1.0 + x) + 1.0)


def exact_drift(length, x, px, y, py, z, pz, p0c, mass_eV):
    """x, y, z after Bmad's exact drift of ``length`` (m)."""
    momentum = 1.0 + pz
    px_, py_ = px / momentum, py / momentum
    transverse2 = px_**2 + py_**2
    longitudinal = jnp.sqrt(1.0 - transverse2)
    dz = length * (
        sqrt_one(mass_eV**2 * (2.0 * pz + pz**2) / ((p0c * momentum) ** 2 + mass_eV**2))
        + sqrt_one(-transverse2) / longitudinal
    )
    return x + length * px_ / longitudinal, y + length * py_ / longitudinal, z + dz


def velocity(pz: Array, p0c: Array, mass_eV: float) -> Array:
    """beta of a particle of relative momentum deviation ``pz``."""
    momentum = (1.0 + pz) * p0c
    return momentum / jnp.sqrt(momentum**2 + mass_eV**2)


def from_cheetah(tau: Array, p: Array, energy: Array, mass_eV: float):
    """(z, pz, p0c) from Cheetah's tau and p at reference total ``energy`` (eV).

    pz = (P - P0) / P0 = p (2 E0 + p P0 c) / (P + P0), without the cancellation of the
    difference for slow particles (a deuteron at 50 MeV/c would lose 3 digits)."""
    p0c = jnp.sqrt(energy**2 - mass_eV**2)
    particle_energy = energy + p * p0c
    particle_momentum = jnp.sqrt(particle_energy**2 - mass_eV**2)
    pz = p * (2.0 * energy + p * p0c) / (particle_momentum + p0c)
    return -particle_momentum / particle_energy * tau, pz, p0c


def to_cheetah(z: Array, pz: Array, p0c: Array, mass_eV: float):
    """(tau, p) from Bmad's z and pz; p = (E - E0) / P0 c = P0 c pz (2 + pz) / (E + E0),
    without cancellation (p = 0 stays exactly 0)."""
    momentum = (1.0 + pz) * p0c
    particle_energy = jnp.sqrt(momentum**2 + mass_eV**2)
    tau = -z * particle_energy / momentum
    energy0 = jnp.sqrt(p0c**2 + mass_eV**2)
    return tau, p0c * pz * (2.0 + pz) / (particle_energy + energy0)


def into_frame(x, px, y, py, dx, dy, tilt):
    """Transverse coordinates in the frame of an element displaced by (dx, dy), rolled by
    ``tilt`` (rad)."""
    c, s = jnp.cos(tilt), jnp.sin(tilt)
    x, y = x - dx, y - dy
    return x * c + y * s, px * c + py * s, -x * s + y * c, -px * s + py * c


def out_of_frame(x, px, y, py, dx, dy, tilt):
    """The inverse of :func:`into_frame`."""
    c, s = jnp.cos(tilt), jnp.sin(tilt)
    return x * c - y * s + dx, px * c - py * s, x * s + y * c + dy, px * s + py * c


def velocity_lag(length: Array, pz: Array, p0c: Array, mass_eV: float) -> Array:
    """length (beta / beta0 - 1): how far a particle of ``pz`` runs ahead of the reference
    over ``length`` of path, in a form without cancellation:
    beta / beta0 - 1 = m^2 pz (2 + pz) / (E (E0 (1 + pz) + E))."""
    energy0 = jnp.sqrt(p0c**2 + mass_eV**2)
    energy = jnp.sqrt(((1.0 + pz) * p0c) ** 2 + mass_eV**2)
    return length * mass_eV**2 * pz * (2.0 + pz) / (energy * (energy0 * (1.0 + pz) + energy))


def _plane(strength: Array, length: Array, momentum: Array, u: Array, pu: Array):
    """One plane of a quadrupole step (x'' = strength x, strength > 0 defocusing, already
    divided by 1 + pz): (u, pu) after it and the path-length change -integral(u'^2) / 2."""
    small = jnp.abs(strength) * length**2 < 1e-8  # phase < 1e-4: the series below
    root = jnp.sqrt(jnp.where(small, 1.0, jnp.abs(strength)))
    phase = root * length
    focusing = strength < 0.0
    cos_like = jnp.where(
        small, 1.0 + strength * length**2 / 2.0 + strength**2 * length**4 / 24.0,
        jnp.where(focusing, jnp.cos(phase), jnp.cosh(jnp.where(focusing, 0.0, phase))),
    )  # fmt: skip
    sin_like = jnp.where(
        small, length * (1.0 + strength * length**2 / 6.0 + strength**2 * length**4 / 120.0),
        jnp.where(focusing, jnp.sin(phase), jnp.sinh(jnp.where(focusing, 0.0, phase))) / root,
    )  # sin(sqrt(-K) L) / sqrt(-K), or its series; the unused sinh/cosh kept finite  # fmt: skip
    slope = pu / momentum  # u'
    u_out = cos_like * u + sin_like * slope
    pu_out = (strength * sin_like * u + cos_like * slope) * momentum
    # -1/2 integral of u'^2 with u' = K S u0 + C u0', using int C^2 = (L + C S) / 2,
    # int S^2 = (C S - L) / (2 K), int C S = S^2 / 2
    dz = (
        strength * (length - cos_like * sin_like) / 4.0 * u**2
        - strength * sin_like**2 / 2.0 * u * slope
        - (length + cos_like * sin_like) / 4.0 * slope**2
    )
    return u_out, pu_out, dz


def quadrupole(coordinates, *, length, k1, dx, dy, tilt, num_steps, energy, mass_eV):
    """Cheetah's (x, px, y, py, tau, p) after a quadrupole tracked in ``num_steps`` steps."""
    x, px, y, py, tau, p = coordinates
    z, pz, p0c = from_cheetah(tau, p, energy, mass_eV)
    x, px, y, py = into_frame(x, px, y, py, dx, dy, tilt)
    step = length / num_steps
    momentum = 1.0 + pz
    strength = k1 / momentum
    lag = velocity_lag(step, pz, p0c, mass_eV)

    def one_step(_, state):
        x, px, y, py, z = state
        x, px, dzx = _plane(-strength, step, momentum, x, px)
        y, py, dzy = _plane(strength, step, momentum, y, py)
        return x, px, y, py, z + dzx + dzy + lag

    x, px, y, py, z = jax.lax.fori_loop(0, num_steps, one_step, (x, px, y, py, z))
    x, px, y, py = out_of_frame(x, px, y, py, dx, dy, tilt)
    tau, p = to_cheetah(z, pz, p0c, mass_eV)
    return x, px, y, py, tau, p


def drift(coordinates, *, length, energy, mass_eV):
    """Cheetah's (x, px, y, py, tau, p) after Bmad's exact drift of ``length`` (m)."""
    x, px, y, py, tau, p = coordinates
    z, pz, p0c = from_cheetah(tau, p, energy, mass_eV)
    x, y, z = exact_drift(length, x, px, y, py, z, pz, p0c, mass_eV)
    tau, p = to_cheetah(z, pz, p0c, mass_eV)
    return x, px, y, py, tau, p


def _guarded(small: Array, series: Array, exact) -> Array:
    """``series`` where ``small``, else ``exact(...)`` evaluated on safe inputs only (so
    neither branch's gradient is NaN)."""
    return jnp.where(small, series, exact())


def sinc(t: Array) -> Array:
    """sin(t) / t, 1 at t = 0."""
    small = jnp.abs(t) < 1e-4
    safe = jnp.where(small, 1.0, t)
    return _guarded(small, 1.0 - t**2 / 6.0 + t**4 / 120.0, lambda: jnp.sin(safe) / safe)


def asinc(w: Array) -> Array:
    """asin(w) / w, 1 at w = 0."""
    small = jnp.abs(w) < 1e-4
    safe = jnp.where(small, 0.5, w)
    return _guarded(small, 1.0 + w**2 / 6.0 + 3.0 * w**4 / 40.0, lambda: jnp.arcsin(safe) / safe)


def bend_body(x, px, y, py, z, pz, *, length, angle, p0c, mass_eV):
    """Bmad's coordinates after the body of a sector bend without gradient, exactly: each
    particle moves on a helix whose projection on the bending plane is a circle of radius
    p_h / g (p_h = sqrt((1 + pz)^2 - py^2), g = angle / length), from the entrance face to
    the exit face (both radial).

    Where the exit face meets that circle gives the closed forms used here (derived for
    this module): px_out = px cos(theta) + (p_s - 1 - g x) sin(theta) with
    p_s = sqrt((1 + pz)^2 - px^2 - py^2); with a = asin(px_out / p_h) and
    b = asin(px / p_h) + theta, x_out = x cos(theta) - (1 - cos(theta)) / g
    + (1 + g x) (sin(theta) / g) tan((a + b) / 2), and the projected path
    sigma = p_h (b - a) / g = (1 + g x) (sin(theta) / g) asinc(w) / cos((a + b) / 2),
    w = (1 + g x) sin(theta) / (2 p_h cos((a + b) / 2)) — smooth as g -> 0 (a drift).
    Where |b| >= pi / 2 (bends past a right angle) the direct forms are used instead.
    y advances by py sigma / p_h; z by L (beta / beta0 - 1) + L - (1 + pz) sigma / p_h.
    """
    momentum = 1.0 + pz
    p_h = jnp.sqrt(momentum**2 - py**2)
    p_s = jnp.sqrt(p_h**2 - px**2)
    g = angle / length
    c, s = jnp.cos(angle), jnp.sin(angle)
    radial = 1.0 + g * x
    along = length * sinc(angle)  # sin(theta) / g
    px_out = px * c + (p_s - radial) * s
    p_s_out = jnp.sqrt(p_h**2 - px_out**2)
    sin_b, cos_b = (px * c + p_s * s) / p_h, (p_s * c - px * s) / p_h
    turned = jnp.abs(jnp.arctan2(sin_b, cos_b)) >= jnp.pi / 2  # |b| >= pi / 2

    # b below a right angle: half-angle forms without cancellation
    denominator = jnp.where(turned, 1.0, p_s_out / p_h + cos_b)
    tan_m = (px_out / p_h + sin_b) / denominator
    cos_m = 1.0 / jnp.sqrt(1.0 + tan_m**2)
    half_sin = 0.5 * length * sinc(angle / 2.0) ** 2 * angle  # (1 - cos(theta)) / g
    x_near = x * c - half_sin + radial * along * tan_m
    w = radial * along * g / (2.0 * p_h * cos_m)
    sigma_near = radial * along * asinc(jnp.where(turned, 0.0, w)) / cos_m
    # past a right angle (g is then far from 0)
    g_safe = jnp.where(turned, g, 1.0)
    x_far = x * c - half_sin + (p_s_out - p_h * cos_b) / g_safe
    angle_b = jnp.arctan2(sin_b, cos_b)
    sigma_far = p_h * (angle_b - jnp.arcsin(px_out / p_h)) / g_safe

    x_out = jnp.where(turned, x_far, x_near)
    sigma = jnp.where(turned, sigma_far, sigma_near)
    y_out = y + py * sigma / p_h
    path = sigma * momentum / p_h
    z_out = z + velocity_lag(length, pz, p0c, mass_eV) + (length - path)
    return x_out, px_out, y_out, py, z_out, pz


def edge_kick(x, px, y, py, *, curvature, face, fringe_phase):
    """Bmad's linear edge of a bend (the thin edge focusing of the first-order map, applied
    to canonical momenta, so the same for every energy): px += g tan(e) x,
    py -= g tan(e - psi) y."""
    return (
        px + curvature * jnp.tan(face) * x,
        py - curvature * jnp.tan(face - fringe_phase) * y,
    )


def bend(coordinates, *, length, angle, e1, e2, phase1, phase2, tilt, energy, mass_eV):
    """Cheetah's (x, px, y, py, tau, p) after a sector bend of ``angle`` tracked exactly,
    with linear edges of pole faces ``e1``, ``e2`` and fringe-field phases ``phase1``,
    ``phase2`` (MAD's psi), rolled by ``tilt``."""
    x, px, y, py, tau, p = coordinates
    z, pz, p0c = from_cheetah(tau, p, energy, mass_eV)
    zero = jnp.zeros_like(tilt)
    x, px, y, py = into_frame(x, px, y, py, zero, zero, tilt)
    g = angle / length
    px, py = edge_kick(x, px, y, py, curvature=g, face=e1, fringe_phase=phase1)
    x, px, y, py, z, pz = bend_body(
        x, px, y, py, z, pz, length=length, angle=angle, p0c=p0c, mass_eV=mass_eV
    )
    px, py = edge_kick(x, px, y, py, curvature=g, face=e2, fringe_phase=phase2)
    x, px, y, py = out_of_frame(x, px, y, py, zero, zero, tilt)
    tau, p = to_cheetah(z, pz, p0c, mass_eV)
    return x, px, y, py, tau, p
