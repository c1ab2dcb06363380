"""Box-bounded nonlinear least squares with exact Jacobians and Gaussian uncertainties.

The bounds are hard: parameters are written as ``x = centre + half_width * tanh(z)`` and the
unconstrained ``z`` is solved for by Levenberg-Marquardt (optimistix), so no iterate ever
leaves the box. Residuals are expected to be whitened by the caller (divided by their
noise standard deviation), so that at the solution the covariance of ``x`` is
``(J^T J)^-1`` with ``J = d residuals / d x`` — exact by autodiff, in the original units.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float

from diffdesign._validation import check_finite, is_concrete
from diffdesign.core.bounds import Box
from diffdesign.inference.identifiability import Identifiability, gaussian_covariance

#: the map of every fit here: x = centre + half_width * tanh(z), strictly inside the box.
_BOX = Box()


class LeastSquaresResult(NamedTuple):
    """Outcome of :func:`bounded_least_squares` (all arrays in the parameters' units).

    Attributes:
        x: the solution, shape (p,).
        covariance: (p, p) Gaussian covariance (J^T J)^-1 at the solution; parameters the
            data do not determine get infinite variance (see `gaussian_covariance`).
        std: (p,) square roots of its diagonal.
        residuals: (m,) whitened residuals at the solution.
        chi2: sum of squared residuals.
        jacobian: (m, p) d residuals / d x at the solution.
        at_bound: (p,) True where the solution sits within 1e-6 of the box's half-width
            from a bound (its Gaussian uncertainty is then not meaningful).
        converged: whether the solver met its tolerances within ``max_steps``.
        num_steps: solver steps taken.
        identifiability: singular values, condition number and correlations of J.
    """

    x: Array
    covariance: Array
    std: Array
    residuals: Array
    chi2: Array
    jacobian: Array
    at_bound: Array
    converged: Array
    num_steps: Array
    identifiability: Identifiability


def bounded_least_squares(
    residual_fn: Callable[[Array], Float[Array, " m"]],
    x0: Float[ArrayLike, " p"],
    lower: Float[ArrayLike, " p"],
    upper: Float[ArrayLike, " p"],
    *,
    rtol: float = 1e-12,
    atol: float = 1e-12,
    max_steps: int = 200,
    stall: tuple[int, float] | None = None,
) -> LeastSquaresResult:
    """Minimise ``sum(residual_fn(x)**2)`` subject to ``lower <= x <= upper``.

    Args:
        residual_fn: whitened residuals (m,) of parameters (p,); jittable.
        x0: starting point inside the box.
        lower: the box's lower corner, lower < upper elementwise.
        upper: the box's upper corner.
        rtol: Levenberg-Marquardt relative tolerance on the unconstrained variables.
        atol: Levenberg-Marquardt absolute tolerance on the unconstrained variables.
        max_steps: iteration limit; the result says whether it converged.
        stall: ``(window, min_decrease)``: also stop, counted as converged, once the sum of
            squares fell by less than ``min_decrease`` over the last ``window`` steps. With
            whitened residuals, a decrease far below 1 is statistically nothing; this ends
            the slow crawl of Levenberg-Marquardt along a valley the data do not resolve
            (where the tolerances on x would keep it walking).

    Jittable as a whole (``jax.jit(partial(bounded_least_squares, fn))``) and vmappable
    over data closed over by ``residual_fn``.
    """
    lower, upper = jnp.asarray(lower, dtype=float), jnp.asarray(upper, dtype=float)
    _check_box(lower, upper, x0)
    if is_concrete(x0) and not _finite_if_known(residual_fn(jnp.asarray(x0, dtype=float))):
        raise ValueError(
            "residual_fn(x0) is not finite at x0 (NaN or inf residuals at the start): check "
            "the model and data at the starting point"
        )
    z0 = _BOX.to_internal(x0, lower, upper)
    to_x = lambda z: _BOX.to_physical(z, lower, upper)
    solver = optx.LevenbergMarquardt(rtol=rtol, atol=atol)
    if stall is None:
        solution = optx.least_squares(
            lambda z, _: residual_fn(to_x(z)), solver, z0, max_steps=max_steps, throw=False
        )
        z, converged = solution.value, solution.result == optx.RESULTS.successful
        num_steps = solution.stats["num_steps"]
    else:
        z, converged, num_steps = _solve_until_stall(
            lambda z: residual_fn(to_x(z)), solver, z0, max_steps, *stall
        )
    x = to_x(z)
    jacobian = jax.jacfwd(residual_fn)(x)
    residuals = residual_fn(x)
    covariance, report = gaussian_covariance(jacobian)
    tolerance = 1e-6 * (upper - lower) / 2.0
    return LeastSquaresResult(
        x=x,
        covariance=covariance,
        std=jnp.sqrt(jnp.diagonal(covariance)),
        residuals=residuals,
        chi2=jnp.sum(residuals**2),
        jacobian=jacobian,
        at_bound=(x - lower < tolerance) | (upper - x < tolerance),
        converged=converged,
        num_steps=num_steps,
        identifiability=report,
    )


def _finite_if_known(value) -> bool:
    """False only for known (not traced) values with NaN or inf entries."""
    return not is_concrete(value) or bool(np.all(np.isfinite(np.asarray(value))))


def _check_box(lower: Array, upper: Array, x0: ArrayLike) -> None:
    """lower < upper and lower <= x0 <= upper, where the values are known (not traced)."""
    check_finite(lower, "lower")
    check_finite(upper, "upper")
    check_finite(x0, "x0")
    shapes = {"x0": np.shape(x0), "lower": np.shape(lower), "upper": np.shape(upper)}
    if len(set(shapes.values())) != 1 or len(shapes["x0"]) != 1:
        listed = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise ValueError(f"x0, lower and upper must have one shape (p,); got {listed}")
    if not all(is_concrete(v) for v in (lower, upper, x0)):
        return
    lower, upper, x0 = (np.asarray(v, dtype=float) for v in (lower, upper, x0))
    if np.any(lower >= upper):
        i = int(np.argmax(lower >= upper))
        raise ValueError(f"lower must be < upper; got lower[{i}]={lower[i]}, upper[{i}]={upper[i]}")
    outside = (x0 < lower) | (x0 > upper)
    if np.any(outside):
        i = int(np.argmax(outside))
        raise ValueError(f"x0[{i}]={x0[i]} lies outside [{lower[i]}, {upper[i]}]")


def least_squares_path(
    residual_fn: Callable[[Array], Float[Array, " m"]],
    x0: Float[ArrayLike, " p"],
    lower: Float[ArrayLike, " p"],
    upper: Float[ArrayLike, " p"],
    num_steps: int,
    *,
    rtol: float = 1e-12,
    atol: float = 1e-12,
) -> Float[Array, " num_steps+1"]:
    """Sum of squared residuals at x0 and after each of ``num_steps`` solver steps.

    The same Levenberg-Marquardt iteration as :func:`bounded_least_squares`, driven step
    by step in one ``lax.scan``, to show how the fit converges (a loss history).
    """
    lower, upper = jnp.asarray(lower, dtype=float), jnp.asarray(upper, dtype=float)
    _check_box(lower, upper, x0)
    z0 = _BOX.to_internal(x0, lower, upper)
    to_x = lambda z: _BOX.to_physical(z, lower, upper)
    solver = optx.LevenbergMarquardt(rtol=rtol, atol=atol)
    fn = lambda z: residual_fn(to_x(z))
    step, dynamic = _stepper(fn, solver, z0)

    def scan_step(carry, _):
        z, dynamic, _, chi2 = step(*carry)
        return (z, dynamic), chi2

    _, chi2 = jax.lax.scan(scan_step, (z0, dynamic), None, length=num_steps)
    return jnp.concatenate([jnp.sum(fn(z0) ** 2)[None], chi2])


def _stepper(fn, solver, z0):
    """One optimistix step as a function of (z, array part of the state), and that state.

    The solver state holds static parts (a jaxpr of the Jacobian): carry only its arrays.
    Returns ``step(z, dynamic) -> (z, dynamic, terminate, sum of squares at z)``; ``z`` is
    the last accepted point.
    """
    wrapped = lambda z, _: (fn(z), None)
    f_struct = jax.eval_shape(fn, z0)
    state = solver.init(wrapped, z0, None, {}, f_struct, None, frozenset())
    dynamic, static = eqx.partition(state, eqx.is_array)

    def step(z, dynamic):
        state = eqx.combine(dynamic, static)
        z, state, _ = solver.step(wrapped, z, None, {}, state, frozenset())
        terminate, _ = solver.terminate(wrapped, z, None, {}, state, frozenset())
        chi2 = jnp.sum(state.f_info.residual**2)
        return z, eqx.filter(state, eqx.is_array), terminate, chi2

    return step, dynamic


def _solve_until_stall(fn, solver, z0, max_steps, window, min_decrease):
    """Step ``solver`` until it terminates, the sum of squares stalls, or ``max_steps``."""
    step, dynamic = _stepper(fn, solver, z0)
    history = jnp.full(window, jnp.inf)

    def cond(carry):
        _, _, k, done, _ = carry
        return (~done) & (k < max_steps)

    def body(carry):
        z, dynamic, k, _, history = carry
        z, dynamic, terminate, chi2 = step(z, dynamic)
        stalled = history[k % window] - chi2 < min_decrease  # chi2 `window` steps ago
        history = history.at[k % window].set(chi2)
        return z, dynamic, k + 1, terminate | stalled, history

    z, _, k, done, _ = jax.lax.while_loop(cond, body, (z0, dynamic, 0, False, history))
    return z, done, k
