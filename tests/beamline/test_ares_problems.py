"""ARES as design-layer problems: specs, the calibration likelihood, tuning, no retraces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.beamline import ares
from diffdesign.beamline.ares.calibration import DEFAULT_BOUND, whitened_residuals
from diffdesign.beamline.ares.experiment_design import DOptimalProblem, fisher_information
from diffdesign.beamline.ares.problems import (
    CalibrationProblem,
    TuningProblem,
    offsets_spec,
    settings_spec,
    settings_starts,
)
from diffdesign.core import Adam, Box, CosineDecay, run, values
from diffdesign.core.fit import TRACES

TRUE = np.array([[0.0, 200e-6], [100e-6, -300e-6], [-100e-6, 150e-6]])
INCOMING = ares.incoming_beam(sigma_y=100e-6)
KEY = jax.random.key(0)


def calibration_data(seed=0, n=8, noise=1e-5):
    rng = np.random.default_rng(seed)
    settings = rng.uniform(ares.SETTING_LOWER, ares.SETTING_UPPER, (n, 5))
    clean = ares.screen_beam(settings, TRUE, INCOMING)
    measured = {k: np.asarray(v) + rng.normal(0.0, noise, n) for k, v in clean.items()}
    return settings, measured


def test_settings_spec_covers_the_magnet_ranges():
    spec = settings_spec()
    assert spec.value.shape == (5,) and isinstance(spec.transform, Box)
    np.testing.assert_array_equal(spec.lower, ares.SETTING_LOWER)
    np.testing.assert_array_equal(spec.upper, ares.SETTING_UPPER)
    many = settings_spec(np.zeros((7, 5)))
    assert many.value.shape == many.lower.shape == many.upper.shape == (7, 5)
    np.testing.assert_array_equal(many.upper[3], ares.SETTING_UPPER)
    assert spec.label == "settings"


def test_offsets_spec_is_the_prior_box():
    spec = offsets_spec()
    assert spec.value.shape == (3, 2) and isinstance(spec.transform, Box)
    np.testing.assert_array_equal(spec.lower, np.full((3, 2), -DEFAULT_BOUND))
    np.testing.assert_array_equal(spec.upper, np.full((3, 2), DEFAULT_BOUND))
    np.testing.assert_array_equal(offsets_spec(TRUE, bound=1e-3).upper, np.full((3, 2), 1e-3))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: settings_spec(np.zeros(4)), r"ARES settings must have shape \(\.\.\., 5\); got \(4,\)"),
        (lambda: settings_spec([40.0, 0, 0, 0, 0]), r"settings\[0\] = 40 .* lies outside its bounds \[-30, 30\]"),
        (lambda: settings_spec([0, 0, 0.01, 0, 0]), r"settings\[2\] = 0.01 .* outside its bounds \[-0.006, 0.006\]"),
        (lambda: settings_spec(np.zeros(5), step=-1.0), "settings: step must be finite and >= 0"),
        (lambda: offsets_spec(np.zeros((2, 3))), r"ARES offsets must have shape \(3, 2\); got \(2, 3\)"),
        (lambda: offsets_spec(bound=0.0), "offsets bound must be > 0 m; got 0.0"),
        (lambda: offsets_spec(np.full((3, 2), 1e-3)), r"offsets\[0, 0\] = 0.001 m lies outside its bounds \[-0.0005, 0.0005\] m"),
        (lambda: settings_starts(KEY, (4, 3)), r"settings starts need a shape ending in 5; got \(4, 3\)"),
        (lambda: DOptimalProblem(2), "n must be an integer >= 3"),
        (lambda: DOptimalProblem(4, settings=np.zeros((3, 5))), r"settings must have shape \(4, 5\)"),
        (lambda: CalibrationProblem(np.zeros((2, 5)), {}), r"settings must have shape \(n, 5\) with n >= 3"),
        (lambda: TuningProblem(np.zeros((2, 2))), "offsets must have shape"),
    ],
)  # fmt: skip
def test_bad_specs_name_the_field_and_the_range(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_settings_starts_lie_inside_the_ranges():
    starts = settings_starts(KEY, (200, 3, 5))
    assert starts.shape == (200, 3, 5)
    assert np.all(np.abs(np.asarray(starts)) < ares.SETTING_UPPER)
    # Box coordinate u / 2 with u standard normal: the same as the logistic map of u
    u = jax.random.normal(KEY, (200, 3, 5))
    lower, upper = (
        np.broadcast_to(b, (200, 3, 5)) for b in (ares.SETTING_LOWER, ares.SETTING_UPPER)
    )
    logistic = lower + (upper - lower) * jax.nn.sigmoid(u)
    np.testing.assert_allclose(starts, logistic, rtol=1e-12, atol=1e-15)


def test_calibration_problem_is_the_whitened_likelihood():
    settings, measured = calibration_data()
    noise = {"mu_x": 2e-5, "sigma_x": 1e-5, "mu_y": 1e-5, "sigma_y": 3e-5}
    problem = CalibrationProblem(settings, measured, noise, INCOMING)
    assert set(problem.spec) == {"offsets"} and problem.name == "calibration"
    offsets = jnp.asarray(TRUE) + 20e-6
    sigmas = {k: jnp.full(8, v) for k, v in noise.items()}
    expected = whitened_residuals(offsets, jnp.asarray(settings), measured, sigmas, INCOMING)
    r = problem.residuals({"offsets": offsets}, KEY)
    assert r.shape == (32,)
    np.testing.assert_allclose(r, expected, rtol=1e-14)
    loss, _ = problem.loss({"offsets": offsets}, KEY)
    np.testing.assert_allclose(loss, 0.5 * jnp.sum(expected**2), rtol=1e-14)

    grad = jax.grad(lambda x: problem.loss({"offsets": x}, KEY)[0])(offsets)
    h = 1e-8  # m; the loss is nearly quadratic in the offsets
    for i in np.ndindex(3, 2):
        step = jnp.zeros((3, 2)).at[i].set(h)
        plus = problem.loss({"offsets": offsets + step}, KEY)[0]
        minus = problem.loss({"offsets": offsets - step}, KEY)[0]
        np.testing.assert_allclose(grad[i], (plus - minus) / (2 * h), rtol=1e-6)
    assert float(jnp.max(jnp.abs(grad))) > 1e5  # 20 um off: a steep, informative gradient


def test_tuning_with_shared_offsets_does_not_move_them():
    settings, measured = calibration_data()
    calibration = CalibrationProblem(settings, measured, incoming=INCOMING)
    tuning = TuningProblem(incoming=INCOMING)
    assert set(tuning.spec) == {"settings", "offsets"}
    params = values((calibration + tuning).spec) | {"offsets": jnp.asarray(TRUE)}
    grads = jax.grad(lambda p: tuning.loss(p, KEY)[0])(params)
    np.testing.assert_array_equal(grads["offsets"], np.zeros((3, 2)))
    assert float(jnp.max(jnp.abs(grads["settings"]))) > 0

    optimiser = Adam(schedule=CosineDecay(40))
    joint = run(calibration + tuning, steps=40, key=KEY, optimiser=optimiser, chunk=40,
                progress=False)  # fmt: skip
    alone = run(calibration, steps=40, key=KEY, optimiser=optimiser, chunk=40, progress=False)
    # the offsets follow the calibration alone; the settings moved
    np.testing.assert_allclose(joint.params["offsets"], alone.params["offsets"], rtol=1e-12)
    assert float(jnp.max(jnp.abs(joint.params["settings"]))) > 0
    assert joint.history[-1]["calibration.loss"] < 0.2 * joint.history[0]["calibration.loss"]


def test_run_reduces_the_mae_without_retracing_on_new_data():
    optimiser = Adam(schedule=CosineDecay(150))

    def tune(offsets, start):
        problem = TuningProblem(offsets, incoming=INCOMING, settings=start)
        result = run(problem, steps=150, key=KEY, optimiser=optimiser, chunk=150, progress=False)
        before = float(ares.mae(ares.screen_beam(start, offsets, INCOMING)))
        after = float(ares.mae(ares.screen_beam(result.params["settings"], offsets, INCOMING)))
        np.testing.assert_allclose(result.history[0]["loss"], before, rtol=1e-12)
        return before, after

    start = np.array([5.0, -5.0, 0.0, 5.0, 0.0])
    before, after = tune(TRUE, start)
    assert after < 0.1 * before, (before, after)
    traces = TRACES["TuningProblem"]
    before, after = tune(0.5 * TRUE, np.array([8.0, -3.0, 1e-3, 2.0, -1e-3]))
    assert after < 0.1 * before, (before, after)
    assert TRACES["TuningProblem"] == traces  # new offsets and start: the same program


def test_d_optimal_problem_is_minus_log_det_fisher():
    settings = np.asarray(settings_starts(KEY, (4, 5)))
    problem = DOptimalProblem(4, incoming=INCOMING, settings=settings)
    loss, aux = problem.loss({"settings": jnp.asarray(settings)}, KEY)
    fisher = fisher_information(jnp.asarray(settings), None, INCOMING)
    np.testing.assert_allclose(-loss, np.linalg.slogdet(np.asarray(fisher))[1], rtol=1e-12)
    np.testing.assert_allclose(aux["log_det"], -loss)
    # equal settings determine no offset: F is singular and the loss is the penalty
    same = jnp.tile(jnp.asarray(settings[:1]), (4, 1))
    assert float(problem.loss({"settings": same}, KEY)[0]) == 1e3
