"""Closed orbit, transfer matrices, Twiss functions, tunes, dispersion and orbit response.

Everything here is a pure function of a :class:`~diffdesign.ring.lattice.Lattice`, so
``jax.jacfwd`` of any result with respect to quadrupole strengths (or any other element
field) is exact. The optics are 4-D: the momentum deviation ``delta`` is a fixed parameter,
RF cavities and radiation are off (AT's ``find_orbit4`` / ``get_optics`` on a 4-D ring).

How it is computed, without a sequential loop over elements:

1. Each element's map is linearised at its entry point on a trial orbit: all elements of a
   group at once (vmap of ``jax.jvp``), giving affine maps ``z -> J_k z + c_k``.
2. An associative (parallel prefix) scan composes them into the maps from the ring's start
   to every element; the closed orbit of the composed affine one-turn map is one 4x4 solve.
3. Steps 1-2 repeat from the new orbit: this is Newton's method with one shooting point per
   element (multiple shooting), so it converges quadratically to the closed orbit of the
   nonlinear ring; on the design orbit of an error-free ring one pass is already exact.
4. Twiss functions follow from the one-turn matrix and the cumulative transfer matrices.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from diffdesign._twiss import periodic_twiss
from diffdesign._twiss import refuse_unstable as _refuse_unstable
from diffdesign._twiss import twiss_along as _twiss_along
from diffdesign.ring import _passes
from diffdesign.ring.lattice import Lattice

_TWO_PI = 2.0 * np.pi


def _pass_function(kind: str, steps: int, nonlinear: bool, integrator: str):
    if kind == "identity":
        return _passes.identity_pass
    if kind == "drift":
        return _passes.drift_pass
    if kind == "magnet":
        return functools.partial(
            _passes.magnet_pass,
            steps=steps,
            integrator=integrator,
            nonlinear=nonlinear,
        )
    if kind == "thin":
        return _passes.thin_multipole_pass
    if kind == "corrector":
        return _passes.corrector_pass
    if kind == "matrix":
        return _passes.matrix_pass
    raise ValueError(f"no map for element kind {kind!r}")


def over_elements(lattice: Lattice, index, per_group):
    """Apply a vmapped computation to the given elements, group by group.

    Args:
        lattice: the ring.
        index: element indices (repeats allowed).
        per_group: ``per_group(map_function, design_jacobian, params, chosen)`` for the
            chosen elements of one group (``params`` sliced to them); returns a PyTree of
            arrays with leading axis ``len(chosen)``. ``map_function(p, z)`` is the group's
            pass method, ``design_jacobian(p)`` its Jacobian on the design orbit.

    Returns:
        The PyTree of results with leading axis ``len(index)``, in the order of `index`.
    """
    unique, repeat = np.unique(np.asarray(index, dtype=int), return_inverse=True)
    position = {int(e): i for i, e in enumerate(unique)}
    order, blocks = [], []
    for (kind, steps, nonlinear), members in lattice.groups:
        chosen = np.asarray([e for e in members if e in position], dtype=int)
        if chosen.size == 0:
            continue
        fn = _pass_function(kind, steps, nonlinear, lattice.integrator)
        if kind == "magnet":
            design = functools.partial(
                _passes.magnet_design_jacobian,
                steps=steps,
                integrator=lattice.integrator,
                nonlinear=nonlinear,
            )
        else:

            def design(p, fn=fn):
                return jax.jacfwd(fn, argnums=1)(p, jnp.zeros(6))

        params = jax.tree_util.tree_map(lambda a, chosen=chosen: a[chosen], lattice.params)
        blocks.append(per_group(fn, design, params, chosen))
        order.extend(position[int(e)] for e in chosen)
    inverse = np.empty(len(order), dtype=int)
    inverse[np.asarray(order, dtype=int)] = np.arange(len(order))
    take = inverse[repeat.reshape(-1)]
    return jax.tree_util.tree_map(lambda *b: jnp.concatenate(b)[take], *blocks)


def element_exits(lattice: Lattice, entry: Float[Array, "n 6"]) -> Float[Array, "n 6"]:
    """Every element's exit point for the given entry points (n_elements, 6)."""
    return over_elements(
        lattice,
        np.arange(lattice.n_elements),
        lambda fn, design, p, chosen: jax.vmap(fn)(p, entry[chosen]),
    )


def element_maps(
    lattice: Lattice, entry: Float[Array, "n 6"]
) -> tuple[Float[Array, "n 6"], Float[Array, "n 6 6"]]:
    """Every element's exit point and Jacobian for the given entry points.

    Args:
        lattice: the ring.
        entry: (n_elements, 6) phase-space vector at each element's entrance.

    Returns:
        (exit points (n, 6), Jacobians d exit / d entry (n, 6, 6)).
    """
    basis = jnp.eye(6, dtype=entry.dtype)

    def per_group(fn, design, params, chosen):
        def linearised(p, z):
            push = jax.vmap(lambda t: jax.jvp(lambda v: fn(p, v), (z,), (t,)))
            out, columns = push(basis)
            return out[0], columns.T

        return jax.vmap(linearised)(params, entry[chosen])

    return over_elements(lattice, np.arange(lattice.n_elements), per_group)


def design_jacobians(lattice: Lattice) -> Float[Array, "n 6 6"]:
    """Every element's Jacobian at the zero orbit on momentum (valid on the design orbit,
    see :func:`on_design_orbit`): thick magnets by one integrator step's Jacobian to the
    power of their steps, the rest by forward mode at zero."""
    return over_elements(
        lattice,
        np.arange(lattice.n_elements),
        lambda fn, design, params, chosen: jax.vmap(design)(params),
    )


def on_design_orbit(lattice: Lattice, entry: Float[Array, "n 6"]) -> Array:
    """True when the orbit is zero at every element entrance, on momentum, and no element
    has dipole terms, kicks or translations (so every map and piece sends zero to zero)."""
    p = lattice.params
    sources = [
        p.polynom_a[:, 0],
        p.polynom_b[:, 0],
        p.kick_angle.reshape(-1),
        p.t1.reshape(-1),
        p.t2.reshape(-1),
        entry.reshape(-1),
    ]
    return jnp.all(jnp.concatenate(sources) == 0.0)


def _prefix_products(jacobians: Array, offsets: Array) -> tuple[Array, Array]:
    """Inclusive prefix compositions of affine maps by a scan inside blocks (vmapped over
    blocks) and a scan over block totals: ~2 sqrt(n) sequential steps, quick to compile."""
    n = jacobians.shape[0]
    block = max(1, int(np.ceil(np.sqrt(n))))
    blocks = -(-n // block)
    pad = blocks * block - n
    eye = jnp.eye(6, dtype=jacobians.dtype)
    a = jnp.concatenate([jacobians, jnp.broadcast_to(eye, (pad, 6, 6))]).reshape(
        blocks, block, 6, 6
    )
    c = jnp.concatenate([offsets, jnp.zeros((pad, 6), offsets.dtype)]).reshape(blocks, block, 6)

    def step(carry, element):
        r, b = carry
        a_k, c_k = element
        carry = (a_k @ r, a_k @ b + c_k)
        return carry, carry

    def within(a_block, c_block):
        _, (r, b) = jax.lax.scan(step, (eye, jnp.zeros(6, offsets.dtype)), (a_block, c_block))
        return r, b

    r_in, b_in = jax.vmap(within)(a, c)  # prefixes inside each block
    _, (r_tot, b_tot) = jax.lax.scan(
        step, (eye, jnp.zeros(6, offsets.dtype)), (r_in[:, -1], b_in[:, -1])
    )
    # the composition of all earlier blocks, applied before each block's own prefix
    r_before = jnp.concatenate([eye[None], r_tot[:-1]])
    b_before = jnp.concatenate([jnp.zeros((1, 6), offsets.dtype), b_tot[:-1]])
    r = r_in @ r_before[:, None]
    b = jnp.einsum("gkij,gj->gki", r_in, b_before) + b_in
    return r.reshape(-1, 6, 6)[:n], b.reshape(-1, 6)[:n]


def cumulative_maps(
    jacobians: Float[Array, "n 6 6"], offsets: Float[Array, "n 6"]
) -> tuple[Float[Array, "n+1 6 6"], Float[Array, "n+1 6"]]:
    """Affine maps from the ring's start to every element entrance (and the end).

    Element k maps ``z -> jacobians[k] @ z + offsets[k]``; the result (R, b) has
    ``z_k = R[k] @ z_0 + b[k]`` for k = 0..n, with R[0] = I and R[n] the one-turn map.
    """
    r, b = _prefix_products(jacobians, offsets)
    eye = jnp.eye(6, dtype=jacobians.dtype)[None]
    return jnp.concatenate([eye, r]), jnp.concatenate([jnp.zeros_like(offsets[:1]), b])


class OrbitSolution(NamedTuple):
    """Attributes:
    orbit: (n + 1, 6) closed orbit at every element entrance and the ring's end.
    jacobians: (n, 6, 6) element Jacobians on that orbit.
    transfer: (n + 1, 6, 6) transfer matrices from the start to each entrance; transfer[n]
        is the one-turn matrix.
    residual: max |z_{k+1} - f_k(z_k)| over elements: how closed the orbit is, m or rad.
    """

    orbit: Array
    jacobians: Array
    transfer: Array
    residual: Array


#: Orbit residual (m, rad) below which Newton iterations are skipped.
_ORBIT_TOLERANCE = 1e-15


def _closing_residual(entry: Array, exit_: Array) -> Array:
    """max |f_k(z_k) - z_{k+1}| over the transverse coordinates, the ring closed."""
    following = jnp.concatenate([entry[1:], entry[:1]])
    return jnp.max(jnp.abs(exit_[:, :4] - following[:, :4]))


def _periodic_solution(r: Array, b: Array, start: Array) -> Array:
    """Orbit at all entrances of the affine ring (r, b) with delta fixed at start[4]."""
    rhs = r[-1, :4, 4] * start[4] + b[-1, :4]
    x0 = jnp.linalg.solve(jnp.eye(4) - r[-1, :4, :4], rhs)
    return jnp.einsum("kij,j->ki", r, start.at[:4].set(x0)) + b


class _OrbitState(NamedTuple):
    entry: Array  # (n, 6) orbit at the element entrances
    jacobians: Array  # (n, 6, 6) element Jacobians at `entry`
    residual: Array  # closing residual at `entry`
    converged: Array


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _orbit_solve(lattice: Lattice, delta: Array, iterations: int) -> tuple[Array, Array, Array]:
    """Closed orbit at every element entrance, the element Jacobians on it and the closing
    residual. Each round linearises all elements at the current orbit; a converged round
    keeps its Jacobians, otherwise a Newton step moves the orbit. On the design orbit no
    round runs: the cheap :func:`design_jacobians` are exact there."""
    n = lattice.n_elements
    start = jnp.zeros(6, dtype=float).at[4].set(delta)
    reference = jnp.broadcast_to(start, (n, 6))

    def round_(state: _OrbitState) -> _OrbitState:
        exit_, jac = element_maps(lattice, state.entry)
        residual = _closing_residual(state.entry, exit_)
        converged = residual <= _ORBIT_TOLERANCE

        def newton(entry):
            offsets = exit_ - jnp.einsum("kij,kj->ki", jac, entry)
            return _periodic_solution(*cumulative_maps(jac, offsets), start)[:-1]

        entry = jax.lax.cond(converged, lambda e: e, newton, state.entry)
        return _OrbitState(entry, jac, residual, converged)

    def iterate(state, _):
        return jax.lax.cond(state.converged, lambda s: s, round_, state), None

    def general(_):
        initial = _OrbitState(
            reference, jnp.zeros((n, 6, 6)), jnp.asarray(jnp.inf), jnp.zeros((), bool)
        )
        # one round more than Newton steps, so that the last step's orbit is linearised
        state, _ = jax.lax.scan(iterate, initial, None, length=iterations + 1)
        return state.entry, state.jacobians, state.residual

    def design(_):
        return reference, design_jacobians(lattice), jnp.zeros(())

    return jax.lax.cond(on_design_orbit(lattice, reference), design, general, None)


@_orbit_solve.defjvp
def _orbit_solve_jvp(iterations, primals, tangents):
    # Implicit differentiation of the fixed point: the orbit's tangent is the periodic
    # solution of the linearised ring driven by the elements' parameter tangents; the
    # Jacobians' tangent follows from the general maps (also on the design orbit).
    lattice, delta = primals
    d_lattice, d_delta = tangents
    entry, jac, residual = _orbit_solve(lattice, delta, iterations)
    # Tangents flow through the floating-point fields only (integer flags have none).
    floats, rest = eqx.partition(lattice, eqx.is_inexact_array)
    d_floats, _ = eqx.partition(d_lattice, eqx.is_inexact_array)
    _, sources = jax.jvp(
        lambda f: element_exits(eqx.combine(f, rest), entry), (floats,), (d_floats,)
    )
    d_start = jnp.zeros(6, dtype=float).at[4].set(d_delta)
    d_entry = _periodic_solution(*cumulative_maps(jac, sources), d_start)[:-1]
    _, d_jac = jax.jvp(
        lambda f, e: element_maps(eqx.combine(f, rest), e)[1], (floats, entry), (d_floats, d_entry)
    )
    return (entry, jac, residual), (d_entry, d_jac, jnp.zeros_like(residual))


def closed_orbit(lattice: Lattice, delta: ArrayLike = 0.0, iterations: int = 5) -> OrbitSolution:
    """4-D closed orbit at fixed momentum deviation by multiple-shooting Newton.

    Args:
        lattice: the ring.
        delta: momentum deviation (dimensionless).
        iterations: most Newton iterations (static); rounds after convergence cost
            nothing. On the design orbit (no kicks, dipole errors or translations, on
            momentum) none runs.

    Returns:
        :class:`OrbitSolution` with the transfer matrices linearised on the orbit. Its
        derivatives with respect to element fields and delta are exact (implicit
        differentiation of the fixed point, not of the iterations).
    """
    return _closed_orbit(lattice, jnp.asarray(delta, dtype=float), iterations)


@functools.partial(jax.jit, static_argnums=(2,))
def _closed_orbit(lattice: Lattice, delta: Array, iterations: int) -> OrbitSolution:
    n = lattice.n_elements
    entry, jac, residual = _orbit_solve(lattice, delta, iterations)
    transfer, _ = cumulative_maps(jac, jnp.zeros((n, 6)))
    orbit = jnp.concatenate([entry, entry[:1]])
    return OrbitSolution(orbit, jac, transfer, residual)


def _unwrap_along(wrapped: Array) -> Array:
    # Per-element advances lie in [0, pi); wrap differences symmetrically so that the
    # roundoff of zero-advance elements (markers) cannot add a spurious turn.
    steps = jnp.mod(jnp.diff(wrapped, axis=0, prepend=0.0 * wrapped[:1]) + np.pi, _TWO_PI)
    return jnp.cumsum(steps - np.pi, axis=0)


def phase_turns(transfer: Array, one_turn: Array) -> tuple[Array, Array]:
    """Wrapped phases (k, 2) at each matrix's end along the ring and the whole turns (k, 2,
    constants without derivative) that unwrap them: unwrapped = wrapped + 2 pi turns."""
    _, _, wrapped = _twiss_along(transfer, periodic_twiss(one_turn))
    turns = jnp.round((_unwrap_along(wrapped) - wrapped) / _TWO_PI)
    return wrapped, jax.lax.stop_gradient(turns)


def _dispersion(transfer: Array, one_turn: Array) -> Array:
    """(k, 4) periodic dispersion (eta_x, etap_x, eta_y, etap_y) at each matrix's end."""
    eta0 = jnp.linalg.solve(jnp.eye(4) - one_turn[:4, :4], one_turn[:4, 4])
    return jnp.einsum("kij,j->ki", transfer[:, :4, :4], eta0) + transfer[:, :4, 4]


def _optics_arrays(transfer: Array, one_turn: Array, turns: Array) -> dict[str, Array]:
    """Optics at the ends of `transfer` (k, 6, 6); `turns` (k, 2) are the whole turns of
    phase (2 pi multiples, constants) that unwrap the phases."""
    twiss = periodic_twiss(one_turn)
    beta, alpha, wrapped = _twiss_along(transfer, twiss)
    mu = wrapped + _TWO_PI * turns
    eta = _dispersion(transfer, one_turn)
    return {
        "beta_x": beta[:, 0],
        "beta_y": beta[:, 1],
        "alpha_x": alpha[:, 0],
        "alpha_y": alpha[:, 1],
        "mu_x": mu[:, 0],
        "mu_y": mu[:, 1],
        "eta_x": eta[:, 0],
        "etap_x": eta[:, 1],
        "eta_y": eta[:, 2],
        "etap_y": eta[:, 3],
    }


def linear_optics(
    lattice: Lattice,
    refpts: ArrayLike | str | None = "Monitor",
    *,
    delta: ArrayLike = 0.0,
    orbit_iterations: int = 5,
    allow_unstable: bool = False,
) -> dict[str, Array]:
    """Linear optics at the reference points (default: all BPMs, AT class ``Monitor``).

    Args:
        lattice: the ring.
        refpts: element indices, an AT class or name pattern (see :meth:`Lattice.indices`),
            or None for every element entrance plus the ring's end. Values are at the
            *entrance* of each reference element, as in AT.
        delta: momentum deviation.
        orbit_iterations: Newton iterations of the closed orbit (see :func:`closed_orbit`).
        allow_unstable: return NaN tunes and Twiss functions for an unstable ring instead
            of raising (for stability scans).

    With x-y coupling the ``_x``/``_y`` Twiss functions are those of the normal modes a/b
    (Edwards-Teng in the Sagan-Rubin form, equal to AT's ``linopt4``; AT's default
    ``linopt6`` betas differ from these by the factor gamma^2 when coupled, and agree
    without coupling).

    Returns:
        dict of arrays at the reference points: ``beta_x, beta_y`` (m), ``alpha_x,
        alpha_y``, ``mu_x, mu_y`` (rad, unwrapped from the ring's start), ``eta_x, etap_x,
        eta_y, etap_y`` (m, rad), ``orbit`` (k, 6), ``s`` (m); and ring quantities
        ``tunes`` (2,) fractional, ``tunes_total`` (2,) with the integer part (one period),
        ``one_turn`` (6, 6), ``orbit_residual``.

    Raises:
        ValueError: the linear motion is unstable (no periodic solution), naming the mode
            and the one-turn traces. Inside ``jit`` or ``vmap``, where the values are not
            known while tracing, the same check runs with the computation
            (``equinox.error_if``) and the call fails with "unstable optics" when it runs.
    """
    index = tuple(int(i) for i in _refpoints(lattice, refpts))
    result = _linear_optics(lattice, index, jnp.asarray(delta, dtype=float), orbit_iterations)
    return (
        result if allow_unstable else _refuse_unstable(result, result["tunes"], result["one_turn"])
    )


@functools.partial(jax.jit, static_argnums=(1, 3))
def _linear_optics(
    lattice: Lattice, index: tuple[int, ...], delta: Array, orbit_iterations: int
) -> dict[str, Array]:
    solution = _closed_orbit(lattice, delta, orbit_iterations)
    return _optics_from_solution(lattice, solution, np.asarray(index, dtype=int))


def _refpoints(lattice: Lattice, refpts: ArrayLike | str | None) -> np.ndarray:
    if refpts is None:
        return np.arange(lattice.n_elements + 1)
    if isinstance(refpts, str):
        return lattice.indices(refpts)
    index = np.asarray(refpts, dtype=int).reshape(-1)
    if index.size and (index.min() < 0 or index.max() > lattice.n_elements):
        raise ValueError(f"refpts must lie in [0, {lattice.n_elements}]; got {refpts}")
    return index


def _optics_from_solution(
    lattice: Lattice, solution: OrbitSolution, index: np.ndarray
) -> dict[str, Array]:
    one_turn = solution.transfer[-1]
    wrapped, turns = phase_turns(solution.transfer, one_turn)
    result = _optics_arrays(solution.transfer[index], one_turn, turns[index])
    tunes_total = (wrapped[-1] + _TWO_PI * turns[-1]) / _TWO_PI
    return result | {
        "orbit": solution.orbit[index],
        "s": lattice.s_positions()[index],
        "tunes": jnp.mod(tunes_total, 1.0),
        "tunes_total": tunes_total,
        "one_turn": one_turn,
        "orbit_residual": solution.residual,
    }


def tunes(
    lattice: Lattice,
    delta: ArrayLike = 0.0,
    orbit_iterations: int = 5,
    *,
    allow_unstable: bool = False,
) -> Array:
    """(2,) fractional tunes (one period) at momentum deviation `delta`.

    Raises:
        ValueError: unstable linear motion, unless ``allow_unstable`` (then NaN); see
            :func:`linear_optics` for the check inside ``jit``.
    """
    values, one_turn = _tunes(lattice, jnp.asarray(delta, dtype=float), orbit_iterations)
    return values if allow_unstable else _refuse_unstable(values, values, one_turn)


@functools.partial(jax.jit, static_argnums=(2,))
def _tunes(lattice: Lattice, delta: Array, orbit_iterations: int) -> tuple[Array, Array]:
    one_turn = _closed_orbit(lattice, delta, orbit_iterations).transfer[-1]
    return periodic_twiss(one_turn).mu / _TWO_PI, one_turn


def chromaticity(
    lattice: Lattice, orbit_iterations: int = 5, *, allow_unstable: bool = False
) -> Array:
    """(2,) linear chromaticity d(tune)/d(delta) at delta = 0, by forward-mode autodiff
    through the off-momentum closed orbit (sextupole feed-down included).

    Raises:
        ValueError: unstable linear motion, unless ``allow_unstable`` (then NaN); see
            :func:`linear_optics`.
    """
    values, slope, one_turn = _chromaticity(lattice, orbit_iterations)
    return slope if allow_unstable else _refuse_unstable(slope, values, one_turn)


@functools.partial(jax.jit, static_argnums=(1,))
def _chromaticity(lattice: Lattice, orbit_iterations: int) -> tuple[Array, Array, Array]:
    (values, one_turn), (slope, _) = jax.jvp(
        lambda d: _tunes(lattice, d, orbit_iterations), (jnp.zeros(()),), (jnp.ones(()),)
    )
    return values, slope, one_turn


_S4 = np.array(
    [[0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, -1.0, 0.0]]
)


def _symplectic_inverse(r: Array) -> Array:
    """Inverse of (a stack of) 4x4 symplectic matrices: -S R^T S."""
    return -_S4 @ jnp.swapaxes(r, -1, -2) @ _S4


def orbit_response(
    lattice: Lattice,
    bpms: ArrayLike | str = "Monitor",
    correctors: ArrayLike | str = "Corrector",
    *,
    orbit_iterations: int = 5,
) -> Float[Array, "2 n_bpm 2 n_corr"]:
    """Orbit response matrix: closed-orbit change at BPMs per unit corrector kick.

    Exact linear response of the 4-D closed orbit (fixed momentum) to each corrector's
    ``KickAngle``, from the transfer matrices; any element with a KickAngle field (correctors,
    thick magnets with steering windings) can act as a corrector.

    Returns:
        (2, n_bpm, 2, n_corr) array ``orm[plane_bpm, i, plane_kick, j]`` in m/rad (plane 0 =
        x, 1 = y). The usual blocks are ``orm[0, :, 0, :]`` (x from horizontal kicks) and
        ``orm[1, :, 1, :]``.
    """
    bpm_index = lattice.indices(bpms) if isinstance(bpms, str) else _refpoints(lattice, bpms)
    cor_index = lattice.indices(correctors)
    return _orbit_response(
        lattice,
        tuple(int(i) for i in bpm_index),
        tuple(int(i) for i in cor_index),
        orbit_iterations,
    )


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _orbit_response(
    lattice: Lattice, bpms: tuple[int, ...], correctors: tuple[int, ...], orbit_iterations: int
) -> Array:
    bpm_index, cor_index = np.asarray(bpms, dtype=int), np.asarray(correctors, dtype=int)
    solution = _closed_orbit(lattice, jnp.zeros(()), orbit_iterations)
    sources = _kick_sources(lattice, solution.orbit[:-1], cor_index)  # (n_corr, 6, 2)
    return response_from_matrices(
        solution.transfer[bpm_index],
        solution.transfer[cor_index + 1],
        solution.transfer[-1],
        sources,
        bpm_index[:, None] > cor_index[None, :],
    )


def response_from_matrices(
    transfer_bpm: Float[Array, "b 6 6"],
    transfer_after: Float[Array, "c 6 6"],
    one_turn: Float[Array, "6 6"],
    sources: Float[Array, "c 6 2"],
    downstream: ArrayLike,
) -> Float[Array, "2 b 2 c"]:
    """Closed-orbit response at BPMs to kick sources, from transfer matrices.

    A source g_j right after element e_j moves the orbit at a point k by R_k v_j if k lies
    after the source and by R_k M v_j otherwise, with v_j = (I - M)^-1 R_{e_j+1}^-1 g_j
    (all 4x4 transverse blocks; M the one-turn matrix).

    Args:
        transfer_bpm: transfer matrices from the start to each BPM.
        transfer_after: transfer matrices from the start to each source's exit.
        one_turn: the one-turn matrix.
        sources: d(exit point)/d(kick) of each source, (c, 6, 2).
        downstream: (b, c) True where BPM i lies after source j.
    """
    m = one_turn[:4, :4]
    after = _symplectic_inverse(transfer_after[:, :4, :4])
    n_sources = sources.shape[0]
    v = jnp.linalg.solve(
        jnp.eye(4) - m, jnp.einsum("jab,jbk->ajk", after, sources[:, :4, :]).reshape(4, -1)
    ).reshape(4, n_sources, 2)
    mv = jnp.einsum("ab,bjk->ajk", m, v)
    r_bpm = transfer_bpm[:, :4, :4]
    response = jnp.where(
        jnp.asarray(downstream)[None, :, None, :],
        jnp.einsum("iab,bjk->aikj", r_bpm, v),
        jnp.einsum("iab,bjk->aikj", r_bpm, mv),
    )
    return response[jnp.asarray([0, 2])]


def _kick_sources(lattice: Lattice, entry: Array, index: np.ndarray) -> Array:
    """d(exit point)/d(KickAngle) of the given elements, (k, 6, 2), at their entry points."""

    def per_group(fn, design, params, chosen):
        def exit_point(kick, p, z):
            return fn(eqx.tree_at(lambda q: q.kick_angle, p, kick), z)

        return jax.vmap(jax.jacfwd(exit_point))(params.kick_angle, params, entry[chosen])

    return over_elements(lattice, index, per_group)
