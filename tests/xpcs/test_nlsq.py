"""Least-squares fits: the projection of contrast/offset, normal equations, recovery, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffdesign  # noqa: F401  (float64)
from diffdesign.xpcs import (
    LAMINAR_PARAMETERS,
    SCALINGS,
    AveragedScaling,
    ConstantScaling,
    IndividualScaling,
    XpcsData,
    fit_nlsq,
    make_problem,
    pack,
    quantile_scaling,
    residuals,
    scaling_from_name,
    synthetic_c2,
)
from diffdesign.xpcs.likelihood import chi_squared, normal_equations
from diffdesign.xpcs.scaling import scaling_statistics, solve_scalings, with_scalings

from .test_homodyne_parity import DATA as REFERENCE

STATIC_TRUTH = {"D0": 3000.0, "alpha": -0.6, "D_offset": 20.0}
#: Laminar flow where diffusion and shear both decay within the window (the packaged example).
LAMINAR_TRUTH = {
    "D0": 50000.0,
    "alpha": -0.2,
    "D_offset": 100.0,
    "gamma_dot_t0": 0.002,
    "beta": -0.2,
    "gamma_dot_t_offset": 1e-4,
    "phi0": 10.0,
}
BOX = (0.0, 1.0, 0.5, 1.5)


def _data(truth, n_t, dt, phi, contrast, offset, noise=0.01, seed=1):
    t = dt * np.arange(n_t)
    c2 = synthetic_c2(jax.random.key(seed), truth, t, phi, 0.0054, 2e6, contrast, offset, noise)
    return XpcsData(c2, t, phi, 0.0054, 2e6, noise)


@pytest.fixture(scope="module")
def static_data():
    return _data(STATIC_TRUTH, 60, 0.1, np.array([0.0]), 0.3, 1.0)


@pytest.fixture(scope="module")
def laminar_data():
    return _data(LAMINAR_TRUTH, 50, 0.04, np.array([-60.0, 0.0, 60.0]), [0.28, 0.3, 0.32], 1.0)


def test_projected_scalings_are_the_least_squares_solution(laminar_data):
    """Interior: the per-angle 2 x 2 solve equals numpy's lstsq; the profiled chi^2 equals
    the residuals' chi^2 at the projected vector."""
    problem = make_problem(laminar_data, "laminar_flow")
    physical = jnp.asarray([LAMINAR_TRUTH[n] for n in LAMINAR_PARAMETERS]) * 1.05
    stats = scaling_statistics(physical, problem)
    k, o, _ = solve_scalings(stats, BOX)
    from diffdesign.xpcs.likelihood import correlation_shape, unpack

    g = np.asarray(
        correlation_shape(unpack(jnp.concatenate([physical, jnp.ones(6)]), problem)[0], problem)
    )
    pts = problem.points
    for angle in range(3):
        mask = np.asarray(pts.angle) == angle
        design = (
            np.stack([g[mask], np.ones(mask.sum())], axis=1) * np.asarray(pts.weight)[mask, None]
        )
        target = np.asarray(pts.c2)[mask] * np.asarray(pts.weight)[mask]
        (k_ref, o_ref), *_ = np.linalg.lstsq(design, target, rcond=None)
        assert k[angle] == pytest.approx(k_ref, rel=1e-9)
        assert o[angle] == pytest.approx(o_ref, rel=1e-9)
    theta, chi2 = with_scalings(physical, problem, BOX)
    assert float(chi2) == pytest.approx(float(jnp.sum(residuals(theta, problem) ** 2)), rel=1e-9)
    # the chunked accumulation gives the same statistics
    np.testing.assert_allclose(scaling_statistics(physical, problem, 97), stats, rtol=1e-10)


def test_projected_scalings_respect_the_box(static_data):
    """With the box cutting the unconstrained optimum, the projection is the box minimum
    (checked against a fine grid search)."""
    problem = make_problem(static_data, "static")
    physical = jnp.asarray([3000.0, -0.6, 20.0])
    stats = scaling_statistics(physical, problem)
    box = (0.0, 0.25, 1.002, 1.5)  # true contrast 0.3 and offset ~1.0 lie outside
    k, o, chi2 = solve_scalings(stats, box)
    s11, sg, sgg, sc, scg, scc = np.asarray(stats[0])
    ks, os_ = np.meshgrid(np.linspace(0, 0.25, 501), np.linspace(1.002, 1.5, 501))
    grid = scc + ks**2 * sgg + 2 * ks * os_ * sg + os_**2 * s11 - 2 * ks * scg - 2 * os_ * sc
    assert float(chi2[0]) <= grid.min() + 1e-9 * abs(grid.min())
    assert 0.0 <= float(k[0]) <= 0.25 and 1.002 <= float(o[0]) <= 1.5


def test_normal_equations_match_the_jacobian(laminar_data):
    problem = make_problem(laminar_data, "laminar_flow")
    physical = jnp.asarray([LAMINAR_TRUTH[n] for n in LAMINAR_PARAMETERS])
    theta = pack(
        dict(zip(LAMINAR_PARAMETERS, physical, strict=True)), [0.28, 0.3, 0.32], 1.0, problem
    )
    jtj, jtr, chi2 = normal_equations(theta, problem, chunk_size=997)  # with padding
    jac = jax.jacfwd(residuals)(theta, problem)
    r = residuals(theta, problem)
    np.testing.assert_allclose(jtj, jac.T @ jac, rtol=1e-10, atol=1e-12 * float(jnp.abs(jtj).max()))
    np.testing.assert_allclose(jtr, jac.T @ r, rtol=1e-9, atol=1e-10 * float(jnp.abs(jtr).max()))
    assert float(chi2) == pytest.approx(float(r @ r), rel=1e-12)
    assert float(chi_squared(theta, problem, 997)) == pytest.approx(float(r @ r), rel=1e-12)


@pytest.fixture(scope="module")
def static_fits(static_data):
    return {
        solver: fit_nlsq(
            static_data,
            "static",
            initial={"D0": 5000.0, "alpha": -0.3, "D_offset": 10.0},
            solver=solver,
            n_starts=8,
        )
        for solver in ("normal-equations", "optimistix")
    }


def test_static_recovery_and_solvers_agree(static_fits):
    fit = static_fits["normal-equations"]
    assert bool(fit.converged)
    values, std = fit.values(), dict(zip(fit.names, np.asarray(fit.std), strict=True))
    truth = {**STATIC_TRUTH, "contrast[0]": 0.3, "offset[0]": 1.0}
    for name, true in truth.items():
        assert abs(values[name] - true) < 3 * std[name], name
    assert float(fit.reduced_chi2) == pytest.approx(1.0, abs=0.05)  # 1770 points: +-0.034
    other = static_fits["optimistix"]
    assert float(other.chi2) == pytest.approx(float(fit.chi2), abs=0.1)
    # the same minimum: parameters within a small fraction of their standard errors
    assert np.all(np.abs(np.asarray(other.x - fit.x)) < 0.05 * np.asarray(fit.std))


def test_a_good_fit_says_converged_and_nothing_else(static_fits):
    fit = static_fits["normal-equations"]
    assert fit.status == "converged" and fit.message == ""
    assert fit.to_json()["status"] == "converged"
    assert 1.0 <= fit.condition_number < 1e3
    assert np.linalg.norm(np.asarray(fit.weakest_direction)) == pytest.approx(1.0, abs=1e-12)


def test_a_fit_that_stops_early_or_fits_badly_says_so(static_data):
    """Stopped at max_steps: status max_steps, the limit named; noise sigma 10 times too
    small (chi2/dof ~ 100): poor_fit; never "converged" alone."""
    early = fit_nlsq(static_data, "static", max_steps=1, n_starts=1,
                     initial={"D0": 300.0, "alpha": 0.5, "D_offset": 0.0})  # fmt: skip
    assert not bool(early.converged)
    assert early.status == "max_steps" and "max_steps = 1" in early.message
    wrong_sigma = XpcsData(static_data.c2, static_data.t, static_data.phi, static_data.q,
                           static_data.L, 0.001)  # fmt: skip
    poor = fit_nlsq(wrong_sigma, "static", n_starts=4)
    assert float(poor.reduced_chi2) == pytest.approx(100.0, rel=0.1)
    assert (
        poor.status == "poor_fit"
        and f"chi2/dof = {float(poor.reduced_chi2):.3g} > 2" in poor.message
    )


def test_standard_errors_are_the_inverse_fisher_matrix(static_fits, static_data):
    fit = static_fits["normal-equations"]
    problem = make_problem(static_data, "static")
    jac = np.asarray(jax.jacfwd(residuals)(fit.x, problem))
    covariance = np.linalg.inv(jac.T @ jac)
    np.testing.assert_allclose(fit.std, np.sqrt(np.diag(covariance)), rtol=1e-6)
    np.testing.assert_allclose(fit.covariance, covariance, rtol=1e-5, atol=1e-12)


def test_laminar_recovery(laminar_data):
    fit = fit_nlsq(laminar_data, "laminar_flow", n_starts=16)
    values, std = fit.values(), dict(zip(fit.names, np.asarray(fit.std), strict=True))
    truth = {**LAMINAR_TRUTH, "contrast[0]": 0.28, "contrast[1]": 0.3, "contrast[2]": 0.32}
    for name, true in truth.items():
        assert abs(values[name] - true) < 3.5 * std[name], (name, values[name], std[name])
    assert float(fit.reduced_chi2) == pytest.approx(1.0, abs=0.05)


def test_averaged_and_constant_scalings(laminar_data):
    averaged = fit_nlsq(laminar_data, "laminar_flow", scaling=AveragedScaling(), n_starts=1)
    assert averaged.names[-2:] == ("contrast", "offset") and len(averaged.names) == 9
    assert averaged.scaling == "averaged"  # the results file keeps homodyne's name
    constant = make_problem(laminar_data, "laminar_flow", scaling=ConstantScaling())
    assert constant.names == LAMINAR_PARAMETERS
    contrast, offset = quantile_scaling(laminar_data)
    np.testing.assert_array_equal(constant.fixed_contrast, contrast)
    np.testing.assert_array_equal(constant.fixed_offset, offset)


def test_quantile_scaling_matches_homodyne():
    """homodyne's "constant" per-angle estimate on the same matrices (its fixture)."""
    data = XpcsData(REFERENCE["quantile/c2"], REFERENCE["quantile/t"], REFERENCE["quantile/phi"],
                    float(REFERENCE["quantile/q"]), float(REFERENCE["quantile/L"]), 0.01)  # fmt: skip
    contrast, offset = quantile_scaling(
        data,
        tuple(REFERENCE["quantile/contrast_bounds"]),
        tuple(REFERENCE["quantile/offset_bounds"]),
    )
    np.testing.assert_allclose(contrast, REFERENCE["quantile/contrast"], rtol=1e-12)
    np.testing.assert_allclose(offset, REFERENCE["quantile/offset"], rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"solver": "lm"}, "solver must be one of"),
        ({"n_starts": 0}, "n_starts must be a positive integer"),
        ({"initial": {"D0": -5.0}}, "initial\\['D0'\\] = -5.0 lies outside"),
        ({"initial": {"gamma_dot_t0": 0.1}}, "unknown parameters \\['gamma_dot_t0'\\]"),
        ({"bounds": {"D0": (10.0, 1.0)}}, "bounds\\['D0'\\] must be finite with lower < upper"),
        ({"bounds": {"tau": (0.0, 1.0)}}, "unknown parameter 'tau'"),
        ({"integral": "simpson"}, "integral must be one of"),
    ],
)
def test_bad_input_is_named(static_data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_nlsq(static_data, "static", **kwargs)


def test_scalings_are_objects_named_once(static_data):
    assert SCALINGS == {"individual": IndividualScaling(), "averaged": AveragedScaling(),
                        "constant": ConstantScaling()}  # fmt: skip
    assert scaling_from_name("averaged") == AveragedScaling()
    with pytest.raises(ValueError, match=r"scaling must be one of \['individual', 'averaged',"):
        scaling_from_name("auto")
    with pytest.raises(TypeError, match="scaling must be a Scaling"):
        fit_nlsq(static_data, "static", scaling="averaged")


def test_bad_mode_is_named(static_data):
    with pytest.raises(ValueError, match="mode must be one of"):
        fit_nlsq(static_data, "flow")
