"""Exact Jacobians of the optics with respect to quadrupole strengths, fast.

``jax.jacfwd(linear_optics)`` is exact but pushes every quadrupole's tangent through every
element. A quadrupole's strength enters only its own element map, so the chain rule factors:
with P_j = R_{j+1}^{-1} (dJ_j / dk_j) R_j (the perturbation of element j seen from the ring's
start), the transfer matrix to a point after j moves by R_k P_j, the one-turn matrix by M P_j,
and the optics at the reference points are a cheap function of those matrices whose
derivative JAX takes (``jax.jvp``, vmapped over quadrupoles). Every step is autodiff; only
the order of the chain rule is chosen. Valid on the design orbit (no closed-orbit
displacement at the quadrupoles, so a gradient change does not move the orbit); the
function checks that and refers to ``jax.jacfwd(linear_optics)`` otherwise.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from diffdesign._validation import is_concrete
from diffdesign.ring import optics as _optics
from diffdesign.ring.lattice import Lattice

_OFF_DESIGN = (
    "the K1 Jacobians assume the design orbit (zero closed orbit, no dipole terms, kicks or "
    "translations in magnets); off it use jax.jacfwd of linear_optics / orbit_response"
)


def _k1_derivative_of_maps(lattice: Lattice, index: np.ndarray) -> Array:
    """d(element Jacobian)/d(PolynomB[1]) of each given element on the design orbit, (k, 6, 6)."""

    def per_group(fn, design, params, chosen):
        def derivative(p):
            def of_k1(dk):
                return design(eqx.tree_at(lambda q: q.polynom_b, p, p.polynom_b.at[1].add(dk)))

            return jax.jvp(of_k1, (0.0,), (1.0,))[1]

        return jax.vmap(derivative)(params)

    return _optics.over_elements(lattice, index, per_group)


def _design_orbit_solution(lattice: Lattice, orbit_iterations: int):
    solution = _optics._closed_orbit(lattice, jnp.zeros(()), orbit_iterations)
    return solution, _optics.on_design_orbit(lattice, solution.orbit[:-1])


def _checked(result, design):
    """Refuse results computed off the design orbit: ValueError when the flag is known,
    a runtime error under an enclosing jit."""
    if is_concrete(design):
        if not bool(design):
            raise ValueError(_OFF_DESIGN)
        return result
    return eqx.error_if(result, ~design, _OFF_DESIGN)


def _indices(lattice: Lattice, selector) -> tuple[int, ...]:
    return tuple(int(i) for i in lattice.indices(selector))


def _perturbations(lattice: Lattice, solution: _optics.OrbitSolution, quads: np.ndarray) -> Array:
    """R_{j+1}^-1 (dJ_j / dK1_j) R_j for each quadrupole j: (q, 6, 6)."""
    transfer = solution.transfer
    d_jac = _k1_derivative_of_maps(lattice, quads)
    return jnp.linalg.solve(transfer[quads + 1], d_jac @ transfer[quads])


def k1_jacobian(
    lattice: Lattice,
    quadrupoles: ArrayLike | str = "Quadrupole",
    refpts: ArrayLike | str | None = "Monitor",
    *,
    orbit_iterations: int = 5,
) -> dict[str, Array]:
    """Derivatives of the linear optics at `refpts` with respect to each quadrupole's K1.

    Args:
        lattice: the ring, on its design orbit.
        quadrupoles: elements whose PolynomB[1] (1/m^2) are the parameters (indices, an AT
            class or a name pattern).
        refpts: reference points, as in :func:`~diffdesign.ring.linear_optics`.

    Returns:
        dict with ``beta_x, beta_y, alpha_x, alpha_y, mu_x, mu_y, eta_x, etap_x, eta_y,
        etap_y`` of shape (n_refpts, n_quadrupoles), in the optics' units per 1/m^2, and
        ``tunes`` (2, n_quadrupoles).

    Raises:
        ValueError: the closed orbit is displaced at the quadrupoles (use
            ``jax.jacfwd`` of :func:`~diffdesign.ring.linear_optics` there).
    """
    quads = _indices(lattice, quadrupoles)
    ref = tuple(int(i) for i in _optics._refpoints(lattice, refpts))
    return _checked(*_k1_jacobian(lattice, quads, ref, orbit_iterations))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _k1_jacobian(lattice: Lattice, quads: tuple[int, ...], ref: tuple[int, ...], iterations: int):
    quads, ref = np.asarray(quads, dtype=int), np.asarray(ref, dtype=int)
    solution, design = _design_orbit_solution(lattice, iterations)
    transfer = solution.transfer
    perturbation = _perturbations(lattice, solution, quads)
    one_turn = transfer[-1]
    _, turns = _optics.phase_turns(transfer, one_turn)
    downstream = jnp.asarray(ref[:, None] > quads[None, :], dtype=float)  # (k, q)

    def optics(transfer_ref, one_turn):
        result = _optics._optics_arrays(transfer_ref, one_turn, turns[ref])
        tunes = _optics.periodic_twiss(one_turn).mu / (2.0 * np.pi)
        return result | {"tunes": tunes}

    transfer_ref = transfer[ref]

    def tangent(perturbation_j, downstream_j):
        d_ref = downstream_j[:, None, None] * (transfer_ref @ perturbation_j)
        return jax.jvp(optics, (transfer_ref, one_turn), (d_ref, one_turn @ perturbation_j))[1]

    columns = jax.vmap(tangent, in_axes=(0, 1))(perturbation, downstream)
    return {name: jnp.moveaxis(value, 0, -1) for name, value in columns.items()}, design


def k1_orm_jacobian(
    lattice: Lattice,
    quadrupoles: ArrayLike | str = "Quadrupole",
    bpms: ArrayLike | str = "Monitor",
    correctors: ArrayLike | str = "Corrector",
    *,
    orbit_iterations: int = 5,
) -> tuple[Array, Array]:
    """The orbit response matrix and its derivative with respect to each quadrupole's K1.

    Returns:
        (orm (2, n_bpm, 2, n_corr) in m/rad, as :func:`~diffdesign.ring.orbit_response`;
        d orm / d K1 (2, n_bpm, 2, n_corr, n_quad) in m/rad per 1/m^2).

    Raises:
        ValueError: the closed orbit is displaced at the quadrupoles.
    """
    bpm_index = (
        lattice.indices(bpms) if isinstance(bpms, str) else _optics._refpoints(lattice, bpms)
    )
    orm, d_orm, design = _k1_orm_jacobian(
        lattice,
        _indices(lattice, quadrupoles),
        tuple(int(i) for i in bpm_index),
        _indices(lattice, correctors),
        orbit_iterations,
    )
    return _checked((orm, d_orm), design)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _k1_orm_jacobian(lattice, quads, bpms, correctors, iterations):
    quads = np.asarray(quads, dtype=int)
    bpm_index, cor_index = np.asarray(bpms, dtype=int), np.asarray(correctors, dtype=int)
    solution, design = _design_orbit_solution(lattice, iterations)
    transfer = solution.transfer
    sources = _optics._kick_sources(lattice, solution.orbit[:-1], cor_index)
    perturbation = _perturbations(lattice, solution, quads)
    downstream = bpm_index[:, None] > cor_index[None, :]
    t_bpm, t_after, one_turn = transfer[bpm_index], transfer[cor_index + 1], transfer[-1]

    def response(t_bpm, t_after, one_turn):
        return _optics.response_from_matrices(t_bpm, t_after, one_turn, sources, downstream)

    bpm_after_quad = jnp.asarray(bpm_index[:, None] > quads[None, :], dtype=float)
    cor_after_quad = jnp.asarray(cor_index[:, None] + 1 > quads[None, :], dtype=float)

    def tangent(p, bpm_mask, cor_mask):
        d_bpm = bpm_mask[:, None, None] * (t_bpm @ p)
        d_after = cor_mask[:, None, None] * (t_after @ p)
        return jax.jvp(response, (t_bpm, t_after, one_turn), (d_bpm, d_after, one_turn @ p))[1]

    columns = jax.vmap(tangent, in_axes=(0, 1, 1))(perturbation, bpm_after_quad, cor_after_quad)
    return response(t_bpm, t_after, one_turn), jnp.moveaxis(columns, 0, -1), design
