"""Binned Asimov likelihoods: Fisher information against closed forms and the Hessian,
constrained covariances, profiles, template interpolation, bad setups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.inference.binned import (
    InferenceSetup,
    TemplateShapes,
    asimov_nll,
    covariance,
    fisher_information,
    interval_half_width,
    poi_variance,
    poisson_nll,
    profile_nll,
)


def counting(theta):
    """One bin: nu = s + b."""
    return jnp.stack([theta[0] + theta[1]])


def test_counting_experiment_variance_is_s_plus_b_plus_sigma_b_squared():
    s, b, sigma_b = 50.0, 1000.0, 100.0
    free = InferenceSetup(("s", "b"), (s, b), poi="s", free=("s", "b"), constraints={"b": sigma_b})
    fixed = InferenceSetup(("s", "b"), (s, b), poi="s", free=("s",))
    assert float(poi_variance(counting, fixed)) == pytest.approx(s + b, rel=1e-12)
    assert float(poi_variance(counting, free)) == pytest.approx(s + b + sigma_b**2, rel=1e-12)
    fisher = np.asarray(fisher_information(counting, free))
    nu = s + b
    np.testing.assert_allclose(fisher, [[1 / nu, 1 / nu], [1 / nu, 1 / nu + sigma_b**-2]],
                               rtol=1e-12)  # fmt: skip


def shape_model(theta):
    """Three bins: signal shape fixed, background shape tilted by a nuisance t."""
    s, t, b = theta
    signal = jnp.array([0.6, 0.3, 0.1])
    background = (
        jnp.array([0.2, 0.3, 0.5])
        + t * jnp.array([0.05, 0.0, -0.05])
        + t**2 * jnp.array([0.01, -0.02, 0.01])
    )
    return s * signal + b * background


SHAPE = InferenceSetup(("s", "t", "b"), (30.0, 0.0, 500.0), poi="s", free=("s", "t", "b"),
                       constraints={"t": 1.0, "b": 50.0})  # fmt: skip


def test_fisher_equals_hessian_of_the_asimov_nll():
    hessian = jax.hessian(asimov_nll(shape_model, SHAPE))(SHAPE.theta0)
    np.testing.assert_allclose(fisher_information(shape_model, SHAPE), hessian, rtol=1e-10,
                               atol=1e-14)  # fmt: skip


def test_fisher_matches_closed_form_jacobian():
    theta0 = SHAPE.theta0
    nu = shape_model(theta0)
    jacobian = np.stack(
        [np.array([0.6, 0.3, 0.1]), 500.0 * np.array([0.05, 0.0, -0.05]),
         np.array([0.2, 0.3, 0.5])], axis=1,
    )  # fmt: skip
    expected = jacobian.T @ np.diag(1 / np.asarray(nu)) @ jacobian + np.diag([0, 1, 1 / 2500])
    np.testing.assert_allclose(fisher_information(shape_model, SHAPE), expected, rtol=1e-12)


def test_poi_variance_is_the_free_block_inverse_and_fixing_parameters_helps():
    full = float(poi_variance(shape_model, SHAPE))
    fisher = fisher_information(shape_model, SHAPE)
    assert full == pytest.approx(float(covariance(fisher, SHAPE)[0, 0]), rel=1e-12)
    fixed = InferenceSetup(SHAPE.names, SHAPE.nominal, poi="s", free=("s",))
    assert float(poi_variance(shape_model, fixed)) < full


def test_poi_variance_gradient_matches_finite_differences():
    def variance(scale):
        return poi_variance(lambda theta: shape_model(theta) * scale, SHAPE)

    grad = jax.grad(variance)(1.3)
    h = 1e-5
    numeric = (variance(1.3 + h) - variance(1.3 - h)) / (2 * h)
    assert float(grad) == pytest.approx(float(numeric), rel=1e-7)


def test_poisson_nll_handles_empty_bins():
    assert float(poisson_nll(jnp.array([2.0, 0.0]), jnp.array([1.0, 0.0]))) == pytest.approx(
        2.0 - np.log(2.0)
    )
    assert np.isinf(float(poisson_nll(jnp.array([0.0]), jnp.array([1.0]))))


def test_profile_of_large_counts_is_the_gaussian_width():
    s, b, sigma_b = 1000.0, 10_000.0, 300.0
    setup = InferenceSetup(("s", "b"), (s, b), poi="s", free=("s", "b"), constraints={"b": sigma_b})
    width = np.sqrt(s + b + sigma_b**2)
    grid = s + np.linspace(-2.0, 2.0, 81) * width
    delta = np.asarray(profile_nll(counting, setup, grid))
    assert delta[40] == pytest.approx(0.0, abs=1e-9)
    # the constrained Poisson profile is nearly quadratic at these counts
    np.testing.assert_allclose(delta, 0.5 * ((grid - s) / width) ** 2, rtol=0.02, atol=1e-6)
    assert interval_half_width(grid, delta) == pytest.approx(width, rel=1e-3)


def test_profile_without_nuisances_is_the_nll_itself():
    setup = InferenceSetup(("s", "b"), (20.0, 100.0), poi="s", free=("s",))
    grid = np.linspace(5.0, 40.0, 8)
    nll = asimov_nll(counting, setup)
    expected = [nll(jnp.array([v, 100.0])) - nll(setup.theta0) for v in grid]
    np.testing.assert_allclose(profile_nll(counting, setup, grid), expected, rtol=1e-12)


def test_interval_half_width_interpolates_and_reports_missing_crossings():
    x = np.linspace(-3, 3, 61)
    assert interval_half_width(x, 0.5 * x**2) == pytest.approx(1.0, abs=2e-3)
    assert np.isnan(interval_half_width(x, 0.01 * x**2))
    with pytest.raises(ValueError, match="increase"):
        interval_half_width(x[::-1], 0.5 * x**2)
    with pytest.raises(ValueError, match="n >= 3"):
        interval_half_width(x[:2], x[:2])


def test_template_shapes_interpolate_through_templates_with_continuous_slope():
    nominal = jnp.array([0.5, 0.3, 0.2])
    up = jnp.array([[0.55, 0.28, 0.17]])
    down = jnp.array([[0.43, 0.33, 0.24]])
    shapes = TemplateShapes(nominal, up, down, jnp.array([0.2]))
    np.testing.assert_allclose(shapes(jnp.array([0.0])), nominal, rtol=1e-15)
    np.testing.assert_allclose(shapes(jnp.array([0.2])), up[0], rtol=1e-14)
    np.testing.assert_allclose(shapes(jnp.array([-0.2])), down[0], rtol=1e-14)
    slope = jax.jacfwd(shapes)(jnp.array([0.0]))[:, 0]
    np.testing.assert_allclose(slope, (up[0] - down[0]) / 0.4, rtol=1e-12)
    for edge in (0.2, -0.2):  # value and slope continuous where the pieces meet
        eps = 1e-7
        inner, outer = jnp.array([edge * (1 - eps)]), jnp.array([edge * (1 + eps)])
        np.testing.assert_allclose(shapes(inner), shapes(outer), atol=1e-7)
        np.testing.assert_allclose(jax.jacfwd(shapes)(inner), jax.jacfwd(shapes)(outer),
                                   rtol=1e-5, atol=1e-9)  # fmt: skip
    assert float(jnp.sum(shapes(jnp.array([0.7])))) == pytest.approx(1.0, abs=1e-12)


def test_template_shapes_reject_mismatched_templates():
    with pytest.raises(ValueError, match="up and down"):
        TemplateShapes(jnp.ones(3), jnp.ones((1, 3)), jnp.ones((1, 2)), jnp.ones(1))
    with pytest.raises(ValueError, match="step"):
        TemplateShapes(jnp.ones(3), jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.ones(1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"free": ("s", "q")}, "not parameters"),
        ({"free": ("b",)}, "parameter of interest"),
        ({"constraints": {"b": 1.0}, "free": ("s",)}, "only free parameters"),
        ({"constraints": {"b": 0.0}}, "width"),
        ({"nominal": (1.0,)}, "one length"),
        ({"nominal": (1.0, np.nan)}, "finite"),
        ({"names": ("s", "s")}, "distinct"),
    ],
)
def test_setup_rejects_bad_input(kwargs, match):
    arguments = {"names": ("s", "b"), "nominal": (1.0, 2.0), "poi": "s", "free": ("s", "b")}
    with pytest.raises(ValueError, match=match):
        InferenceSetup(**(arguments | kwargs))
