"""Multi-start Adam of the design core (``diffdesign.core.multistart``): every start runs the
one ``Fit`` step, vmapped; the best start is the lowest finite final loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array

from diffdesign.core import Adam, CosineDecay, Param, Problem, multistart, run
from diffdesign.core.fit import TRACES


class DoubleWell(Problem):
    """(x^2 - 1)^2 + tilt x: minima near x = -1 (global for tilt > 0) and x = +1 (local);
    NaN beyond ``cliff`` (a start that runs there diverges)."""

    tilt: Array
    cliff: Array

    def __init__(self, tilt=0.3, cliff=np.inf):
        self.tilt = jnp.asarray(tilt, dtype=float)
        self.cliff = jnp.asarray(cliff, dtype=float)

    @property
    def spec(self):
        return {"x": Param(jnp.zeros(1), -20.0, 20.0, step=0.05, label="x")}

    def loss(self, params, key):
        x = params["x"][0]
        value = (x**2 - 1.0) ** 2 + self.tilt * x
        return jnp.where(x > self.cliff, jnp.nan, value), {"x": x}


class Quadratic(Problem):
    """A PyTree spec with a bound that is active at the optimum: a -> 3 (clipped to 2.5)."""

    @property
    def spec(self):
        return {
            "a": Param(jnp.zeros(2), -5.0, 2.5, step=0.1, label="a"),
            "b": Param(0.0, step=0.1, label="b"),
        }

    def loss(self, params, key):
        return jnp.sum((params["a"] - 3.0) ** 2) + (params["b"] + 1.0) ** 2, {}


OPTIMISER = Adam(schedule=CosineDecay(400, final_fraction=1e-3))


def test_finds_the_global_minimum_of_a_double_well():
    problem = DoubleWell()
    starts = {"x": jax.random.uniform(jax.random.key(0), (16, 1), minval=-2.0, maxval=2.0)}
    result = multistart(problem, starts, steps=400, key=jax.random.key(1), optimiser=OPTIMISER)
    assert result.params["x"].shape == (16, 1) and result.history.shape == (16, 400)
    best = float(result.params["x"][int(result.best), 0])
    grad = jax.grad(lambda x: problem.loss({"x": x}, None)[0])(jnp.array([best]))
    assert best < -0.9 and abs(float(grad[0])) < 1e-3
    assert np.any(np.asarray(result.params["x"])[:, 0] > 0.8)  # some end in the local well
    final = jax.vmap(lambda x: problem.loss({"x": x}, None)[0])(result.params["x"])
    np.testing.assert_allclose(result.loss, final, rtol=1e-12)
    assert int(result.best) == int(np.argmin(np.asarray(result.loss)))


def test_pytree_specs_stay_inside_their_bounds():
    starts = {"a": jnp.zeros((4, 2)), "b": jnp.linspace(-3.0, 3.0, 4)}
    result = multistart(Quadratic(), starts, steps=600, key=jax.random.key(0))
    best = int(result.best)
    np.testing.assert_allclose(result.params["a"][best], [2.5, 2.5], atol=1e-12)  # projected
    np.testing.assert_allclose(result.params["b"][best], -1.0, atol=1e-3)
    assert np.all(np.asarray(result.params["a"]) <= 2.5)


def test_a_diverging_start_is_never_the_best():
    # the start at x = 10 lies beyond the cliff: its loss is NaN from the first step
    problem = DoubleWell(cliff=5.0)
    starts = {"x": jnp.array([[10.0], [0.5], [12.0]])}
    result = multistart(problem, starts, steps=50, key=jax.random.key(0))
    assert int(result.best) == 1
    assert np.isnan(float(result.loss[0])) and np.isnan(float(result.loss[2]))
    assert np.isfinite(float(result.loss[1]))
    with pytest.raises(FloatingPointError, match="every start diverged"):
        multistart(problem, {"x": jnp.array([[10.0], [12.0]])}, steps=5, key=jax.random.key(0))


def test_bad_starts_and_steps_are_named():
    with pytest.raises(ValueError, match="common leading axis"):
        multistart(Quadratic(), {"a": jnp.zeros((4, 2)), "b": jnp.zeros(3)}, steps=5,
                   key=jax.random.key(0))  # fmt: skip
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        multistart(DoubleWell(), {"x": jnp.zeros((2, 1))}, steps=0, key=jax.random.key(0))


def test_vmapped_starts_equal_separate_runs():
    problem = DoubleWell()
    starts = jnp.array([[-1.7], [0.2], [1.4]])
    key = jax.random.key(3)
    together = multistart(problem, {"x": starts}, steps=120, key=key, optimiser=OPTIMISER)
    for i, start in enumerate(starts):
        alone = run(problem, steps=120, key=key, optimiser=OPTIMISER, params={"x": start},
                    chunk=120, progress=False)  # fmt: skip
        np.testing.assert_allclose(together.params["x"][i], alone.params["x"], rtol=1e-12)
        np.testing.assert_allclose(
            together.history[i], [row["loss"] for row in alone.history], rtol=1e-12
        )


def test_new_data_and_new_starts_do_not_retrace():
    starts = {"x": jnp.linspace(-1.5, 1.5, 8)[:, None]}
    first = multistart(DoubleWell(0.3), starts, steps=30, key=jax.random.key(0))
    traces = TRACES["DoubleWell.multistart"]
    assert traces >= 1
    moved = {"x": starts["x"] + 0.1}
    second = multistart(DoubleWell(-0.3), moved, steps=30, key=jax.random.key(1))
    assert TRACES["DoubleWell.multistart"] == traces
    # the new tilt moved the global minimum to x ~ +1
    assert (
        float(first.params["x"][int(first.best), 0])
        < 0
        < float(second.params["x"][int(second.best), 0])
    )
