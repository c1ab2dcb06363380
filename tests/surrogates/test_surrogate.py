"""Surrogate fidelity on simulators whose distributions and gradients are known exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.surrogates import surrogate
from diffdesign.surrogates.flows import ConditionalFlow

FLOW = ConditionalFlow(y_dim=1, n_layers=2, n_bins=12, hidden=(32, 32))


def fitted(simulate, n=100_000, steps=4000, seed=0):
    rng = np.random.default_rng(seed)
    psi = rng.uniform(-1.0, 1.0, (n, 2))
    x = rng.uniform(-1.0, 1.0, (n, 1))
    y = simulate(psi, x, rng)
    capacity = surrogate.buffer_capacity(n)
    state = surrogate.init(FLOW, jax.random.key(seed), 2, 1)
    state, nll = surrogate.fit(
        FLOW, state, jnp.asarray(surrogate.padded(y, capacity)),
        jnp.asarray(surrogate.padded(np.hstack([psi, x]), capacity)), jnp.asarray(n),
        jax.random.key(seed + 1), steps=steps, batch_size=512, learning_rate=3e-3,
    )  # fmt: skip
    assert float(nll[-100:].mean()) < float(nll[:100].mean())
    return state


def gaussian(psi, x, rng):
    """y ~ N(psi0 x + psi1^2, 0.5^2)."""
    return rng.normal(psi[:, :1] * x + psi[:, 1:] ** 2, 0.5)


def bimodal(psi, x, rng):
    """y ~ N(psi0 + 2 x - 2, 0.3^2) w.p. sigmoid(2 psi1), else N(psi0 + 2 x + 2, 0.3^2)."""
    first = rng.uniform(size=(len(psi), 1)) < 1 / (1 + np.exp(-2 * psi[:, 1:]))
    return rng.normal(psi[:, :1] + 2 * x + np.where(first, -2.0, 2.0), 0.3)


def surrogate_gradient(state, objective, psi, k=40_000):
    x = jax.random.uniform(jax.random.key(5), (k, 1), minval=-1.0, maxval=1.0)
    z = jax.random.normal(jax.random.key(6), (k, 1))
    return np.asarray(jax.grad(lambda p: surrogate.expected_objective(
        FLOW, objective, state, p, z, x))(jnp.asarray(psi, jnp.float32)))  # fmt: skip


@pytest.mark.slow  # ~48 s on 2 cores: in CI's second stage (-m slow)
def test_gaussian_simulator_likelihood_and_gradient():
    state = fitted(gaussian)
    rng = np.random.default_rng(9)
    psi = rng.uniform(-1, 1, (5000, 2))
    x = rng.uniform(-1, 1, (5000, 1))
    y = gaussian(psi, x, rng)
    true = -0.5 * ((y[:, 0] - psi[:, 0] * x[:, 0] - psi[:, 1] ** 2) / 0.5) ** 2 - np.log(
        0.5 * np.sqrt(2 * np.pi)
    )
    learned = np.asarray(surrogate.log_prob(FLOW, state, jnp.asarray(y), jnp.asarray(psi),
                                            jnp.asarray(x)))  # fmt: skip
    # mean log-likelihood within 0.02 nats of the true conditional density's
    assert abs(learned.mean() - true.mean()) < 0.02
    # E[y^2] = psi0^2 / 3 + psi1^4 + 0.25: gradient (2 psi0 / 3, 4 psi1^3)
    grad = surrogate_gradient(state, lambda y: y[..., 0] ** 2, [0.5, 0.8])
    np.testing.assert_allclose(grad, [1 / 3, 4 * 0.8**3], rtol=0.1)


def test_bimodal_simulator_moves_mass_between_modes():
    state = fitted(bimodal)
    # E[y] = psi0 - 2 p + 2 (1 - p), p = sigmoid(2 psi1): dE/dpsi1 = -8 p (1 - p)
    for psi1 in (-0.5, 0.0, 0.6):
        p = 1 / (1 + np.exp(-2 * psi1))
        grad = surrogate_gradient(state, lambda y: y[..., 0], [0.2, psi1])
        assert grad[0] == pytest.approx(1.0, abs=0.1)
        assert grad[1] == pytest.approx(-8 * p * (1 - p), abs=0.2)


def test_buffer_capacity_and_padding():
    assert surrogate.buffer_capacity(10) == 4096
    assert surrogate.buffer_capacity(5000) == 8192
    padded = surrogate.padded(np.ones((3, 2)), 8)
    assert padded.shape == (8, 2) and padded.dtype == np.float32 and padded[3:].sum() == 0
