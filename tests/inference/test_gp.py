"""GP regression and acquisition functions against the textbook formulas (Rasmussen & Williams)."""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy.stats import norm

from diffdesign.core import Param, multistart
from diffdesign.inference import (
    GPHyperparameters,
    HyperparameterPrior,
    LogExpectedImprovement,
    UpperConfidenceBound,
    expected_improvement,
    fit_hyperparameters,
    log_expected_improvement,
    lower_confidence_bound,
    marginal_log_likelihood,
    matern52,
    maximize_acquisition,
    posterior,
    rbf,
)
from diffdesign.inference.gp import AcquisitionProblem

JITTER = 1e-8

# The tests call the public functions through jit: one compilation per test instead of
# op-by-op dispatch (the functions are pure, so jitted and eager results agree).
mll_jit = eqx.filter_jit(marginal_log_likelihood)
posterior_jit = eqx.filter_jit(posterior)
predict_jit = eqx.filter_jit(lambda post, X, noise=False: post.predict(X, include_noise=noise))
ei_jit = jax.jit(expected_improvement)
log_ei_jit = jax.jit(log_expected_improvement)


def sine_mean(params, X):
    """A non-trivial parametric prior mean: ``a sin(X w) + b``."""
    return params["a"] * jnp.sin(X @ params["w"]) + params["b"]


def numpy_kernel(name, lengthscales, signal_variance, X1, X2):
    r2 = np.sum(((X1[:, None, :] - X2[None, :, :]) / lengthscales) ** 2, axis=-1)
    if name == "rbf":
        return signal_variance * np.exp(-0.5 * r2)
    r = np.sqrt(r2)
    return signal_variance * (1 + math.sqrt(5) * r + 5 * r2 / 3) * np.exp(-math.sqrt(5) * r)


def numpy_mean(params, X, offset):
    return offset + params["a"] * np.sin(X @ params["w"]) + params["b"]


@pytest.fixture
def problem(rng):
    n, d = 9, 3
    X = rng.uniform(size=(n, d))
    y = rng.normal(size=n)
    X_new = rng.uniform(size=(5, d))
    params = {"a": 0.7, "w": rng.normal(size=d), "b": -0.2}
    hyper = GPHyperparameters.create(
        np.array([0.3, 0.5, 0.8]), 1.3, 0.01, mean_offset=0.4, mean_params=params
    )
    return X, y, X_new, params, hyper


@pytest.mark.parametrize(("name", "kernel"), [("matern52", matern52), ("rbf", rbf)])
def test_mll_and_posterior_match_textbook(problem, name, kernel):
    X, y, X_new, params, hyper = problem
    ls, sf2, sn2, offset = np.array([0.3, 0.5, 0.8]), 1.3, 0.01, 0.4
    K = numpy_kernel(name, ls, sf2, X, X) + (sn2 + JITTER * sf2) * np.eye(len(y))
    r = y - numpy_mean(params, X, offset)
    _, logdet = np.linalg.slogdet(K)
    mll = -0.5 * r @ np.linalg.solve(K, r) - 0.5 * logdet - 0.5 * len(y) * math.log(2 * math.pi)
    Ks = numpy_kernel(name, ls, sf2, X_new, X)
    mean = numpy_mean(params, X_new, offset) + Ks @ np.linalg.solve(K, r)
    variance = sf2 - np.einsum("ij,ji->i", Ks, np.linalg.solve(K, Ks.T))

    got = mll_jit(hyper, sine_mean, X, y, kernel=kernel, jitter=JITTER)
    np.testing.assert_allclose(got, mll, rtol=1e-10)
    post = posterior_jit(hyper, sine_mean, X, y, kernel=kernel, jitter=JITTER)
    got_mean, got_variance = predict_jit(post, X_new)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_variance, variance, rtol=1e-8, atol=1e-12)
    _, noisy = predict_jit(post, X_new, True)
    np.testing.assert_allclose(noisy, variance + sn2, rtol=1e-8)


def test_padding_rows_are_invisible(problem, rng):
    X, y, X_new, _, hyper = problem
    X_pad = np.concatenate([X, rng.uniform(size=(4, 3))])
    y_pad = np.concatenate([y, rng.normal(size=4) * 100])
    mask = np.arange(len(y_pad)) < len(y)
    np.testing.assert_allclose(
        mll_jit(hyper, sine_mean, X_pad, y_pad, mask=mask),
        mll_jit(hyper, sine_mean, X, y),
        rtol=1e-12,
    )
    padded = predict_jit(posterior_jit(hyper, sine_mean, X_pad, y_pad, mask=mask), X_new)
    plain = predict_jit(posterior_jit(hyper, sine_mean, X, y), X_new)
    np.testing.assert_allclose(padded, plain, rtol=1e-10, atol=1e-14)


def test_posterior_jits_and_vmaps(problem):
    X, y, X_new, _, hyper = problem
    post = posterior_jit(hyper, sine_mean, X, y)
    mean, variance = predict_jit(post, X_new)
    one_by_one = eqx.filter_jit(eqx.filter_vmap(lambda x: post.predict(x[None, :])))(
        jnp.asarray(X_new)
    )
    np.testing.assert_allclose(one_by_one[0][:, 0], mean, rtol=1e-12)
    np.testing.assert_allclose(one_by_one[1][:, 0], variance, rtol=1e-10)
    # Conditioning on the data and predicting there: variance ~ noise, mean ~ data.
    _, variance_at_data = predict_jit(post, X)
    assert np.all(np.asarray(variance_at_data) < 0.011)
    assert np.all(np.asarray(variance_at_data) >= 0.0)


def test_bad_shapes_are_named(problem):
    X, y, _, _, hyper = problem
    with pytest.raises(ValueError, match="y must have shape"):
        marginal_log_likelihood(hyper, sine_mean, X, y[:-1])
    with pytest.raises(ValueError, match="lengthscales"):
        marginal_log_likelihood(hyper, sine_mean, X[:, :2], y)
    with pytest.raises(ValueError, match="mean_fn must return shape"):
        marginal_log_likelihood(hyper, lambda p, X: jnp.zeros(3), X, y)
    with pytest.raises(ValueError, match="y must be finite"):
        marginal_log_likelihood(hyper, sine_mean, X, np.where(np.arange(9) == 2, np.nan, y))
    with pytest.raises(ValueError, match="noise_variance must be > 0"):
        GPHyperparameters.create(np.ones(3), 1.0, 0.0)


@pytest.mark.parametrize("kernel", [matern52, rbf])
def test_mll_gradient_matches_finite_differences(problem, kernel):
    X, y, _, _, hyper = problem
    hyper = jax.tree_util.tree_map(lambda leaf: jnp.asarray(leaf, dtype=float), hyper)
    flat, unravel = ravel_pytree(hyper)
    mll = jax.jit(lambda v: marginal_log_likelihood(unravel(v), sine_mean, X, y, kernel=kernel))
    gradient = jax.jit(jax.grad(mll))(flat)
    step = 1e-6
    basis = np.eye(flat.size)
    central = np.array([(mll(flat + step * e) - mll(flat - step * e)) / (2 * step) for e in basis])
    np.testing.assert_allclose(gradient, central, rtol=1e-6, atol=1e-7)


def test_matern_gradient_is_finite_at_zero_distance():
    X = jnp.zeros((2, 2))
    value = lambda ls: jnp.sum(matern52(ls, 1.0, X, X))
    gradient = jax.grad(value)(jnp.array([0.3, 0.4]))
    np.testing.assert_array_equal(gradient, np.zeros(2))


@functools.partial(jax.jit, static_argnums=1)
def gp_sample(key, n, lengthscales, signal_variance, noise_variance, offset):
    X_key, y_key = jax.random.split(key)
    X = jax.random.uniform(X_key, (n, len(lengthscales)))
    K = matern52(jnp.asarray(lengthscales), signal_variance, X, X)
    K = K + noise_variance * jnp.eye(n)
    return X, offset + jnp.linalg.cholesky(K) @ jax.random.normal(y_key, (n,))


def test_fit_recovers_lengthscales():
    truth = np.array([0.15, 0.6])
    X, y = gp_sample(jax.random.key(0), 60, truth, 2.0, 1e-4, 3.0)
    fit = fit_hyperparameters(X, y, jax.random.key(2))
    ratio = np.asarray(fit.hyperparameters.lengthscales) / truth
    assert np.all((ratio > 0.7) & (ratio < 1.4)), fit.hyperparameters.lengthscales
    # The reported MLL is the exact MLL of the returned hyperparameters, in data units...
    np.testing.assert_allclose(
        fit.marginal_log_likelihood, mll_jit(fit.hyperparameters, None, X, y), rtol=1e-10
    )
    # ...and is at least as good as the MLL of the generating hyperparameters.
    true_hyper = GPHyperparameters.create(truth, 2.0, 1e-4, mean_offset=3.0)
    assert fit.marginal_log_likelihood > mll_jit(true_hyper, None, X, y) - 1.0


def test_fitted_mean_params_never_leave_their_bounds():
    X = jax.random.uniform(jax.random.key(3), (20, 2))
    # The data want (slope, tilt) = (40, -30); the bounds allow [-1, 2] and [-1, 1], and
    # the fit starts with tilt on its upper bound.
    y = 40.0 * X[:, 0] - 30.0 * X[:, 1] + 0.1 * jnp.sin(20.0 * X[:, 0])
    model = lambda p, X: p["slope"] * X[:, 0] + p["tilt"] * X[:, 1]
    low, high = {"slope": -1.0, "tilt": -1.0}, {"slope": 2.0, "tilt": 1.0}
    fit = fit_hyperparameters(
        X,
        y,
        jax.random.key(4),
        mean_fn=model,
        mean_params={"slope": jnp.asarray(0.0), "tilt": jnp.asarray(1.0)},
        mean_params_bounds=(low, high),
        n_restarts=3,
        n_steps=150,
    )
    fitted = fit.hyperparameters.mean_params
    for name in ("slope", "tilt"):
        assert low[name] <= float(fitted[name]) <= high[name]
    # Each leans towards the side the data want.
    assert float(fitted["slope"]) > 1.5
    assert float(fitted["tilt"]) < -0.5


def test_fit_starts_outside_the_bounds_and_stays_inside():
    # The warm start lies outside the lengthscale bounds and below the noise bound (it is
    # moved just inside them); every restart moves through Box bijections, so the fit
    # ends inside whatever the data want.
    X, y = gp_sample(jax.random.key(7), 15, np.array([0.05, 2.0]), 1.0, 1e-6, 0.0)
    prior = HyperparameterPrior(lengthscale_bounds=(0.1, 0.5), noise_variance_bounds=(1e-4, 1e-2))
    init = GPHyperparameters.create(np.array([0.01, 5.0]), 1.0, 1e-9)
    fit = fit_hyperparameters(X, y, jax.random.key(8), init=init, prior=prior, n_steps=50)
    lengthscales = np.asarray(fit.hyperparameters.lengthscales)
    assert np.all((lengthscales >= 0.1) & (lengthscales <= 0.5)), lengthscales
    variance = float(np.var(np.asarray(y)))  # the bounds are in units of var(y)
    noise = float(fit.hyperparameters.noise_variance) / variance
    assert 1e-4 * (1 - 1e-9) <= noise <= 1e-2 * (1 + 1e-9), noise
    assert np.isfinite(float(fit.marginal_log_likelihood))


def test_mean_params_bounds_are_validated():
    X, y = np.random.default_rng(0).uniform(size=(5, 1)), np.arange(5.0)
    model = lambda p, X: p * X[:, 0]
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="low must be < high"):
        fit_hyperparameters(
            X, y, key, mean_fn=model, mean_params=0.0, mean_params_bounds=(1.0, 1.0)
        )
    with pytest.raises(ValueError, match="outside its bounds"):
        fit_hyperparameters(
            X, y, key, mean_fn=model, mean_params=3.0, mean_params_bounds=(-1.0, 1.0)
        )
    with pytest.raises(ValueError, match="does not broadcast"):
        fit_hyperparameters(
            X, y, key, mean_fn=model, mean_params=0.0, mean_params_bounds=([-1.0, 0], 1.0)
        )
    with pytest.raises(ValueError, match="structure"):
        fit_hyperparameters(
            X,
            y,
            key,
            mean_fn=lambda p, X: p["a"] * X[:, 0],
            mean_params={"a": 0.0},
            mean_params_bounds=({"b": -1.0}, {"b": 1.0}),
        )
    with pytest.raises(ValueError, match="noise_variance_bounds"):
        fit_hyperparameters(X, y, key, prior=HyperparameterPrior(noise_variance_bounds=(0, 1)))


# --------------------------------------------------------------------------- acquisition


def test_expected_improvement_matches_direct_formula(rng):
    mean = rng.normal(size=200)
    variance = rng.uniform(0.01, 4.0, size=200)
    best = 0.3
    sigma = np.sqrt(variance)
    z = (best - mean) / sigma
    direct = (best - mean) * norm.cdf(z) + sigma * norm.pdf(z)
    np.testing.assert_allclose(ei_jit(mean, variance, best), direct, rtol=1e-10)
    np.testing.assert_allclose(
        log_ei_jit(mean, variance, best), np.log(direct), rtol=1e-10, atol=1e-12
    )


def test_expected_improvement_is_nonnegative_and_stable_in_the_tail():
    z = -np.geomspace(1e-3, 1e6, 200)
    z = np.concatenate([z, -z, [0.0, -1.0, -1e3]])
    ones = np.ones_like(z)
    assert np.all(np.asarray(ei_jit(-z, ones, 0.0)) >= 0.0)
    log_ei = np.asarray(log_ei_jit(-z, ones, 0.0))
    assert np.all(np.isfinite(log_ei))
    # Far tail: log h(z) = log φ(z) - 2 log|z| + log(1 - 3/z² + 15/z⁴ - ...).
    tail = np.array([-40.0, -300.0, -2e3, -1e5])
    asymptotic = norm.logpdf(tail) - 2 * np.log(-tail) + np.log1p(-3 / tail**2 + 15 / tail**4)
    np.testing.assert_allclose(
        log_ei_jit(-tail, np.ones(4), 0.0), asymptotic, rtol=1e-12, atol=1e-7
    )
    # Continuous across the branch points, with finite gradients everywhere.
    for point in (-1.0, -1e3):
        around = log_ei_jit(-np.array([point - 1e-9, point + 1e-9]), np.ones(2), 0.0)
        np.testing.assert_allclose(around[0], around[1], rtol=1e-8)
    gradient = jax.jit(jax.vmap(jax.grad(lambda m: log_expected_improvement(m, 1.0, 0.0))))(-z)
    assert np.all(np.isfinite(np.asarray(gradient)))
    assert np.all(np.asarray(gradient) < 0.0)


def test_confidence_bound(problem):
    X, y, X_new, _, hyper = problem
    mean, variance = np.array([0.1, -2.0]), np.array([4.0, 0.25])
    np.testing.assert_allclose(
        lower_confidence_bound(mean, variance, 2.0), mean - np.sqrt(2 * variance)
    )
    post = posterior_jit(hyper, sine_mean, X, y)
    m, v = predict_jit(post, X_new[:1])
    ucb = eqx.filter_jit(UpperConfidenceBound(post, jnp.asarray(3.0)))(jnp.asarray(X_new[0]))
    np.testing.assert_allclose(ucb, -(m[0] - np.sqrt(3.0 * v[0])), rtol=1e-12)


class Bump(eqx.Module):
    """A smooth function with a known maximiser: -Σ w (x - c)²."""

    centre: jax.Array
    weights: jax.Array

    def __call__(self, x):
        return -jnp.sum(self.weights * (x - self.centre) ** 2)


def test_maximize_acquisition_finds_known_maxima():
    weights = jnp.array([1.0, 30.0, 0.2])
    inside = Bump(jnp.array([0.2, 0.7, 0.55]), weights)
    x, value = maximize_acquisition(inside, jax.random.key(0), 3)
    np.testing.assert_allclose(x, inside.centre, atol=2e-3)
    assert float(value) > -1e-5
    # A maximiser outside the cube lands on the face, exactly inside it.
    outside = Bump(jnp.array([0.3, 1.4, -0.5]), weights)
    x, _ = maximize_acquisition(outside, jax.random.key(1), 3)
    np.testing.assert_allclose(x, [0.3, 1.0, 0.0], atol=2e-3)
    assert np.all((np.asarray(x) >= 0.0) & (np.asarray(x) <= 1.0))


def test_maximize_log_ei_beats_a_grid():
    X, y = gp_sample(jax.random.key(5), 12, np.array([0.3, 0.3]), 1.0, 1e-6, 0.0)
    hyper = GPHyperparameters.create(np.array([0.3, 0.3]), 1.0, 1e-6)
    acquisition = LogExpectedImprovement(posterior_jit(hyper, None, X, y), jnp.min(y))
    x, value = maximize_acquisition(
        acquisition, jax.random.key(6), 2, initial_points=X[jnp.argmin(y)][None, :]
    )
    grid = jnp.stack(jnp.meshgrid(*(jnp.linspace(0, 1, 41),) * 2), axis=-1).reshape(-1, 2)
    on_grid = eqx.filter_jit(eqx.filter_vmap(lambda a, x: a(x), in_axes=(None, 0)))(
        acquisition, grid
    )
    assert np.isfinite(float(value))
    assert float(value) >= float(jnp.max(on_grid)) - 1e-6
    assert np.all((np.asarray(x) >= 0.0) & (np.asarray(x) <= 1.0))


def test_acquisition_problem_sets_non_finite_gradients_to_zero():
    # At its peak, -sum sqrt|x - c| has a NaN gradient (inf * 0): the start stays there
    # instead of turning into NaN (which multistart would report as a diverged start).
    centre = jnp.array([0.3, 0.6])
    peak = lambda x: -jnp.sum(jnp.sqrt(jnp.abs(x - centre)))
    assert not np.all(np.isfinite(np.asarray(jax.grad(peak)(centre))))
    problem = AcquisitionProblem(peak, Param(centre, 0.0, 1.0, step=0.05, label="x"))
    result = multistart(problem, {"x": centre[None]}, steps=5, key=jax.random.key(0))
    np.testing.assert_array_equal(result.params["x"][0], centre)
    x, value = maximize_acquisition(peak, jax.random.key(1), 2, initial_points=centre[None])
    np.testing.assert_array_equal(x, centre)
    assert float(value) == 0.0
