"""The synthetic 3-D mixture of the INFERNO paper (de Castro & Dorigo 2019, Sect. 5).

Events have three features ``x = (x0, x1, x2)``:

* background: ``(x0, x1) ~ N((2 + r, 0), diag(5, 9))`` and ``x2 ~ Exp(rate lambda)``;
* signal: ``(x0, x1) ~ N((0, 0), I)`` and ``x2 ~ Exp(rate 2)``;

with expected yields ``s = 50`` signal and ``b = 1000`` background events. The parameters
``theta = (s, r, lambda, b)`` have nominal values ``(50, 0, 3, 1000)``; ``s`` is of interest.
The paper's text puts the signal mean at ``(1, 1)``; its code and its Table 2 (which the
analytical bound here reproduces) use ``(0, 0)``, as we do.

The shape nuisances act on the events: a background sample drawn at the nominal point is
moved to ``(r, lambda)`` by ``x0 -> x0 + r`` and ``x2 -> x2 * 3 / lambda`` (exact: an
``Exp(3)`` variable times ``3/lambda`` is ``Exp(lambda)``), which is differentiable, so a
network's soft histogram of the moved sample depends smoothly on ``r`` and ``lambda``.

Benchmarks 0-4 (:data:`BENCHMARKS`) free more and more nuisance parameters:
0 only ``s``; 1 ``s, r``; 2 ``s, r, lambda``; 3 as 2 with constraints ``r ~ N(0, 0.4)``,
``lambda ~ N(3, 1)``; 4 as 3 with ``b`` free and ``b ~ N(1000, 100)``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from diffdesign._validation import check_finite
from diffdesign.inference.binned import (
    ExpectedCounts,
    InferenceSetup,
    TemplateShapes,
    covariance,
)
from diffdesign.inference.inferno import hard_histogram, soft_histogram

PARAMETERS = ("s", "r", "lambda", "b")
NOMINAL = (50.0, 0.0, 3.0, 1000.0)
SIGNAL_RATE = 2.0  # of x2 in signal events
BACKGROUND_MEAN = (2.0, 0.0)
BACKGROUND_VARIANCE = (5.0, 9.0)
#: shifts of the up/down templates of r and lambda (the paper's evaluation).
TEMPLATE_STEPS = (0.2, 0.5)

BENCHMARKS = {
    0: InferenceSetup(PARAMETERS, NOMINAL, poi="s", free=("s",)),
    1: InferenceSetup(PARAMETERS, NOMINAL, poi="s", free=("s", "r")),
    2: InferenceSetup(PARAMETERS, NOMINAL, poi="s", free=("s", "r", "lambda")),
    3: InferenceSetup(
        PARAMETERS,
        NOMINAL,
        poi="s",
        free=("s", "r", "lambda"),
        constraints={"r": 0.4, "lambda": 1.0},
    ),
    4: InferenceSetup(
        PARAMETERS,
        NOMINAL,
        poi="s",
        free=("s", "r", "lambda", "b"),
        constraints={"r": 0.4, "lambda": 1.0, "b": 100.0},
    ),
}

#: the paper's Table 2: median expected uncertainty on s over 100 initialisations, each
#: INFERNO model trained on the benchmark it is scored on (optimal classifier and bound:
#: single numbers).
PAPER_TABLE_2 = {
    "classifier": (14.99, 18.94, 23.94, 21.54, 26.71),
    "inferno": (15.51, 16.79, 16.95, 16.89, 18.68),
    "optimal_classifier": (14.97, 19.12, 24.93, 22.13, 27.98),
    "analytic": (14.71, 15.52, 15.65, 15.62, 16.89),
}
#: its spreads (+ q84 - median, - median - q36: the paper's code takes the 36th percentile).
PAPER_TABLE_2_SPREAD = {
    "classifier": ((0.02, 0.00), (0.11, 0.05), (0.52, 0.17), (0.27, 0.05), (0.56, 0.11)),
    "inferno": ((0.09, 0.02), (0.17, 0.05), (0.18, 0.04), (0.18, 0.03), (0.58, 0.07)),
}


def benchmark(index: int) -> InferenceSetup:
    """The :class:`InferenceSetup` of benchmark ``index`` (0-4)."""
    if index not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {sorted(BENCHMARKS)}; got {index!r}")
    return BENCHMARKS[index]


def sample_signal(key: PRNGKeyArray, n: int) -> Float[Array, "n 3"]:
    """``n`` signal events."""
    normal_key, exp_key = jax.random.split(key)
    xy = jax.random.normal(normal_key, (n, 2))
    x2 = jax.random.exponential(exp_key, (n, 1)) / SIGNAL_RATE
    return jnp.concatenate([xy, x2], axis=1)


def sample_background(key: PRNGKeyArray, n: int) -> Float[Array, "n 3"]:
    """``n`` background events at the nominal ``r = 0``, ``lambda = 3``."""
    normal_key, exp_key = jax.random.split(key)
    mean = jnp.asarray(BACKGROUND_MEAN)[None, :]
    scale = jnp.sqrt(jnp.asarray(BACKGROUND_VARIANCE))[None, :]
    xy = mean + scale * jax.random.normal(normal_key, (n, 2))
    x2 = jax.random.exponential(exp_key, (n, 1)) / NOMINAL[2]
    return jnp.concatenate([xy, x2], axis=1)


def transform_background(
    x: Float[ArrayLike, "n 3"], r: Float[ArrayLike, ""], lam: Float[ArrayLike, ""]
) -> Float[Array, "n 3"]:
    """Move nominal background events to ``(r, lambda)``: ``x0 + r``, ``x2 * 3 / lambda``."""
    x = jnp.asarray(x)
    return jnp.stack([x[:, 0] + r, x[:, 1], x[:, 2] * (NOMINAL[2] / lam)], axis=1)


def _log_normal(x, mean, variance):
    return -0.5 * (x - mean) ** 2 / variance - 0.5 * jnp.log(2.0 * jnp.pi * variance)


def _log_exponential(x, rate):
    return jnp.where(x >= 0, jnp.log(rate) - rate * x, -jnp.inf)


def log_density_signal(x: Float[ArrayLike, "*shape 3"]) -> Float[Array, "*shape"]:
    """Log probability density of signal events (features' units^-3)."""
    x = jnp.asarray(x)
    return (
        _log_normal(x[..., 0], 0.0, 1.0)
        + _log_normal(x[..., 1], 0.0, 1.0)
        + _log_exponential(x[..., 2], SIGNAL_RATE)
    )


def log_density_background(
    x: Float[ArrayLike, "*shape 3"], r: Float[ArrayLike, ""] = 0.0, lam: Float[ArrayLike, ""] = 3.0
) -> Float[Array, "*shape"]:
    """Log probability density of background events at ``(r, lambda)``."""
    x = jnp.asarray(x)
    return (
        _log_normal(x[..., 0], BACKGROUND_MEAN[0] + r, BACKGROUND_VARIANCE[0])
        + _log_normal(x[..., 1], BACKGROUND_MEAN[1], BACKGROUND_VARIANCE[1])
        + _log_exponential(x[..., 2], lam)
    )


def log_intensity(
    theta: Float[ArrayLike, " 4"], x: Float[ArrayLike, "*shape 3"]
) -> Float[Array, "*shape"]:
    """``log(s f_s(x) + b f_b(x; r, lambda))``: the log of the expected event density."""
    s, r, lam, b = theta
    return jnp.logaddexp(
        jnp.log(s) + log_density_signal(x), jnp.log(b) + log_density_background(x, r, lam)
    )


def analytic_fisher(
    signal: Float[ArrayLike, "n_s 3"], background: Float[ArrayLike, "n_b 3"]
) -> Float[Array, "4 4"]:
    """Fisher information of the unbinned extended likelihood at the nominal point.

    ``I_jk = int d_j g d_k g / g dx`` with ``g = s f_s + b f_b``, estimated by Monte Carlo
    as ``s E_s[d_j log g d_k log g] + b E_b[d_j log g d_k log g]`` over the two samples
    (drawn at the nominal point): the information of the true likelihood, the bound no
    summary statistic can beat. Constraint terms are not included (see
    :func:`analytic_covariance`).
    """
    signal = check_events(signal, "signal")
    background = check_events(background, "background")
    theta0 = jnp.asarray(NOMINAL)
    score = jax.vmap(jax.grad(log_intensity), in_axes=(None, 0))

    def mean_outer(x):
        u = score(theta0, jnp.asarray(x))
        return u.T @ u / u.shape[0]

    return NOMINAL[0] * mean_outer(signal) + NOMINAL[3] * mean_outer(background)


def analytic_uncertainty(
    signal: Float[ArrayLike, "n_s 3"], background: Float[ArrayLike, "n_b 3"], setup: InferenceSetup
) -> float:
    """Expected uncertainty on ``s`` of the unbinned likelihood in one benchmark."""
    fisher = analytic_fisher(signal, background) + jnp.diag(setup.constraint_precision())
    return float(jnp.sqrt(covariance(fisher, setup)[setup.poi_index, setup.poi_index]))


def optimal_classifier(x: Float[ArrayLike, "*shape 3"]) -> Float[Array, "*shape"]:
    """``f_s / (f_s + f_b)`` at the nominal point: the Bayes-optimal balanced classifier."""
    return jax.nn.sigmoid(log_density_signal(x) - log_density_background(x))


def probability_bins(
    probability: Float[ArrayLike, "*shape"], n_bins: int = 10
) -> Int[Array, "*shape"]:
    """Equal-width bins of a probability on ``[0, 1]`` (1 falls in the last bin)."""
    return jnp.clip(jnp.floor(jnp.asarray(probability) * n_bins), 0, n_bins - 1).astype(int)


def soft_expected_counts(
    scores: Callable[[Float[Array, "n 3"]], Float[Array, "n n_bins"]],
    signal: Float[ArrayLike, "n_s 3"],
    background: Float[ArrayLike, "n_b 3"],
    temperature: float,
) -> ExpectedCounts:
    """``theta -> s h_s + b h_b(r, lambda)`` from soft histograms of ``scores``.

    The nominal background sample is moved to ``(r, lambda)`` before the network, so the
    counts are differentiable in every parameter and in the network's weights.
    """
    signal_fractions = soft_histogram(scores(check_events(signal, "signal")), temperature)
    background = check_events(background, "background")

    def expected(theta):
        s, r, lam, b = theta
        moved = transform_background(background, r, lam)
        return s * signal_fractions + b * soft_histogram(scores(moved), temperature)

    return expected


def template_expected_counts(
    bins: Callable[[Float[Array, "n 3"]], Int[Array, " n"]],
    n_bins: int,
    signal: Float[ArrayLike, "n_s 3"],
    background: Float[ArrayLike, "n_b 3"],
    steps: tuple[float, float] = TEMPLATE_STEPS,
) -> ExpectedCounts:
    """``theta -> s h_s + b h_b(r, lambda)`` from hard histograms of ``bins``.

    The background histogram's dependence on ``r`` and ``lambda`` comes from templates of
    the same sample moved to ``r +- steps[0]`` and ``lambda = 3 +- steps[1]``, interpolated
    per bin (:class:`TemplateShapes`), as in the paper's evaluation.
    """
    background = check_events(background, "background")

    def histogram(r, lam):
        return hard_histogram(bins(transform_background(background, r, lam)), n_bins)

    r_step, lam_step = steps
    lam0 = NOMINAL[2]
    shapes = TemplateShapes(
        nominal=histogram(0.0, lam0),
        up=jnp.stack([histogram(r_step, lam0), histogram(0.0, lam0 + lam_step)]),
        down=jnp.stack([histogram(-r_step, lam0), histogram(0.0, lam0 - lam_step)]),
        step=jnp.asarray(steps, dtype=jnp.float64),
    )
    signal_fractions = hard_histogram(bins(check_events(signal, "signal")), n_bins)

    def expected(theta):
        s, r, lam, b = theta
        return s * signal_fractions + b * shapes(jnp.stack([r, lam - lam0]))

    return expected


def check_events(x, field: str):
    """Raise ``ValueError`` unless ``x`` is an ``(n, 3)`` array of events (finite, when its
    values are known: inside ``jit`` only the shape is checked); returns it as an array."""
    if np.ndim(x) != 2 or np.shape(x)[1] != 3:
        raise ValueError(f"{field} must have shape (n, 3); got {np.shape(x)}")
    check_finite(x, field)
    return jnp.asarray(x)
