"""Multi-start Adam: finds the global minimum among local ones, reports every start."""

import jax
import jax.numpy as jnp
import numpy as np

from diffdesign.design.multistart import minimise_multistart


def test_finds_the_global_minimum_of_a_double_well():
    # minima near x = -1 (global, tilted down) and x = +1 (local)
    def loss(x):
        return jnp.sum((x**2 - 1.0) ** 2 + 0.3 * x)

    starts = jax.random.uniform(jax.random.key(0), (16, 1), minval=-2.0, maxval=2.0)
    result = minimise_multistart(loss, starts, steps=400, learning_rate=0.05)
    assert result.params.shape == (16, 1) and result.history.shape == (16, 400)
    best = np.asarray(result.params[int(result.best)])
    grad = jax.grad(loss)(jnp.asarray(best))
    assert best[0] < -0.9 and abs(float(grad[0])) < 1e-3
    assert np.any(np.asarray(result.params)[:, 0] > 0.8)  # some starts end in the local well
    np.testing.assert_allclose(result.loss, jax.vmap(loss)(result.params), rtol=1e-12)


def test_works_on_pytrees():
    def loss(p):
        return jnp.sum((p["a"] - 3.0) ** 2) + (p["b"] + 1.0) ** 2

    starts = {"a": jnp.zeros((4, 2)), "b": jnp.linspace(-3, 3, 4)}
    result = minimise_multistart(loss, starts, steps=600, learning_rate=0.1)
    np.testing.assert_allclose(result.params["a"][int(result.best)], [3.0, 3.0], atol=1e-4)
    np.testing.assert_allclose(result.params["b"][int(result.best)], -1.0, atol=1e-4)


def test_a_diverged_start_is_never_the_best():
    def loss(x):
        # the start at x = 10 runs into a region where the loss is NaN
        return jnp.where(x[0] > 5.0, jnp.nan, (x[0] - 1.0) ** 2)

    result = minimise_multistart(loss, jnp.array([[10.0], [0.0]]), steps=50, learning_rate=0.05)
    assert int(result.best) == 1 and np.isnan(float(result.loss[0]))
