"""Bayesian optics correction: the paper's weights, Gauss-Newton on a nonlinear model, calibration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.inference import linear_gaussian as lg
from diffdesign.ring import correction as co

M, N = 40, 6  # observables, error parameters of the synthetic model


@pytest.fixture(scope="module")
def model():
    """A smooth nonlinear 'optics' model k (N,) -> observables (M,), like a beat vs ΔK."""
    rng = np.random.default_rng(11)
    A = jnp.asarray(rng.normal(size=(M, N)))
    B = jnp.asarray(0.5 * rng.normal(size=(M, N)))

    def f(k):
        return A @ k + (B @ k) ** 2 + 0.3 * jnp.sin(A @ k)

    truth = jnp.asarray(0.3 * rng.normal(size=N))
    return f, truth


def test_regularisation_matches_the_whitened_posterior(rng):
    """Eq. (15) stack with weights sigma_ref/sigma_b and Eq. (12) alpha = the Bayesian MAP."""
    J_beta, J_phase = rng.normal(size=(20, N)), rng.normal(size=(15, N))
    y_beta, y_phase = rng.normal(size=20), rng.normal(size=15)
    sigmas = {"beta_x": 0.01, "phase_x": 0.002}
    prior_sigma = 0.05
    reg = co.regularisation_from_noise(sigmas, prior_sigma)
    assert reg.reference == "beta_x"
    np.testing.assert_allclose(reg.alpha, (0.01 / 0.05) ** 2)
    np.testing.assert_allclose(reg.weights["beta_x"], 1.0)
    np.testing.assert_allclose(reg.weights["phase_x"], 5.0)
    paper = np.vstack([J_beta, reg.weights["phase_x"] * J_phase])
    paper_y = np.concatenate([y_beta, reg.weights["phase_x"] * y_phase])
    paper_solution = np.linalg.solve(paper.T @ paper + reg.alpha * np.eye(N), paper.T @ paper_y)
    stacked = co.stack_observables(
        {"beta_x": (J_beta, y_beta, 0.01), "phase_x": (J_phase, y_phase, 0.002)}
    )
    post = lg.posterior(stacked.jacobian, stacked.residual, 1.0, prior_sigma)
    np.testing.assert_allclose(post.mean, paper_solution, rtol=1e-9)
    # Array form and another reference block: same physics, rescaled alpha and weights.
    by_index = co.regularisation_from_noise(np.array([0.01, 0.002]), prior_sigma, reference=1)
    np.testing.assert_allclose(by_index.weights, [0.2, 1.0])
    np.testing.assert_allclose(by_index.alpha, (0.002 / 0.05) ** 2)


def test_stack_observables_keeps_blocks(rng):
    J1, J2 = rng.normal(size=(3, N)), rng.normal(size=(2, N))
    r1, r2 = rng.normal(size=3), rng.normal(size=2)
    noise2 = np.array([0.5, 2.0])
    stacked = co.stack_observables({"beta_x": (J1, r1, 0.1), "dispersion_x": (J2, r2, noise2)})
    assert stacked.names == ("beta_x", "dispersion_x")
    assert stacked.slices == {"beta_x": slice(0, 3), "dispersion_x": slice(3, 5)}
    np.testing.assert_allclose(stacked.jacobian[3:], J2 / noise2[:, None])
    np.testing.assert_allclose(stacked.block(stacked.residual, "beta_x"), r1 / 0.1)
    np.testing.assert_allclose(stacked.noise_sigma, [0.1, 0.1, 0.1, 0.5, 2.0])


def test_gauss_newton_recovers_planted_errors(model):
    f, truth = model
    exact = co.bayesian_correction(f, jnp.zeros(N), f(truth), 1e-8, 1.0, n_iter=10)
    np.testing.assert_allclose(exact.errors, truth, atol=1e-9)
    assert exact.history.shape == (11, N) and exact.chi2.shape == (11,)
    assert float(exact.chi2[-1]) < 1e-10 < float(exact.chi2[0])


def test_fixed_prior_converges_to_the_map_of_the_nonlinear_model(model, rng):
    f, truth = model
    noise, prior = 0.05, 0.3
    measured = f(truth) + noise * jnp.asarray(rng.normal(size=M))
    result = co.bayesian_correction(f, jnp.zeros(N), measured, noise, prior, n_iter=10)

    def objective(k):
        return jnp.sum(((measured - f(k)) / noise) ** 2) + jnp.sum((k / prior) ** 2)

    gradient = jax.grad(objective)(result.errors)
    assert float(jnp.max(jnp.abs(gradient))) < 1e-6 * float(objective(result.errors))
    # The planted errors lie within the posterior's uncertainty (4 sigma, 6 parameters).
    assert np.all(np.abs(np.asarray(result.errors - truth)) < 4 * np.asarray(result.std))
    assert abs(float(result.chi2[-1]) - M) < 4 * np.sqrt(2 * M)
    np.testing.assert_allclose(result.prior_sigmas, prior)


def test_evidence_and_dynamic_prior_rules(model, rng):
    f, truth = model
    noise = 0.05
    measured = f(truth) + noise * jnp.asarray(rng.normal(size=M))
    evidence = co.bayesian_correction(f, jnp.zeros(N), measured, noise, 1.0, prior="evidence")
    assert np.all(np.abs(np.asarray(evidence.errors - truth)) < 4 * np.asarray(evidence.std))
    # The evidence sees errors of rms 0.3; six of them pin the scale to within a factor ~2.
    assert 0.1 < float(evidence.prior_sigmas[-1, 0]) < 0.8
    # The paper's rule: the prior of the remaining error follows the remaining beat.
    rule = co.prior_rule_from_beat(slope=2.0, floor=1e-3)
    dynamic = co.bayesian_correction(f, jnp.zeros(N), measured, noise, 1.0, n_iter=6, prior=rule)
    sigmas = np.asarray(dynamic.prior_sigmas[:, 0])
    assert sigmas[0] > 10 * sigmas[-1] and np.all(np.diff(sigmas) <= 1e-12)
    np.testing.assert_allclose(dynamic.errors, evidence.errors, atol=0.05)


def test_prior_sigma_from_beat_recovers_a_planted_slope():
    slope = 7.0  # rms beat per unit sigma of the errors

    def rms_beat(errors):
        return slope * jnp.sqrt(jnp.mean(errors**2))

    calibration = co.prior_sigma_from_beat(
        rms_beat,
        0.021,
        jax.random.key(0),
        32,
        n_quadrupoles=400,
        trial_sigmas=jnp.array([1e-3, 2e-3, 4e-3]),
    )
    # E[rms of 400 unit normals] = 1 - 1/1600, with sd 1/sqrt(800) per seed: the mean of 32
    # seeds is within 0.6 % (1 sd); allow 3 %.
    assert abs(float(calibration.slope) / slope - 1.0) < 0.03
    np.testing.assert_allclose(calibration.prior_sigma, 0.021 / calibration.slope)
    assert float(calibration.max_relative_deviation) < 1e-12  # exactly linear here
    assert calibration.rms_beat.shape == (3, 32)


def test_compare_estimators_regularisation_beats_the_pseudo_inverse(rng):
    """With fewer data than errors, the pseudo-inverse overfits; the Bayesian estimate does not."""
    m, n, n_seeds, noise, sigma = 30, 50, 40, 0.1, 0.2
    J = rng.normal(size=(m, n))
    truth = sigma * rng.normal(size=(n_seeds, n))
    measured = truth @ J.T + noise * rng.normal(size=(n_seeds, m))
    alphas = np.array([0.1, 1.0 / sigma**2, 1e3])
    comparison = co.compare_estimators(
        J, truth, measured, noise, sigma, alphas=alphas, n_singular=np.array([5, 30])
    )
    assert comparison.tikhonov_error.shape == (3, n_seeds)
    assert comparison.tsvd_error.shape == (2, n_seeds)
    np.testing.assert_allclose(comparison.tikhonov_error[1], comparison.bayes_error, rtol=1e-9)
    np.testing.assert_allclose(comparison.tsvd_error[1], comparison.pinv_error, rtol=1e-9)
    assert float(np.max(comparison.pinv_residual)) < 1e-10  # fits the noise exactly
    assert np.mean(comparison.bayes_error) < np.mean(comparison.pinv_error)
    assert np.mean(comparison.evidence_error) < np.mean(comparison.pinv_error)
    # The Bayesian estimate (true prior) is the best on average over the Tikhonov grid.
    assert np.argmin(np.mean(comparison.tikhonov_error, axis=1)) == 1
    assert 0.5 * sigma < np.median(comparison.evidence_sigma) < 2 * sigma


def test_bad_inputs(model):
    f, _ = model
    with pytest.raises(ValueError, match="model_fn must map"):
        co.bayesian_correction(f, jnp.zeros(N), jnp.zeros(M + 1), 0.1, 1.0)
    with pytest.raises(ValueError, match="k0 must be a non-empty 1-D"):
        co.bayesian_correction(f, jnp.zeros((N, 1)), jnp.zeros(M), 0.1, 1.0)
    with pytest.raises(ValueError, match="measured must be finite"):
        co.bayesian_correction(f, jnp.zeros(N), jnp.full(M, jnp.nan), 0.1, 1.0)
    with pytest.raises(ValueError, match="noise_sigma must be > 0"):
        co.bayesian_correction(f, jnp.zeros(N), jnp.zeros(M), 0.0, 1.0)
    with pytest.raises(ValueError, match="prior must be 'fixed', 'evidence' or a callable"):
        co.bayesian_correction(f, jnp.zeros(N), jnp.zeros(M), 0.1, 1.0, prior="flat")
    with pytest.raises(ValueError, match="n_iter must be a positive integer"):
        co.bayesian_correction(f, jnp.zeros(N), jnp.zeros(M), 0.1, 1.0, n_iter=0)
    with pytest.raises(ValueError, match="reference 'x' is not a block"):
        co.regularisation_from_noise({"beta_x": 0.1}, 1.0, reference="x")
    with pytest.raises(ValueError, match=r"noise_sigma\['beta_x'\] must be > 0"):
        co.regularisation_from_noise({"beta_x": 0.0}, 1.0)
    with pytest.raises(ValueError, match="block 'phase' has 2 parameters"):
        co.stack_observables(
            {
                "beta": (np.ones((3, 3)), np.ones(3), 0.1),
                "phase": (np.ones((3, 2)), np.ones(3), 0.1),
            }
        )
    with pytest.raises(ValueError, match="residual must be finite; got inf for block 'beta'"):
        co.stack_observables({"beta": (np.ones((2, 3)), np.array([1.0, np.inf]), 0.1)})
    with pytest.raises(ValueError, match="trial_sigmas must be > 0"):
        co.prior_sigma_from_beat(
            jnp.sum, 0.01, jax.random.key(0), 4, n_quadrupoles=3, trial_sigmas=jnp.array([0.0])
        )
    with pytest.raises(ValueError, match="rms_beat_fn must return a scalar"):
        co.prior_sigma_from_beat(
            lambda e: e, 0.01, jax.random.key(0), 4, n_quadrupoles=3, trial_sigmas=jnp.ones(2)
        )
    with pytest.raises(ValueError, match=r"measured must have shape \(n_seeds, 4\)"):
        co.compare_estimators(
            np.ones((4, 2)), np.ones(2), np.ones(4), 0.1, 1.0, alphas=[1.0], n_singular=[1]
        )
