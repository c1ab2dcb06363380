"""ARES offset calibration: exact recovery, honest uncertainties, Cheetah as the machine."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.beamline import ares
from diffdesign.beamline.ares import calibration
from diffdesign.beamline.ares.calibration import (
    LeastSquares,
    Nuts,
    calibrate_offsets,
    load_offsets,
    save_offsets,
)
from diffdesign.beamline.ares.experiment_design import (
    cramer_rao_std,
    design_calibration_settings,
    random_settings,
    rms_cramer_rao,
)

from .cheetah_helpers import N
from .test_ares import cheetah_ares, cheetah_beam

SEED_OFFSETS = np.array([[0.0, 200e-6], [100e-6, -300e-6], [-100e-6, 150e-6]])
INCOMING = ares.incoming_beam(sigma_y=100e-6)


def settings_for(rng, n=15):
    return rng.uniform(ares.SETTING_LOWER, ares.SETTING_UPPER, (n, 5))


def test_noise_free_recovery_of_random_offsets(rng):
    for _ in range(5):
        truth = rng.uniform(-400e-6, 400e-6, (3, 2))
        settings = settings_for(rng)
        result = calibrate_offsets(
            settings, ares.screen_beam(settings, truth, INCOMING), incoming_beam=INCOMING
        )
        assert result.converged
        np.testing.assert_allclose(result.offsets, truth, atol=1e-7)  # < 0.1 um
        assert not np.any(result.at_bound)
        assert result.dof == 15 * 4 - 6


def test_errors_follow_cramer_rao_and_intervals_cover(rng):
    """400 noisy repetitions: RMS error ~ the Fisher bound, 95% intervals cover ~95%."""
    settings = jnp.asarray(settings_for(rng))
    truth = jnp.asarray(SEED_OFFSETS)
    clean = ares.screen_beam(settings, truth, INCOMING)
    noise = {k: 1e-5 for k in ares.OBSERVABLES}
    sigmas = {k: jnp.full(15, 1e-5) for k in ares.OBSERVABLES}

    def one(key):
        keys = jax.random.split(key, 4)
        measured = {
            k: clean[k] + 1e-5 * jax.random.normal(kk, (15,))
            for k, kk in zip(ares.OBSERVABLES, keys, strict=True)
        }
        fit = calibration._least_squares(settings, measured, sigmas, INCOMING, jnp.zeros(6), 5e-4)
        return fit.x.reshape(3, 2), fit.std.reshape(3, 2)

    estimates, stds = jax.vmap(one)(jax.random.split(jax.random.key(7), 400))
    bound = cramer_rao_std(settings, noise, INCOMING)
    np.testing.assert_allclose(stds[0], bound, rtol=1e-6)  # reported std is the Fisher bound
    rms_error = jnp.sqrt(jnp.mean((estimates - truth[None]) ** 2, axis=0))
    np.testing.assert_allclose(rms_error, bound, rtol=0.15)  # 400 draws: ~3.5% sampling error
    coverage = float(jnp.mean(jnp.abs(estimates - truth[None]) <= 1.96 * stds))
    assert 0.93 <= coverage <= 0.97, coverage  # 2400 intervals: binomial sd ~0.45%


def test_cheetah_as_the_machine(rng):
    """Screen data made by Cheetah with misalignments set on its quadrupoles."""
    truth = rng.uniform(-300e-6, 300e-6, (3, 2))
    settings = settings_for(rng)
    out = cheetah_ares(settings, np.broadcast_to(truth, (15, 3, 2))).track(
        cheetah_beam(sigma_y=1e-4)
    )
    measured = {k: N(getattr(out, k)) for k in ares.OBSERVABLES}
    result = calibrate_offsets(settings, measured, incoming_beam=INCOMING)
    np.testing.assert_allclose(result.offsets, truth, atol=1e-7)


def test_bounds_are_never_exceeded(rng):
    truth = np.array([[700e-6, -650e-6], [100e-6, 0.0], [0.0, -900e-6]])
    settings = settings_for(rng)
    result = calibrate_offsets(
        settings, ares.screen_beam(settings, truth, INCOMING), incoming_beam=INCOMING
    )
    assert np.all(np.abs(result.offsets) <= 500e-6)
    assert result.at_bound[0, 0] and result.at_bound[2, 1]


@pytest.mark.slow  # ~32 s on 2 cores: in CI's second stage (-m slow)
def test_nuts_posterior_agrees_with_least_squares(rng):
    settings = settings_for(rng, 10)
    clean = ares.screen_beam(settings, SEED_OFFSETS, INCOMING)
    measured = {k: v + rng.normal(0, 1e-5, 10) for k, v in clean.items()}
    lsq = calibrate_offsets(settings, measured, incoming_beam=INCOMING)
    nuts = calibrate_offsets(
        settings,
        measured,
        incoming_beam=INCOMING,
        method=Nuts(num_warmup=200, num_samples=300, num_chains=1, key=jax.random.key(1)),
    )
    assert "offsets" in nuts.posterior.posterior
    np.testing.assert_allclose(nuts.offsets, lsq.offsets, atol=0.3 * float(lsq.std.max()))
    np.testing.assert_allclose(nuts.std, lsq.std, rtol=0.25)


def test_d_optimal_design_beats_random_settings():
    settings, _ = design_calibration_settings(
        4, jax.random.key(0), incoming=INCOMING, num_starts=4, steps=150
    )
    assert settings.shape == (4, 5)
    settings = np.asarray(settings)
    assert np.all(settings >= ares.SETTING_LOWER) and np.all(settings <= ares.SETTING_UPPER)
    random_bounds = [
        float(rms_cramer_rao(random_settings(4, jax.random.key(i)), incoming=INCOMING))
        for i in range(10)
    ]
    assert float(rms_cramer_rao(settings, incoming=INCOMING)) < np.median(random_bounds)


def test_offsets_file_round_trip_and_validation(tmp_path, rng):
    settings = settings_for(rng)
    result = calibrate_offsets(
        settings, ares.screen_beam(settings, SEED_OFFSETS, INCOMING), incoming_beam=INCOMING
    )
    path = save_offsets(result, tmp_path / "offsets.json")
    offsets, _ = load_offsets(path)
    np.testing.assert_allclose(offsets, result.offsets, rtol=1e-15)
    (tmp_path / "bad.json").write_text('{"offsets_m": [[1, 2]]}')
    with pytest.raises(ValueError, match=r"must have shape \(3, 2\); got \(1, 2\)"):
        load_offsets(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read offsets"):
        load_offsets(tmp_path / "broken.json")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s, m, kw: (s[:, :4], m, kw), r"settings must have shape \(n, 5\)"),
        (
            lambda s, m, kw: (s * 2, m, kw),
            r"settings\[:, 0\] \(AREAMQZM1.k1\) must lie in \[-30.0, 30.0\]",
        ),
        (
            lambda s, m, kw: (s, m | {"mu_x": np.full(15, np.nan)}, kw),
            r"measurements\['mu_x'\] must be finite",
        ),
        (
            lambda s, m, kw: (s, {k: m[k] for k in ("mu_x", "mu_y")}, kw),
            r"measurements lack \['sigma_x', 'sigma_y'\]",
        ),
        (
            lambda s, m, kw: (s, m | {"sigma_y": np.ones(14)}, kw),
            r"measurements\['sigma_y'\] must have shape \(15,\)",
        ),
        (lambda s, m, kw: (s, m, {"noise": {"mu_x": 0.0}}), r"noise\['mu_x'\] must be > 0 m"),
        (lambda s, m, kw: (s, m, {"noise": {"size": 1.0}}), r"noise keys must be among"),
        (lambda s, m, kw: (s, m, {"bound": -1.0}), "bound must lie in"),
    ],
)
def test_bad_input_is_named(change, match, rng):
    settings = settings_for(rng)
    measured = {k: np.asarray(v) for k, v in ares.screen_beam(settings, SEED_OFFSETS).items()}
    s, m, kw = change(settings, measured, {})
    with pytest.raises(ValueError, match=match):
        calibrate_offsets(s, m, **kw)


def test_too_few_settings_and_bad_initial_offsets_are_named(rng):
    settings = settings_for(rng, 2)
    measured = ares.screen_beam(settings, SEED_OFFSETS)
    with pytest.raises(
        ValueError, match=r"settings must have shape \(n, 5\) with n >= 3; got \(2, 5\)"
    ):
        calibrate_offsets(settings, measured)
    settings = settings_for(rng, 4)
    measured = ares.screen_beam(settings, SEED_OFFSETS)
    with pytest.raises(ValueError, match=r"initial_offsets must have shape \(3, 2\)"):
        calibrate_offsets(settings, measured, method=LeastSquares(initial_offsets=np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"initial_offsets must lie in"):
        calibrate_offsets(settings, measured, method=LeastSquares(initial_offsets=np.ones((3, 2))))


def test_method_is_an_object_with_its_own_settings():
    with pytest.raises(TypeError, match=r"method must be a CalibrationMethod.*got 'nuts'"):
        calibrate_offsets(np.zeros((3, 5)), {}, method="nuts")
    with pytest.raises(ValueError, match="Nuts: num_samples must be an integer >= 1"):
        Nuts(num_samples=0)


def test_undetermined_offsets_are_saved_as_null(tmp_path, rng):
    """Three settings with equal strengths cannot separate the offsets: std is infinite."""
    settings = np.tile(settings_for(rng, 1), (3, 1))
    result = calibrate_offsets(
        settings, ares.screen_beam(settings, SEED_OFFSETS, INCOMING), incoming_beam=INCOMING
    )
    assert np.any(np.isinf(result.std))
    path = save_offsets(result, tmp_path / "offsets.json")
    _, std = load_offsets(path)
    assert np.any(np.isinf(std))
