"""Single-particle maps of ring elements: AT's pass methods and exact linear flows.

Every map takes one element's parameters (:class:`ElementParams` sliced to one element)
and a phase-space vector ``z = (x, px, y, py, delta, ct)`` in AT's coordinates (m, rad,
1, m; ``px = P_x / P_0``) and returns the vector at the element's exit. The maps are pure,
jittable and differentiable; the optics vmap them over the elements of a group and take
their Jacobians with ``jax.jacfwd``.

Two integrators for thick magnets:

* ``"at"`` reproduces AT's ``StrMPoleSymplectic4Pass`` / ``BndMPoleSymplectic4Pass``: the
  4th-order symplectic (Forest-Ruth / Yoshida) composition of AT's drift and thin kick,
  repeated ``NumIntSteps`` times. Its result depends on the number of steps (on the ESRF ring
  beta functions move by ~1e-5 between 20 and 200 steps); it is what pyAT computes.
* ``"exact"`` solves the element's linear Hamiltonian (drift, dipole curvature, quadrupole
  and skew-quadrupole gradient, dipole terms from correctors) in closed form with a matrix
  exponential, exactly for every momentum deviation; only the nonlinear multipoles (order >= 2)
  are split off as kicks with the same 4th-order composition. For linear lattices on the
  closed orbit this is the converged limit of AT's integrator.

Edge focusing, fringe fields, misalignments and corrector kicks are the same in both: they
are part of the element model, not of the integrator.

``BndMPoleSymplectic4E2Pass`` (X. Huang's bend, flagged by ``ElementParams.e2``) shares the
magnet map: its body is AT's integrator with the curvilinear "hx" drift and the kick's
curvature terms of the expanded vector potential (PolynomA ignored, as AT does), which
vanish for the other magnets, and its edges are second-order transport maps with pole-face
curvatures H1/H2 in place of the first-order edge and quadrupole fringe. The body's linear
part equals the plain bend's, so the ``"exact"`` integrator keeps its linear flow for it.
In a lattice without E2 bends ``ElementParams.e2`` is None and the maps leave these terms
out when they are traced (they would slow every magnet down).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

# 4th-order symplectic composition coefficients (Forest & Ruth 1990; AT's DRIFT1/KICK1...)
_CBRT2 = 2.0 ** (1.0 / 3.0)
_DRIFT1 = 1.0 / (2.0 * (2.0 - _CBRT2))
_DRIFT2 = (1.0 - _CBRT2) / (2.0 * (2.0 - _CBRT2))
_KICK1 = 1.0 / (2.0 - _CBRT2)
_KICK2 = -_CBRT2 / (2.0 - _CBRT2)

#: Gauss-Legendre nodes/weights on [0, 1] for the path-length integral of exact flows.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(10)
_GL_NODES = (_GL_NODES + 1.0) / 2.0
_GL_WEIGHTS = _GL_WEIGHTS / 2.0


class ElementParams(eqx.Module):
    """Numerical fields of elements, one row per element (AT names in brackets).

    Attributes:
        length: (n,) m [Length].
        polynom_a, polynom_b: (n, p) skew/normal multipole coefficients, 1/m^(i+1)
            [PolynomA, PolynomB], zero-padded to a common width p >= 2.
        bending_angle: (n,) rad [BendingAngle]; entrance_angle, exit_angle: (n,) rad.
        full_gap: (n,) m [FullGap]; fringe_int1, fringe_int2: (n,) [FringeInt1/2].
        fringe_bend_entrance, fringe_bend_exit: (n,) AT bend fringe method (0-3).
        fringe_quad_entrance, fringe_quad_exit: (n,) 1 for Lee-Whiting hard-edge quadrupole
            fringes, 0 for none.
        kick_angle: (n, 2) rad [KickAngle].
        t1, t2: (n, 6) entrance/exit translations [T1, T2].
        r1, r2: (n, 6, 6) entrance/exit rotations [R1, R2].
        m66: (n, 6, 6) matrix of M66 elements (identity elsewhere).
        h1, h2: (n,) entrance/exit pole-face curvature, 1/m [H1, H2] (E2 bends only).
        e2: (n,) 1 for ``BndMPoleSymplectic4E2Pass`` bends, 0 for the other magnets.
            h1, h2 and e2 are None in a lattice without E2 bends.
    """

    length: Array
    polynom_a: Array
    polynom_b: Array
    bending_angle: Array
    entrance_angle: Array
    exit_angle: Array
    full_gap: Array
    fringe_int1: Array
    fringe_int2: Array
    fringe_bend_entrance: Array
    fringe_bend_exit: Array
    fringe_quad_entrance: Array
    fringe_quad_exit: Array
    kick_angle: Array
    t1: Array
    t2: Array
    r1: Array
    r2: Array
    m66: Array
    h1: Array | None
    h2: Array | None
    e2: Array | None


# ---------------------------------------------------------------------------- pieces


def _drift(z: Array, length: Array) -> Array:
    """AT's DriftPass / fastdrift: the paraxial drift of the expanded Hamiltonian."""
    x, px, y, py, delta, ct = z
    p_norm = 1.0 / (1.0 + delta)
    norm_l = length * p_norm
    return jnp.stack(
        [
            x + norm_l * px,
            px,
            y + norm_l * py,
            py,
            delta,
            ct + norm_l * p_norm * (px * px + py * py) / 2.0,
        ]
    )


def _curved_drift(z: Array, length: Array, h: Array) -> Array:
    """AT's E2 "hx drift" (ATbendhxdrift6) of H = (1 + h x)(px² + py²) / (2 (1 + delta)):
    fastdrift plus terms in the curvature `h`; with h = 0, fastdrift bit for bit."""
    x, px, y, py, delta, ct = z
    p_norm = 1.0 / (1.0 + delta)
    norm_l = length * p_norm
    square = px * px + py * py
    path = norm_l * p_norm * square / 2.0
    return jnp.stack(
        [
            x
            + norm_l * px
            + h * (x * norm_l * px + length * norm_l * p_norm * (px * px - py * py) / 4.0),
            px - h * length * square * p_norm / 2.0,
            y + norm_l * py + h * norm_l * py * (x + length * px * (1.0 + h * x) / 2.0),
            py,
            delta,
            ct + path + h * x * path,
        ]
    )


def _field(a: Array, b: Array, x: Array, y: Array) -> tuple[Array, Array]:
    """Horner sum of (B_n + i A_n)(x + i y)^n: returns (Re, Im) as AT's kicks use them."""
    order = b.shape[-1]
    re, im = b[order - 1], a[order - 1]
    for i in range(order - 2, -1, -1):
        re, im = re * x - im * y + b[i], im * x + re * y + a[i]
    return re, im


def _kick(
    z: Array, a: Array, b: Array, strength: Array, irho: Array, curvature: Array | None = None
) -> Array:
    """AT's thin multipole kick of integrated length `strength` (bndthinkick; irho = 0 straight).

    With `curvature` = irho, the E2 bend's kick: the field's curvature terms from the
    vector potential expanded to 4th order (AT passes PolynomA = 0 for it); 0 adds nothing.
    """
    x, px, y, py, delta, ct = z
    re, im = _field(a, b, x, y)
    if curvature is not None:
        k1 = b[1]
        k2 = b[2] if b.shape[-1] > 2 else 0.0
        x2, y2 = x * x, y * y
        re = re + curvature * (k1 * (x2 - y2 / 2.0) + k2 * x * (x2 - 4.0 / 3.0 * y2))
        im = im + curvature * (
            k1 * x * y + 4.0 / 3.0 * k2 * x2 * y + (irho / 6.0 * k1 - k2 / 3.0) * y2 * y
        )
    return jnp.stack(
        [
            x,
            px - strength * (re - (delta - x * irho) * irho),
            y,
            py + strength * im,
            delta,
            ct + strength * irho * x,
        ]
    )


def _quad_fringe(z: Array, b2: Array, sign: float) -> Array:
    """Lee-Whiting hard-edge quadrupole fringe (Forest, p. 390): +1 entrance, -1 exit."""
    x, px, y, py, delta, ct = z
    u = sign * b2 / (12.0 * (1.0 + delta))
    x2, y2, xy = x * x, y * y, x * y
    gx = u * (x2 + 3.0 * y2) * x
    gy = u * (y2 + 3.0 * x2) * y
    dpx = 3.0 * u * (2.0 * xy * py - (x2 + y2) * px)
    dpy = 3.0 * u * (2.0 * xy * px - (x2 + y2) * py)
    return jnp.stack(
        [x + gx, px + dpx, y - gy, py - dpy, delta, ct - (gy * py - gx * px) / (1.0 + delta)]
    )


def _bend_edge(
    z: Array, irho: Array, edge: Array, fint: Array, gap: Array, method: Array, entrance: bool
) -> Array:
    """AT's edge_fringe: hard-edge dipole edge focusing with the FINT/gap correction."""
    x, px, y, py, delta, ct = z
    active = (fint != 0.0) & (gap != 0.0) & (method != 0)
    s, c = jnp.sin(edge), jnp.cos(edge)
    correction = jnp.where(active, irho * gap * fint * (1.0 + s * s) / c, 0.0)
    fx = irho * jnp.tan(edge)
    legacy = irho * jnp.tan(edge - correction / (1.0 + delta))
    soleil = legacy / (1.0 + delta)
    thomx_angle = px / (1.0 + delta) if entrance else -px / (1.0 + delta)
    thomx = irho * jnp.tan(edge - correction + thomx_angle)
    fy = jnp.where(method == 2, soleil, jnp.where(method == 3, thomx, legacy))
    return jnp.stack([x, px + x * fx, y, py - y * fy, delta, ct])


def _e2_edge(
    z: Array,
    irho: Array,
    edge: Array,
    gap_fint: Array,
    pole_curvature: Array,
    k1: Array,
    entrance: bool,
) -> Array:
    """AT's edge_fringe2A (entrance) / edge_fringe2B (exit): Brown's second-order transport
    map of a dipole edge with fringe field (FullGap * FringeInt) and pole-face curvature
    (H1/H2) in a gradient K1 = PolynomB[1]. Unlike the first-order edge, it does not
    depend on the momentum deviation."""
    x, px, y, py, delta, ct = z
    h = irho
    sin_e, cos_e = jnp.sin(edge), jnp.cos(edge)
    psi_bar = edge - h * gap_fint * (1.0 + sin_e * sin_e) / cos_e
    t, t_bar, sec = jnp.tan(edge), jnp.tan(psi_bar), 1.0 / cos_e
    sign = -1.0 if entrance else 1.0  # T111, T234, T133 change sign between the faces
    t111 = sign * 0.5 * h * t * t
    t234 = t111
    t133 = -sign * 0.5 * h * sec * sec
    curved = 0.5 * h * pole_curvature * sec**3 + k1 * t
    if entrance:
        t211 = curved
        t233 = -curved + 0.5 * h * h * t * (t_bar * t_bar + sec * sec)
        t413 = -curved
    else:
        t211 = curved - 0.5 * h * h * t**3
        t233 = -curved - 0.5 * h * h * t * t_bar * t_bar
        t413 = -curved + 0.5 * h * h * t * sec * sec
    return jnp.stack(
        [
            x + t111 * x * x + t133 * y * y,
            px
            + x * h * t
            - 2.0 * t111 * x * px
            + 2.0 * t234 * y * py
            + t211 * x * x
            + t233 * y * y,
            y - 2.0 * t234 * x * y,
            py - y * h * t_bar + 2.0 * t234 * x * py + 2.0 * t413 * x * y - 2.0 * t133 * px * y,
            delta,
            ct,
        ]
    )


def _misalign_entrance(z: Array, p: ElementParams) -> Array:
    return p.r1 @ (z + p.t1)


def _misalign_exit(z: Array, p: ElementParams) -> Array:
    return p.r2 @ z + p.t2


def _corrector_dipole_terms(p: ElementParams) -> tuple[Array, Array]:
    """PolynomA/B with KickAngle folded into the dipole terms, as AT's thick magnets do."""
    safe_length = jnp.where(p.length > 0.0, p.length, 1.0)
    b = p.polynom_b.at[0].add(-jnp.sin(p.kick_angle[0]) / safe_length)
    a = p.polynom_a.at[0].add(jnp.sin(p.kick_angle[1]) / safe_length)
    return a, b


# ---------------------------------------------------------------------- integrators


def _at_step(a: Array, b: Array, step: Array, irho: Array, curvature: Array | None):
    """One step of AT's 4th-order integrator (drift-kick-drift-kick-drift-kick-drift);
    `curvature`: irho for the E2 bend's curvilinear drift and kick, 0 for the other magnets
    of a lattice with E2 bends, None (no such terms) in a lattice without."""
    l1, l2 = step * _DRIFT1, step * _DRIFT2
    k1, k2 = step * _KICK1, step * _KICK2
    if curvature is None:
        drift = _drift
    else:
        drift = functools.partial(_curved_drift, h=curvature)

    def one_step(z):
        z = drift(z, l1)
        z = _kick(z, a, b, k1, irho, curvature)
        z = drift(z, l2)
        z = _kick(z, a, b, k2, irho, curvature)
        z = drift(z, l2)
        z = _kick(z, a, b, k1, irho, curvature)
        return drift(z, l1)

    return one_step


def _linear_generator(a: Array, b: Array, irho: Array, delta: Array) -> Array:
    """5x5 generator G of d(x, px, y, py, 1)/ds for the linear part of the kick-drift field."""
    inv = 1.0 / (1.0 + delta)
    zero = jnp.zeros_like(inv)
    rows = [
        [zero, inv, zero, zero, zero],
        [-(b[1] + irho * irho), zero, a[1], zero, irho * delta - b[0]],
        [zero, zero, zero, inv, zero],
        [a[1], zero, b[1], zero, a[0]],
        [zero, zero, zero, zero, zero],
    ]
    return jnp.stack([jnp.stack(r) for r in rows])


class _Flow(eqx.Module):
    """The exact flow of a linear field at fixed delta: an affine transverse map plus the
    path-length quadratic form, acting on u = (x, px, y, py, 1) as u -> matrix @ u and
    ct -> ct + ct_linear . u + u . ct_quadratic . u."""

    matrix: Array  # (5, 5)
    ct_linear: Array  # (5,)
    ct_quadratic: Array  # (5, 5)

    def __call__(self, z: Array) -> Array:
        u = jnp.concatenate([z[:4], jnp.ones(1, z.dtype)])
        ct = z[5] + self.ct_linear @ u + u @ self.ct_quadratic @ u
        v = self.matrix @ u
        return jnp.concatenate([v[:4], z[4:5], ct[None]])


def _flow(generator: Array, irho: Array, delta: Array, length: Array) -> _Flow:
    inv = 1.0 / (1.0 + delta)
    # d ct / ds = irho x + (px^2 + py^2) / (2 (1 + delta)^2), integrated over the trajectory
    weight_px = jnp.zeros((5, 5)).at[1, 1].set(1.0).at[3, 3].set(1.0) * (inv * inv / 2.0)
    e_x = jnp.zeros(5).at[0].set(1.0) * irho
    nodes = jnp.asarray(_GL_NODES) * length
    along = jax.vmap(lambda s: jax.scipy.linalg.expm(generator * s))(nodes)
    weights = jnp.asarray(_GL_WEIGHTS) * length
    ct_linear = jnp.einsum("k,i,kij->j", weights, e_x, along)
    ct_quadratic = jnp.einsum("k,kai,ab,kbj->ij", weights, along, weight_px, along)
    return _Flow(jax.scipy.linalg.expm(generator * length), ct_linear, ct_quadratic)


def _exact_step(a: Array, b: Array, step: Array, irho: Array, delta: Array, nonlinear: bool):
    """Exact linear flow over `step`, or one 4th-order step of exact flows and the kicks of
    the nonlinear multipoles, at momentum deviation `delta` (constant in the magnet)."""
    generator = _linear_generator(a, b, irho, delta)
    if not nonlinear:
        return _flow(generator, irho, delta, step)
    a_nl = a.at[:2].set(0.0)
    b_nl = b.at[:2].set(0.0)
    flow1 = _flow(generator, irho, delta, step * _DRIFT1)
    flow2 = _flow(generator, irho, delta, step * _DRIFT2)
    k1, k2 = step * _KICK1, step * _KICK2
    zero = jnp.zeros_like(irho)

    def one_step(z):
        z = flow1(z)
        z = _kick(z, a_nl, b_nl, k1, zero)
        z = flow2(z)
        z = _kick(z, a_nl, b_nl, k2, zero)
        z = flow2(z)
        z = _kick(z, a_nl, b_nl, k1, zero)
        return flow1(z)

    return one_step


# ---------------------------------------------------------------------- pass methods


def identity_pass(p: ElementParams, z: Array) -> Array:
    """Markers, monitors, apertures (particles are not lost in the optics)."""
    del p
    return z


def drift_pass(p: ElementParams, z: Array) -> Array:
    """DriftPass; also RF cavities, which are switched off in 4-D optics."""
    return _drift(z, p.length)


class _MagnetParts(NamedTuple):
    """A thick magnet as entry pieces, `steps` repetitions of one step, exit pieces."""

    entry: Callable[[Array], Array]
    make_step: Callable[[Array], Callable[[Array], Array]]  # delta -> one step
    exit: Callable[[Array], Array]
    steps: int


def _magnet_parts(p: ElementParams, *, steps: int, integrator: str, nonlinear: bool):
    a, b = _corrector_dipole_terms(p)
    safe_length = jnp.where(p.length > 0.0, p.length, 1.0)
    irho = p.bending_angle / safe_length
    curvature = None
    if p.e2 is not None:  # a lattice with E2 bends
        e2 = p.e2 != 0
        a = jnp.where(e2, 0.0, a)  # the E2 bend ignores PolynomA (and a vertical KickAngle)
        curvature = jnp.where(e2, irho, 0.0)

    def first_order_entry(z):
        z = _bend_edge(
            z, irho, p.entrance_angle, p.fringe_int1, p.full_gap, p.fringe_bend_entrance, True
        )
        return _quad_fringe(z, b[1] * (p.fringe_quad_entrance != 0), +1.0)

    def first_order_exit(z):
        z = _quad_fringe(z, b[1] * (p.fringe_quad_exit != 0), -1.0)
        return _bend_edge(
            z, irho, p.exit_angle, p.fringe_int2, p.full_gap, p.fringe_bend_exit, False
        )

    def entry(z):
        z = _misalign_entrance(z, p)
        if p.e2 is None:
            return first_order_entry(z)
        second = _e2_edge(z, irho, p.entrance_angle, p.full_gap * p.fringe_int1, p.h1, b[1], True)
        return jnp.where(p.e2 != 0, second, first_order_entry(z))

    def exit_(z):
        if p.e2 is None:
            return _misalign_exit(first_order_exit(z), p)
        second = _e2_edge(z, irho, p.exit_angle, p.full_gap * p.fringe_int2, p.h2, b[1], False)
        return _misalign_exit(jnp.where(p.e2 != 0, second, first_order_exit(z)), p)

    if integrator == "at":
        return _MagnetParts(
            entry, lambda delta: _at_step(a, b, p.length / steps, irho, curvature), exit_, steps
        )
    if not nonlinear:  # one exact flow over the whole length
        return _MagnetParts(
            entry, lambda delta: _exact_step(a, b, p.length, irho, delta, False), exit_, 1
        )
    return _MagnetParts(
        entry,
        lambda delta: _exact_step(a, b, p.length / steps, irho, delta, True),
        exit_,
        steps,
    )


def magnet_pass(
    p: ElementParams, z: Array, *, steps: int, integrator: str, nonlinear: bool
) -> Array:
    """StrMPoleSymplectic4Pass and BndMPoleSymplectic4Pass.

    One function for both: with BendingAngle = 0 and no edge angles AT's bend kick and edge
    reduce exactly (bit for bit) to the straight magnet's, so straight and bent magnets share
    one vmapped integrator. The lattice sets the edge fields of straight magnets to zero.
    """
    parts = _magnet_parts(p, steps=steps, integrator=integrator, nonlinear=nonlinear)
    z = parts.entry(z)
    step = parts.make_step(z[4])
    z = jax.lax.fori_loop(0, parts.steps, lambda _, z: step(z), z)
    return parts.exit(z)


def magnet_design_jacobian(
    p: ElementParams, *, steps: int, integrator: str, nonlinear: bool
) -> Array:
    """(6, 6) Jacobian of :func:`magnet_pass` at the zero orbit (on momentum).

    Valid when every piece maps the zero orbit to itself (no dipole terms, kicks or
    translations): then the chain rule composes the pieces' Jacobians at zero, and the
    integrator's `steps` identical steps contribute one step's Jacobian to the power `steps`
    (repeated squaring instead of pushing tangents through every step).
    """
    parts = _magnet_parts(p, steps=steps, integrator=integrator, nonlinear=nonlinear)
    zero = jnp.zeros(6)
    j_entry = jax.jacfwd(parts.entry)(zero)
    j_step = jax.jacfwd(lambda z: parts.make_step(z[4])(z))(zero)
    j_exit = jax.jacfwd(parts.exit)(zero)
    return j_exit @ _matrix_power(j_step, parts.steps) @ j_entry


def _matrix_power(m: Array, times: int) -> Array:
    result, base = None, m
    while times:
        if times & 1:
            result = base if result is None else base @ result
        times >>= 1
        if times:
            base = base @ base
    return result


def thin_multipole_pass(p: ElementParams, z: Array) -> Array:
    """ThinMPolePass: an integrated multipole kick (PolynomA/B in 1/m^n)."""
    z = _misalign_entrance(z, p)
    z = _kick(z, p.polynom_a, p.polynom_b, jnp.ones_like(p.length), jnp.zeros_like(p.length))
    return _misalign_exit(z, p)


def corrector_pass(p: ElementParams, z: Array) -> Array:
    """CorrectorPass: kicks KickAngle spread uniformly over the element's length."""
    x, px, y, py, delta, ct = z
    kx, ky = p.kick_angle[0], p.kick_angle[1]
    p_norm = 1.0 / (1.0 + delta)
    norm_l = p.length * p_norm
    ct = (
        ct
        + norm_l
        * p_norm
        * (kx * kx / 3.0 + ky * ky / 3.0 + px * px + py * py + px * kx + py * ky)
        / 2.0
    )
    return jnp.stack(
        [x + norm_l * (px + kx / 2.0), px + kx, y + norm_l * (py + ky / 2.0), py + ky, delta, ct]
    )


def matrix_pass(p: ElementParams, z: Array) -> Array:
    """Matrix66Pass: a linear 6x6 map."""
    return _misalign_exit(p.m66 @ _misalign_entrance(z, p), p)
