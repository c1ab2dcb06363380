"""L-GSO on a black box whose optimum is known; exact resume; settings checked."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.surrogates import surrogate as surrogate_model
from diffdesign.surrogates.blackbox import PythonSimulator
from diffdesign.surrogates.flows import ConditionalFlow
from diffdesign.surrogates.lgso import LgsoConfig, minimise
from experiments.lgso import _baselines as baselines

CENTRE = np.array([1.0, -0.5])


def bowl():
    """y ~ N(|psi - c|^2 + x, 0.3^2), x ~ U(-1, 1): E[y] = |psi - c|^2."""

    def simulate(psi, x, seed):
        rng = np.random.default_rng(seed)
        return rng.normal(np.sum((psi - CENTRE) ** 2, axis=1, keepdims=True) + x, 0.3)

    def inputs(n, seed):
        return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 1))

    return PythonSimulator(simulate, inputs, psi_dim=2, x_dim=1, y_dim=1, label="bowl")


def identity(y):
    return y[..., 0]


CONFIG = LgsoConfig(epsilon=0.3, n_points=4, samples_per_point=400, gradient_samples=2000,
                    train_steps=300, flow_hidden=(32, 32), flow_bins=8)  # fmt: skip


@pytest.mark.slow  # a whole L-GSO run: ~50 s
def test_lgso_finds_the_minimum_and_counts_calls():
    def evaluate(psi):
        return float(np.sum((psi - CENTRE) ** 2))

    result = minimise(bowl(), identity, [0.0, 0.0], CONFIG, max_calls=30 * 2000, seed=1,
                      evaluate=evaluate, progress=False)  # fmt: skip
    assert result.calls == 60_000 == result.records[-1].calls
    assert [r.calls for r in result.records] == list(range(2000, 60_001, 2000))
    assert np.linalg.norm(result.psi - CENTRE) < 0.15
    steps = np.diff(np.array([[0.0, 0.0]] + [r.psi for r in result.records]), axis=0)
    assert np.all(np.linalg.norm(steps, axis=1) <= CONFIG.epsilon * (1 + 1e-12))
    assert result.records[0].true_objective > 0.5 > result.records[-1].true_objective


@pytest.mark.slow  # ~51 s on 2 cores: in CI's second stage (-m slow)
def test_interrupted_run_resumes_exactly(tmp_path):
    whole = minimise(bowl(), identity, [0.0, 0.0], CONFIG, max_calls=4 * 2000, seed=2,
                     progress=False)  # fmt: skip
    path = tmp_path / "lgso.npz"
    minimise(bowl(), identity, [0.0, 0.0], CONFIG, max_calls=2 * 2000, seed=2, checkpoint=path,
             progress=False)  # fmt: skip
    resumed = minimise(bowl(), identity, [0.0, 0.0], CONFIG, max_calls=4 * 2000, seed=2,
                       checkpoint=path, progress=False)  # fmt: skip
    np.testing.assert_array_equal(resumed.psi, whole.psi)
    assert [r.calls for r in resumed.records] == [r.calls for r in whole.records]
    with pytest.raises(ValueError, match="other settings"):
        minimise(bowl(), identity, [0.0, 0.0], CONFIG, max_calls=4 * 2000, seed=3,
                 checkpoint=path, progress=False)  # fmt: skip


@pytest.mark.slow  # ~32 s on 2 cores: in CI's second stage (-m slow)
def test_surrogate_gradient_matches_finite_differences():
    flow = ConditionalFlow(y_dim=1, n_layers=1, n_bins=6, hidden=(8,))
    state = surrogate_model.init(flow, jax.random.key(0), 2, 1)
    params = jax.tree.map(lambda a: a + 0.2 * jax.random.normal(jax.random.key(1), a.shape),
                          state.params)  # fmt: skip
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    state = state._replace(params=params)
    z = jax.random.normal(jax.random.key(2), (500, 1))
    x = jax.random.uniform(jax.random.key(3), (500, 1))

    def f(psi):
        return surrogate_model.expected_objective(flow, lambda y: jnp.sin(y[..., 0]), state,
                                                  psi, z, x)  # fmt: skip

    psi = jnp.array([0.3, -0.7])
    grad = jax.grad(f)(psi)
    # the surrogate computes in float32: a step that float32 resolves
    h = 1e-2
    numeric = [(f(psi.at[i].add(h)) - f(psi.at[i].add(-h))) / (2 * h) for i in range(2)]
    np.testing.assert_allclose(grad, numeric, rtol=2e-3, atol=1e-5)


def test_baselines_reach_the_bowl_minimum_and_count_calls():
    def evaluate(psi):
        return float(np.sum((psi - CENTRE) ** 2))

    common = {"samples_per_point": 300, "seed": 0, "evaluate": evaluate, "progress": False}
    numerical = baselines.numerical_descent(bowl(), identity, [0.0, 0.0], step=0.1,
                                            learning_rate=0.1, max_step=0.3, max_calls=40 * 1200,
                                            **common)  # fmt: skip
    assert numerical.calls == 48_000 and len(numerical.records) == 40
    assert numerical.records[-1].true_objective < 0.05
    cma = baselines.cma_es(bowl(), identity, [0.0, 0.0], sigma0=0.5, max_calls=30 * 6 * 300,
                           population=6, **common)  # fmt: skip
    assert cma.calls == 54_000 and cma.records[-1].true_objective < 0.05
    bo = baselines.bayesian_optimisation(bowl(), identity, [0.0, 0.0], half_width=2.0,
                                         max_calls=12 * 300, **common)  # fmt: skip
    assert bo.calls == 3600 and len(bo.records) == 12
    assert bo.records[0].psi == [0.0, 0.0]  # the start is evaluated first
    assert bo.records[-1].true_objective < bo.records[0].true_objective


@pytest.mark.parametrize(
    "field, value",
    [("epsilon", 0.0), ("n_points", 0), ("learning_rate", -1.0), ("history_radius", 0.5)],
)
def test_config_rejects_bad_values(field, value):
    settings = {"epsilon": 0.2, "n_points": 3} | {field: value}
    with pytest.raises(ValueError, match=field):
        LgsoConfig(**settings)


def test_start_is_checked():
    with pytest.raises(ValueError, match=r"psi0 must be a finite \(2,\) array"):
        minimise(bowl(), identity, [0.0], CONFIG, max_calls=1)
    with pytest.raises(ValueError, match="psi0"):
        minimise(bowl(), identity, [np.nan, 0.0], CONFIG, max_calls=1)
