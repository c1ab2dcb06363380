"""INFERNO: soft histograms, the loss and its gradient, and the paper's 3-D mixture against
independent references (SciPy densities, the paper's analytical row, score-function and
reweighting derivatives)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from diffdesign.inference.binned import fisher_information, poi_variance
from diffdesign.inference.ensembles import MLP, init_ensemble
from diffdesign.inference.inferno import hard_histogram, inferno_loss, soft_histogram
from experiments.inferno import _mixture as mixture


def test_soft_histogram_is_normalised_and_tends_to_the_hard_one(rng):
    scores = jnp.asarray(rng.normal(size=(500, 6)))
    for temperature in (1.0, 0.1):
        assert float(jnp.sum(soft_histogram(scores, temperature))) == pytest.approx(1.0)
    hard = hard_histogram(jnp.argmax(scores, axis=1), 6)
    np.testing.assert_allclose(soft_histogram(scores, 1e-4), hard, atol=1e-12)
    assert float(jnp.max(jnp.abs(soft_histogram(scores, 0.05) - hard))) > 1e-4
    np.testing.assert_allclose(soft_histogram(scores, 1e6), np.full(6, 1 / 6), atol=1e-6)


def test_weighted_histograms(rng):
    bins = jnp.asarray(rng.integers(0, 4, 300))
    weights = jnp.asarray(rng.uniform(0.5, 2.0, 300))
    expected = np.bincount(np.asarray(bins), np.asarray(weights), 4) / np.sum(weights)
    np.testing.assert_allclose(hard_histogram(bins, 4, weights), expected, rtol=1e-12)
    one_hot = 100.0 * jax.nn.one_hot(bins, 4)
    np.testing.assert_allclose(soft_histogram(one_hot, 1.0, weights), expected, atol=1e-12)
    assert float(jnp.sum(hard_histogram(jnp.array([0, 5]), 4))) == 0.5  # out of range


def test_log_densities_match_scipy(rng):
    x = np.column_stack([rng.normal(size=50), rng.normal(size=50) * 3, rng.exponential(size=50)])
    signal = (stats.norm.logpdf(x[:, 0]) + stats.norm.logpdf(x[:, 1])
              + stats.expon.logpdf(x[:, 2], scale=1 / 2.0))  # fmt: skip
    np.testing.assert_allclose(mixture.log_density_signal(x), signal, rtol=1e-12)
    background = (stats.norm.logpdf(x[:, 0], 2.3, np.sqrt(5)) + stats.norm.logpdf(x[:, 1], 0, 3)
                  + stats.expon.logpdf(x[:, 2], scale=1 / 2.5))  # fmt: skip
    np.testing.assert_allclose(mixture.log_density_background(x, 0.3, 2.5), background, rtol=1e-12)


def test_moved_background_follows_the_shifted_distribution():
    x = mixture.sample_background(jax.random.key(3), 400_000)
    moved = np.asarray(mixture.transform_background(x, 0.5, 2.0))
    # x0 ~ N(2.5, 5); x2 ~ Exp(rate 2): compare moments and a KS test on x2
    assert moved[:, 0].mean() == pytest.approx(2.5, abs=4 * np.sqrt(5 / 4e5))
    assert moved[:, 0].var() == pytest.approx(5.0, rel=0.01)
    assert stats.kstest(moved[:50_000, 2], stats.expon(scale=0.5).cdf).pvalue > 1e-3


def test_analytical_bound_reproduces_the_paper_with_signal_at_the_origin():
    keys = jax.random.split(jax.random.key(11))
    signal = mixture.sample_signal(keys[0], 400_000)
    background = mixture.sample_background(keys[1], 400_000)
    ours = [
        mixture.analytic_uncertainty(signal, background, mixture.benchmark(i)) for i in range(5)
    ]
    # Monte Carlo error of the Fisher estimate at 400k events is ~0.2 %; the signal mean
    # (1, 1) of the paper's text would give 16.1, 16.4, 16.6, 16.6, 18.3.
    np.testing.assert_allclose(ours, mixture.PAPER_TABLE_2["analytic"], rtol=0.01)


def test_analytic_fisher_of_s_alone_is_the_density_integral():
    # I_ss = int f_s^2 / (s f_s + b f_b) dx, by importance sampling from the signal
    keys = jax.random.split(jax.random.key(5))
    signal = mixture.sample_signal(keys[0], 200_000)
    background = mixture.sample_background(keys[1], 200_000)
    fisher = mixture.analytic_fisher(signal, background)
    g = mixture.log_intensity(jnp.asarray(mixture.NOMINAL), signal)
    direct = jnp.mean(jnp.exp(mixture.log_density_signal(signal) - g))
    assert float(fisher[0, 0]) == pytest.approx(float(direct), rel=0.02)


def test_optimal_classifier_reproduces_the_paper_within_monte_carlo_noise():
    keys = jax.random.split(jax.random.key(21))
    counts = mixture.template_expected_counts(
        lambda x: mixture.probability_bins(mixture.optimal_classifier(x)), 10,
        mixture.sample_signal(keys[0], 200_000), mixture.sample_background(keys[1], 200_000),
    )  # fmt: skip
    ours = [float(jnp.sqrt(poi_variance(counts, mixture.benchmark(i)))) for i in range(5)]
    # template derivatives from one finite sample move the nuisance columns by ~1 %
    np.testing.assert_allclose(ours, mixture.PAPER_TABLE_2["optimal_classifier"], rtol=0.02)


def test_soft_counts_derivative_matches_the_score_function_estimate():
    """d/dr of the soft background histogram by moving the events (what INFERNO
    differentiates) equals E[h(x) d_r log f_b(x; r)], which needs no derivative of h."""
    network = MLP(hidden=(16,), n_outputs=4)
    params = network.init(jax.random.key(0), jnp.zeros((1, 3)))
    background = mixture.sample_background(jax.random.key(1), 400_000)

    def scores(x):
        return network.apply(params, x)

    def histogram(r, lam):
        return soft_histogram(scores(mixture.transform_background(background, r, lam)), 0.5)

    by_moving = jax.jacfwd(histogram, argnums=(0, 1))(0.0, 3.0)
    fractions = jax.nn.softmax(scores(background).astype(jnp.float64) / 0.5, axis=1)
    score = jax.vmap(jax.grad(mixture.log_density_background, argnums=(1, 2)),
                     in_axes=(0, None, None))(background, 0.0, 3.0)  # fmt: skip
    for moved, weight in zip(by_moving, score, strict=True):
        by_score = jnp.mean(fractions * weight[:, None], axis=0)
        error = jnp.std(fractions * weight[:, None], axis=0) / np.sqrt(background.shape[0])
        assert np.all(np.abs(np.asarray(moved - by_score)) < 5 * np.asarray(error))


def test_template_derivative_matches_likelihood_ratio_reweighting():
    """The evaluation's central-difference templates give the derivative of the expected
    hard counts that exact reweighting by f_b(x; r, lambda) / f_b(x; 0, 3) gives."""
    keys = jax.random.split(jax.random.key(8))
    signal = mixture.sample_signal(keys[0], 1000)
    background = mixture.sample_background(keys[1], 400_000)

    def bins(x):
        return mixture.probability_bins(mixture.optimal_classifier(x))

    counts = mixture.template_expected_counts(bins, 10, signal, background)
    jacobian = jax.jacfwd(counts)(jnp.asarray(mixture.NOMINAL))

    def reweighted(nuisances):
        r, lam = nuisances
        weights = jnp.exp(mixture.log_density_background(background, r, lam)
                          - mixture.log_density_background(background))  # fmt: skip
        return 1000.0 * hard_histogram(bins(background), 10, weights)

    exact = jax.jacfwd(reweighted)(jnp.array([0.0, 3.0]))
    scale = np.max(np.abs(np.asarray(exact)), axis=0)
    np.testing.assert_allclose(jacobian[:, 1:3], exact, atol=0.03 * float(scale.max()))


def test_inferno_loss_gradient_matches_finite_differences():
    network = MLP(hidden=(8,), n_outputs=5)
    params = init_ensemble(network, jax.random.key(2), 1, 3)
    params = jax.tree.map(lambda leaf: leaf[0].astype(jnp.float64), params)
    signal = mixture.sample_signal(jax.random.key(3), 300)
    background = mixture.sample_background(jax.random.key(4), 300)

    def loss(scale):
        scaled = jax.tree.map(lambda leaf: leaf * scale, params)
        counts = mixture.soft_expected_counts(
            lambda x: network.apply(scaled, x.astype(jnp.float64)), signal, background, 0.3
        )
        return inferno_loss(counts, mixture.benchmark(4))

    grad = jax.grad(loss)(1.1)
    h = 1e-5
    assert float(grad) == pytest.approx(float((loss(1.1 + h) - loss(1.1 - h)) / (2 * h)), rel=1e-6)


def test_soft_fisher_depends_on_nuisances_only_through_the_background():
    network = MLP(hidden=(8,), n_outputs=5)
    params = network.init(jax.random.key(2), jnp.zeros((1, 3)))
    counts = mixture.soft_expected_counts(
        lambda x: network.apply(params, x), mixture.sample_signal(jax.random.key(3), 200),
        mixture.sample_background(jax.random.key(4), 200), 0.1,
    )  # fmt: skip
    fisher = np.asarray(fisher_information(counts, mixture.benchmark(4)))
    assert np.all(np.isfinite(fisher)) and np.all(np.linalg.eigvalsh(fisher) > 0)
    np.testing.assert_allclose(counts(jnp.asarray(mixture.NOMINAL)).sum(), 1050.0, rtol=1e-12)


def test_benchmarks_and_events_are_checked():
    assert mixture.benchmark(3).constraints == {"r": 0.4, "lambda": 1.0}
    assert mixture.benchmark(4).free == ("s", "r", "lambda", "b")
    with pytest.raises(ValueError, match="benchmark must be one of"):
        mixture.benchmark(5)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        mixture.check_events(np.zeros((4, 2)), "events")
    with pytest.raises(ValueError, match="finite"):
        mixture.check_events(np.full((4, 3), np.nan), "events")
