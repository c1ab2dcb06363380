"""Bounded least squares: exact on linear problems, bounds hold, honest covariances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.inference import bounded_least_squares, identifiability, least_squares_path


def _linear_problem(rng, m=30, p=4):
    A = jnp.asarray(rng.normal(size=(m, p)))
    truth = jnp.asarray(rng.uniform(-0.5, 0.5, p))
    return A, truth


def test_linear_problem_matches_normal_equations(rng):
    A, truth = _linear_problem(rng)
    b = A @ truth + jnp.asarray(rng.normal(size=30))
    result = bounded_least_squares(
        lambda x: A @ x - b, jnp.zeros(4), -2 * jnp.ones(4), 2 * jnp.ones(4)
    )
    expected = jnp.linalg.solve(A.T @ A, A.T @ b)
    np.testing.assert_allclose(result.x, expected, rtol=1e-9)
    np.testing.assert_allclose(result.covariance, jnp.linalg.inv(A.T @ A), rtol=1e-9)
    np.testing.assert_allclose(
        result.std, jnp.sqrt(jnp.diagonal(jnp.linalg.inv(A.T @ A))), rtol=1e-9
    )
    assert bool(result.converged) and not np.any(result.at_bound)


def test_bounds_hold_and_are_reported(rng):
    A, _ = _linear_problem(rng)
    truth = jnp.array([3.0, -0.2, 0.1, -4.0])  # two outside the box [-1, 1]
    result = bounded_least_squares(
        lambda x: A @ x - A @ truth, jnp.zeros(4), -jnp.ones(4), jnp.ones(4)
    )
    assert np.all(np.abs(result.x) <= 1.0)
    np.testing.assert_array_equal(result.at_bound, [True, False, False, True])


def test_nonlinear_fit_and_its_loss_path(rng):
    t = jnp.linspace(0.0, 3.0, 40)
    truth = jnp.array([1.5, 0.7])

    def residuals(x):
        return x[0] * jnp.exp(-x[1] * t) - truth[0] * jnp.exp(-truth[1] * t)

    result = bounded_least_squares(
        residuals, jnp.array([1.0, 0.2]), jnp.zeros(2), jnp.array([5.0, 5.0])
    )
    np.testing.assert_allclose(result.x, truth, rtol=1e-9)
    path = least_squares_path(
        residuals, jnp.array([1.0, 0.2]), jnp.zeros(2), jnp.array([5.0, 5.0]), 15
    )
    assert path.shape == (16,)
    assert np.all(np.diff(np.asarray(path)) <= 1e-15)  # accepted steps never increase the loss
    assert float(path[-1]) < 1e-20


def test_vmap_over_data(rng):
    A, truth = _linear_problem(rng)
    noise = jnp.asarray(rng.normal(size=(5, 30)))

    def fit(e):
        return bounded_least_squares(
            lambda x: A @ x - (A @ truth + e), jnp.zeros(4), -2 * jnp.ones(4), 2 * jnp.ones(4)
        ).x

    batched = jax.vmap(fit)(noise)
    np.testing.assert_allclose(batched[2], fit(noise[2]), rtol=1e-12)


def test_identifiability_detects_confounded_parameters(rng):
    A = np.asarray(rng.normal(size=(20, 3)))
    A[:, 2] = A[:, 0] + 1e-6 * rng.normal(size=20)  # parameters 0 and 2 nearly confounded
    report = identifiability(jnp.asarray(A))
    assert float(report.condition_number) > 1e5
    assert abs(float(report.correlation[0, 2])) > 0.999
    weakest = np.abs(np.asarray(report.weakest_direction))
    assert weakest[1] < 0.01 and abs(weakest[0] - weakest[2]) < 0.01


def test_undetermined_parameters_get_infinite_variance():
    from diffdesign.inference import gaussian_covariance

    covariance, report = gaussian_covariance(jnp.array([[1.0, 1.0], [2.0, 2.0], [1.0, 1.0]]))
    assert np.all(np.isinf(np.diagonal(covariance))) and np.all(report.undetermined)
    assert np.isinf(report.condition_number) and int(report.rank) == 1
    # fewer rows than parameters: the third parameter is not measured at all
    covariance, report = gaussian_covariance(jnp.array([[2.0, 0.0, 0.0], [0.0, 4.0, 0.0]]))
    np.testing.assert_allclose(np.diagonal(covariance), [0.25, 1 / 16, np.inf])
    np.testing.assert_array_equal(report.undetermined, [False, False, True])
    np.testing.assert_allclose(np.abs(report.weakest_direction), [0.0, 0.0, 1.0])
    assert np.all(np.isfinite(report.correlation)) and report.singular_values.shape == (3,)


def test_bad_boxes_are_named():
    f = lambda x: x
    with pytest.raises(
        ValueError, match=r"lower must be < upper; got lower\[1\]=1.0, upper\[1\]=1.0"
    ):
        bounded_least_squares(f, jnp.zeros(2), jnp.array([-1.0, 1.0]), jnp.array([1.0, 1.0]))
    with pytest.raises(ValueError, match=r"x0\[0\]=3.0 lies outside \[-1.0, 1.0\]"):
        bounded_least_squares(f, jnp.array([3.0, 0.0]), -jnp.ones(2), jnp.ones(2))
