"""Iterated linearised MAP: Gauss-Newton with a Gaussian prior (domain-free).

The model: ``data = f(x) + noise``, ``noise ~ N(0, diag(noise_sigma²))``, prior
``x ~ N(prior_mean, diag(prior_sigma²))``. Each iteration linearises the residual
``r(x) = data - f(x)`` at the iterate, ``r(x + d) ≈ r(x) - J d`` with ``J = df/dx``, and
takes the exact Gaussian posterior of the linearised problem
(:func:`diffdesign.inference.linear_gaussian.posterior`) with the prior on the *total*
``x + d``; its mean is the next iterate. At the fixed point the iterate is the MAP of the
nonlinear model, and the posterior covariance linearised there is the Laplace approximation.
For a linear model one iteration is exact.

The prior may change from one iteration to the next: ``prior_sigma`` and ``prior_mean`` may
be callables of the iteration (e.g. an evidence-optimal scale at each linearisation, or a
prior on the remaining error only: ``prior_mean=lambda t, x: x``).

The loop is a Python loop over at most ``n_iter`` linearisations: it runs eagerly with
host-side functions (a jitted model called from Python), or inside ``jax.jit`` where it
unrolls (keep ``n_iter`` small there, or jit the linearisation instead of the loop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from diffdesign._validation import check_finite, float_array, is_concrete
from diffdesign.inference import linear_gaussian as lg

__all__ = ["GaussNewtonHistory", "GaussNewtonResult", "gauss_newton"]

#: ``(iteration, x, residual, jacobian) -> sigma`` (scalar or ``(n,)``).
SigmaRule = Callable[[Array, Array, Array, Array], ArrayLike]
#: ``(iteration, x) -> mean`` (``(n,)``).
MeanRule = Callable[[Array, Array], ArrayLike]


class GaussNewtonHistory(NamedTuple):
    """One row per linearisation ``t = 0 .. k`` (``k`` steps taken; the last row is the
    linearisation at the estimate, which gives the covariance).

    Attributes:
        x: ``(k + 1, n)`` the iterates, starting with ``x0``.
        chi2: ``(k + 1,)`` ``‖r(x_t) / noise_sigma‖²``.
        prior_sigma: ``(k + 1, n)`` prior sigma used at each linearisation.
        singular_values: ``(k + 1, min(m, n))`` singular values of the whitened, prior-scaled
            Jacobian ``J / noise_sigma * prior_sigma`` (directions with ``s > 1`` are
            determined by the data rather than the prior).
    """

    x: Array
    chi2: Array
    prior_sigma: Array
    singular_values: Array


class GaussNewtonResult(NamedTuple):
    """Outcome of :func:`gauss_newton` (parameter units).

    Attributes:
        x: ``(n,)`` the estimate after the last step.
        covariance: ``(n, n)`` posterior covariance linearised at ``x``.
        std: ``(n,)`` square roots of its diagonal.
        history: per-iteration :class:`GaussNewtonHistory`.
        n_steps: steps taken (``n_iter``, or fewer when ``tol`` stopped the loop).
        converged: whether ``tol`` was reached (False without ``tol``).
    """

    x: Array
    covariance: Array
    std: Array
    history: GaussNewtonHistory
    n_steps: int
    converged: bool


def _autodiff_linearise(residual_fn: Callable[[Array], Array]) -> Callable:
    jacobian = jax.jacfwd(residual_fn)

    def linearise(x):
        # d(data - f)/dx = -J exactly (the tangent of a difference is a negation).
        return residual_fn(x), -jacobian(x)

    return linearise


def gauss_newton(
    fn: Callable[[Array], Array] | Callable[[Array], tuple[Array, Array]],
    x0: Float[ArrayLike, " n"],
    *,
    noise_sigma: Float[ArrayLike, " m"] | float,
    prior_sigma: Float[ArrayLike, " n"] | float | SigmaRule,
    prior_mean: Float[ArrayLike, " n"] | MeanRule | None = None,
    has_jacobian: bool = False,
    n_iter: int = 5,
    tol: float | None = None,
) -> GaussNewtonResult:
    """Gauss-Newton iterations to the MAP of a nonlinear model with a Gaussian prior.

    Args:
        fn: ``x (n,) -> residual (m,)``, the residual ``data - f(x)`` (data units), whose
            Jacobian is then taken by forward-mode autodiff; or, with ``has_jacobian``,
            ``x -> (residual (m,), J (m, n))`` with ``J = df/dx`` (the model's Jacobian,
            i.e. minus the residual's), for models that compute both at once.
        x0: ``(n,)`` the first iterate (parameter units).
        noise_sigma: scalar or ``(m,)`` noise standard deviation (data units, > 0); the
            weights are ``1 / noise_sigma²``.
        prior_sigma: scalar or ``(n,)`` prior standard deviation (parameter units, > 0; the
            precision is ``1 / prior_sigma²``), or a rule
            ``(iteration, x, residual, J) -> sigma`` evaluated at every linearisation.
        prior_mean: ``(n,)`` prior mean of ``x`` (zero if None), or a rule
            ``(iteration, x) -> mean`` (``lambda t, x: x`` puts the prior on each step:
            damping towards the current iterate).
        has_jacobian: ``fn`` returns ``(residual, J)``.
        n_iter: at most this many steps, >= 1.
        tol: stop when ``‖step‖ <= tol * (‖x‖ + tol)`` (needs concrete values, i.e. not
            under ``jit``); None: exactly ``n_iter`` steps.

    Returns:
        A :class:`GaussNewtonResult`; the covariance is linearised at the estimate, so
        ``fn`` is evaluated ``n_steps + 1`` times.

    Raises:
        ValueError: ``x0`` not a non-empty 1-D array, ``n_iter < 1``, ``tol < 0`` or under
            tracing; residual or Jacobian shapes that do not fit (from the linear solve).

    Example:
        >>> result = gauss_newton(lambda x: y - model(x), jnp.zeros(n),
        ...                       noise_sigma=0.01, prior_sigma=1e-3)  # doctest: +SKIP
        >>> result.x, result.std, result.history.chi2  # doctest: +SKIP
    """
    x = float_array(x0, "x0", "gauss_newton")
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"x0 must be a non-empty 1-D array; got shape {x.shape}")
    check_finite(x, "x0", "gauss_newton")
    n = x.shape[0]
    if isinstance(n_iter, bool) or not isinstance(n_iter, int | np.integer) or n_iter < 1:
        raise ValueError(f"n_iter must be an integer >= 1; got {n_iter!r}")
    if tol is not None:
        if not float(tol) >= 0.0:
            raise ValueError(f"tol must be >= 0 or None; got {tol!r}")
        if not is_concrete(x):
            raise ValueError("tol needs concrete values: under jit, give n_iter only")
    linearise = fn if has_jacobian else _autodiff_linearise(fn)
    sigma_rule = prior_sigma if callable(prior_sigma) else None
    mean_rule = prior_mean if callable(prior_mean) else None

    def solve(t, x):
        residual, jacobian = linearise(x)
        noise = jnp.broadcast_to(jnp.asarray(noise_sigma, dtype=float), residual.shape)
        if sigma_rule is None:
            sigma = prior_sigma
        else:
            sigma = sigma_rule(jnp.asarray(t), x, residual, jacobian)
        sigma = jnp.broadcast_to(jnp.asarray(sigma, dtype=float), (n,))
        if prior_mean is None:
            step_mean = -x
        else:
            mean = mean_rule(jnp.asarray(t), x) if mean_rule is not None else prior_mean
            step_mean = jnp.asarray(mean, dtype=float) - x
        post = lg.posterior(jacobian, residual, noise, sigma, step_mean)
        return post, jnp.sum((residual / noise) ** 2), sigma

    xs, chi2s, sigmas, singular = [], [], [], []
    converged = False
    steps = 0
    for t in range(n_iter + 1):
        post, chi2, sigma = solve(t, x)
        xs.append(x)
        chi2s.append(chi2)
        sigmas.append(sigma)
        singular.append(post.singular_values)
        if t == n_iter or converged:
            break
        step = post.mean
        x = x + step
        steps += 1
        if tol is not None:
            converged = bool(jnp.linalg.norm(step) <= tol * (jnp.linalg.norm(x) + tol))
    return GaussNewtonResult(
        x=x,
        covariance=post.covariance,
        std=post.std,
        history=GaussNewtonHistory(
            x=jnp.stack(xs),
            chi2=jnp.stack(chi2s),
            prior_sigma=jnp.stack(sigmas),
            singular_values=jnp.stack(singular),
        ),
        n_steps=steps,
        converged=converged,
    )
