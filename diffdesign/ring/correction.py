"""Bayesian linear-optics correction (Li, Rainer, Cheng, "Bayesian Approach for Linear Optics
Correction", NSLS-II), generic over the optics model.

Quadrupole errors ``k`` (n,) distort observables at the BPMs — beta-beat, phase, dispersion
— gathered in one stacked vector ``f(k)`` (m,). Measured data are ``f(k_true) + noise``,
each observable block ``b`` with its own noise level ``sigma_b``, and the errors are
a priori ``k ~ N(0, sigma_k²)``. The paper's equations, in the notation used here:

* Eq. (8)-(9): the maximum a posteriori errors minimise
  ``Σ_b ‖(y_b - f_b(k)) / sigma_b‖² + ‖k / sigma_k‖²``.
* Eq. (10)-(12): linearising ``f`` (Jacobian ``J``) and multiplying by ``sigma_ref²`` for a
  reference block gives ``Δk = (JᵀJ + alpha I)⁻¹ Jᵀ Δy`` with the regularisation
  coefficient ``alpha = sigma_ref² / sigma_k²`` — fixed by the noise and the prior, not
  tuned (:func:`regularisation_from_noise`).
* Eq. (13)-(15): several observables stack as ``[J_ref; w_b J_b]`` with block weights
  ``w_b = sigma_ref / sigma_b`` (the reference block's weight is 1). Dividing every block by
  its own ``sigma_b`` instead (whitening, :func:`stack_observables`) gives the same
  minimiser with ``alpha = 1 / sigma_k²``; this module works with the whitened form.
* Fig. 1: ``sigma_k`` follows from the measured rms beat through a linear calibration
  computed on error ensembles of the design model (:func:`prior_sigma_from_beat`).
* "The regularization coefficient should be dynamically adjusted" as the beat decreases
  during an iterative correction: :func:`bayesian_correction` with a prior rule (e.g.
  :func:`prior_rule_from_beat`).

The linear algebra is :mod:`diffdesign.inference.linear_gaussian`; the model enters only
as a jittable function ``k -> f(k)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from diffdesign._validation import check_finite, check_positive
from diffdesign.inference import linear_gaussian as lg
from diffdesign.inference.gauss_newton import gauss_newton

#: ``rule(iteration, errors, residual) -> prior sigma`` for the remaining error; see
#: :func:`bayesian_correction`.
PriorRule = Callable[[Array, Array, Array], Array]


def _per_entry(value, field: str, size: int, what: str) -> Array:
    """A positive scalar or ``(size,)`` array, broadcast to ``(size,)``."""
    if np.shape(value) not in ((), (size,)):
        raise ValueError(
            f"{field} must be a scalar or have shape ({size},) ({what}); got {np.shape(value)}"
        )
    check_positive(value, field)
    return jnp.broadcast_to(jnp.asarray(value, dtype=float), (size,))


# ----------------------------------------------------------------------------- weights


class Regularisation(NamedTuple):
    """The paper's regularisation coefficient and block weights (Eqs. 12 and 15).

    Attributes:
        alpha: ``sigma_ref² / sigma_k²`` (scalar, or ``(n,)`` for per-quadrupole prior
            sigmas), for the system in which the reference block has weight 1.
        weights: ``sigma_ref / sigma_b`` per block, in the container ``noise_sigma`` came
            in (a dict keyed by block name, or an array).
        reference: the reference block (its name, or its index).
    """

    alpha: Array
    weights: dict[str, Array] | Array
    reference: str | int


def regularisation_from_noise(
    noise_sigma: Mapping[str, float] | Float[ArrayLike, " n_blocks"] | float,
    prior_sigma: Float[ArrayLike, " n"] | float,
    *,
    reference: str | int | None = None,
) -> Regularisation:
    """The regularisation coefficient and block weights implied by the noise and the prior.

    Minimising ``Σ_b ‖(y_b - J_b k)/sigma_b‖² + ‖k/sigma_k‖²`` is the same as minimising
    ``Σ_b w_b² ‖y_b - J_b k‖² + alpha ‖k‖²`` with ``w_b = sigma_ref/sigma_b`` and
    ``alpha = sigma_ref²/sigma_k²`` (multiply through by ``sigma_ref²``): the paper's
    Eq. (15) stack ``[J_ref; w_b J_b]`` solved with Eq. (12). A block measured more
    precisely weighs more; no weight is a free parameter.

    Args:
        noise_sigma: noise level per block (observable units; e.g. ``{"beta_x": 0.01,
            "phase_x": 0.002}``), or a single level.
        prior_sigma: prior standard deviation of the errors ``sigma_k`` (error units),
            scalar or ``(n,)``.
        reference: the block whose weight is 1 (name or index; the first if None).

    Returns:
        A :class:`Regularisation`.
    """
    check_positive(prior_sigma, "prior_sigma")
    if isinstance(noise_sigma, Mapping):
        if not noise_sigma:
            raise ValueError("noise_sigma must name at least one block")
        names = list(noise_sigma)
        reference = names[0] if reference is None else reference
        if reference not in noise_sigma:
            raise ValueError(f"reference {reference!r} is not a block of noise_sigma: {names}")
        for name, value in noise_sigma.items():
            if np.ndim(value) != 0:
                raise ValueError(f"noise_sigma[{name!r}] must be a scalar; got {np.shape(value)}")
            check_positive(value, f"noise_sigma[{name!r}]")
        sigma_ref = jnp.asarray(noise_sigma[reference], dtype=float)
        weights = {name: sigma_ref / jnp.asarray(v, dtype=float) for name, v in noise_sigma.items()}
    else:
        sigmas = jnp.atleast_1d(jnp.asarray(noise_sigma, dtype=float))
        if sigmas.ndim != 1:
            raise ValueError(f"noise_sigma must be a scalar or 1-D; got {np.shape(noise_sigma)}")
        check_positive(sigmas, "noise_sigma")
        reference = 0 if reference is None else reference
        if not isinstance(reference, int) or not 0 <= reference < sigmas.shape[0]:
            raise ValueError(
                f"reference must be an index in [0, {sigmas.shape[0]}); got {reference!r}"
            )
        sigma_ref = sigmas[reference]
        weights = sigma_ref / sigmas
    alpha = sigma_ref**2 / jnp.asarray(prior_sigma, dtype=float) ** 2
    return Regularisation(alpha=alpha, weights=weights, reference=reference)


class StackedObservables(NamedTuple):
    """Several observable blocks stacked into one whitened linear system (Eq. 15).

    Attributes:
        jacobian: ``(M, n)`` rows of every block divided by their noise sigma.
        residual: ``(M,)`` residuals divided by their noise sigma (dimensionless).
        noise_sigma: ``(M,)`` the noise sigma of every row (its block's units).
        names: block names, in stacking order.
        slices: ``{name: slice}`` rows of each block (host-side bookkeeping, not traced).
    """

    jacobian: Array
    residual: Array
    noise_sigma: Array
    names: tuple[str, ...]
    slices: dict[str, slice]

    def block(self, vector: Float[ArrayLike, " M"], name: str) -> Array:
        """The rows of a stacked ``(M,)`` vector that belong to block ``name``."""
        return jnp.asarray(vector)[self.slices[name]]


def stack_observables(
    blocks: Mapping[str, tuple[ArrayLike, ArrayLike, ArrayLike | float]],
) -> StackedObservables:
    """Stack ``{name: (jacobian (m_b, n), residual (m_b,), noise_sigma)}`` and whiten.

    Each block is divided by its noise sigma (scalar or ``(m_b,)``), so that the stacked
    system has unit noise: :func:`diffdesign.inference.linear_gaussian.posterior` with
    ``noise_sigma=1`` then weighs every block by its inverse noise, as the paper's Eq. (15)
    does relative to a reference block (:func:`regularisation_from_noise`).

    Raises:
        ValueError: empty ``blocks``, blocks with different numbers of parameters, shapes
            that do not match, non-finite values or noise sigmas <= 0, naming the block.
    """
    if not blocks:
        raise ValueError("blocks must hold at least one observable block")
    jacobians, residuals, sigmas, slices = [], [], [], {}
    n, start = None, 0
    for name, entry in blocks.items():
        if not isinstance(entry, tuple | list) or len(entry) != 3:
            raise ValueError(f"block {name!r} must be (jacobian, residual, noise_sigma)")
        jacobian, residual, noise = entry
        if np.ndim(jacobian) != 2:
            raise ValueError(f"jacobian of block {name!r} must be 2-D; got {np.shape(jacobian)}")
        rows, columns = np.shape(jacobian)
        n = columns if n is None else n
        if columns != n:
            raise ValueError(f"block {name!r} has {columns} parameters; the first block has {n}")
        if np.shape(residual) != (rows,):
            raise ValueError(
                f"residual of block {name!r} must have shape ({rows},); got {np.shape(residual)}"
            )
        if np.shape(noise) not in ((), (rows,)):
            raise ValueError(
                f"noise_sigma of block {name!r} must be scalar or ({rows},); got {np.shape(noise)}"
            )
        check_finite(jacobian, "jacobian", f"block {name!r}")
        check_finite(residual, "residual", f"block {name!r}")
        check_positive(noise, "noise_sigma", f"block {name!r}")
        sigma = jnp.broadcast_to(jnp.asarray(noise, dtype=float), (rows,))
        jacobians.append(jnp.asarray(jacobian, dtype=float) / sigma[:, None])
        residuals.append(jnp.asarray(residual, dtype=float) / sigma)
        sigmas.append(sigma)
        slices[name] = slice(start, start + rows)
        start += rows
    return StackedObservables(
        jacobian=jnp.concatenate(jacobians),
        residual=jnp.concatenate(residuals),
        noise_sigma=jnp.concatenate(sigmas),
        names=tuple(blocks),
        slices=slices,
    )


# ----------------------------------------------------------------------------- calibration


class BeatCalibration(NamedTuple):
    """The paper's Fig. 1: rms beat against the rms of the quadrupole errors.

    Attributes:
        prior_sigma: ``measured_rms_beat / slope`` (error units).
        slope: rms beat per unit error sigma, fitted through the origin on the means.
        trial_sigmas: ``(n_sigma,)`` error sigmas simulated.
        rms_beat: ``(n_sigma, n_seeds)`` the simulated rms beats.
        mean_rms_beat: ``(n_sigma,)`` their means over seeds.
        max_relative_deviation: ``max |mean_rms_beat / (slope * trial_sigmas) - 1|``: how
            linear the relation is over the simulated range.
    """

    prior_sigma: Array
    slope: Array
    trial_sigmas: Array
    rms_beat: Array
    mean_rms_beat: Array
    max_relative_deviation: Array


def prior_sigma_from_beat(
    rms_beat_fn: Callable[[Array], Array],
    measured_rms_beat: float,
    key: PRNGKeyArray,
    n_seeds: int,
    *,
    n_quadrupoles: int,
    trial_sigmas: Float[ArrayLike, " n_sigma"],
    error_scale: Float[ArrayLike, " n_quadrupoles"] | None = None,
) -> BeatCalibration:
    """Prior sigma of the quadrupole errors from the measured beat level (the paper's Fig. 1).

    For each trial ``sigma`` in ``trial_sigmas`` and each of ``n_seeds`` seeds, errors
    ``sigma * error_scale * z`` with ``z ~ N(0, I)`` are fed to ``rms_beat_fn`` (vmapped
    over seeds and sigmas); the same ``z`` serve every sigma (common random numbers, so
    the curve is smooth in sigma). The mean rms beat is fitted by ``slope * sigma``
    (least squares through the origin) and inverted at ``measured_rms_beat``.

    Args:
        rms_beat_fn: jittable ``errors (n_quadrupoles,) -> scalar`` rms beat of the design
            model with those errors (observable units, e.g. relative beta-beat).
        measured_rms_beat: the measured rms beat (same units, > 0).
        key: JAX PRNG key.
        n_seeds: error ensembles per sigma (static).
        n_quadrupoles: number of error parameters (static).
        trial_sigmas: ``(n_sigma,)`` sigmas to simulate, > 0, spanning the measured level.
        error_scale: ``(n_quadrupoles,)`` per-quadrupole scale, e.g. ``|K1|`` for relative
            errors (then sigma is a relative error); ones if None.

    Returns:
        A :class:`BeatCalibration`.
    """
    check_positive(measured_rms_beat, "measured_rms_beat")
    if np.ndim(trial_sigmas) != 1 or np.size(trial_sigmas) < 1:
        raise ValueError(
            f"trial_sigmas must be a non-empty 1-D array; got {np.shape(trial_sigmas)}"
        )
    check_positive(trial_sigmas, "trial_sigmas")
    for value, field in ((n_seeds, "n_seeds"), (n_quadrupoles, "n_quadrupoles")):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{field} must be a positive integer; got {value!r}")
    scale = (
        jnp.ones(n_quadrupoles)
        if error_scale is None
        else _per_entry(error_scale, "error_scale", n_quadrupoles, "one per quadrupole")
    )
    sigmas = jnp.asarray(trial_sigmas, dtype=float)
    z = jax.random.normal(key, (n_seeds, n_quadrupoles)) * scale[None, :]
    beats = jax.vmap(lambda s: jax.vmap(lambda zi: rms_beat_fn(s * zi))(z))(sigmas)
    if beats.shape != (sigmas.shape[0], n_seeds):
        raise ValueError(f"rms_beat_fn must return a scalar; got shape {beats.shape[2:]}")
    mean = jnp.mean(beats, axis=1)
    slope = jnp.sum(sigmas * mean) / jnp.sum(sigmas**2)
    return BeatCalibration(
        prior_sigma=measured_rms_beat / slope,
        slope=slope,
        trial_sigmas=sigmas,
        rms_beat=beats,
        mean_rms_beat=mean,
        max_relative_deviation=jnp.max(jnp.abs(mean / (slope * sigmas) - 1.0)),
    )


def prior_rule_from_beat(
    slope: float,
    rms_beat_fn: Callable[[Array], Array] | None = None,
    *,
    floor: float = 0.0,
) -> PriorRule:
    """The paper's dynamic regularisation: prior sigma from the remaining beat.

    Returns ``rule(iteration, errors, residual) = max(rms_beat_fn(residual) / slope,
    floor)``, for :func:`bayesian_correction`: at each iteration the remaining errors are
    taken to be ``N(0, sigma_t²)`` with ``sigma_t`` read off the Fig. 1 calibration
    (``slope`` from :func:`prior_sigma_from_beat`) at the remaining rms beat.

    Args:
        slope: rms beat per unit error sigma.
        rms_beat_fn: ``residual (m,) -> scalar`` rms beat of the stacked residual
            (``measured - model``, observable units), e.g. the rms of its beta-beat block;
            the rms of the whole residual if None.
        floor: lower bound on sigma (error units), e.g. to stop it shrinking below what
            the noise alone produces.
    """
    check_positive(slope, "slope")
    measure = (lambda r: jnp.sqrt(jnp.mean(r**2))) if rms_beat_fn is None else rms_beat_fn

    def rule(iteration: Array, errors: Array, residual: Array) -> Array:
        return jnp.maximum(measure(residual) / slope, floor)

    return rule


# ----------------------------------------------------------------------------- correction


class CorrectionResult(NamedTuple):
    """Outcome of :func:`bayesian_correction` (error units for errors; whitened residuals).

    Attributes:
        errors: ``(n,)`` estimated errors after the last iteration.
        covariance: ``(n, n)`` posterior covariance of the errors, linearised at the
            estimate (with the prior sigma the rule gives there).
        std: ``(n,)`` square roots of its diagonal.
        history: ``(n_iter + 1, n)`` the iterates, starting with ``k0``.
        residual_norms: ``(n_iter + 1,)`` ``‖(measured - model_fn(k_t)) / noise_sigma‖``.
        chi2: ``(n_iter + 1,)`` their squares.
        prior_sigmas: ``(n_iter + 1, n)`` prior sigma used at each linearisation (the last
            row: the one the covariance uses).
    """

    errors: Array
    covariance: Array
    std: Array
    history: Array
    residual_norms: Array
    chi2: Array
    prior_sigmas: Array


def bayesian_correction(
    model_fn: Callable[[Array], Array],
    k0: Float[ArrayLike, " n"],
    measured: Float[ArrayLike, " m"],
    noise_sigma: Float[ArrayLike, " m"] | float,
    prior_sigma: Float[ArrayLike, " n"] | float,
    *,
    n_iter: int = 5,
    prior: str | PriorRule = "fixed",
    evidence_bounds: tuple[float, float] = (1e-3, 1e3),
) -> CorrectionResult:
    """Iterative Bayesian correction: Gauss-Newton with the model re-linearised each step.

    At each iterate ``k_t`` the model is linearised (``J_t = jax.jacfwd(model_fn)(k_t)``),
    and the step solves the regularised, noise-weighted linear problem exactly
    (:func:`diffdesign.inference.linear_gaussian.posterior`). ``prior`` picks the rule for
    the prior; the choice is made once, outside the iteration:

    * ``"fixed"`` — the errors are ``N(0, prior_sigma²)`` throughout; the step's prior is
      centred on ``-k_t`` so that it applies to the *total* error, and the iteration is
      Gauss-Newton for the maximum a posteriori of the full nonlinear model (Eq. 9).
    * ``"evidence"`` — as ``"fixed"``, but at every iterate the prior is rescaled,
      ``tau_t * prior_sigma``, with ``tau_t`` in ``evidence_bounds`` maximising the
      evidence of the linearised model (type-II maximum likelihood; empirical Bayes).
    * a callable ``rule(iteration, errors, residual) -> sigma`` — the paper's dynamic
      regularisation: each step estimates the *remaining* error afresh with prior
      ``N(0, sigma_t²)`` (centred on zero), as in a machine loop where every correction is
      applied and the machine re-measured, so the remaining errors shrink with the beat.
      :func:`prior_rule_from_beat` gives the paper's rule (sigma from the remaining beat
      via the Fig. 1 calibration); ``lambda t, k, r: s0 * 0.5**t`` a fixed schedule.
      The rule's sigma (scalar or ``(n,)``) replaces ``prior_sigma``.

    Args:
        model_fn: jittable ``errors (n,) -> observables (m,)``: the stacked model
            observables (e.g. beta-beat x/y, phase advance, dispersion at the BPMs).
        k0: ``(n,)`` starting errors (usually zeros) in error units (e.g. ΔK1, m⁻²).
        measured: ``(m,)`` measured observables, same layout and units as ``model_fn``.
        noise_sigma: scalar or ``(m,)`` noise per observable (see :func:`stack_observables`
            for blocks with different noise levels).
        prior_sigma: scalar or ``(n,)`` prior sigma of the errors (error units).
        n_iter: Gauss-Newton iterations (static).
        prior: ``"fixed"``, ``"evidence"`` or a rule (see above).
        evidence_bounds: ``(lo, hi)`` range of ``tau`` for ``"evidence"``.

    Returns:
        A :class:`CorrectionResult`. The iteration is compiled once per model function,
        rule and shapes (``model_fn`` may be a function or an equinox Module), so calls
        with new data reuse it.

    Example:
        >>> result = bayesian_correction(beat_fn, jnp.zeros(n), measured_beat, 0.005, 1e-3)
        >>> result.errors, result.std, result.chi2
    """
    k0 = jnp.asarray(k0, dtype=float)
    if k0.ndim != 1 or k0.shape[0] == 0:
        raise ValueError(f"k0 must be a non-empty 1-D array; got shape {k0.shape}")
    check_finite(k0, "k0")
    n = k0.shape[0]
    if np.ndim(measured) != 1:
        raise ValueError(f"measured must be 1-D; got shape {np.shape(measured)}")
    m = np.shape(measured)[0]
    check_finite(measured, "measured")
    output = jax.eval_shape(model_fn, k0)
    if output.shape != (m,):
        raise ValueError(f"model_fn must map ({n},) to ({m},) like measured; got {output.shape}")
    noise = _per_entry(noise_sigma, "noise_sigma", m, "one per observable")
    prior_shape = _per_entry(prior_sigma, "prior_sigma", n, "one per error")
    if not isinstance(n_iter, int | np.integer) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive integer; got {n_iter!r}")
    measured = jnp.asarray(measured, dtype=float)

    if isinstance(prior, str):
        if prior not in ("fixed", "evidence"):
            raise ValueError(f"prior must be 'fixed', 'evidence' or a callable rule; got {prior!r}")
    elif not callable(prior):
        raise ValueError(f"prior must be 'fixed', 'evidence' or a callable rule; got {prior!r}")
    lo, hi = (float(v) for v in evidence_bounds)
    if not 0.0 < lo < hi < np.inf:
        raise ValueError(f"evidence_bounds must satisfy 0 < lo < hi; got {evidence_bounds}")
    return _correct(k0, measured, noise, prior_shape, model_fn, prior, int(n_iter), (lo, hi))


# One compiled program for the whole iteration (the edge of this work; the n_iter
# linearisations unroll). filter_jit traces the arrays (including those inside an
# equinox-Module model) and keeps the rest static, so a second call with the same model
# function and rule but new data does not recompile.
@eqx.filter_jit
def _correct(k0, measured, noise, prior_shape, model_fn, prior, n_iter, evidence_bounds):
    n = k0.shape[0]

    def sigma_at(t, k, residual, jacobian):
        if prior == "fixed":
            return prior_shape
        if prior == "evidence":
            # The linearised model of the total error: residual + J k = J k_true + noise.
            tau = lg.evidence_optimal_prior_sigma(
                jacobian, residual + jacobian @ k, noise, evidence_bounds, prior_scale=prior_shape
            ).prior_sigma
            return tau * prior_shape
        return jnp.broadcast_to(jnp.asarray(prior(t, k, residual), dtype=float), (n,))

    # "fixed"/"evidence": the prior is on the total error (mean zero); a rule: on the
    # remaining error, i.e. centred on the current iterate.
    result = gauss_newton(
        lambda k: measured - model_fn(k),
        k0,
        noise_sigma=noise,
        prior_sigma=sigma_at,
        prior_mean=None if isinstance(prior, str) else (lambda t, k: k),
        n_iter=n_iter,
    )
    chi2 = result.history.chi2
    return CorrectionResult(
        errors=result.x,
        covariance=result.covariance,
        std=result.std,
        history=result.history.x,
        residual_norms=jnp.sqrt(chi2),
        chi2=chi2,
        prior_sigmas=result.history.prior_sigma,
    )


# ----------------------------------------------------------------------------- comparison


class EstimatorComparison(NamedTuple):
    """Reconstruction error and residual of several estimators over many data sets.

    ``*_error`` is the rms over parameters of ``estimate - true`` (error units);
    ``*_residual`` the rms over data of the whitened residual ``(y - J estimate)/sigma``
    (1 means the fit is at the noise level; well below 1 is overfitting).

    Attributes:
        bayes_error, bayes_residual: ``(n_seeds,)`` posterior mean with ``prior_sigma``.
        evidence_error, evidence_residual: ``(n_seeds,)`` posterior mean with the
            evidence-optimal prior sigma of each data set.
        evidence_sigma: ``(n_seeds,)`` that prior sigma (error units; for a vector
            ``prior_sigma``, the sigma of its largest entry, the shape kept).
        pinv_error, pinv_residual: ``(n_seeds,)`` weighted pseudo-inverse (Eq. 11).
        tikhonov_error, tikhonov_residual: ``(n_alpha, n_seeds)`` Tikhonov for each alpha.
        tsvd_error, tsvd_residual: ``(n_cut, n_seeds)`` truncated SVD for each cut-off.
        alphas: ``(n_alpha,)``; n_singular: ``(n_cut,)``.
    """

    bayes_error: Array
    bayes_residual: Array
    evidence_error: Array
    evidence_residual: Array
    evidence_sigma: Array
    pinv_error: Array
    pinv_residual: Array
    tikhonov_error: Array
    tikhonov_residual: Array
    tsvd_error: Array
    tsvd_residual: Array
    alphas: Array
    n_singular: Array


def compare_estimators(
    jacobian: Float[ArrayLike, "m n"],
    true_errors: Float[ArrayLike, "n_seeds n"],
    measured: Float[ArrayLike, "n_seeds m"],
    noise_sigma: Float[ArrayLike, " m"] | float,
    prior_sigma: Float[ArrayLike, " n"] | float,
    *,
    alphas: Float[ArrayLike, " n_alpha"],
    n_singular: Int[ArrayLike, " n_cut"],
    evidence_bounds: tuple[float, float] = (1e-6, 1e2),
) -> EstimatorComparison:
    """Bayesian, evidence-optimal, pseudo-inverse, Tikhonov and truncated-SVD estimates.

    Every estimator works on the noise-weighted system (weights ``1/noise_sigma²``), so
    Tikhonov with ``alpha = 1/prior_sigma²`` is the Bayesian estimate (for a scalar prior
    sigma); the paper's unweighted ``alpha`` is ``noise_sigma² * alpha`` for a single
    noise level. Each estimator shares one SVD across all data sets and settings.

    Args:
        jacobian: ``(m, n)`` the (linear) model.
        true_errors: ``(n_seeds, n)`` or ``(n,)`` the planted errors.
        measured: ``(n_seeds, m)`` data, e.g. ``J @ true + noise`` (one row per seed).
        noise_sigma: scalar or ``(m,)`` noise sigma (data units).
        prior_sigma: scalar or ``(n,)`` prior sigma for the Bayesian estimate, and the
            shape of the evidence-optimal prior (error units).
        alphas: ``(n_alpha,)`` Tikhonov coefficients, >= 0.
        n_singular: ``(n_cut,)`` numbers of singular values kept.
        evidence_bounds: search range of the evidence-optimal prior sigma (error units).

    Returns:
        An :class:`EstimatorComparison` of arrays, for plots and tables.
    """
    if np.ndim(jacobian) != 2:
        raise ValueError(f"jacobian must be 2-D (m, n); got shape {np.shape(jacobian)}")
    m, n = np.shape(jacobian)
    if np.ndim(measured) != 2 or np.shape(measured)[1] != m:
        raise ValueError(f"measured must have shape (n_seeds, {m}); got {np.shape(measured)}")
    check_finite(jacobian, "jacobian")
    check_finite(measured, "measured")
    J, Y = jnp.asarray(jacobian, dtype=float), jnp.asarray(measured, dtype=float)
    n_seeds = Y.shape[0]
    truth = jnp.asarray(true_errors, dtype=float)
    if truth.shape not in ((n,), (n_seeds, n)):
        raise ValueError(
            f"true_errors must have shape ({n_seeds}, {n}) or ({n},); got {truth.shape}"
        )
    check_finite(truth, "true_errors")
    truth = jnp.broadcast_to(truth, (n_seeds, n))
    noise = _per_entry(noise_sigma, "noise_sigma", m, "one per data row")
    prior = _per_entry(prior_sigma, "prior_sigma", n, "one per parameter")
    for value, field in ((alphas, "alphas"), (n_singular, "n_singular")):
        if np.ndim(value) != 1:
            raise ValueError(f"{field} must be 1-D; got shape {np.shape(value)}")
    lo, hi = (float(v) for v in evidence_bounds)
    if not 0.0 < lo < hi < np.inf:
        raise ValueError(f"evidence_bounds must satisfy 0 < lo < hi; got {evidence_bounds}")
    check_finite(alphas, "alphas")
    if np.any(np.asarray(alphas) < 0):
        raise ValueError(f"alphas must be >= 0; got {np.min(np.asarray(alphas))}")
    if np.any(np.asarray(n_singular) < 0):
        raise ValueError(f"n_singular must be >= 0; got {np.min(np.asarray(n_singular))}")
    return _compare(
        J,
        truth,
        Y,
        noise,
        prior,
        jnp.asarray(alphas, dtype=float),
        jnp.asarray(n_singular),
        evidence_bounds=(lo, hi),
    )


@partial(jax.jit, static_argnames="evidence_bounds")
def _compare(J, truth, Y, noise, prior, alphas, n_singular, *, evidence_bounds):
    weights = 1.0 / noise**2

    def error(x):
        return jnp.sqrt(jnp.mean((x - truth) ** 2, axis=-1))

    def residual(x):
        return jnp.sqrt(jnp.mean(((Y - x @ J.T) / noise[None, :]) ** 2, axis=-1))

    # The prior as a change of variables x = shape * z with z ~ N(0, sigma²): Tikhonov on
    # J * shape with alpha = 1/sigma², one SVD for every seed.
    shape = prior / jnp.max(prior)
    scaled = J * shape[None, :]
    bayes = shape[None, :] * lg.tikhonov(scaled, Y, weights, 1.0 / jnp.max(prior) ** 2)
    optimum = lg.evidence_optimal_prior_sigma(J, Y, noise, evidence_bounds, prior_scale=shape)
    evidence = shape[None, :] * lg.tikhonov(scaled, Y, weights, 1.0 / optimum.prior_sigma**2)
    pinv = lg.pseudo_inverse(J, Y, weights)
    ridge = lg.tikhonov(J, Y[None], weights, alphas[:, None])
    tsvd = lg.truncated_svd(J, Y[None], weights, n_singular[:, None])
    return EstimatorComparison(
        bayes_error=error(bayes),
        bayes_residual=residual(bayes),
        evidence_error=error(evidence),
        evidence_residual=residual(evidence),
        evidence_sigma=optimum.prior_sigma,
        pinv_error=error(pinv),
        pinv_residual=residual(pinv),
        tikhonov_error=jax.vmap(error)(ridge),
        tikhonov_residual=jax.vmap(residual)(ridge),
        tsvd_error=jax.vmap(error)(tsvd),
        tsvd_residual=jax.vmap(residual)(tsvd),
        alphas=alphas,
        n_singular=n_singular,
    )
