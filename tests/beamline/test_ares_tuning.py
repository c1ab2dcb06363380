"""Gradient tuning of the ARES magnets through the model."""

import jax
import numpy as np
import pytest

from diffdesign.beamline import ares
from diffdesign.beamline.ares.tuning import simulated_machine, tune_with_gradients

TRUE = np.array([[0.0, 200e-6], [100e-6, -300e-6], [-100e-6, 150e-6]])
INCOMING = ares.incoming_beam(sigma_y=100e-6)


def test_gradient_tuning_finds_a_small_centred_beam():
    result = tune_with_gradients(
        TRUE, jax.random.key(0), incoming=INCOMING, num_starts=16, steps=300
    )
    settings = np.asarray(result.settings)
    assert np.all(settings >= ares.SETTING_LOWER) and np.all(settings <= ares.SETTING_UPPER)
    machine = simulated_machine(TRUE, INCOMING)
    achieved = float(ares.mae(machine(settings)))
    np.testing.assert_allclose(achieved, float(result.predicted), rtol=1e-10)
    # the untuned beam is ~0.1-0.3 mm; tuning reaches a few micrometres
    assert achieved < 2e-5
    assert np.all(np.diff(np.minimum.accumulate(np.asarray(result.history))) <= 0)


def test_gradient_tuning_reaches_an_arbitrary_target():
    target = {"mu_x": 2e-4, "sigma_x": 3e-4, "mu_y": -1e-4, "sigma_y": 1.5e-4}
    result = tune_with_gradients(
        TRUE, jax.random.key(1), target=target, incoming=INCOMING, num_starts=16, steps=400
    )
    beam = ares.screen_beam(result.settings, TRUE, INCOMING)
    for name, value in target.items():
        np.testing.assert_allclose(beam[name], value, atol=5e-6)


def test_simulated_machine_noise_and_validation():
    machine = simulated_machine(TRUE, INCOMING, noise=1e-5, key=jax.random.key(3))
    settings = np.array([10.0, -10.0, 0.0, 10.0, 0.0])
    a, b = machine(settings), machine(settings + 1e-3)
    assert a == machine(settings)  # the same point, the same draw (resumable studies)
    assert a["mu_x"] - b["mu_x"] != 0.0
    clean = ares.screen_beam(settings, TRUE, INCOMING)
    assert abs(a["mu_x"] - float(clean["mu_x"])) < 6e-5
    with pytest.raises(ValueError, match=r"settings must have shape \(\.\.\., 5\)"):
        machine(np.zeros(4))
    with pytest.raises(ValueError, match="offsets must be finite"):
        tune_with_gradients(np.full((3, 2), np.nan), jax.random.key(0))
