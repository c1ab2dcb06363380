"""Bounded least-squares fits of two-time data: trust-region (Levenberg-Marquardt) with multi-start.

The fit minimises the sum of squared whitened residuals of :mod:`diffdesign.xpcs.likelihood`
inside a box. Three ideas make it fast and robust where homodyne's fit struggles:

- **Variable projection.** Contrast and offset enter linearly, so for any physical parameters
  their best values per angle are a two-variable box-constrained linear least-squares
  problem, solved in closed form. The solver then moves only the 3 or 7 physical parameters
  (Golub-Pereyra); the contrast/offset-vs-shear degeneracy cannot stall it, and the Jacobian
  is m x 7 instead of m x (7 + 2 n_phi). Its minimum is the full problem's minimum.
- **Scaling.** Every physical parameter is mapped to ``z`` by
  ``y = centre + half_width * tanh(z)`` inside its box, with ``y = log x`` for D0 and
  gamma_dot_t0 (which span decades) and ``y = x`` otherwise, so D0 ~ 1e4 and gamma_dot ~ 1e-3
  both move by O(1) in z, and no iterate leaves the box.
- **Multi-start.** Starts from a Latin hypercube (log-uniform for D0 and gamma_dot_t0) are
  screened by their chi^2 on a stratified subsample of the points, all at once (vmap); the
  user's guess and the best-screened starts are fitted on the subsample, and the best of
  those is refitted on all points (coarse to fine: one fit on all points, however many
  starts).
- **A statistical stopping rule.** Where the data do not resolve a direction (D0 against
  D_offset when shear dominates the decay), Levenberg-Marquardt crawls along the valley for
  hundreds of steps, each lowering chi^2 by 1e-3. The fit stops once chi^2 fell by less
  than 0.05 over 10 steps, far below the change of 1 that one standard deviation makes.

Two solvers reach the same minimum:

- ``"normal-equations"`` (default): Levenberg-Marquardt (Nielsen's damping) on the physical
  parameters, with the step from the full ``J^T J`` and the scalings eliminated by a Schur
  complement (Kaufman's variable projection). Every pass over the points is streamed in
  chunks, so memory is bounded for 10M+ points, and a step costs one forward-mode pass.
- ``"optimistix"``: optimistix's Levenberg-Marquardt on the profiled residuals, which holds
  the whole m x 7 Jacobian and differentiates through the projection; measured 5-15x slower
  per fit here, kept as the cross-check (the tests require both to agree).

The covariance of *all* parameters (physical and scalings) is ``(J^T J)^-1`` of the full
residuals at the solution, accumulated over chunks of points.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from diffdesign.core.bounds import Box
from diffdesign.inference.identifiability import Identifiability, gaussian_covariance
from diffdesign.inference.least_squares import bounded_least_squares
from diffdesign.xpcs.data import Points, XpcsData, shard_points
from diffdesign.xpcs.likelihood import (
    DEFAULT_SCALING,
    Problem,
    Scaling,
    chi_squared,
    make_problem,
    normal_equations,
    parameter_box,
    resolve_bounds,
)
from diffdesign.xpcs.scaling import ScalingBox, profiled_residuals, with_scalings
from diffdesign.xpcs.spec import LOG_SCALE

SOLVERS = ("normal-equations", "optimistix")
#: Stop once chi^2 fell by less than 0.05 over 10 steps: statistically nothing (one standard
#: deviation of a parameter is a change of 1), so the fit ends instead of crawling along a
#: valley the data do not resolve.
_STALL = (10, 0.05)
_MAX_STEP = 0.25
_LOG_SPACED = LOG_SCALE  # strictly positive, spanning decades


class NlsqResult(NamedTuple):
    """Outcome of :func:`fit_nlsq`; arrays in the parameters' own units.

    Attributes:
        names: names of the parameter vector (physical, then contrast/offset per angle).
        x: (p,) best-fit parameters.
        std: (p,) standard errors from (J^T J)^-1 (inf where the data do not determine one).
        covariance, correlation: (p, p).
        chi2: sum of squared whitened residuals; reduced_chi2 = chi2 / (n_points - p).
        n_points: points fitted (one triangle of each angle's two-time matrix).
        converged: the final solver met its tolerances; num_steps its iterations.
        at_bound: (p,) parameters within 1e-6 of their box's half-width from a bound.
        screen_chi2: (n_starts,) chi^2 of each start on the screening subsample (with its
            best contrast/offset); the user's guess (index 0) and the best-screened others
            were refined.
        refined_chi2: (n_refine,) chi^2 on the subsample after fitting each refined start
            there; the best was refitted on all points (when the subsample is not all).
        wall_time: seconds, compile included.
        status: ``"converged"``, or what is wrong, the most serious first:
            ``"max_steps"`` (stopped at the iteration limit), ``"not_converged"`` (the
            damping ran away), ``"poor_fit"`` (chi2/dof above :data:`POOR_FIT`: a local
            minimum or a model that does not describe the data), ``"at_bound"``,
            ``"degenerate"`` (a direction the data measure :data:`DEGENERATE` times worse
            than the best one: its parameters are not separately determined).
        message: every problem found, in words (empty when there is none).
        weakest_direction: (p,) the unit combination of parameters (each in units of its
            own scale, the columns of J equilibrated) the data measure least.
        condition_number: best over worst-measured direction (singular values of the
            equilibrated J; inf when one is not measured at all).
    """

    names: tuple[str, ...]
    x: Array
    std: Array
    covariance: Array
    correlation: Array
    chi2: Array
    reduced_chi2: Array
    n_points: Array
    converged: Array
    num_steps: Array
    at_bound: Array
    screen_chi2: Array
    refined_chi2: Array
    wall_time: float
    mode: str
    scaling: str
    integral: str
    status: str = "converged"
    message: str = ""
    weakest_direction: Array | None = None
    condition_number: float = float("nan")

    def values(self) -> dict[str, float]:
        """Parameter name -> best-fit value."""
        return {n: float(v) for n, v in zip(self.names, np.asarray(self.x), strict=True)}

    def to_json(self) -> dict:
        """A JSON-serialisable summary (inf written as None)."""

        def clean(a):
            a = np.asarray(a, dtype=float)
            return [None if not np.isfinite(v) else float(v) for v in a.ravel()]

        return {
            "mode": self.mode,
            "scaling": self.scaling,
            "integral": self.integral,
            "parameters": dict(zip(self.names, clean(self.x), strict=True)),
            "std": dict(zip(self.names, clean(self.std), strict=True)),
            "correlation": np.asarray(self.correlation).round(6).tolist(),
            "chi2": float(self.chi2),
            "reduced_chi2": float(self.reduced_chi2),
            "n_points": int(self.n_points),
            "converged": bool(self.converged),
            "num_steps": int(self.num_steps),
            "at_bound": [
                n for n, b in zip(self.names, np.asarray(self.at_bound), strict=True) if b
            ],
            "screen_chi2": clean(self.screen_chi2),
            "refined_chi2": clean(self.refined_chi2),
            "wall_time_s": self.wall_time,
            "status": self.status,
            "message": self.message,
            "weakest_direction": None
            if self.weakest_direction is None
            else dict(zip(self.names, clean(self.weakest_direction), strict=True)),
            "condition_number": None
            if not np.isfinite(self.condition_number)
            else float(self.condition_number),
        }


def fit_nlsq(
    data: XpcsData,
    mode: str,
    *,
    scaling: Scaling = DEFAULT_SCALING,
    integral: str = "trapezoid",
    initial: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    fixed: Mapping[str, float] | None = None,
    n_starts: int = 32,
    n_refine: int = 3,
    seed: int = 0,
    solver: str = "normal-equations",
    screen_points: int = 20000,
    chunk_size: int = 65536,
    max_steps: int = 200,
    tol: float = 1e-10,
) -> NlsqResult:
    """Fit the two-time model to ``data`` by bounded trust-region least squares.

    Args:
        data: the measurement.
        mode: ``"static"``, ``"laminar_flow"`` or ``"two_component"``.
        scaling: per-angle contrast/offset: ``IndividualScaling()`` (the default),
            ``AveragedScaling()`` or ``ConstantScaling()``.
        integral: ``"trapezoid"`` (homodyne's) or ``"exact"``.
        initial: a starting guess of physical parameters (any subset; the rest from the box
            centre); it is always among the starts.
        bounds: box per parameter name (``contrast``/``offset`` for the scalings), overriding
            :data:`~diffdesign.xpcs.likelihood.DEFAULT_BOUNDS`.
        fixed: physical parameters held at given values (absent from ``names`` and ``x``);
            e.g. ``{"f2": 0.0}`` for the two-component model, whose f0 and f2 are one
            direction of the data.
        n_starts: starts screened (the initial guess plus a Latin hypercube); 1 for none.
        n_refine: starts fitted on the subsample: the initial guess and the best-screened
            others; the best is refitted on all points.
        seed: seed of the Latin hypercube (numpy's generator: host-side set-up).
        solver: ``"normal-equations"`` (streamed, bounded memory) or ``"optimistix"``
            (optimistix's Levenberg-Marquardt on the profiled residuals); see the module doc.
        screen_points: size of the stratified subsample the starts are screened on.
        chunk_size: points per chunk when accumulating J^T J.
        max_steps: iteration limit of the final fit; tol: its relative tolerance.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}; got {solver!r}")
    for name, value in (
        ("n_starts", n_starts), ("n_refine", n_refine), ("screen_points", screen_points),
        ("chunk_size", chunk_size), ("max_steps", max_steps),
    ):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if not (isinstance(tol, int | float) and np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol (relative tolerance) must be a finite number >= 0; got {tol!r}")
    start_time = time.perf_counter()
    problem = make_problem(
        data, mode, scaling=scaling, integral=integral, bounds=bounds, fixed=fixed
    )
    box = resolve_bounds(bounds)
    lower, upper = parameter_box(problem, bounds)
    n_phys = len(problem.physical_names)
    starts = initial_guesses(problem, box, initial, n_starts, seed)

    n_screen = -(-problem.points.size // max(screen_points, 1))
    screen = problem.with_points(_first_shard(problem.points, n_screen))
    screen_chi2 = _screen_values(starts, screen, _scaling_box(box))

    def solve(on: Problem, physical0):
        if solver == "optimistix":
            return _dense_fit(on, physical0, lower[:n_phys], upper[:n_phys], box, max_steps, tol)
        return _streamed_levenberg_marquardt(
            on, physical0, lower[:n_phys], upper[:n_phys], _scaling_box(box),
            _log_mask(on, lower[:n_phys]), chunk_size=chunk_size, max_steps=max_steps, tol=tol,
        )  # fmt: skip

    # Coarse to fine: fit the user's guess and the best-screened others on the subsample
    # (one compiled solver), then refit the best of them on all points.
    others = [int(k) for k in np.argsort(np.asarray(screen_chi2)) if k != 0]
    fits = []
    for k in [0, *others[: max(0, n_refine - 1)]]:
        theta, converged, steps = solve(screen, starts[k])
        fits.append(
            (float(_chi_squared(theta, screen, chunk_size=chunk_size)), theta, converged, steps)
        )
    refined_chi2 = jnp.asarray([f[0] for f in fits])
    _, theta, converged, steps = min(fits, key=lambda f: f[0])
    if n_screen > 1:
        theta, converged, steps = solve(problem, theta[:n_phys])
    jtj, _, chi2 = _normal_equations(theta, problem, chunk_size=chunk_size)
    covariance, report = _identifiability_from_normal(jtj)
    n_points = problem.n_points
    tolerance = 1e-6 * (upper - lower) / 2.0
    at_bound = (theta - lower < tolerance) | (upper - theta < tolerance)
    reduced_chi2 = chi2 / (n_points - theta.shape[0])
    status, message = diagnose(
        problem.names, bool(converged), int(steps), max_steps, float(reduced_chi2),
        np.asarray(at_bound), np.asarray(report.weakest_direction),
        float(report.condition_number),
    )  # fmt: skip
    return NlsqResult(
        names=problem.names,
        x=theta,
        std=jnp.sqrt(jnp.diagonal(covariance)),
        covariance=covariance,
        correlation=report.correlation,
        chi2=chi2,
        reduced_chi2=reduced_chi2,
        n_points=n_points,
        converged=converged,
        num_steps=steps,
        at_bound=at_bound,
        screen_chi2=screen_chi2,
        refined_chi2=refined_chi2,
        wall_time=time.perf_counter() - start_time,
        mode=problem.mode,
        scaling=problem.scaling.name,
        integral=problem.integral,
        status=status,
        message=message,
        weakest_direction=report.weakest_direction,
        condition_number=float(report.condition_number),
    )


#: chi2 per degree of freedom above which a fit is reported as ``"poor_fit"``.
POOR_FIT = 2.0
#: Condition number (of the equilibrated J) above which a fit is ``"degenerate"``: its
#: weakest direction's standard error is 1e4 times its best one's.
DEGENERATE = 1e4


def diagnose(
    names: tuple[str, ...], converged: bool, steps: int, max_steps: int, reduced_chi2: float,
    at_bound: np.ndarray, weakest: np.ndarray, condition: float,
) -> tuple[str, str]:  # fmt: skip
    """The status and message of a fit: every problem in words, the most serious first."""
    problems = []
    if not converged and steps >= max_steps:
        problems.append(("max_steps", f"stopped at max_steps = {max_steps} before meeting its "
                         "tolerances: raise max_steps or start closer"))  # fmt: skip
    elif not converged:
        problems.append(("not_converged", f"did not converge ({steps} steps; the damping "
                         "grew without an accepted step)"))  # fmt: skip
    if not reduced_chi2 <= POOR_FIT:
        problems.append(("poor_fit", f"chi2/dof = {reduced_chi2:.3g} > {POOR_FIT}: a local "
                         "minimum (start nearer, more starts) or a model or noise level that "
                         "does not describe the data"))  # fmt: skip
    bounded = [n for n, b in zip(names, at_bound, strict=True) if b]
    if bounded:
        problems.append(("at_bound", f"at a bound: {', '.join(bounded)}"))
    if not condition <= DEGENERATE:
        order = np.argsort(-np.abs(weakest))
        terms = " ".join(f"{weakest[k]:+.2f} {names[k]}" for k in order[:4]
                         if abs(weakest[k]) >= 0.05)  # fmt: skip
        problems.append(("degenerate", f"the data hardly measure {terms} (each in units of its "
                         f"scale; condition number {condition:.2g}): fix one of these "
                         "parameters or report their combination"))  # fmt: skip
    if not problems:
        return "converged", ""
    return problems[0][0], "; ".join(text for _, text in problems)


def initial_guesses(
    problem: Problem,
    box: Mapping[str, tuple[float, float]],
    initial: Mapping[str, float] | None,
    n_starts: int,
    seed: int = 0,
) -> Float[Array, "n_starts n_phys"]:
    """The user's guess (box centre where absent) then a Latin hypercube of ``n_starts - 1``.

    D0 and gamma_dot_t0 are drawn log-uniformly (their ranges span decades).
    """
    names = problem.physical_names
    initial = dict(initial or {})
    unknown = sorted(set(initial) - set(names))
    if unknown:
        raise ValueError(f"initial: unknown parameters {unknown} for mode {problem.mode!r}")
    first = []
    for name in names:
        lo, hi = box[name]
        value = float(initial.get(name, _centre(name, lo, hi)))
        if not (np.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"initial[{name!r}] = {value} lies outside its bounds [{lo}, {hi}]")
        first.append(value)
    n_lhs = n_starts - 1
    rng = np.random.default_rng(seed)
    u = np.argsort(rng.random((len(names), n_lhs)), axis=1).T + rng.random((n_lhs, len(names)))
    u /= max(n_lhs, 1)
    columns = []
    for c, name in enumerate(names):
        lo, hi = box[name]
        if name in _LOG_SPACED and lo > 0:
            columns.append(np.exp(np.log(lo) + u[:, c] * np.log(hi / lo)))
        else:
            columns.append(lo + u[:, c] * (hi - lo))
    return jnp.asarray(np.concatenate([[first], np.stack(columns, axis=1)]))


def _centre(name: str, lo: float, hi: float) -> float:
    if name in _LOG_SPACED and lo > 0:
        return float(np.sqrt(lo * hi))
    return 0.5 * (lo + hi)


def _first_shard(pts: Points, n_shards: int) -> Points:
    if n_shards <= 1:
        return pts
    shards = shard_points(pts, n_shards)
    return Points(*(getattr(shards, f)[0] for f in ("angle", "i", "j", "c2", "weight")))


def _scaling_box(box: Mapping[str, tuple[float, float]]) -> ScalingBox:
    """(contrast lower, upper, offset lower, upper): hashable, a static jit argument."""
    return (*map(float, box["contrast"]), *map(float, box["offset"]))


@partial(jax.jit, static_argnames="box")
def _screen_values(starts, screen, box):
    """chi^2 of each start on the subsample, contrast/offset projected: one vmapped pass."""
    return jax.vmap(lambda x: with_scalings(x, screen, box)[1])(starts)


def _log_mask(problem: Problem, lower) -> tuple[bool, ...]:
    """Parameters the solver moves in log space: positive ones spanning decades."""
    return tuple(
        bool(name in _LOG_SPACED and lo > 0)
        for name, lo in zip(problem.physical_names, np.asarray(lower), strict=True)
    )


def _solver_space(x, logs):
    """Physical values -> the solver's variables (log of the log-spaced ones)."""
    return jnp.where(jnp.asarray(logs), jnp.log(jnp.where(jnp.asarray(logs), x, 1.0)), x)


def _physical_space(y, logs):
    """The solver's variables -> physical values (exp of the log-spaced ones). The exponent
    of the others is masked to 0 first: exp(y) of a linear parameter above 709 (a D_offset of
    967) overflows, and reverse mode would multiply that inf by the where's zero cotangent
    into a NaN gradient (which froze NUTS chains)."""
    logs = jnp.asarray(logs)
    return jnp.where(logs, jnp.exp(jnp.where(logs, y, 0.0)), y)


def _dense_fit(problem, x0, lower, upper, box, max_steps, tol):
    logs = _log_mask(problem, lower)
    return _dense_fit_jit(x0, problem, lower, upper, _scaling_box(box), logs, max_steps, tol)


@partial(jax.jit, static_argnames=("box", "logs", "max_steps", "tol"))
def _dense_fit_jit(x0, problem, lower, upper, box, logs, max_steps, tol):
    fit = bounded_least_squares(
        lambda y: profiled_residuals(_physical_space(y, logs), problem, box),
        _solver_space(x0, logs), _solver_space(lower, logs), _solver_space(upper, logs),
        rtol=tol, atol=tol, max_steps=max_steps, stall=_STALL,
    )  # fmt: skip
    x = _physical_space(fit.x, logs)
    return with_scalings(x, problem, box)[0], fit.converged, fit.num_steps


@partial(jax.jit, static_argnames=("box", "logs", "chunk_size", "max_steps", "tol"))
def _streamed_levenberg_marquardt(
    problem, physical0, lower, upper, box: ScalingBox, logs, chunk_size, max_steps, tol
):
    """Levenberg-Marquardt on the physical parameters, every pass over the points in chunks.

    Variable projection as in the optimistix fit: each trial point's chi^2 comes from the six
    streamed sums per angle (:func:`~diffdesign.xpcs.scaling.scaling_statistics`), and the
    step from the full J^T J with the scalings eliminated by a Schur complement (Kaufman's
    approximation). Works in the box's z variables; Marquardt's diagonal scaling, Nielsen's
    damping update; stops when an accepted step changes z or chi^2 by less than ``tol``
    (relative), or chi^2 stalls (:data:`_STALL`).
    """
    lower_y, upper_y = _solver_space(lower, logs), _solver_space(upper, logs)
    z0 = Box().to_internal(_solver_space(physical0, logs), lower_y, upper_y)
    n = physical0.shape[0]

    def to_y(z):
        return Box().to_physical(z, lower_y, upper_y)

    def to_x(z):
        return _physical_space(to_y(z), logs)

    def evaluate(z):
        return with_scalings(to_x(z), problem, box, chunk_size)

    def reduced_normal(z, theta):
        jtj, jtr, _ = normal_equations(theta, problem, chunk_size)
        scale = jax.jacfwd(to_x)(z).diagonal()  # dx/dz of the physical parameters
        a, b = jtj[:n, :n] * scale[:, None] * scale[None, :], jtr[:n] * scale
        if jtj.shape[0] > n:  # eliminate the scalings
            coupling = jtj[:n, n:] * scale[:, None]
            inner = jtj[n:, n:] + 1e-12 * jnp.trace(jtj[n:, n:]) * jnp.eye(jtj.shape[0] - n)
            a = a - coupling @ jnp.linalg.solve(inner, coupling.T)
            b = b - coupling @ jnp.linalg.solve(inner, jtr[n:])
        return a, b

    def cond(state):
        return (~state["done"]) & (state["step"] < max_steps)

    def body(state):
        z, a, g, chi2, lam, nu = (state[k] for k in ("z", "a", "g", "chi2", "lam", "nu"))
        diag = jnp.maximum(jnp.diagonal(a), 1e-12 * jnp.max(jnp.diagonal(a)))
        delta = jnp.linalg.solve(a + lam * jnp.diag(diag), -g)
        # A trust radius in z: no parameter moves by more than _MAX_STEP per iteration, so a
        # direction the data barely measure cannot throw the fit against a bound at once.
        delta = delta * jnp.minimum(1.0, _MAX_STEP / jnp.max(jnp.abs(delta)))
        theta_new, chi2_new = evaluate(z + delta)
        predicted = -(2.0 * g @ delta + delta @ a @ delta)
        rho = (chi2 - chi2_new) / jnp.where(predicted > 0, predicted, jnp.inf)
        accept = (rho > 0) & jnp.isfinite(chi2_new)
        z_next = jnp.where(accept, z + delta, z)
        a_next, g_next = jax.lax.cond(
            accept, lambda: reduced_normal(z_next, theta_new), lambda: (a, g)
        )
        lam_next = jnp.where(accept, lam * jnp.maximum(1 / 3, 1 - (2 * rho - 1) ** 3), lam * nu)
        small_step = jnp.linalg.norm(delta) <= tol * (jnp.linalg.norm(z) + tol)
        small_gain = (chi2 - chi2_new <= tol * chi2) & (predicted <= tol * chi2)
        k = state["step"]
        stalled = state["history"][k % _STALL[0]] - chi2_new < _STALL[1]
        converged = (accept & (small_step | small_gain)) | stalled
        return {
            "z": z_next,
            "theta": jnp.where(accept, theta_new, state["theta"]),
            "a": a_next,
            "g": g_next,
            "chi2": jnp.where(accept, chi2_new, chi2),
            "lam": lam_next,
            "nu": jnp.where(accept, 2.0, 2.0 * nu),
            "step": state["step"] + 1,
            "history": state["history"].at[k % _STALL[0]].set(jnp.minimum(chi2_new, chi2)),
            "done": converged | (lam_next > 1e16),
            "converged": converged,
        }

    theta0, chi2_0 = evaluate(z0)
    a0, g0 = reduced_normal(z0, theta0)
    state = {
        "z": z0, "theta": theta0, "a": a0, "g": g0, "chi2": chi2_0, "lam": jnp.asarray(1.0),
        "nu": jnp.asarray(2.0), "step": jnp.asarray(0), "done": jnp.asarray(False),
        "converged": jnp.asarray(False), "history": jnp.full(_STALL[0], jnp.inf),
    }  # fmt: skip
    state = jax.lax.while_loop(cond, body, state)
    return state["theta"], state["converged"], state["step"]


_normal_equations = jax.jit(normal_equations, static_argnames="chunk_size")
_chi_squared = jax.jit(chi_squared, static_argnames="chunk_size")


def covariance_from_normal(jtj: Float[Array, "p p"]) -> tuple[Array, Array]:
    """Covariance (J^T J)^-1 and correlation, columns equilibrated first (units differ by 1e7)."""
    covariance, report = _identifiability_from_normal(jtj)
    return covariance, report.correlation


@jax.jit
def _identifiability_from_normal(jtj: Float[Array, "p p"]) -> tuple[Array, Identifiability]:
    """Covariance and the identifiability report (weakest direction, condition number) of
    the equilibrated J whose J^T J is given."""
    d = jnp.sqrt(jnp.diagonal(jtj))
    d = jnp.where(d > 0, d, 1.0)
    scaled = jtj / (d[:, None] * d[None, :])
    eigenvalues, vectors = jnp.linalg.eigh(scaled)
    root = jnp.sqrt(jnp.clip(eigenvalues, 0.0))[:, None] * vectors.T  # root^T root = scaled
    covariance, report = gaussian_covariance(root)
    return covariance / (d[:, None] * d[None, :]), report
