"""Conditional spline flows: exact inverses, log-determinants against autodiff, change of
variables against Jacobians, normalisation, identity at initialisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.surrogates.flows import ConditionalFlow, rational_quadratic_spline


def spline_parameters(n, n_bins=8, scale=1.0, seed=0):
    return scale * jax.random.normal(jax.random.key(seed), (n, 3 * n_bins - 1), jnp.float64)


@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_spline_inverse_and_log_derivative(scale):
    raw = spline_parameters(2000, scale=scale)
    x = jnp.linspace(-6.0, 6.0, 2000)  # inside and outside [-5, 5]
    y, log_derivative = rational_quadratic_spline(x, raw, 8, 5.0)
    back, log_inverse = rational_quadratic_spline(y, raw, 8, 5.0, inverse=True)
    np.testing.assert_allclose(back, x, atol=1e-10)
    np.testing.assert_allclose(log_inverse, -log_derivative, atol=1e-9)
    derivative = jax.vmap(jax.grad(lambda a, r: rational_quadratic_spline(a, r, 8, 5.0)[0]))(x, raw)
    np.testing.assert_allclose(np.log(derivative), log_derivative, atol=1e-10)
    assert np.all(np.asarray(derivative) > 0)  # monotone
    outside = np.abs(np.asarray(x)) >= 5.0
    np.testing.assert_array_equal(np.asarray(y)[outside], np.asarray(x)[outside])


def test_spline_with_zero_parameters_is_the_identity():
    x = jnp.linspace(-4.9, 4.9, 101)
    y, log_derivative = rational_quadratic_spline(x, jnp.zeros((101, 23)), 8, 5.0)
    np.testing.assert_allclose(y, x, atol=1e-14)
    np.testing.assert_allclose(log_derivative, 0.0, atol=1e-14)


def perturbed_flow(y_dim, seed=3):
    flow = ConditionalFlow(y_dim=y_dim, n_layers=3, n_bins=8, hidden=(16,))
    context = jax.random.normal(jax.random.key(1), (40, 4))
    z = jax.random.normal(jax.random.key(2), (40, y_dim))
    params = flow.init(jax.random.key(seed), z, context)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    params = treedef.unflatten([leaf.astype(jnp.float64) + 0.1 * jax.random.normal(k, leaf.shape)
                                for leaf, k in zip(leaves, keys, strict=True)])  # fmt: skip
    return flow, params, z, context


@pytest.mark.parametrize("y_dim", [1, 3])
def test_log_prob_is_the_change_of_variables_of_sample(y_dim):
    flow, params, z, context = perturbed_flow(y_dim)

    def sample(a, c):
        return flow.apply(params, a, c, method=flow.sample)

    y = jax.jit(sample)(z, context)
    jacobian = jax.jit(jax.vmap(jax.jacfwd(sample)))(z, context)
    expected = (-0.5 * jnp.sum(z**2 + np.log(2 * np.pi), axis=-1)
                - jnp.linalg.slogdet(jacobian)[1])  # fmt: skip
    np.testing.assert_allclose(jax.jit(flow.apply)(params, y, context), expected, atol=1e-9)


def test_density_integrates_to_one():
    flow, params, _, context = perturbed_flow(1)
    y = jnp.linspace(-80.0, 80.0, 400_001)[:, None]
    log_prob = jax.jit(flow.apply)
    for c in context[:3]:
        log_density = log_prob(params, y, jnp.broadcast_to(c, (y.shape[0], c.size)))
        total = np.trapezoid(np.exp(np.asarray(log_density)), np.asarray(y[:, 0]))
        assert total == pytest.approx(1.0, abs=1e-6)


def test_untrained_flow_is_the_identity():
    flow = ConditionalFlow(y_dim=2)
    z = jax.random.normal(jax.random.key(0), (10, 2))
    context = jax.random.normal(jax.random.key(1), (10, 5))
    params = flow.init(jax.random.key(2), z, context)
    np.testing.assert_allclose(flow.apply(params, z, context, method=flow.sample), z, atol=1e-6)
