"""The NumPy camera readout (physics vs derived figures, bad input, subprocess path) and
the learned screen model trained on it (gradients, agreement with the black box)."""

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.beamline.ares import camera
from diffdesign.beamline.ares.screens import SENSOR_PIXELS, TODAY_RESOLUTION
from diffdesign.surrogates import SubprocessSimulator, run_simulation
from experiments.joint import screen_surrogate

R = TODAY_RESOLUTION
SERVER = Path(screen_surrogate.__file__).with_name("_camera_server.py")


def beams(n, mu_x, sigma_x, mu_y, sigma_y):
    return {
        k: np.full(n, v)
        for k, v in {"mu_x": mu_x, "sigma_x": sigma_x, "mu_y": mu_y, "sigma_y": sigma_y}.items()
    }


def test_well_resolved_beam_is_read_without_bias_and_with_the_expected_scatter():
    n, sigma = 4000, 150e-6
    read = camera.read_screen(beams(n, 3e-4, sigma, -2e-4, sigma), R, seed=1)
    blurred = sigma**2 + R**2
    std_mu = np.sqrt(camera.CENTROID_JITTER**2 + blurred / camera.PHOTOELECTRONS)
    # sizes: 2 % jitter (+ 2 um floor) and photon noise of the size, and pixel binning r^2/12
    std_sigma = np.sqrt(
        camera.SIZE_FLOOR**2
        + (camera.SIZE_JITTER * sigma) ** 2
        + blurred**2 / (2 * camera.PHOTOELECTRONS * sigma**2)
    )
    expected_sigma = np.sqrt(sigma**2 + R**2 / 12)
    for plane, mu in (("x", 3e-4), ("y", -2e-4)):
        measured_mu, measured_sigma = read[f"mu_{plane}"], read[f"sigma_{plane}"]
        assert abs(measured_mu.mean() - mu) < 4 * std_mu / np.sqrt(n)
        assert abs(measured_sigma.mean() - expected_sigma) < 4 * std_sigma / np.sqrt(n)
        assert measured_mu.std() == pytest.approx(std_mu, rel=0.1)
        assert measured_sigma.std() == pytest.approx(std_sigma, rel=0.1)


def clipped_size(sigma, resolution):
    """Measured size of a saturated Gaussian: with peak P and saturation level S (counts
    per pixel) and L = ln(P / S), a 2-D Gaussian clipped at S has the rms size
    sigma_b sqrt(1 + L^2 / (2 (1 + L))) per axis (continuous integral); pixel binning adds
    r^2 / 12 and the deconvolution subtracts r^2."""
    blurred = sigma**2 + resolution**2
    peak = camera.PHOTOELECTRONS * camera.GAIN * resolution**2 / (2 * np.pi * blurred)
    saturation = camera.ADC_MAX - camera.PEDESTAL
    log_ratio = np.log(peak / saturation)
    observed = blurred * (1 + log_ratio**2 / (2 * (1 + log_ratio))) + resolution**2 / 12
    return np.sqrt(observed - resolution**2)


def test_focused_beam_saturates_and_reads_large_by_the_derived_figure():
    sigma = 20e-6
    read = camera.read_screen(beams(2000, 0.0, sigma, 1e-4, sigma), R, seed=2)
    expected = clipped_size(sigma, R)
    assert expected / sigma > 1.25  # the focused beam reads ~30 % large
    for plane in "xy":
        assert read[f"sigma_{plane}"].mean() == pytest.approx(expected, rel=0.04)
        assert abs(read[f"mu_{plane}"].mean() - (0.0 if plane == "x" else 1e-4)) < 1e-6
    # a 100 um beam stays far below saturation: peak ~ 55 photoelectrons (1100 counts)
    peak = camera.PHOTOELECTRONS * R**2 / (2 * np.pi * (100e-6**2 + R**2))
    assert camera.GAIN * peak < 0.5 * (camera.ADC_MAX - camera.PEDESTAL)
    big = camera.read_screen(beams(1000, 0.0, 100e-6, 0.0, 100e-6), R, seed=3)
    assert big["sigma_x"].mean() == pytest.approx(np.sqrt(100e-6**2 + R**2 / 12), rel=0.005)


def test_beam_off_the_field_of_view_reads_the_documented_fallback():
    half_x, half_y = 0.5 * SENSOR_PIXELS[0] * R, 0.5 * SENSOR_PIXELS[1] * R
    read = camera.read_screen(beams(500, 2 * half_x, 50e-6, 0.0, 50e-6), R, seed=4)
    fallback = (read["mu_x"] == 0) & (read["sigma_x"] == half_x) & (read["sigma_y"] == half_y)
    assert fallback.mean() > 0.9  # the rest: a dark pixel above threshold (0.024 per image)
    assert all(np.all(np.isfinite(v)) for v in read.values())


def test_every_output_is_finite_over_the_design_range_and_fast_enough():
    x = camera.sample_inputs(10_000, 5)
    psi = camera.sample_resolutions(10_000, 6)
    y = camera.simulate(psi, x, 7)
    assert y.shape == (10_000, 4) and np.all(np.isfinite(y)) and np.all(y[:, [1, 3]] >= 0)
    # same seed, same shots
    np.testing.assert_array_equal(
        camera.simulate(psi[:100], x[:100], 7), camera.simulate(psi[:100], x[:100], 7)
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mu_x": np.nan}, r"mu_x must be finite in \[-0.05, 0.05\] m"),
        ({"sigma_y": -1e-4}, r"sigma_y must be finite in \(0, 0.01\] m"),
        ({"sigma_x": 0.0}, r"sigma_x must be finite in \(0, 0.01\] m"),
        ({"resolution": 0.0}, r"resolution must lie in \[2e-06, 0.0001\] m"),
        ({"resolution": -1e-5}, r"resolution must lie in"),
        ({"mu_y": np.zeros(3)}, r"beam\['mu_y'\] must have the shape"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_range(change, message):
    beam = {
        "mu_x": np.zeros(2),
        "sigma_x": np.full(2, 1e-4),
        "mu_y": np.zeros(2),
        "sigma_y": np.full(2, 1e-4),
    }
    resolution = change.pop("resolution", R)
    beam.update({k: np.full(2, v) if np.ndim(v) == 0 else v for k, v in change.items()})
    with pytest.raises(ValueError, match=message):
        camera.read_screen(beam, resolution, seed=0)


def test_simulate_refuses_wrong_shapes():
    with pytest.raises(ValueError, match=r"psi must have shape \(n, 1\)"):
        camera.simulate(np.ones((3, 2)), np.ones((3, 4)), 0)
    with pytest.raises(ValueError, match=r"x must have shape \(3, 4\)"):
        camera.simulate(np.full((3, 1), R), np.ones((3, 3)), 0)


def test_subprocess_simulator_equals_the_in_process_result():
    remote = SubprocessSimulator([sys.executable, str(SERVER)], psi_dim=1, x_dim=4, y_dim=4)
    local = screen_surrogate.camera_simulator()
    x = remote.sample_inputs(50, 11)
    np.testing.assert_array_equal(x, local.sample_inputs(50, 11))
    psi = camera.sample_resolutions(50, 12)
    np.testing.assert_array_equal(
        run_simulation(remote, psi, x, 13), run_simulation(local, psi, x, 13)
    )


@pytest.fixture(scope="module")
def screen():
    return screen_surrogate.load_screen_surrogate("ares_screen")


def test_learned_screen_gradients_match_finite_differences(screen):
    beam = {"mu_x": 3e-4, "sigma_x": 1.2e-4, "mu_y": -1e-4, "sigma_y": 8e-5}

    def objective(values, log_r):
        mean, std = screen.reading(dict(zip(beam, values, strict=True)), jnp.exp(log_r))
        return sum(mean[k] for k in beam) / 1e-4 + sum(std[k] for k in beam) / 1e-5

    values, log_r = jnp.asarray(list(beam.values())), jnp.log(R)
    grad_values, grad_r = jax.jit(jax.grad(objective, argnums=(0, 1)))(values, log_r)
    objective = jax.jit(objective)
    for i, step in enumerate((2e-6, 2e-6, 2e-6, 2e-6)):
        shift = jnp.zeros(4).at[i].set(step)
        numeric = (objective(values + shift, log_r) - objective(values - shift, log_r)) / (2 * step)
        assert float(grad_values[i]) == pytest.approx(float(numeric), rel=0.05, abs=0.02 / 1e-4)
    numeric = (objective(values, log_r + 0.02) - objective(values, log_r - 0.02)) / 0.04
    assert float(grad_r) == pytest.approx(float(numeric), rel=0.05, abs=0.05)
    # the mean follows the true beam: d mean(mu_x) / d mu_x ~ 1
    d_mu = jax.jit(jax.grad(lambda m: screen.reading({**beam, "mu_x": m}, R)[0]["mu_x"]))(3e-4)
    assert float(d_mu) == pytest.approx(1.0, abs=0.05)


def test_learned_screen_agrees_with_the_black_box_on_a_well_resolved_beam(screen):
    beam = {"mu_x": 3e-4, "sigma_x": 1.5e-4, "mu_y": -2e-4, "sigma_y": 1e-4}
    mean, std = jax.jit(lambda s, b: s.reading(b, R))(screen, beam)
    shots = camera.read_screen({k: np.full(4000, v) for k, v in beam.items()}, R, seed=8)
    for k in beam:
        scale = np.sqrt(beam[f"sigma_{k[-1]}"] ** 2 + R**2)
        assert abs(float(mean[k]) - shots[k].mean()) < 0.02 * scale, k
        assert float(std[k]) == pytest.approx(shots[k].std(), rel=0.3), k


def test_learned_screen_reads_any_leading_shape_and_vmaps(screen):
    beam = {
        "mu_x": jnp.zeros((2, 3)),
        "sigma_x": jnp.full((2, 3), 1e-4),
        "mu_y": jnp.zeros((2, 3)),
        "sigma_y": jnp.full((2, 3), 2e-4),
    }
    mean, std = jax.jit(lambda s, b: s.reading(b, R))(screen, beam)
    assert mean["mu_x"].shape == std["sigma_y"].shape == (2, 3)
    mapped, _ = jax.jit(jax.vmap(lambda b: screen.reading(b, R)))(beam)
    np.testing.assert_allclose(mapped["sigma_y"], mean["sigma_y"], rtol=1e-5)


@pytest.mark.smoke
def test_smoke_training_writes_a_loadable_artefact(tmp_path):
    import argparse

    args = argparse.Namespace(
        smoke=True, out=str(tmp_path / "a"), seed=1, quiet=True, rows=1000, steps=20, config=None
    )
    summary = screen_surrogate.run(args)
    assert summary.figures["artefact"] == str(tmp_path / "a")
    card = json.loads((tmp_path / "a" / "card.json").read_text())
    assert [c["name"] for c in card["verdict"]["checks"]] == [
        "training loss", "68 % coverage", "95 % coverage", "finite validation"]  # fmt: skip
    loaded = screen_surrogate.load_screen_surrogate(tmp_path / "a")
    mean, std = loaded.reading({"mu_x": 0.0, "sigma_x": 1e-4, "mu_y": 0.0, "sigma_y": 1e-4}, R)
    assert all(np.isfinite(float(v)) for v in [*mean.values(), *std.values()])
