"""Gaussian-process regression with a parametric prior mean, and acquisition functions.

Everything here is a pure function of PyTrees: kernels, the exact marginal likelihood, the
posterior and the acquisition functions jit, vmap and differentiate like any other model in
the package. ``fit_hyperparameters`` and ``maximize_acquisition`` are the edges: each is a
design-layer problem (:class:`HyperparameterProblem`, :class:`AcquisitionProblem`) solved by
:func:`diffdesign.core.multistart` (one compiled, vmapped Adam loop), called outside ``jit``.

Conventions
-----------
* Inputs ``X`` have shape ``(n, d)`` and are expected in the unit cube ``[0, 1]^d`` (the
  callers in :mod:`diffdesign.design` normalise a box to it), so lengthscales are fractions
  of the box width, whatever the physical units of each input.
* Targets ``y`` have shape ``(n,)`` in the caller's units ("y units" below).
* The prior mean is ``m(X) = mean_offset + mean_fn(mean_params, X)``, where
  ``mean_fn(mean_params, X) -> (n,)`` is any jittable function of a PyTree of parameters and
  of the same (unit-cube) inputs the GP sees, in y units; ``mean_fn=None`` is the zero
  function, leaving a constant mean.
* ``mask`` (``(n,)`` bool) marks the rows in use; ``False`` rows are padding, so one compiled
  function serves a data set that grows (as in Bayesian optimisation). Padded rows may hold
  any finite values.
* Acquisition functions are written for *minimisation* of the objective and are larger where
  a point is more worth evaluating.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy as jsp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray, PyTree

from diffdesign._validation import check_finite, check_positive, check_range, is_concrete
from diffdesign.core import Adam, Box, CosineDecay, Param, Problem, multistart, values

Kernel = Callable[[Array, Array, Array, Array], Array]
MeanFn = Callable[[PyTree, Array], Array]

# ----------------------------------------------------------------------------- kernels


def _scaled_squared_distance(
    lengthscales: Float[Array, " d"], X1: Float[Array, "n1 d"], X2: Float[Array, "n2 d"]
) -> Float[Array, "n1 n2"]:
    difference = (X1[:, None, :] - X2[None, :, :]) / lengthscales[None, None, :]
    return jnp.sum(difference**2, axis=-1)


def rbf(
    lengthscales: Float[Array, " d"],
    signal_variance: Float[ArrayLike, ""],
    X1: Float[Array, "n1 d"],
    X2: Float[Array, "n2 d"],
) -> Float[Array, "n1 n2"]:
    """Squared-exponential kernel ``s² exp(-r²/2)`` with ARD distance ``r² = Σ((x-x')/ℓ)²``.

    Args:
        lengthscales: ``(d,)`` ARD lengthscales, in the units of the inputs (unit cube).
        signal_variance: ``s²``, in y units squared.
        X1: ``(n1, d)`` inputs.
        X2: ``(n2, d)`` inputs.

    Returns:
        ``(n1, n2)`` covariance matrix.
    """
    return signal_variance * jnp.exp(-0.5 * _scaled_squared_distance(lengthscales, X1, X2))


def matern52(
    lengthscales: Float[Array, " d"],
    signal_variance: Float[ArrayLike, ""],
    X1: Float[Array, "n1 d"],
    X2: Float[Array, "n2 d"],
) -> Float[Array, "n1 n2"]:
    """Matérn-5/2 kernel ``s² (1 + √5 r + 5r²/3) exp(-√5 r)`` with ARD distance ``r``.

    Arguments and return as for :func:`rbf`. The distance uses a guarded square root so the
    gradient is finite (and correct, zero) at ``r = 0``.
    """
    r2 = _scaled_squared_distance(lengthscales, X1, X2)
    positive = r2 > 0.0
    r = jnp.where(positive, jnp.sqrt(jnp.where(positive, r2, 1.0)), 0.0)
    sqrt5_r = math.sqrt(5.0) * r
    return signal_variance * (1.0 + sqrt5_r + (5.0 / 3.0) * r2) * jnp.exp(-sqrt5_r)


def zero_mean(mean_params: PyTree, X: Float[Array, "n d"]) -> Float[Array, " n"]:
    """The zero prior-mean function (with ``mean_offset`` it gives a constant mean)."""
    del mean_params
    return jnp.zeros(X.shape[0], dtype=X.dtype)


# ----------------------------------------------------------------------- hyperparameters


class GPHyperparameters(eqx.Module):
    """GP hyperparameters; positive ones are stored as logarithms (unconstrained).

    Attributes:
        log_lengthscales: ``(d,)`` log of the ARD lengthscales, lengthscales in input units
            (fractions of the box width for unit-cube inputs).
        log_signal_variance: log of the kernel amplitude ``s²``, in y units squared.
        log_noise_variance: log of the Gaussian observation-noise variance, y units squared.
        mean_offset: constant added to the prior mean, in y units.
        mean_params: PyTree of parameters of ``mean_fn`` (``None`` when it has none).

    Build one from natural values with :meth:`create`; read natural values through the
    ``lengthscales``, ``signal_variance`` and ``noise_variance`` properties.
    """

    log_lengthscales: Float[Array, " d"]
    log_signal_variance: Float[Array, ""]
    log_noise_variance: Float[Array, ""]
    mean_offset: Float[Array, ""]
    mean_params: PyTree = None

    @classmethod
    def create(
        cls,
        lengthscales: Float[ArrayLike, " d"],
        signal_variance: float,
        noise_variance: float,
        mean_offset: float = 0.0,
        mean_params: PyTree = None,
    ) -> GPHyperparameters:
        """Hyperparameters from natural (positive) values; raises ``ValueError`` if not > 0.

        Example:
            >>> hyper = GPHyperparameters.create(jnp.full(3, 0.3), 1.0, 1e-4)
        """
        lengthscales = jnp.asarray(lengthscales, dtype=float)
        if lengthscales.ndim != 1:
            raise ValueError(f"lengthscales must have shape (d,); got {lengthscales.shape}")
        for name, value in (
            ("lengthscales", lengthscales),
            ("signal_variance", signal_variance),
            ("noise_variance", noise_variance),
        ):
            if is_concrete(value) and not np.all(np.asarray(value) > 0.0):
                raise ValueError(f"{name} must be > 0 and finite; got {np.asarray(value)}")
        return cls(
            log_lengthscales=jnp.log(lengthscales),
            log_signal_variance=jnp.log(jnp.asarray(signal_variance, dtype=float)),
            log_noise_variance=jnp.log(jnp.asarray(noise_variance, dtype=float)),
            mean_offset=jnp.asarray(mean_offset, dtype=float),
            mean_params=mean_params,
        )

    @property
    def lengthscales(self) -> Float[Array, " d"]:
        return jnp.exp(self.log_lengthscales)

    @property
    def signal_variance(self) -> Float[Array, ""]:
        return jnp.exp(self.log_signal_variance)

    @property
    def noise_variance(self) -> Float[Array, ""]:
        return jnp.exp(self.log_noise_variance)


# -------------------------------------------------------------------------- exact GP core


def _valid_mask(mask: Bool[ArrayLike, " n"] | None, n: int) -> Bool[Array, " n"]:
    return jnp.ones(n, dtype=bool) if mask is None else jnp.asarray(mask, dtype=bool)


def _prior_mean(
    hyper: GPHyperparameters, mean_fn: MeanFn | None, X: Float[Array, "n d"]
) -> Float[Array, " n"]:
    if mean_fn is None:
        return jnp.broadcast_to(hyper.mean_offset, (X.shape[0],))
    values = mean_fn(hyper.mean_params, X)
    if jnp.shape(values) != (X.shape[0],):
        raise ValueError(
            f"mean_fn must return shape (n,) = ({X.shape[0]},) for X of shape {X.shape}; "
            f"got {jnp.shape(values)}"
        )
    return hyper.mean_offset + values


class _Factorisation(NamedTuple):
    cholesky: Float[Array, "n n"]  # lower Cholesky factor of K + (noise + jitter) I
    alpha: Float[Array, " n"]  # (K + noise I)^-1 (y - m(X)), zero on padded rows
    residual: Float[Array, " n"]  # y - m(X), zero on padded rows


def _factorise(
    hyper: GPHyperparameters,
    mean_fn: MeanFn | None,
    kernel: Kernel,
    X: Float[Array, "n d"],
    y: Float[Array, " n"],
    mask: Bool[Array, " n"],
    jitter: float,
) -> _Factorisation:
    signal_variance = hyper.signal_variance
    covariance = kernel(hyper.lengthscales, signal_variance, X, X)
    # Padded rows are decoupled unit-variance points with zero residual: they add nothing
    # to the quadratic form or log-determinant, and are invisible to predictions.
    covariance = jnp.where(mask[:, None] & mask[None, :], covariance, 0.0)
    diagonal = jnp.where(mask, hyper.noise_variance + jitter * signal_variance, 1.0)
    cholesky = jnp.linalg.cholesky(covariance + jnp.diag(diagonal))
    residual = jnp.where(mask, y - _prior_mean(hyper, mean_fn, X), 0.0)
    alpha = jsp.linalg.cho_solve((cholesky, True), residual)
    return _Factorisation(cholesky, alpha, residual)


def _marginal_log_likelihood(
    hyper: GPHyperparameters,
    mean_fn: MeanFn | None,
    kernel: Kernel,
    X: Float[Array, "n d"],
    y: Float[Array, " n"],
    mask: Bool[Array, " n"],
    jitter: float,
) -> Float[Array, ""]:
    factor = _factorise(hyper, mean_fn, kernel, X, y, mask, jitter)
    n_valid = jnp.sum(mask)
    return (
        -0.5 * jnp.dot(factor.residual, factor.alpha)
        - jnp.sum(jnp.log(jnp.diagonal(factor.cholesky)))
        - 0.5 * n_valid * math.log(2.0 * math.pi)
    )


def _check_data(hyper: GPHyperparameters, X, y, mask) -> None:
    if jnp.ndim(X) != 2:
        raise ValueError(f"X must have shape (n, d); got {jnp.shape(X)}")
    n, d = jnp.shape(X)
    if jnp.shape(y) != (n,):
        raise ValueError(
            f"y must have shape (n,) = ({n},) to match X {jnp.shape(X)}; got {jnp.shape(y)}"
        )
    if mask is not None and jnp.shape(mask) != (n,):
        raise ValueError(f"mask must have shape ({n},); got {jnp.shape(mask)}")
    if hyper is not None and jnp.shape(hyper.log_lengthscales) != (d,):
        raise ValueError(
            f"hyperparameters have {jnp.shape(hyper.log_lengthscales)} lengthscales; "
            f"X has d = {d} columns"
        )
    check_finite(X, "X")
    check_finite(y, "y")


def marginal_log_likelihood(
    hyper: GPHyperparameters,
    mean_fn: MeanFn | None,
    X: Float[ArrayLike, "n d"],
    y: Float[ArrayLike, " n"],
    *,
    kernel: Kernel = matern52,
    mask: Bool[ArrayLike, " n"] | None = None,
    jitter: float = 1e-8,
) -> Float[Array, ""]:
    """Exact log marginal likelihood ``log N(y | m(X), K + σₙ² I)`` (Rasmussen & Williams 2.30).

    Args:
        hyper: hyperparameters (y units; lengthscales in input units).
        mean_fn: prior-mean function ``mean_fn(mean_params, X) -> (n,)`` or ``None``.
        X: ``(n, d)`` inputs (unit cube).
        y: ``(n,)`` observations, y units.
        kernel: :func:`matern52` (default), :func:`rbf` or any function of the same form.
        mask: ``(n,)`` rows in use; the others are padding and contribute nothing.
        jitter: added to the diagonal, relative to the signal variance, for a stable
            Cholesky factorisation.

    Returns:
        The log density of ``y`` (nats; includes the ``-n/2 log 2π`` term), differentiable
        with respect to every leaf of ``hyper`` including ``mean_params``.

    Raises:
        ValueError: on mismatched shapes or non-finite (concrete) data.
    """
    _check_data(hyper, X, y, mask)
    X = jnp.asarray(X, dtype=float)
    y = jnp.asarray(y, dtype=float)
    return _marginal_log_likelihood(
        hyper, mean_fn, kernel, X, y, _valid_mask(mask, X.shape[0]), jitter
    )


class GPPosterior(eqx.Module):
    """The GP conditioned on data; :meth:`predict` gives mean and variance at new inputs.

    A PyTree: pass it through ``eqx.filter_jit``/``eqx.filter_vmap`` (its ``mean_fn`` and
    ``kernel`` are functions, which equinox treats as static), or close over it.

    Attributes:
        hyperparameters: the hyperparameters it was built with.
        mean_fn: the prior-mean function (``None`` for a constant mean).
        kernel: the covariance function.
        X: ``(n, d)`` training inputs; ``mask`` their validity.
        cholesky: lower Cholesky factor of ``K + (σₙ² + jitter s²) I`` over the data.
        alpha: ``(K + σₙ² I)⁻¹ (y - m(X))``.
    """

    hyperparameters: GPHyperparameters
    mean_fn: MeanFn | None
    kernel: Kernel
    X: Float[Array, "n d"]
    mask: Bool[Array, " n"]
    cholesky: Float[Array, "n n"]
    alpha: Float[Array, " n"]

    def predict(
        self, X_new: Float[ArrayLike, "m d"], *, include_noise: bool = False
    ) -> tuple[Float[Array, " m"], Float[Array, " m"]]:
        """Posterior mean and variance of the latent function at ``X_new`` (R&W 2.25-2.26).

        Args:
            X_new: ``(m, d)`` inputs (unit cube).
            include_noise: add the noise variance (predict an observation, not ``f``).

        Returns:
            ``(mean, variance)``, each ``(m,)``, in y units and y units squared. Round-off
            that would make a variance negative is set to zero.
        """
        X_new = jnp.asarray(X_new, dtype=float)
        hyper = self.hyperparameters
        lengthscales, signal_variance = hyper.lengthscales, hyper.signal_variance
        cross = self.kernel(lengthscales, signal_variance, X_new, self.X)
        cross = jnp.where(self.mask[None, :], cross, 0.0)
        mean = _prior_mean(hyper, self.mean_fn, X_new) + cross @ self.alpha
        v = jsp.linalg.solve_triangular(self.cholesky, cross.T, lower=True)
        prior_variance = jax.vmap(
            lambda x: self.kernel(lengthscales, signal_variance, x[None, :], x[None, :])[0, 0]
        )(X_new)
        variance = jnp.maximum(prior_variance - jnp.sum(v**2, axis=0), 0.0)
        if include_noise:
            variance = variance + hyper.noise_variance
        return mean, variance


def posterior(
    hyper: GPHyperparameters,
    mean_fn: MeanFn | None,
    X: Float[ArrayLike, "n d"],
    y: Float[ArrayLike, " n"],
    *,
    kernel: Kernel = matern52,
    mask: Bool[ArrayLike, " n"] | None = None,
    jitter: float = 1e-8,
) -> GPPosterior:
    """Condition the GP on ``(X, y)``; arguments as for :func:`marginal_log_likelihood`.

    Example:
        >>> post = posterior(hyper, None, X, y)
        >>> mean, variance = post.predict(X_new)
    """
    _check_data(hyper, X, y, mask)
    X = jnp.asarray(X, dtype=float)
    y = jnp.asarray(y, dtype=float)
    mask = _valid_mask(mask, X.shape[0])
    factor = _factorise(hyper, mean_fn, kernel, X, y, mask, jitter)
    return GPPosterior(hyper, mean_fn, kernel, X, mask, factor.cholesky, factor.alpha)


# ------------------------------------------------------------------------------ fitting


class HyperparameterPrior(NamedTuple):
    """Bounds and weak priors that keep hyperparameter fits robust on few points.

    Variances are in units of the sample variance of ``y`` (the fit standardises ``y``);
    lengthscales in input units (unit cube). Each ``*_bounds`` is a hard ``(low, high)``
    range enforced by a bijection (a :class:`~diffdesign.core.Box` in log space); each
    ``*_gamma`` is ``(concentration, rate)`` of a Gamma prior on the natural value, or
    ``None`` for flat.
    The defaults are BoTorch's classic ``SingleTaskGP`` priors.
    """

    lengthscale_bounds: tuple[float, float] = (1e-2, 1e2)
    signal_variance_bounds: tuple[float, float] = (1e-2, 1e2)
    noise_variance_bounds: tuple[float, float] = (1e-6, 1.0)
    lengthscale_gamma: tuple[float, float] | None = (3.0, 6.0)
    signal_variance_gamma: tuple[float, float] | None = (2.0, 0.15)
    noise_variance_gamma: tuple[float, float] | None = (1.1, 0.05)


DEFAULT_PRIOR = HyperparameterPrior()


class GPFit(NamedTuple):
    """Result of :func:`fit_hyperparameters`.

    Attributes:
        hyperparameters: the fitted hyperparameters, in the units of the data (not
            standardised).
        marginal_log_likelihood: the exact log marginal likelihood of the data at them
            (nats), equal to :func:`marginal_log_likelihood` evaluated there (the priors are
            not included).
    """

    hyperparameters: GPHyperparameters
    marginal_log_likelihood: Float[Array, ""]


#: Adam step and eps of the bounded hyperparameters, relative to ``learning_rate`` and to
#: optax's eps. A log hyperparameter in ``[low, high]`` was historically moved through the
#: logistic coordinate ``u`` (``low + (high - low) sigmoid(u)``), which is the :class:`Box`
#: coordinate ``z = u / 2`` (``sigmoid(u) = (1 + tanh(u / 2)) / 2``): gradients in ``z`` are
#: twice those in ``u``, so half the step and twice Adam's eps keep the historical path.
_BOX_STEP = 0.5
_BOX_EPS = 2e-8
#: A start on (or beyond) a bound is moved this fraction of the range inside it.
_START_INSIDE = 1e-6


def _log_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    return math.log(bounds[0]), math.log(bounds[1])


def _inside(value: Array, low: ArrayLike, high: ArrayLike) -> Array:
    """``value`` moved at least ``_START_INSIDE`` of the range inside ``[low, high]``."""
    margin = _START_INSIDE * (jnp.asarray(high) - jnp.asarray(low))
    return jnp.clip(value, low + margin, high - margin)


def _gamma_log_density(log_value: Array, gamma: tuple[float, float] | None) -> Array:
    if gamma is None:
        return jnp.zeros(())
    concentration, rate = gamma
    return jnp.sum((concentration - 1.0) * log_value - rate * jnp.exp(log_value))


@jax.custom_vjp
def _finite_gradient(x: PyTree) -> PyTree:
    """The identity on a PyTree of arrays, whose gradient has its non-finite entries set to zero.

    A start whose gradient is not finite (a failed Cholesky factorisation, the square root
    of a zero variance) then stays where it is, as with ``optax.apply_if_finite``, instead
    of turning into NaN.
    """
    return x


def _finite_gradient_fwd(x):
    return x, None


def _finite_gradient_bwd(_, cotangent):
    return (jax.tree_util.tree_map(lambda c: jnp.where(jnp.isfinite(c), c, 0.0), cotangent),)


_finite_gradient.defvjp(_finite_gradient_fwd, _finite_gradient_bwd)


def _standardisation(y: Array, mask: Array) -> tuple[Array, Array]:
    """Shift (mean) and scale (standard deviation) of the valid entries of ``y``."""
    n_valid = jnp.maximum(jnp.sum(mask), 1)
    shift = jnp.sum(jnp.where(mask, y, 0.0)) / n_valid
    variance = jnp.sum(jnp.where(mask, (y - shift) ** 2, 0.0)) / n_valid
    # One point, or all equal: fall back to the magnitude of the data (or 1).
    fallback = jnp.where(jnp.abs(shift) > 0.0, jnp.abs(shift), 1.0)
    scale = jnp.where(variance > 0.0, jnp.sqrt(jnp.where(variance > 0.0, variance, 1.0)), fallback)
    return shift, scale


def default_hyperparameters(
    X: Float[ArrayLike, "n d"],
    y: Float[ArrayLike, " n"],
    *,
    mean_fn: MeanFn | None = None,
    mean_params: PyTree = None,
    mask: Bool[ArrayLike, " n"] | None = None,
) -> GPHyperparameters:
    """A data-scaled starting point: lengthscales 0.3, ``s²`` = var(y), noise 10⁻³ var(y).

    Args:
        X: ``(n, d)`` inputs (unit cube).
        y: ``(n,)`` observations, y units.
        mean_fn: the prior-mean function ``mean_fn(mean_params, X) -> (n,)``, or ``None``.
        mean_params: its parameters (kept as given).
        mask: ``(n,)`` rows in use.

    Returns:
        Hyperparameters in y units; ``mean_offset`` is the mean residual
        ``mean(y - mean_fn(mean_params, X))`` over the rows in use.
    """
    X = jnp.asarray(X, dtype=float)
    y = jnp.asarray(y, dtype=float)
    mask = _valid_mask(mask, X.shape[0])
    _, scale = _standardisation(y, mask)
    mean_values = 0.0 if mean_fn is None else mean_fn(mean_params, X)
    residual = y - mean_values
    offset = jnp.sum(jnp.where(mask, residual, 0.0)) / jnp.maximum(jnp.sum(mask), 1)
    return GPHyperparameters(
        log_lengthscales=jnp.full(X.shape[1], math.log(0.3), dtype=X.dtype),
        log_signal_variance=2.0 * jnp.log(scale),
        log_noise_variance=2.0 * jnp.log(scale) + math.log(1e-3),
        mean_offset=offset,
        mean_params=mean_params,
    )


def check_mean_params_bounds(
    mean_params: PyTree, bounds: tuple[PyTree, PyTree]
) -> tuple[PyTree, PyTree]:
    """Broadcast ``(low, high)`` to the leaves of ``mean_params`` and check them.

    Returns:
        ``(low, high)`` as PyTrees of float arrays shaped like the leaves of ``mean_params``.

    Raises:
        TypeError: if ``bounds`` is not a pair.
        ValueError: on a structure mismatch, ``low >= high`` or a (concrete) value of
            ``mean_params`` outside its bounds.
    """
    if not (isinstance(bounds, tuple | list) and len(bounds) == 2):
        raise TypeError("mean_params_bounds must be a pair (low, high) of PyTrees")
    leaves, treedef = jax.tree_util.tree_flatten(mean_params)
    if not leaves:
        raise ValueError("mean_params_bounds given but mean_params has no array leaves to fit")
    out = []
    for name, bound in zip(("low", "high"), bounds, strict=True):
        try:
            bound_leaves = treedef.flatten_up_to(bound)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"mean_params_bounds {name} must have the structure of mean_params "
                f"{treedef}; got {jax.tree_util.tree_structure(bound)}"
            ) from error
        broadcast = []
        for i, (b, p) in enumerate(zip(bound_leaves, leaves, strict=True)):
            try:
                broadcast.append(jnp.broadcast_to(jnp.asarray(b, dtype=float), jnp.shape(p)))
            except (ValueError, TypeError):
                raise ValueError(
                    f"mean_params_bounds {name} leaf {i} ({b!r}) does not broadcast to the "
                    f"shape {jnp.shape(p)} of mean_params leaf {i}"
                ) from None
        out.append(broadcast)
    for i, (low, high, value) in enumerate(zip(out[0], out[1], leaves, strict=True)):
        if is_concrete(low) and is_concrete(high):
            if not np.all(np.asarray(low) < np.asarray(high)):
                raise ValueError(
                    f"mean_params_bounds leaf {i}: low must be < high; got low={np.asarray(low)}, "
                    f"high={np.asarray(high)}"
                )
            if is_concrete(value) and not np.all(
                (np.asarray(value) >= np.asarray(low)) & (np.asarray(value) <= np.asarray(high))
            ):
                raise ValueError(
                    f"mean_params leaf {i} = {np.asarray(value)} lies outside its bounds "
                    f"[{np.asarray(low)}, {np.asarray(high)}]"
                )
    return treedef.unflatten(out[0]), treedef.unflatten(out[1])


def fit_hyperparameters(
    X: Float[ArrayLike, "n d"],
    y: Float[ArrayLike, " n"],
    key: PRNGKeyArray,
    *,
    mean_fn: MeanFn | None = None,
    mean_params: PyTree = None,
    mean_params_bounds: tuple[PyTree, PyTree] | None = None,
    init: GPHyperparameters | None = None,
    fit_mean_offset: bool = True,
    kernel: Kernel = matern52,
    prior: HyperparameterPrior = DEFAULT_PRIOR,
    mask: Bool[ArrayLike, " n"] | None = None,
    n_restarts: int = 4,
    n_steps: int = 200,
    learning_rate: float = 0.05,
    jitter: float = 1e-8,
) -> GPFit:
    """Maximum a-posteriori hyperparameters by Adam on the exact marginal likelihood.

    The fit runs on standardised data ``ỹ = (y - shift) / scale`` (mean and standard
    deviation of the valid ``y``), where the prior mean becomes
    ``m̃(X) = (mean_offset - shift) / scale + mean_fn(mean_params, X) / scale`` and the
    variances are divided by ``scale²``; the result is mapped back to the units of ``y``.
    The restarts are one :func:`diffdesign.core.multistart` of :class:`HyperparameterProblem`:
    each runs ``n_steps`` of Adam (cosine-decayed to 10 % of ``learning_rate``; non-finite
    gradient entries are set to zero, so a start where the likelihood fails stays put);
    restart 0 starts from ``init`` (or :func:`default_hyperparameters`), the others from
    random points. The restart with the highest log posterior wins. Lengthscales, variances
    and ``mean_params`` pass through Box bijections onto their bounds, so the bounds are
    never exceeded (a start on a bound is moved 10⁻⁶ of the range inside).

    Args:
        X: ``(n, d)`` inputs (unit cube).
        y: ``(n,)`` observations, y units.
        key: PRNG key for the random restarts.
        mean_fn: prior-mean function ``mean_fn(mean_params, X) -> (n,)`` in y units, or
            ``None`` for a constant mean.
        mean_params: the mean function's parameters: fixed, or the start of their fit.
        mean_params_bounds: ``(low, high)`` PyTrees with the structure of ``mean_params``
            (leaves broadcast to its leaves). When given, ``mean_params`` are fitted jointly
            with the kernel hyperparameters, inside these bounds; when ``None`` they stay
            fixed.
        init: warm start for restart 0 (replaces ``mean_params``; give one or the other).
        fit_mean_offset: fit the constant ``mean_offset`` (else keep its starting value).
        kernel: covariance function, :func:`matern52` by default.
        prior: bounds and priors, see :class:`HyperparameterPrior`.
        mask: ``(n,)`` rows in use (others are padding).
        n_restarts: number of optimisation starts (vmapped).
        n_steps: Adam steps per start.
        learning_rate: initial Adam step size in the logistic coordinate ``u`` of a bounded
            hyperparameter (``low + (high - low) sigmoid(u)``; the Box step is half of it)
            and of ``mean_offset`` (standardised units).
        jitter: diagonal jitter relative to the signal variance.

    Returns:
        :class:`GPFit` with the hyperparameters (y units) and their marginal log likelihood.

    Raises:
        ValueError: on mismatched shapes, non-finite data, bad bounds or a start outside them.
        TypeError: if both ``init`` and ``mean_params`` are given.
        FloatingPointError: if every restart ends with a non-finite objective.

    Example:
        >>> fit = fit_hyperparameters(X, y, jax.random.key(0), mean_fn=model,
        ...                           mean_params=p0, mean_params_bounds=(-2e-3, 2e-3))
    """
    if init is not None and mean_params is not None:
        raise TypeError("give mean_params or init (which carries mean_params), not both")
    _check_data(init, X, y, mask)
    if n_restarts < 1 or n_steps < 1:
        raise ValueError(f"n_restarts and n_steps must be >= 1; got {n_restarts}, {n_steps}")
    check_positive(learning_rate, "learning_rate", "fit_hyperparameters")
    check_range(jitter, "jitter", low=0.0, owner="fit_hyperparameters")
    valid = np.shape(X)[0] if mask is None or not is_concrete(mask) else int(np.sum(mask))
    if valid < 1:
        raise ValueError(
            f"X and y must hold at least one data point (valid row); got X of shape "
            f"{np.shape(X)} with {valid} valid"
        )
    for name, bounds in (
        ("lengthscale_bounds", prior.lengthscale_bounds),
        ("signal_variance_bounds", prior.signal_variance_bounds),
        ("noise_variance_bounds", prior.noise_variance_bounds),
    ):
        if not 0.0 < bounds[0] < bounds[1]:
            raise ValueError(f"prior.{name} must satisfy 0 < low < high; got {bounds}")
    X = jnp.asarray(X, dtype=float)
    y = jnp.asarray(y, dtype=float)
    mask = _valid_mask(mask, X.shape[0])
    if init is None:
        mean_params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype=float), mean_params)
        init = default_hyperparameters(X, y, mean_fn=mean_fn, mean_params=mean_params, mask=mask)
    if mean_params_bounds is not None:
        mean_params_bounds = check_mean_params_bounds(init.mean_params, mean_params_bounds)
    problem, starts, shift, scale = _hyperparameter_problem(
        X,
        y,
        mask,
        key,
        init,
        mean_params_bounds,
        mean_fn=mean_fn,
        kernel=kernel,
        prior=prior,
        fit_mean_offset=fit_mean_offset,
        n_restarts=n_restarts,
        learning_rate=learning_rate,
        jitter=jitter,
    )
    optimiser = Adam(CosineDecay(n_steps, final_fraction=0.1), eps=_BOX_EPS)
    result = multistart(problem, starts, steps=n_steps, key=key, optimiser=optimiser)
    best = jax.tree_util.tree_map(lambda leaf: leaf[result.best], result.params)
    return _unstandardise(problem, best, shift, scale, X, y, mask, mean_fn=mean_fn)


class _ScaledMean(eqx.Module):
    """The caller's mean function in standardised units: ``mean_fn(params, X) / scale``."""

    mean_fn: MeanFn
    scale: Array

    def __call__(self, mean_params: PyTree, X: Array) -> Array:
        return self.mean_fn(mean_params, X) / self.scale


class HyperparameterProblem(Problem):
    """The MAP hyperparameter fit of standardised data as a design-layer problem.

    The loss is minus the log posterior (exact marginal likelihood plus the Gamma priors of
    ``prior``) of the standardised targets; the spec holds the standardised log
    hyperparameters inside the log of ``prior``'s bounds through :class:`Box` bijections
    (one label each, step ``_BOX_STEP * learning_rate``), ``mean_offset`` unbounded (step
    ``learning_rate``) when it is fitted, and ``mean_params`` inside their bounds (Box) when
    they are fitted. Entries not fitted are fixed at their values in ``fixed``.
    """

    X: Array
    y: Array
    mask: Array
    start: dict[str, PyTree]
    fixed: dict[str, PyTree]
    mean_fn: MeanFn | None
    kernel: Kernel = eqx.field(static=True)
    prior: HyperparameterPrior = eqx.field(static=True)
    jitter: float = eqx.field(static=True)

    @property
    def spec(self) -> dict[str, PyTree]:
        return self.start

    @property
    def name(self) -> str:
        return "gp_hyperparameters"

    def hyperparameters(self, params: dict[str, PyTree]) -> GPHyperparameters:
        """The (standardised) hyperparameters of ``params`` (the spec's entries)."""
        values = {**self.fixed, **params}
        return GPHyperparameters(
            log_lengthscales=values["log_lengthscales"],
            log_signal_variance=values["log_signal_variance"],
            log_noise_variance=values["log_noise_variance"],
            mean_offset=values["mean_offset"],
            mean_params=values["mean_params"],
        )

    def loss(self, params, key):
        del key
        hyper = self.hyperparameters(_finite_gradient(params))
        log_likelihood = _marginal_log_likelihood(
            hyper, self.mean_fn, self.kernel, self.X, self.y, self.mask, self.jitter
        )
        log_prior = (
            _gamma_log_density(hyper.log_lengthscales, self.prior.lengthscale_gamma)
            + _gamma_log_density(hyper.log_signal_variance, self.prior.signal_variance_gamma)
            + _gamma_log_density(hyper.log_noise_variance, self.prior.noise_variance_gamma)
        )
        return -(log_likelihood + log_prior), {}


@eqx.filter_jit
def _hyperparameter_problem(
    X: Array,
    y: Array,
    mask: Array,
    key: PRNGKeyArray,
    init: GPHyperparameters,
    mean_params_bounds: tuple[PyTree, PyTree] | None,
    *,
    mean_fn: MeanFn | None,
    kernel: Kernel,
    prior: HyperparameterPrior,
    fit_mean_offset: bool,
    n_restarts: int,
    learning_rate: float,
    jitter: float,
) -> tuple[HyperparameterProblem, dict[str, PyTree], Array, Array]:
    """The problem on standardised data, its starts (restart 0: ``init``), shift and scale."""
    shift, scale = _standardisation(y, mask)
    log_scale2 = 2.0 * jnp.log(scale)
    box_step = _BOX_STEP * learning_rate
    bounds = {
        "log_lengthscales": _log_bounds(prior.lengthscale_bounds),
        "log_signal_variance": _log_bounds(prior.signal_variance_bounds),
        "log_noise_variance": _log_bounds(prior.noise_variance_bounds),
    }
    standard_init = {
        "log_lengthscales": init.log_lengthscales,
        "log_signal_variance": init.log_signal_variance - log_scale2,
        "log_noise_variance": init.log_noise_variance - log_scale2,
        "mean_offset": (init.mean_offset - shift) / scale,
        "mean_params": init.mean_params,
    }
    fitted = [*bounds, *(["mean_offset"] if fit_mean_offset else [])]
    fitted += ["mean_params"] if mean_params_bounds is not None else []

    def box(value, low, high, name):
        return Param(_inside(value, low, high), low, high, step=box_step, label=name,
                     transform=Box())  # fmt: skip

    start = {name: box(standard_init[name], *bounds[name], name) for name in bounds}
    if fit_mean_offset:
        start["mean_offset"] = Param(standard_init["mean_offset"], step=learning_rate,
                                     label="mean_offset")  # fmt: skip
    if mean_params_bounds is not None:
        low, high = mean_params_bounds
        start["mean_params"] = jax.tree_util.tree_map(
            lambda value, lo, hi: box(value, lo, hi, "mean_params"), init.mean_params, low, high
        )
    fixed = {name: value for name, value in standard_init.items() if name not in fitted}
    problem = HyperparameterProblem(
        X=X,
        y=jnp.where(mask, (y - shift) / scale, 0.0),
        mask=mask,
        start=start,
        fixed=fixed,
        mean_fn=None if mean_fn is None else _ScaledMean(mean_fn, scale),
        kernel=kernel,
        prior=prior,
        jitter=jitter,
    )

    # Restart 0: the warm start; the others log-uniform kernel hyperparameters, mean_offset
    # zero and mean_params uniform in the middle 96 % of their box.
    d = X.shape[1]
    keys = jax.random.split(key, 4)
    n_random = n_restarts - 1
    log_uniform = lambda k, shape, low, high: jax.random.uniform(
        k, shape, minval=math.log(low), maxval=math.log(high)
    )
    random = {
        "log_lengthscales": log_uniform(keys[0], (n_random, d), 0.05, 2.0),
        "log_signal_variance": log_uniform(keys[1], (n_random,), 0.2, 5.0),
        "log_noise_variance": log_uniform(keys[2], (n_random,), 1e-5, 1e-1),
        "mean_offset": jnp.zeros(n_random),
    }
    if mean_params_bounds is not None:
        low, high = mean_params_bounds
        leaves, treedef = jax.tree_util.tree_flatten(low)
        leaf_keys = jax.random.split(keys[3], len(leaves))
        fractions = [
            jax.random.uniform(k, (n_random, *jnp.shape(leaf)), minval=0.02, maxval=0.98)
            for k, leaf in zip(leaf_keys, leaves, strict=True)
        ]
        random["mean_params"] = jax.tree_util.tree_map(
            lambda f, lo, hi: _inside(lo[None] + (hi - lo)[None] * f, lo[None], hi[None]),
            treedef.unflatten(fractions),
            low,
            high,
        )
    for name, (lower, upper) in bounds.items():
        random[name] = _inside(random[name], lower, upper)
    first = {name: values(start[name]) for name in fitted}
    starts = {
        name: jax.tree_util.tree_map(
            lambda a, rest: jnp.concatenate([a[None], rest]), first[name], random[name]
        )
        for name in fitted
    }
    return problem, starts, shift, scale


@eqx.filter_jit
def _unstandardise(
    problem: HyperparameterProblem,
    standard: dict[str, PyTree],
    shift: Array,
    scale: Array,
    X: Array,
    y: Array,
    mask: Array,
    *,
    mean_fn: MeanFn | None,
) -> GPFit:
    """The fit in the units of ``y``, with its exact marginal log likelihood."""
    hyper = problem.hyperparameters(standard)
    log_scale2 = 2.0 * jnp.log(scale)
    hyper = GPHyperparameters(
        log_lengthscales=hyper.log_lengthscales,
        log_signal_variance=hyper.log_signal_variance + log_scale2,
        log_noise_variance=hyper.log_noise_variance + log_scale2,
        mean_offset=hyper.mean_offset * scale + shift,
        mean_params=hyper.mean_params,
    )
    mll = _marginal_log_likelihood(hyper, mean_fn, problem.kernel, X, y, mask, problem.jitter)
    return GPFit(hyper, mll)


# -------------------------------------------------------------------------- acquisition

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_SQRT_PI_OVER_2 = 0.5 * math.log(0.5 * math.pi)
_ASYMPTOTIC_Z = -1e3


def _log1mexp(x: Array) -> Array:
    """``log(1 - exp(x))`` for ``x < 0``, accurate on both sides of ``-log 2``."""
    near = x > -math.log(2.0)
    safe_near = jnp.where(near, x, -1.0)
    safe_far = jnp.where(near, -1.0, x)
    return jnp.where(near, jnp.log(-jnp.expm1(safe_near)), jnp.log1p(-jnp.exp(safe_far)))


def _log_h(z: Array) -> Array:
    """``log(φ(z) + z Φ(z))`` for all z (Ament et al. 2023, "Unexpected improvements")."""
    upper = z > -1.0
    asymptotic = z < _ASYMPTOTIC_Z
    z_upper = jnp.where(upper, z, 0.0)
    direct = jnp.log(
        jnp.exp(-0.5 * z_upper**2 - _LOG_SQRT_2PI) + z_upper * jsp.special.ndtr(z_upper)
    )
    # -1e3 <= z <= -1: h = φ(z) (1 - |z| √(π/2) erfcx(|z|/√2)), the bracket by log1mexp.
    z_middle = jnp.where(upper | asymptotic, -2.0, z)
    a = -z_middle
    middle = (
        -0.5 * z_middle**2
        - _LOG_SQRT_2PI
        + _log1mexp(jnp.log(a * jsp.special.erfcx(a / math.sqrt(2.0))) + _LOG_SQRT_PI_OVER_2)
    )
    # z < -1e3: h/φ = z⁻² (1 - 3 z⁻² + 15 z⁻⁴ - 105 z⁻⁶ + ...).
    z_tail = jnp.where(asymptotic, z, 2.0 * _ASYMPTOTIC_Z)
    inverse2 = 1.0 / z_tail**2
    tail = (
        -0.5 * z_tail**2
        - _LOG_SQRT_2PI
        + jnp.log(inverse2)
        + jnp.log1p(inverse2 * (-3.0 + inverse2 * (15.0 - 105.0 * inverse2)))
    )
    return jnp.where(upper, direct, jnp.where(asymptotic, tail, middle))


def _standard_deviation(variance: Array) -> Array:
    return jnp.sqrt(jnp.maximum(variance, jnp.finfo(jnp.result_type(variance, float)).tiny))


def log_expected_improvement(
    mean: Float[ArrayLike, "*batch"],
    variance: Float[ArrayLike, "*batch"],
    best: Float[ArrayLike, ""],
) -> Float[Array, "*batch"]:
    """``log E[max(best - f, 0)]`` for ``f ~ N(mean, variance)``, finite for any inputs.

    Stable where the improvement is astronomically unlikely (it does not underflow to
    ``-inf`` and its gradient stays informative), following Ament et al. (2023).

    Args:
        mean: posterior mean (y units).
        variance: posterior variance (y units squared).
        best: incumbent value to improve on (y units), e.g. the lowest observation.
    """
    mean = jnp.asarray(mean, dtype=float)
    sigma = _standard_deviation(jnp.asarray(variance, dtype=float))
    return jnp.log(sigma) + _log_h((best - mean) / sigma)


def expected_improvement(
    mean: Float[ArrayLike, "*batch"],
    variance: Float[ArrayLike, "*batch"],
    best: Float[ArrayLike, ""],
) -> Float[Array, "*batch"]:
    """``E[max(best - f, 0)] = σ (φ(z) + z Φ(z))``, ``z = (best - mean)/σ``; always >= 0.

    Arguments as for :func:`log_expected_improvement` (y units); returns y units.
    """
    return jnp.exp(log_expected_improvement(mean, variance, best))


def lower_confidence_bound(
    mean: Float[ArrayLike, "*batch"],
    variance: Float[ArrayLike, "*batch"],
    beta: Float[ArrayLike, ""],
) -> Float[Array, "*batch"]:
    """``mean - √(beta · variance)``: an optimistic value of ``f`` (y units) to minimise."""
    return jnp.asarray(mean, dtype=float) - jnp.sqrt(
        beta * jnp.maximum(jnp.asarray(variance, dtype=float), 0.0)
    )


class LogExpectedImprovement(eqx.Module):
    """Acquisition ``x -> log EI(x)`` for minimisation under a GP posterior.

    Attributes:
        posterior: the GP posterior.
        best: incumbent value (y units), usually the lowest observation.
    """

    posterior: GPPosterior
    best: Float[Array, ""]

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        mean, variance = self.posterior.predict(x[None, :])
        return log_expected_improvement(mean[0], variance[0], self.best)


class UpperConfidenceBound(eqx.Module):
    """Acquisition ``x -> -mean(x) + √(beta var(x))``, the UCB of the improvement ``-f``.

    Equal to minus :func:`lower_confidence_bound`, so that larger is better as for every
    acquisition here.

    Attributes:
        posterior: the GP posterior.
        beta: exploration weight (dimensionless, >= 0).
    """

    posterior: GPPosterior
    beta: Float[Array, ""]

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        mean, variance = self.posterior.predict(x[None, :])
        return -lower_confidence_bound(mean[0], variance[0], self.beta)


class AcquisitionProblem(Problem):
    """Maximisation of an acquisition function over the unit cube as a design-layer problem:
    the loss is ``-acquisition(x)``, the spec ``{"x": Param in [0, 1]^d}`` (projected back
    onto the cube after every step, step ``learning_rate`` in unit-cube units)."""

    acquisition: Callable[[Array], Array]
    start: Param

    @property
    def spec(self) -> dict[str, Param]:
        return {"x": self.start}

    @property
    def name(self) -> str:
        return "acquisition"

    def loss(self, params, key):
        del key
        return -self.acquisition(_finite_gradient(params["x"])), {}


@eqx.filter_jit
def _acquisition_starts(
    acquisition: Callable[[Array], Array],
    key: PRNGKeyArray,
    initial_points: Float[Array, "k d"],
    *,
    n_starts: int,
    n_raw_samples: int,
    learning_rate: float,
) -> tuple[AcquisitionProblem, Float[Array, "s d"], Float[Array, " s"]]:
    """The problem, its starts (``initial_points``, then the best raw samples) and their
    acquisition values."""
    d = initial_points.shape[1]
    raw = jax.random.uniform(key, (n_raw_samples, d))
    raw_values = jax.vmap(acquisition)(raw)
    raw_values = jnp.where(jnp.isfinite(raw_values), raw_values, -jnp.inf)
    _, top = jax.lax.top_k(raw_values, n_starts)
    initial_points = jnp.clip(initial_points, 0.0, 1.0)
    starts = jnp.concatenate([initial_points, raw[top]])
    start_values = jnp.concatenate([jax.vmap(acquisition)(initial_points), raw_values[top]])
    start = Param(starts[0], 0.0, 1.0, step=learning_rate, label="x")
    return AcquisitionProblem(acquisition, start), starts, start_values


@eqx.filter_jit
def _best_point(
    starts: Float[Array, "s d"],
    start_values: Float[Array, " s"],
    finals: Float[Array, "s d"],
    final_losses: Float[Array, " s"],
) -> tuple[Float[Array, " d"], Float[Array, ""]]:
    """The best of the starts and the best points along their paths (non-finite values
    never win)."""
    start_values = jnp.where(jnp.isfinite(start_values), start_values, -jnp.inf)
    final_values = jnp.where(jnp.isfinite(final_losses), -final_losses, -jnp.inf)
    better = final_values > start_values
    xs = jnp.where(better[:, None], finals, starts)
    values_ = jnp.where(better, final_values, start_values)
    best = jnp.argmax(values_)
    return xs[best], values_[best]


def maximize_acquisition(
    acquisition: Callable[[Float[Array, " d"]], Float[Array, ""]],
    key: PRNGKeyArray,
    dim: int,
    *,
    initial_points: Float[ArrayLike, "k d"] | None = None,
    n_starts: int = 16,
    n_raw_samples: int = 512,
    n_steps: int = 100,
    learning_rate: float = 0.05,
) -> tuple[Float[Array, " d"], Float[Array, ""]]:
    """Maximise ``acquisition`` over the unit cube by multi-start projected Adam ascent.

    ``n_raw_samples`` uniform points are scored and the best ``n_starts`` of them, plus
    every row of ``initial_points`` (e.g. the current best point), start ``n_steps`` of
    Adam ascent (cosine-decayed step size), each step projected back onto ``[0, 1]^dim``:
    one :func:`diffdesign.core.multistart` of :class:`AcquisitionProblem`. The best point
    along every start's path (the final points included) is returned (non-finite gradient
    entries are set to zero, so a start where the gradient fails, e.g. UCB at a noise-free
    data point, stays a candidate).

    Args:
        acquisition: ``x (dim,) -> scalar``, larger is better; a function or a PyTree module
            such as :class:`LogExpectedImprovement` (modules with new array values reuse the
            compiled code; new Python closures retrace).
        key: PRNG key for the random points.
        dim: input dimension d.
        initial_points: ``(k, dim)`` extra starting points in the unit cube.
        n_starts: number of random starts kept from the raw samples.
        n_raw_samples: number of uniform points scored to choose the starts.
        n_steps: Adam steps per start.
        learning_rate: initial Adam step size (unit-cube units), cosine-decayed to 1% of it.

    Returns:
        ``(x, value)``: the best point ``(dim,)`` in the unit cube and its acquisition value.

    Example:
        >>> x, value = maximize_acquisition(LogExpectedImprovement(post, y.min()), key, 5)
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1; got {dim}")
    if not 1 <= n_starts <= n_raw_samples:
        raise ValueError(
            f"need 1 <= n_starts <= n_raw_samples; got n_starts={n_starts}, "
            f"n_raw_samples={n_raw_samples}"
        )
    if initial_points is None:
        initial_points = jnp.zeros((0, dim))
    initial_points = jnp.asarray(initial_points, dtype=float)
    if initial_points.ndim != 2 or initial_points.shape[1] != dim:
        raise ValueError(f"initial_points must have shape (k, {dim}); got {initial_points.shape}")
    check_finite(initial_points, "initial_points")
    problem, starts, start_values = _acquisition_starts(
        acquisition,
        key,
        initial_points,
        n_starts=n_starts,
        n_raw_samples=n_raw_samples,
        learning_rate=learning_rate,
    )
    # The step size decays so the final iterates settle instead of hovering ~learning_rate
    # around the maximiser (Adam's steps do not shrink with the gradient).
    optimiser = Adam(CosineDecay(n_steps, final_fraction=0.01))
    result = multistart(problem, {"x": starts}, steps=n_steps, key=key, optimiser=optimiser)
    return _best_point(starts, start_values, result.path_params["x"], result.path_loss)
