"""Gauss-Newton with a Gaussian prior: exact on a linear model, the MAP and Laplace covariance
of a nonlinear one, prior rules, stopping, differentiability and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.inference import linear_gaussian as lg
from diffdesign.inference.gauss_newton import gauss_newton

TALL, WIDE = (30, 6), (6, 30)


def _linear(rng, m, n):
    J = rng.normal(size=(m, n))
    y = rng.normal(size=m)
    noise = rng.uniform(0.5, 2.0, m)
    prior = rng.uniform(0.5, 2.0, n)
    mean = rng.normal(size=n)
    return J, y, noise, prior, mean


@pytest.mark.parametrize(("m", "n"), [TALL, WIDE])
def test_one_iteration_is_the_exact_linear_gaussian_posterior(rng, m, n):
    J, y, noise, prior, mu = _linear(rng, m, n)
    x0 = rng.normal(size=n)  # the start does not matter for a linear model
    result = gauss_newton(
        lambda x: y - J @ x, x0, noise_sigma=noise, prior_sigma=prior, prior_mean=mu, n_iter=1
    )
    precision = J.T @ np.diag(noise**-2) @ J + np.diag(prior**-2)
    covariance = np.linalg.inv(precision)
    mean = covariance @ (J.T @ (y / noise**2) + mu / prior**2)
    np.testing.assert_allclose(result.x, mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.covariance, covariance, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.std, np.sqrt(np.diag(covariance)), rtol=1e-9)
    assert result.n_steps == 1 and not result.converged
    np.testing.assert_array_equal(result.history.x[0], x0)
    np.testing.assert_allclose(result.history.x[1], mean, rtol=1e-10, atol=1e-12)
    chi2 = [np.sum(((y - J @ x) / noise) ** 2) for x in (x0, mean)]
    np.testing.assert_allclose(result.history.chi2, chi2, rtol=1e-10)
    np.testing.assert_allclose(result.history.prior_sigma, np.stack([prior, prior]))
    s = np.linalg.svd(J / noise[:, None] * prior[None, :], compute_uv=False)
    np.testing.assert_allclose(result.history.singular_values[-1], s, rtol=1e-10)
    # a second step stays put
    again = gauss_newton(
        lambda x: y - J @ x, x0, noise_sigma=noise, prior_sigma=prior, prior_mean=mu, n_iter=3
    )
    np.testing.assert_allclose(again.x, mean, rtol=1e-9, atol=1e-12)


def _nonlinear(rng, m=25, n=4):
    A = rng.normal(size=(m, n)) / np.sqrt(n)
    truth = rng.normal(size=n) * 0.3
    noise = np.full(m, 0.05)

    def model(x):
        z = A @ x
        return z + 0.2 * jnp.sin(2.0 * z) + 0.1 * z**2

    y = np.asarray(model(truth)) + noise * rng.normal(size=m)
    return model, y, noise, truth


def _neg_log_posterior(model, y, noise, prior, mu):
    return lambda x: (
        0.5 * jnp.sum(((y - model(x)) / noise) ** 2) + 0.5 * jnp.sum(((x - mu) / prior) ** 2)
    )


def test_nonlinear_fixed_point_is_the_map_with_the_laplace_covariance(rng):
    model, y, noise, _ = _nonlinear(rng)
    n = 4
    prior, mu = np.full(n, 0.5), np.full(n, 0.1)
    result = gauss_newton(
        lambda x: y - model(x), np.zeros(n), noise_sigma=noise, prior_sigma=prior,
        prior_mean=mu, n_iter=30, tol=1e-12,
    )  # fmt: skip
    assert result.converged and result.n_steps < 30
    objective = _neg_log_posterior(model, y, noise, prior, mu)
    gradient = jax.grad(objective)(result.x)
    assert np.max(np.abs(gradient)) < 1e-8 * np.max(np.abs(jax.grad(objective)(jnp.zeros(n))))
    # Gauss-Newton's covariance: (Jᵀ W J + P)⁻¹ at the estimate
    J = jax.jacfwd(model)(result.x)
    precision = J.T @ np.diag(noise**-2) @ J + np.diag(prior**-2)
    np.testing.assert_allclose(result.covariance, np.linalg.inv(precision), rtol=1e-9)
    # the misfit falls and stays at its minimum
    chi2 = np.asarray(result.history.chi2)
    assert chi2[-1] < chi2[0] and result.history.x.shape == (result.n_steps + 1, n)


def test_a_given_jacobian_gives_the_autodiff_result(rng):
    model, y, noise, _ = _nonlinear(rng)
    n = 4
    jacobian = jax.jacfwd(model)
    automatic = gauss_newton(
        lambda x: y - model(x), np.zeros(n), noise_sigma=noise, prior_sigma=0.5, n_iter=4
    )
    given = gauss_newton(
        lambda x: (y - model(x), jacobian(x)), np.zeros(n), noise_sigma=noise, prior_sigma=0.5,
        has_jacobian=True, n_iter=4,
    )  # fmt: skip
    np.testing.assert_allclose(given.x, automatic.x, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(given.covariance, automatic.covariance, rtol=1e-12, atol=1e-15)


def test_prior_rules_are_evaluated_at_every_linearisation(rng):
    J, y, noise, _, _ = _linear(rng, *TALL)
    n = J.shape[1]
    seen = []

    def sigma_rule(t, x, residual, jacobian):
        seen.append(int(t))
        np.testing.assert_allclose(residual, y - J @ x, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(jacobian, J, rtol=1e-12)
        return 2.0 * 0.5**t

    # A prior centred on the current iterate: each step is the linear posterior of the
    # remaining misfit with a zero-mean prior on the step.
    result = gauss_newton(
        lambda x: y - J @ x, np.zeros(n), noise_sigma=noise, prior_sigma=sigma_rule,
        prior_mean=lambda t, x: x, n_iter=3,
    )  # fmt: skip
    assert seen == [0, 1, 2, 3]
    x = np.zeros(n)
    for t in range(3):
        x = x + np.asarray(lg.posterior(J, y - J @ x, noise, 2.0 * 0.5**t).mean)
    np.testing.assert_allclose(result.x, x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.history.prior_sigma[:, 0], [2.0, 1.0, 0.5, 0.25])


def test_the_estimate_is_differentiable_in_the_data(rng):
    model, y, noise, _ = _nonlinear(rng)
    n = 4
    weights = rng.normal(size=n)

    @jax.jit
    def summary(data):
        result = gauss_newton(
            lambda x: data - model(x), jnp.zeros(n), noise_sigma=noise, prior_sigma=0.5, n_iter=8
        )
        return weights @ result.x

    gradient = np.asarray(jax.grad(summary)(jnp.asarray(y)))
    step = 1e-6
    for i in (0, 7, 19):
        e = np.zeros_like(y)
        e[i] = step
        central = (summary(y + e) - summary(y - e)) / (2 * step)
        np.testing.assert_allclose(gradient[i], central, rtol=1e-5, atol=1e-9)


def test_inputs_are_checked(rng):
    def fn(x):
        return jnp.ones(3) - x[:3]

    kwargs = {"noise_sigma": 1.0, "prior_sigma": 1.0}
    with pytest.raises(ValueError, match="x0 must be a non-empty 1-D array"):
        gauss_newton(fn, np.zeros((3, 1)), **kwargs)
    with pytest.raises(ValueError, match="n_iter must be an integer >= 1; got 0"):
        gauss_newton(fn, np.zeros(3), n_iter=0, **kwargs)
    with pytest.raises(ValueError, match="tol must be >= 0 or None"):
        gauss_newton(fn, np.zeros(3), tol=-1.0, **kwargs)
    with pytest.raises(ValueError, match="tol needs concrete values"):
        jax.jit(lambda x0: gauss_newton(fn, x0, tol=1e-6, **kwargs).x)(jnp.zeros(3))
    with pytest.raises(ValueError, match="prior_sigma"):
        gauss_newton(fn, np.zeros(3), noise_sigma=1.0, prior_sigma=-1.0)
