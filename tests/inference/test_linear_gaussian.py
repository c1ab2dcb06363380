"""Bayesian linear regression: closed forms, brute-force evidence, type-II ML, classical filters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from diffdesign.inference import linear_gaussian as lg

# Two shapes throughout (more data than parameters, and fewer), so each kernel compiles
# once per shape for the whole file.
TALL, WIDE = (30, 6), (6, 30)


def _problem(rng, m, n):
    J = rng.normal(size=(m, n))
    y = rng.normal(size=m)
    noise = rng.uniform(0.5, 2.0, m)
    prior = rng.uniform(0.5, 2.0, n)
    mean = rng.normal(size=n)
    return J, y, noise, prior, mean


@pytest.mark.parametrize(("m", "n"), [TALL, WIDE])
def test_posterior_matches_closed_form_and_augmented_lstsq(rng, m, n):
    J, y, noise, prior, mu = _problem(rng, m, n)
    post = lg.posterior(J, y, noise, prior, mu)
    precision = J.T @ np.diag(noise**-2) @ J + np.diag(prior**-2)
    covariance = np.linalg.inv(precision)
    mean = covariance @ (J.T @ (y / noise**2) + mu / prior**2)
    np.testing.assert_allclose(post.mean, mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(post.covariance, covariance, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(post.std, np.sqrt(np.diag(covariance)), rtol=1e-9)
    # The MAP is the least-squares solution of the augmented system [J/σn; I/σp] x = [y/σn; μ/σp].
    augmented = np.vstack([J / noise[:, None], np.diag(1 / prior)])
    target = np.concatenate([y / noise, mu / prior])
    np.testing.assert_allclose(
        post.mean, np.linalg.lstsq(augmented, target, rcond=None)[0], rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(post.residuals, (y - J @ mean) / noise, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        post.chi2 + post.prior_penalty,
        np.sum(((y - J @ mean) / noise) ** 2) + np.sum(((mean - mu) / prior) ** 2),
        rtol=1e-10,
    )
    assert np.all(np.linalg.eigvalsh(np.asarray(post.covariance)) > 0)
    assert 0 < float(post.effective_parameters) <= min(m, n)


def test_unseen_parameters_keep_their_prior():
    J = np.zeros((5, 3))
    J[:, 0] = np.arange(1.0, 6.0)  # only parameter 0 is measured
    post = lg.posterior(J, np.ones(5), 0.1, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(post.std[1:], [2.0, 3.0], rtol=1e-12)
    np.testing.assert_allclose(post.mean[1:], 0.0, atol=1e-15)


def test_strongly_measured_directions_keep_relative_precision():
    # A singular value of 1e7 gives a posterior variance of 1e-14 (prior units): the
    # covariance must not lose it to cancellation (1 - s²/(1+s²)).
    J = np.diag([1e7, 1.0])
    post = lg.posterior(J, np.zeros(2), 1.0, 1.0)
    np.testing.assert_allclose(np.diag(post.covariance), [1.0 / (1 + 1e14), 0.5], rtol=1e-10)


@pytest.mark.parametrize(("m", "n"), [TALL, WIDE])
def test_evidence_equals_multivariate_normal_logpdf(rng, m, n):
    J, y, noise, prior, mu = _problem(rng, m, n)
    data_covariance = J @ np.diag(prior**2) @ J.T + np.diag(noise**2)
    reference = scipy.stats.multivariate_normal(J @ mu, data_covariance)
    np.testing.assert_allclose(
        lg.log_evidence(J, y, noise, prior, mu), reference.logpdf(y), rtol=1e-11
    )
    np.testing.assert_allclose(
        lg.posterior(J, y, noise, prior, mu).log_evidence, reference.logpdf(y), rtol=1e-11
    )
    batch = rng.normal(size=(2, 3, m))
    np.testing.assert_allclose(
        lg.log_evidence(J, batch, noise, prior, mu), reference.logpdf(batch), rtol=1e-11
    )


def test_evidence_profile_matches_pointwise_evidence(rng):
    J, y, noise, _, _ = _problem(rng, *TALL)
    scale = rng.uniform(0.5, 2.0, TALL[1])
    sigmas = np.logspace(-2, 1, 7)
    profile = lg.log_evidence_profile(J, y, noise, sigmas, prior_scale=scale)
    pointwise = [float(lg.log_evidence(J, y, noise, s * scale)) for s in sigmas]
    np.testing.assert_allclose(profile, pointwise, rtol=1e-11)


def test_evidence_gradient_matches_finite_differences(rng):
    # The thin SVD keeps the evidence differentiable in the prior also when m < n.
    J, y, noise, _, _ = _problem(rng, *WIDE)

    def f(log_sigma):
        return lg.log_evidence(J, y, noise, jnp.exp(log_sigma))

    h = 1e-5
    central = (f(-0.3 + h) - f(-0.3 - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(f)(-0.3), central, rtol=1e-7)


def test_evidence_optimum_is_the_maximum_of_the_profile(rng):
    J, y, noise, _, _ = _problem(rng, *TALL)
    y = J @ (0.3 * rng.normal(size=6)) + noise * rng.normal(size=30)
    optimum = lg.evidence_optimal_prior_sigma(J, y, noise, (1e-4, 1e2))
    grid = np.exp(np.linspace(np.log(1e-4), np.log(1e2), 20001))
    best = grid[np.argmax(np.asarray(lg.log_evidence_profile(J, y, noise, grid)))]
    assert abs(np.log(float(optimum.prior_sigma)) - np.log(best)) < 2e-3
    assert not bool(optimum.at_bound)
    np.testing.assert_allclose(
        optimum.log_evidence, lg.log_evidence(J, y, noise, optimum.prior_sigma), rtol=1e-12
    )
    # Noise-free data from a large prior push the optimum to the upper bound, and say so.
    edge = lg.evidence_optimal_prior_sigma(J, J @ (50 * rng.normal(size=6)), 1e-3, (1e-3, 1.0))
    assert bool(edge.at_bound) and float(edge.prior_sigma) > 0.99


def test_evidence_optimal_sigma_recovers_the_true_prior_sigma(rng):
    """Type-II ML over an ensemble: mean log(sigma_hat) within 4 standard errors + bias."""
    m, n, n_sets = 40, 20, 200
    sigma_true, noise = 0.5, 0.1
    J = rng.normal(size=(m, n))
    x = sigma_true * rng.normal(size=(n_sets, n))
    Y = x @ J.T + noise * rng.normal(size=(n_sets, m))
    log_sigma = np.log(np.asarray(lg.evidence_optimal_prior_sigma(J, Y, noise).prior_sigma))
    standard_error = log_sigma.std(ddof=1) / np.sqrt(n_sets)
    # Each estimate is ~ sqrt(chi²_n / n) * sigma (the data pin x down, S >> 1), so
    # E[log sigma_hat] - log sigma ≈ -1/(2n) = -0.025: allowed for as a bias.
    assert abs(log_sigma.mean() - np.log(sigma_true)) < 4 * standard_error + 1.0 / (2 * n)
    assert 0.1 < log_sigma.std() < 0.25  # ≈ 1/sqrt(2n) = 0.16


def test_evidence_recovers_a_mis_stated_noise_level(rng):
    (m, n), n_sets = TALL, 50
    J = rng.normal(size=(m, n))
    Y = rng.normal(size=(n_sets, n)) @ J.T + 2.0 * rng.normal(size=(n_sets, m))  # noise 2, not 1
    optimum = lg.evidence_optimal_prior_sigma(J, Y, 1.0, (1e-2, 1e2), fit_noise_scale=True)
    # Each estimate has sd ≈ 1/sqrt(2 (m - n)) = 14 %: the mean of 50 has 2 %; allow 4
    # standard errors plus the small-sample bias of a variance estimate, O(1/(m - n)).
    scale = np.asarray(optimum.noise_scale) / 2.0
    assert abs(scale.mean() - 1.0) < 4 * scale.std() / np.sqrt(n_sets) + 1.0 / (m - n)
    assert 0.5 < np.median(np.asarray(optimum.prior_sigma)) < 2.0


@pytest.mark.parametrize(("m", "n"), [TALL, WIDE])
def test_classical_estimators(rng, m, n):
    J, y, noise, _, _ = _problem(rng, m, n)
    w = 1.0 / noise**2
    A, b = J / noise[:, None], y / noise
    # Batches of data and of settings share one SVD and broadcast: (settings, data, n).
    Y = np.stack([y, rng.normal(size=m)])
    ridge = lg.tikhonov(J, Y[None], w, np.array([0.3, 1.0 / 0.7**2])[:, None])
    assert ridge.shape == (2, 2, n)
    np.testing.assert_allclose(
        ridge[0, 0], np.linalg.solve(A.T @ A + 0.3 * np.eye(n), A.T @ b), rtol=1e-9
    )
    # Tikhonov with the Bayesian alpha is the posterior mean.
    np.testing.assert_allclose(ridge[1, 0], lg.posterior(J, y, noise, 0.7).mean, rtol=1e-10)
    pinv = lg.pseudo_inverse(J, y, w)
    np.testing.assert_allclose(pinv, np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-9, atol=1e-12)
    cut = lg.truncated_svd(J, y, w, np.array([0, 2, min(m, n)]))
    u, s, vt = scipy.linalg.svd(A, full_matrices=False)
    np.testing.assert_allclose(cut[0], 0.0)
    np.testing.assert_allclose(cut[1], vt[:2].T @ ((u[:, :2].T @ b) / s[:2]), rtol=1e-9)
    np.testing.assert_allclose(cut[2], pinv, rtol=1e-9, atol=1e-12)


def test_zero_weight_drops_a_row(rng):
    J, y, _, _, _ = _problem(rng, *TALL)
    bad = y.copy()
    bad[4] = 1e6  # a bad BPM
    w = np.ones(30)
    w[4] = 0.0
    keep = np.arange(30) != 4
    np.testing.assert_allclose(
        lg.pseudo_inverse(J, bad, w), lg.pseudo_inverse(J[keep], y[keep], 1.0), rtol=1e-10
    )


def test_vmap_under_jit(rng):
    J, _, noise, prior, _ = _problem(rng, *TALL)
    Y = rng.normal(size=(3, 30))
    means = jax.jit(jax.vmap(lambda r: lg.posterior(J, r, noise, prior).mean))(Y)
    np.testing.assert_allclose(means[1], lg.posterior(J, Y[1], noise, prior).mean, rtol=1e-12)


def test_bad_inputs_name_the_argument(rng):
    J, y, noise, prior, _ = _problem(rng, *TALL)
    with pytest.raises(ValueError, match="jacobian must be a non-empty 2-D"):
        lg.posterior(J[0], y, noise, prior)
    with pytest.raises(ValueError, match=r"residual must have shape \(30,\)"):
        lg.posterior(J, y[:5], noise, prior)
    with pytest.raises(ValueError, match="noise_sigma must be a scalar or have shape"):
        lg.posterior(J, y, noise[:2], prior)
    with pytest.raises(ValueError, match="prior_sigma must be > 0"):
        lg.posterior(J, y, noise, 0.0)
    with pytest.raises(ValueError, match="noise_sigma must lie in"):
        lg.log_evidence(J, y, -1.0, prior)
    with pytest.raises(ValueError, match="jacobian must be finite"):
        lg.posterior(np.where(J > 0, np.nan, J), y, noise, prior)
    with pytest.raises(ValueError, match="residual must be finite"):
        lg.tikhonov(J, np.full(30, np.inf), 1.0, 0.1)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        lg.tikhonov(J, y, 1.0, -0.1)
    with pytest.raises(ValueError, match="weights must be >= 0"):
        lg.pseudo_inverse(J, y, -np.ones(30))
    with pytest.raises(ValueError, match="n_singular must be >= 0"):
        lg.truncated_svd(J, y, 1.0, -1)
    with pytest.raises(ValueError, match="bounds must satisfy"):
        lg.evidence_optimal_prior_sigma(J, y, noise, (1.0, 0.5))
    with pytest.raises(ValueError, match="prior_sigmas must be 1-D"):
        lg.log_evidence_profile(J, y, noise, 1.0)
