"""The L-GSO benchmark simulators: known values, embeddings, reproducible draws."""

import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.surrogates.blackbox import run_simulation, sample_inputs_checked
from experiments.lgso._problems import (
    PROBLEMS,
    NonlinearSubmanifoldHump,
    Rosenbrock,
    SubmanifoldRosenbrock,
    ThreeHump,
    paper_problem,
    rosenbrock,
    three_hump_camel,
)


def monte_carlo(problem, psi, n=200_000, seed=0):
    x = sample_inputs_checked(problem, n, seed)
    y = run_simulation(problem, np.tile(psi, (n, 1)), x, seed + 1)
    return float(jnp.mean(problem.objective(jnp.asarray(y))))


def test_closed_forms():
    assert three_hump_camel(np.zeros(2)) == 0.0
    assert rosenbrock(np.ones(10)) == 0.0
    assert rosenbrock(2 * np.ones(10)) == 45.0
    assert Rosenbrock().expected_objective(2 * np.ones(10)) == 45.0
    assert SubmanifoldRosenbrock().expected_objective(np.zeros(100)) == 9.0


def test_rosenbrock_simulator_mean_is_the_closed_form():
    problem = Rosenbrock()
    psi = np.linspace(0.5, 1.5, 10)
    assert monte_carlo(problem, psi, 400_000) == pytest.approx(rosenbrock(psi), abs=0.05)


def test_three_hump_values_at_start_and_optimum():
    problem = ThreeHump()
    assert monte_carlo(problem, [2.0, 0.0]) == pytest.approx(-0.499, abs=0.005)
    assert monte_carlo(problem, [0.0, 1.25]) == pytest.approx(-0.858, abs=0.005)
    # component choice: psi1 = 0 always picks the second input's mode
    x = np.array([[1.0, 4.0]] * 2000)
    y = run_simulation(problem, np.tile([0.0, 1.0], (2000, 1)), x, 3)
    assert np.mean(y) == pytest.approx(4.0, abs=0.1)


def test_embeddings_are_orthonormal_and_seeded():
    q = SubmanifoldRosenbrock().embedding
    np.testing.assert_allclose(q.T @ q, np.eye(10), atol=1e-12)
    np.testing.assert_array_equal(q, SubmanifoldRosenbrock().embedding)
    a, b = NonlinearSubmanifoldHump().embedding
    np.testing.assert_allclose(a @ a.T, np.eye(16), atol=1e-12)
    np.testing.assert_allclose(b @ b.T, np.eye(2), atol=1e-12)
    assert not np.allclose(NonlinearSubmanifoldHump(seed=1).embedding[0], a)
    psi = np.random.default_rng(0).normal(size=(3, 40))
    np.testing.assert_allclose(NonlinearSubmanifoldHump().effective(psi),
                               np.tanh(psi @ a.T) @ b.T)  # fmt: skip


def test_paper_settings():
    for name in PROBLEMS:
        settings = paper_problem(name)
        assert len(settings.start) == settings.problem.psi_dim
        assert settings.optimum < settings.target
    with pytest.raises(ValueError, match="problem must be one of"):
        paper_problem("hartmann")
