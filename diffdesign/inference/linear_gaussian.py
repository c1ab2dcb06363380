"""Bayesian linear regression with Gaussian noise and prior, and its classical relatives.

The model is ``y = J x + e`` with independent noise ``e_i ~ N(0, noise_sigma_i²)`` and an
independent Gaussian prior ``x_j ~ N(prior_mean_j, prior_sigma_j²)``. Everything is
computed from one SVD of the *whitened* Jacobian

    A = diag(1/noise_sigma) J diag(prior_sigma) = U S Vᵀ,   b = (y - J prior_mean) / noise_sigma,

in which the prior is the identity and the noise is white, so that

* the posterior mean is ``prior_mean + prior_sigma * V S/(S²+1) Uᵀ b`` (the minimiser of
  ``‖(y - J x)/noise_sigma‖² + ‖(x - prior_mean)/prior_sigma‖²``, i.e. ridge regression),
* the posterior covariance is ``diag(prior_sigma) (I - V diag(S²/(S²+1)) Vᵀ) diag(prior_sigma)``
  (directions the data do not see keep their prior variance),
* the log evidence ``log N(y; J prior_mean, J diag(prior_sigma²) Jᵀ + diag(noise_sigma²))``
  needs only ``S``, ``c = Uᵀ b`` and ``‖b - U c‖²``; scaling the prior by ``tau`` and the
  noise by ``nu`` only rescales ``S`` to ``tau S / nu``, so the evidence of a whole family of
  priors costs O(min(m, n)) per member after the one SVD.

None of the formulas forms ``JᵀJ`` (whose condition number is the square of ``J``'s), and
``m < n`` (more parameters than data, the usual case in optics correction) and ``m >= n``
are both handled.

The classical estimators (:func:`tikhonov`, :func:`truncated_svd`, :func:`pseudo_inverse`)
take row ``weights`` (inverse variances, ``W = diag(1/noise_sigma²)``) and are filters
of the same SVD; with ``weights = 1/noise_sigma²`` and ``alpha = 1/prior_sigma²``,
:func:`tikhonov` equals the posterior mean. They accept a batch of residuals
``(..., m)`` and of regularisation settings, sharing one SVD.

Units: ``x`` in the parameters' units, ``y``, ``residual`` and ``noise_sigma`` in the data's;
``prior_sigma`` in the parameters' units; ``weights`` in 1/data units², ``alpha`` in
1/parameter units² (relative to weighted data, see :func:`tikhonov`).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from diffdesign._validation import check_finite, check_positive, is_concrete

_LOG_2PI = float(np.log(2.0 * np.pi))
_GOLDEN = float((np.sqrt(5.0) - 1.0) / 2.0)


class LinearGaussianPosterior(NamedTuple):
    """Posterior of ``x`` in ``y = J x + e`` (see :func:`posterior`).

    Attributes:
        mean: ``(n,)`` posterior mean = maximum a posteriori estimate (parameter units).
        covariance: ``(n, n)`` posterior covariance (parameter units²).
        std: ``(n,)`` square roots of its diagonal.
        residuals: ``(m,)`` whitened residuals ``(y - J mean) / noise_sigma`` (dimensionless).
        chi2: ``sum(residuals²)``.
        prior_penalty: ``sum(((mean - prior_mean) / prior_sigma)²)``; ``chi2 + prior_penalty``
            is the minimised objective.
        effective_parameters: ``sum(S²/(S²+1))``, the number of parameter combinations the
            data determine better than the prior does (MacKay's gamma); at the evidence
            optimum ``chi2 ≈ m - effective_parameters``.
        log_evidence: log marginal likelihood ``log p(y)`` (log of 1/data units^m).
        singular_values: ``(min(m, n),)`` singular values ``S`` of the whitened Jacobian
            ``diag(1/noise_sigma) J diag(prior_sigma)``, largest first (dimensionless).
    """

    mean: Array
    covariance: Array
    std: Array
    residuals: Array
    chi2: Array
    prior_penalty: Array
    effective_parameters: Array
    log_evidence: Array
    singular_values: Array


class EvidenceOptimum(NamedTuple):
    """Type-II maximum likelihood scale of the prior (and optionally of the noise).

    Attributes:
        prior_sigma: the evidence-maximising prior standard deviation (parameter units);
            multiplied by ``prior_scale`` when one was given.
        noise_scale: factor on ``noise_sigma`` maximising the evidence jointly (1.0 unless
            ``fit_noise_scale``).
        log_evidence: the log evidence at the optimum.
        at_bound: True when the optimum lies at (within one grid step of) a bound of the
            search interval: the data then prefer a prior outside it (typically ``hi`` when
            the data are noise-free, ``lo`` when they are pure noise).
    """

    prior_sigma: Array
    noise_scale: Array
    log_evidence: Array
    at_bound: Array


# ----------------------------------------------------------------------------- validation


def _system(jacobian, residual, *, batched: bool = False) -> tuple[Array, Array]:
    """The (m, n) Jacobian and the (m,) — or (..., m) when ``batched`` — residual, checked."""
    if np.ndim(jacobian) != 2 or 0 in np.shape(jacobian):
        raise ValueError(
            f"jacobian must be a non-empty 2-D (m, n) array; got shape {np.shape(jacobian)}"
        )
    m = np.shape(jacobian)[0]
    shape = np.shape(residual)
    ok = (len(shape) >= 1 if batched else len(shape) == 1) and len(shape) and shape[-1] == m
    if not ok:
        expected = f"(..., {m})" if batched else f"({m},)"
        raise ValueError(
            f"residual must have shape {expected} to match jacobian {np.shape(jacobian)}; "
            f"got {shape}"
        )
    check_finite(jacobian, "jacobian")
    check_finite(residual, "residual")
    return jnp.asarray(jacobian, dtype=float), jnp.asarray(residual, dtype=float)


def _vector(value, field: str, size: int, what: str, *, positive: bool = True) -> Array:
    """A scalar or ``(size,)`` array, finite (and > 0), broadcast to ``(size,)``."""
    shape = np.shape(value)
    if shape not in ((), (size,)):
        raise ValueError(f"{field} must be a scalar or have shape ({size},) ({what}); got {shape}")
    if positive:
        check_positive(value, field)
    else:
        check_finite(value, field)
    return jnp.broadcast_to(jnp.asarray(value, dtype=float), (size,))


def _bounds(bounds, field: str) -> tuple[float, float]:
    if len(bounds) != 2:
        raise ValueError(f"{field} must be a pair (lo, hi); got {bounds!r}")
    lo, hi = (float(v) for v in bounds)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0.0 < lo < hi):
        raise ValueError(f"{field} must satisfy 0 < lo < hi (finite); got ({lo}, {hi})")
    return lo, hi


# ----------------------------------------------------------------------------- the SVD


class _Whitened(NamedTuple):
    """SVD of the whitened system, with what the evidence needs of the data."""

    s: Array  # (r,) singular values, r = min(m, n)
    vt: Array  # (r, n) right singular vectors (rows)
    coefficients: Array  # (..., r) c = Uᵀ b
    outside: Array  # (...,) ‖b - U c‖², the part of b no parameter can explain
    m: int


def _svd(A: Array) -> tuple[Array, Array, Array]:
    """Thin SVD ``U`` (m, r), ``s`` (r,), ``Vᵀ`` (r, n), r = min(m, n) (differentiable)."""
    return jnp.linalg.svd(A, full_matrices=False)


def _project(u: Array, s: Array, vt: Array, b: Array) -> _Whitened:
    """What the evidence and the posterior need of one whitened data vector ``b`` (m,)."""
    c = u.T @ b
    return _Whitened(s, vt, c, jnp.sum((b - u @ c) ** 2), u.shape[0])


def _log_evidence(w: _Whitened, tau: Array, nu: Array, log_noise_sum: Array) -> Array:
    """log p(y) of one data vector, the prior scaled by ``tau`` and the noise by ``nu``.

    The whitened data covariance is ``nu² I + tau² A Aᵀ``, with eigenvalues
    ``nu² + tau² s²`` on the span of ``U`` and ``nu²`` on the other ``m - r`` directions.
    """
    variance = nu**2 + (tau * w.s) ** 2
    quadratic = w.outside / nu**2 + jnp.sum(w.coefficients**2 / variance)
    log_det = (w.m - w.s.shape[0]) * jnp.log(nu**2) + jnp.sum(jnp.log(variance))
    return -0.5 * (w.m * _LOG_2PI + log_det + quadratic) - log_noise_sum


def _prior_shape(prior_scale, n: int) -> Array:
    if prior_scale is None:
        return jnp.ones(n)
    return _vector(prior_scale, "prior_scale", n, "relative prior widths per parameter")


# ----------------------------------------------------------------------------- posterior


def posterior(
    jacobian: Float[ArrayLike, "m n"],
    residual: Float[ArrayLike, " m"],
    noise_sigma: Float[ArrayLike, " m"] | float,
    prior_sigma: Float[ArrayLike, " n"] | float,
    prior_mean: Float[ArrayLike, " n"] | None = None,
) -> LinearGaussianPosterior:
    """Gaussian posterior of ``x`` for ``residual = jacobian @ x + noise``.

    Minimises ``‖(residual - J x)/noise_sigma‖² + ‖(x - prior_mean)/prior_sigma‖²`` exactly
    (the MAP of a Gaussian likelihood and prior) and returns the full posterior.

    Args:
        jacobian: ``(m, n)`` d data / d parameters (data units per parameter unit).
        residual: ``(m,)`` data to explain, e.g. measured minus model (data units).
        noise_sigma: noise standard deviation, scalar or ``(m,)`` (data units, > 0).
        prior_sigma: prior standard deviation, scalar or ``(n,)`` (parameter units, > 0).
        prior_mean: ``(n,)`` prior mean (parameter units); zero if None.

    Returns:
        A :class:`LinearGaussianPosterior`.

    Raises:
        ValueError: on shapes that do not fit together, non-finite inputs or sigmas <= 0.

    Example:
        >>> post = posterior(J, beta_beat, noise_sigma=0.01, prior_sigma=1e-3)
        >>> post.mean, post.std
    """
    J, y = _system(jacobian, residual)
    m, n = J.shape
    noise = _vector(noise_sigma, "noise_sigma", m, "one per data row")
    prior = _vector(prior_sigma, "prior_sigma", n, "one per parameter")
    mu = (
        jnp.zeros(n)
        if prior_mean is None
        else _vector(prior_mean, "prior_mean", n, "one per parameter", positive=False)
    )
    return _posterior(J, y, noise, prior, mu)


@jax.jit
def _posterior(
    J: Array, y: Array, noise: Array, prior: Array, mu: Array
) -> LinearGaussianPosterior:
    m, n = J.shape
    A = J / noise[:, None] * prior[None, :]
    b = (y - J @ mu) / noise
    w = _project(*_svd(A), b)
    gain = w.s / (w.s**2 + 1.0)
    z = w.vt.T @ (gain * w.coefficients)
    mean = mu + prior * z
    # Whitened covariance: 1/(1+s²) on the measured directions, the prior's 1 on the n - r
    # directions the data do not see. With m >= n, V is square and the first form is
    # exact even for tiny eigenvalues; with m < n, I - V diag(s²/(1+s²)) Vᵀ holds them to
    # an absolute eps (of the prior variance) without needing the full V.
    if m >= n:
        covariance_z = (w.vt.T * (1.0 / (1.0 + w.s**2))[None, :]) @ w.vt
    else:
        covariance_z = jnp.eye(n) - (w.vt.T * (w.s**2 / (1.0 + w.s**2))[None, :]) @ w.vt
    covariance = prior[:, None] * covariance_z * prior[None, :]
    covariance = 0.5 * (covariance + covariance.T)
    residuals = (y - J @ mean) / noise
    return LinearGaussianPosterior(
        mean=mean,
        covariance=covariance,
        std=jnp.sqrt(jnp.diagonal(covariance)),
        residuals=residuals,
        chi2=jnp.sum(residuals**2),
        prior_penalty=jnp.sum(z**2),
        effective_parameters=jnp.sum(w.s**2 / (1.0 + w.s**2)),
        log_evidence=_log_evidence(w, 1.0, 1.0, jnp.sum(jnp.log(noise))),
        singular_values=w.s,
    )


# ----------------------------------------------------------------------------- evidence


def log_evidence(
    jacobian: Float[ArrayLike, "m n"],
    residual: Float[ArrayLike, "*batch m"],
    noise_sigma: Float[ArrayLike, " m"] | float,
    prior_sigma: Float[ArrayLike, " n"] | float,
    prior_mean: Float[ArrayLike, " n"] | None = None,
) -> Float[Array, "*batch"]:
    """Exact log marginal likelihood ``log N(residual; J prior_mean, J Σp Jᵀ + Σn)``.

    ``Σp = diag(prior_sigma²)``, ``Σn = diag(noise_sigma²)``. One SVD of the whitened
    Jacobian serves a batch of residuals ``(..., m)``.

    Args: as for :func:`posterior`; ``residual`` may carry leading batch dimensions.

    Returns:
        log p(residual), shape ``residual.shape[:-1]`` (log of 1/data units^m).
    """
    J, y = _system(jacobian, residual, batched=True)
    m, n = J.shape
    noise = _vector(noise_sigma, "noise_sigma", m, "one per data row")
    prior = _vector(prior_sigma, "prior_sigma", n, "one per parameter")
    mu = (
        jnp.zeros(n)
        if prior_mean is None
        else _vector(prior_mean, "prior_mean", n, "one per parameter", positive=False)
    )
    return _batched_log_evidence(J, y.reshape(-1, m), noise, prior, mu).reshape(y.shape[:-1])


@jax.jit
def _batched_log_evidence(J, Y, noise, prior, mu):
    svd = _svd(J / noise[:, None] * prior[None, :])
    log_noise_sum = jnp.sum(jnp.log(noise))

    def one(y):
        return _log_evidence(_project(*svd, (y - J @ mu) / noise), 1.0, 1.0, log_noise_sum)

    return jax.vmap(one)(Y)


def log_evidence_profile(
    jacobian: Float[ArrayLike, "m n"],
    residual: Float[ArrayLike, " m"],
    noise_sigma: Float[ArrayLike, " m"] | float,
    prior_sigmas: Float[ArrayLike, " k"],
    *,
    prior_scale: Float[ArrayLike, " n"] | None = None,
) -> Float[Array, " k"]:
    """Log evidence for each of ``k`` scalar prior sigmas, from one SVD.

    The prior of member ``i`` is ``N(0, (prior_sigmas[i] * prior_scale)²)``; its cost is
    O(min(m, n)) after the SVD. Arguments as for :func:`log_evidence`; ``prior_scale``
    ``(n,)`` gives relative widths per parameter (ones if None).
    """
    J, y = _system(jacobian, residual)
    m, n = J.shape
    noise = _vector(noise_sigma, "noise_sigma", m, "one per data row")
    if np.ndim(prior_sigmas) != 1:
        raise ValueError(f"prior_sigmas must be 1-D (k,); got shape {np.shape(prior_sigmas)}")
    check_positive(prior_sigmas, "prior_sigmas")
    scale = _prior_shape(prior_scale, n)
    return _profile(J, y, noise, scale, jnp.asarray(prior_sigmas, dtype=float))


@jax.jit
def _profile(J, y, noise, scale, taus):
    w = _project(*_svd(J / noise[:, None] * scale[None, :]), y / noise)
    return jax.vmap(lambda t: _log_evidence(w, t, 1.0, jnp.sum(jnp.log(noise))))(taus)


def _golden_maximum(f, lo: Array, hi: Array, n_steps: int) -> Array:
    """Argmax of a unimodal ``f`` on ``[lo, hi]`` by golden-section search (fixed steps)."""

    def step(_, bracket):
        a, b = bracket
        c = b - _GOLDEN * (b - a)
        d = a + _GOLDEN * (b - a)
        left = f(c) > f(d)
        return jnp.where(left, a, c), jnp.where(left, d, b)

    a, b = jax.lax.fori_loop(0, n_steps, step, (lo, hi))
    return 0.5 * (a + b)


def _grid_bracket(values: Array, grid: Array) -> tuple[Array, Array, Array]:
    """The grid neighbours around the grid maximum, and whether it sits at an end."""
    i = jnp.argmax(values)
    last = grid.shape[0] - 1
    lo = grid[jnp.maximum(i - 1, 0)]
    hi = grid[jnp.minimum(i + 1, last)]
    return lo, hi, (i == 0) | (i == last)


def _evidence_optimum(
    w: _Whitened,
    log_noise_sum: Array,
    log_tau_bounds: tuple[float, float],
    log_nu_bounds: tuple[float, float] | None,
    n_grid: int,
    n_golden: int,
    n_rounds: int,
) -> EvidenceOptimum:
    """Maximise the evidence over log tau (and log nu), grid first, then golden sections."""

    def evidence(log_tau, log_nu):
        return _log_evidence(w, jnp.exp(log_tau), jnp.exp(log_nu), log_noise_sum)

    tau_grid = jnp.linspace(*log_tau_bounds, n_grid)
    if log_nu_bounds is None:
        values = jax.vmap(lambda t: evidence(t, 0.0))(tau_grid)
        lo, hi, at_bound = _grid_bracket(values, tau_grid)
        log_tau = _golden_maximum(lambda t: evidence(t, 0.0), lo, hi, n_golden)
        log_nu = jnp.zeros(())
    else:
        nu_grid = jnp.linspace(*log_nu_bounds, n_grid)
        values = jax.vmap(lambda t: jax.vmap(lambda v: evidence(t, v))(nu_grid))(tau_grid)
        flat = jnp.argmax(values)
        i, j = flat // n_grid, flat % n_grid
        _, _, tau_at_bound = _grid_bracket(values[:, j], tau_grid)
        _, _, nu_at_bound = _grid_bracket(values[i], nu_grid)
        at_bound = tau_at_bound | nu_at_bound
        step_tau = tau_grid[1] - tau_grid[0]
        step_nu = nu_grid[1] - nu_grid[0]

        # Coordinate ascent on a smooth function from the grid maximum; each coordinate is
        # searched within one grid step of the current point.
        def round_(_, point):
            t, v = point
            t = _golden_maximum(
                lambda x: evidence(x, v),
                jnp.maximum(t - step_tau, log_tau_bounds[0]),
                jnp.minimum(t + step_tau, log_tau_bounds[1]),
                n_golden,
            )
            v = _golden_maximum(
                lambda x: evidence(t, x),
                jnp.maximum(v - step_nu, log_nu_bounds[0]),
                jnp.minimum(v + step_nu, log_nu_bounds[1]),
                n_golden,
            )
            return t, v

        log_tau, log_nu = jax.lax.fori_loop(0, n_rounds, round_, (tau_grid[i], nu_grid[j]))
    return EvidenceOptimum(
        prior_sigma=jnp.exp(log_tau),
        noise_scale=jnp.exp(log_nu),
        log_evidence=evidence(log_tau, log_nu),
        at_bound=at_bound,
    )


def evidence_optimal_prior_sigma(
    jacobian: Float[ArrayLike, "m n"],
    residual: Float[ArrayLike, "*batch m"],
    noise_sigma: Float[ArrayLike, " m"] | float,
    bounds: tuple[float, float] = (1e-6, 1e2),
    *,
    prior_scale: Float[ArrayLike, " n"] | None = None,
    fit_noise_scale: bool = False,
    noise_scale_bounds: tuple[float, float] = (0.1, 10.0),
    n_grid: int = 64,
    n_golden: int = 48,
    n_rounds: int = 6,
) -> EvidenceOptimum:
    """The scalar prior sigma that maximises the evidence (type-II maximum likelihood).

    The prior is ``x ~ N(0, (sigma * prior_scale)²)``. The log evidence is evaluated on a
    grid of ``n_grid`` points uniform in ``log sigma`` over ``bounds`` — enough to find the
    global maximum of this smooth, usually unimodal curve — and refined by golden-section
    search between the grid neighbours of the best point (``n_golden`` steps shrink the
    bracket by 0.618^n_golden). With ``fit_noise_scale`` the noise is ``nu * noise_sigma``
    with ``nu`` in ``noise_scale_bounds`` too: a 2-D grid, then ``n_rounds`` of coordinate
    golden-section ascent. All sizes are static: jittable and vmappable; a batch of
    residuals ``(..., m)`` shares one SVD.

    Args:
        jacobian: ``(m, n)`` (data units per parameter unit).
        residual: ``(m,)`` or ``(..., m)`` data (data units).
        noise_sigma: scalar or ``(m,)`` noise standard deviation (data units, > 0).
        bounds: ``(lo, hi)`` search interval for sigma (parameter units, 0 < lo < hi).
        prior_scale: ``(n,)`` relative prior widths (ones if None).
        fit_noise_scale: also maximise over a common factor on ``noise_sigma``.
        noise_scale_bounds: ``(lo, hi)`` for that factor.
        n_grid: search effort (static): grid points per hyperparameter.
        n_golden: search effort (static): golden-section steps per refinement.
        n_rounds: search effort (static): rounds of refinement.

    Returns:
        An :class:`EvidenceOptimum` (fields of shape ``residual.shape[:-1]``).
    """
    J, y = _system(jacobian, residual, batched=True)
    m, n = J.shape
    noise = _vector(noise_sigma, "noise_sigma", m, "one per data row")
    scale = _prior_shape(prior_scale, n)
    lo, hi = _bounds(bounds, "bounds")
    nu_bounds = None
    if fit_noise_scale:
        nu_lo, nu_hi = _bounds(noise_scale_bounds, "noise_scale_bounds")
        nu_bounds = (float(np.log(nu_lo)), float(np.log(nu_hi)))
    if n_grid < 3 or n_golden < 1:
        raise ValueError(f"n_grid must be >= 3 and n_golden >= 1; got {n_grid}, {n_golden}")
    result = _batched_optimum(
        J,
        y.reshape(-1, m),
        noise,
        scale,
        log_tau_bounds=(float(np.log(lo)), float(np.log(hi))),
        log_nu_bounds=nu_bounds,
        n_grid=n_grid,
        n_golden=n_golden,
        n_rounds=n_rounds,
    )
    return jax.tree.map(lambda leaf: leaf.reshape(y.shape[:-1]), result)


@partial(
    jax.jit, static_argnames=("log_tau_bounds", "log_nu_bounds", "n_grid", "n_golden", "n_rounds")
)
def _batched_optimum(
    J, Y, noise, scale, *, log_tau_bounds, log_nu_bounds, n_grid, n_golden, n_rounds
):
    svd = _svd(J / noise[:, None] * scale[None, :])
    log_noise_sum = jnp.sum(jnp.log(noise))

    def one(y):
        return _evidence_optimum(
            _project(*svd, y / noise),
            log_noise_sum,
            log_tau_bounds,
            log_nu_bounds,
            n_grid,
            n_golden,
            n_rounds,
        )

    return jax.vmap(one)(Y)


# ----------------------------------------------------------------------------- classical


def _classical(jacobian, residual, weights, setting, setting_name: str, kind: str, rcond=0.0):
    """Validate, broadcast data against the setting, and solve with one SVD of ``W^½ J``."""
    J, y = _system(jacobian, residual, batched=True)
    m = J.shape[0]
    weights = _vector(weights, "weights", m, "inverse variances, one per row", positive=False)
    if is_concrete(weights) and np.any(np.asarray(weights) < 0):
        raise ValueError(f"weights must be >= 0; got {np.min(np.asarray(weights))}")
    check_finite(setting, setting_name)
    if is_concrete(setting) and np.any(np.asarray(setting) < 0):
        raise ValueError(f"{setting_name} must be >= 0; got {np.min(np.asarray(setting))}")
    batch = np.broadcast_shapes(np.shape(setting), y.shape[:-1])
    solution = _filter_solve(
        J,
        jnp.broadcast_to(y, (*batch, m)).reshape(-1, m),
        jnp.sqrt(weights),
        jnp.broadcast_to(jnp.asarray(setting), batch).reshape(-1),
        kind=kind,
        rcond=rcond,
    )
    return solution.reshape(*batch, J.shape[1])


@partial(jax.jit, static_argnames=("kind", "rcond"))
def _filter_solve(J, Y, root, setting, *, kind: str, rcond: float):
    """``x = V diag(f(s)) Uᵀ W^½ y`` for each row of ``Y`` (B, m) and setting (B,)."""
    u, s, vt = jnp.linalg.svd(J * root[:, None], full_matrices=False)
    c = (Y * root[None, :]) @ u
    s_row = s[None, :]
    if kind == "tikhonov":
        denominator = s_row**2 + setting[:, None]
        keep = denominator > 0
        factors = jnp.where(keep, s_row / jnp.where(keep, denominator, 1.0), 0.0)
    else:
        if kind == "truncated":
            keep = (jnp.arange(s.shape[0])[None, :] < setting[:, None]) & (s_row > 0)
        else:  # pseudo-inverse
            keep = jnp.broadcast_to(s_row > rcond * s[0], c.shape)
        factors = jnp.where(keep, 1.0 / jnp.where(keep, s_row, 1.0), 0.0)
    return (factors * c) @ vt


def tikhonov(
    jacobian: Float[ArrayLike, "m n"],
    residual: Float[ArrayLike, "*batch m"],
    weights: Float[ArrayLike, " m"] | float,
    alpha: Float[ArrayLike, "*batch"] | float,
) -> Float[Array, "*batch n"]:
    """Tikhonov (ridge) solution ``argmin Σ w_i (y_i - (J x)_i)² + alpha ‖x‖²``.

    ``x = (Jᵀ W J + alpha I)⁻¹ Jᵀ W y`` — the paper's Eq. (12) with ``W = I`` and
    ``alpha = sigma_meas²/sigma_quad²``; with ``W = diag(1/noise_sigma²)`` and
    ``alpha = 1/prior_sigma²`` it is the posterior mean of :func:`posterior`.

    Args:
        jacobian: ``(m, n)``.
        residual: ``(m,)`` or ``(..., m)`` data.
        weights: scalar or ``(m,)`` row weights ``w_i >= 0`` (1/data units²); a zero weight
            drops its row (a bad BPM).
        alpha: regularisation ``>= 0`` (data weight per parameter unit², i.e. 1/parameter
            units² when ``weights`` are inverse variances), broadcast against the batch
            shape of ``residual``; ``alpha = 0`` is the minimum-norm least-squares solution.

    Returns:
        The solutions, shape ``broadcast(alpha.shape, residual.shape[:-1]) + (n,)``.
    """
    return _classical(jacobian, residual, weights, alpha, "alpha", "tikhonov")


def truncated_svd(
    jacobian: Float[ArrayLike, "m n"],
    residual: Float[ArrayLike, "*batch m"],
    weights: Float[ArrayLike, " m"] | float,
    n_singular: Int[ArrayLike, "*batch"] | int,
) -> Float[Array, "*batch n"]:
    """Least squares keeping only the ``n_singular`` largest singular values of ``W^½ J``.

    Args:
        jacobian: as for :func:`tikhonov`.
        residual: as for :func:`tikhonov`.
        weights: as for :func:`tikhonov`.
        n_singular: number of singular values kept (``>= 0``; values beyond ``min(m, n)``
            keep all), broadcast against the batch shape; may be traced.

    Returns:
        The solutions, shape ``broadcast(n_singular.shape, residual.shape[:-1]) + (n,)``.
    """
    return _classical(jacobian, residual, weights, n_singular, "n_singular", "truncated")


def pseudo_inverse(
    jacobian: Float[ArrayLike, "m n"],
    residual: Float[ArrayLike, "*batch m"],
    weights: Float[ArrayLike, " m"] | float,
    rcond: float | None = None,
) -> Float[Array, "*batch n"]:
    """Minimum-norm weighted least squares ``(W^½ J)⁺ W^½ y`` (the paper's Eq. 11).

    Singular values below ``rcond * max(S)`` are treated as zero (``rcond`` defaults to
    ``max(m, n) * eps``, as in ``numpy.linalg.lstsq``). Arguments as for :func:`tikhonov`.
    """
    size = max(np.shape(jacobian)) if np.ndim(jacobian) == 2 else 1
    rcond = size * float(np.finfo(float).eps) if rcond is None else float(rcond)
    return _classical(jacobian, residual, weights, 0.0, "rcond", "pinv", rcond)
