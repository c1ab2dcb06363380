"""ARES screens with geometry and the profiled design loss (issue 20)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.beamline import ares
from diffdesign.beamline.ares._likelihood import (
    DEFAULT_BOUND,
    whitened_residuals,
)
from diffdesign.beamline.ares.diagnostics import (
    DRIFTS,
    Diagnostics,
    ScreenPlacement,
    today,
    today_screen,
)
from diffdesign.beamline.ares.experiment_design import (
    CalibrationDesign,
    fisher_information,
    offsets_covariance,
)
from diffdesign.beamline.ares.screens import (
    SENSOR_PIXELS,
    TODAY_RESOLUTION,
    IdealisedScreen,
    ScreenModel,
    field_of_view,
    screen_cost,
)
from diffdesign.core import values

SETTINGS = jnp.asarray(
    np.random.default_rng(3).uniform(0.3 * ares.SETTING_LOWER, 0.3 * ares.SETTING_UPPER, (12, 5))
)
OFFSETS = jnp.asarray(np.random.default_rng(4).uniform(-2e-4, 2e-4, (3, 2)))


class ConstantScreen(ScreenModel):
    """Unbiased readings with a fixed scatter everywhere (no field of view)."""

    noise: float = 1e-5

    def reading(self, beam, resolution):
        return dict(beam), {k: jnp.full_like(v, self.noise) for k, v in beam.items()}


def test_today_reads_what_screen_beam_gives():
    moments = today().true_moments(SETTINGS, OFFSETS, ares.incoming_beam())
    reference = ares.screen_beam(SETTINGS, jnp.broadcast_to(OFFSETS, (12, 3, 2)))
    for k in ares.OBSERVABLES:
        np.testing.assert_array_equal(moments[k], reference[k])


def test_a_moved_screen_reads_the_beam_at_its_position():
    """A screen 0.2 m into the last drift sees the beam of the segment cut there: the
    centroid moves by the drift's angle times the missing 0.25 m."""
    beam = ares.incoming_beam()
    full = ares.segment(SETTINGS[0], OFFSETS).track(beam)
    moved = Diagnostics((ScreenPlacement("S", "Drift_AREAMCHM1", 0.2, TODAY_RESOLUTION),))
    near = moved.true_moments(SETTINGS[0], OFFSETS, beam)
    np.testing.assert_allclose(near["mu_x"] + 0.25 * full.mu_px, full.mu_x, rtol=0, atol=1e-15)
    np.testing.assert_allclose(near["mu_y"] + 0.25 * full.mu_py, full.mu_y, rtol=0, atol=1e-15)


def test_default_residuals_equal_those_of_todays_idealised_screen():
    n = SETTINGS.shape[0]
    measured = {k: jnp.full(n, 1e-4) for k in ares.OBSERVABLES}
    noise = {k: jnp.full(n, 7e-6) for k in ares.OBSERVABLES}
    beam = ares.incoming_beam()
    default = whitened_residuals(OFFSETS, SETTINGS, measured, noise, beam)
    with_screen = whitened_residuals(OFFSETS, SETTINGS, measured, noise, beam, today())
    np.testing.assert_array_equal(default, with_screen)


def test_idealised_scatter_follows_its_formula_and_grows_off_the_screen():
    screen = IdealisedScreen()
    r = 20e-6
    beam = {"mu_x": jnp.array([0.0, 0.05]), "sigma_x": jnp.array([3e-4, 3e-4]),
            "mu_y": jnp.array([0.0, 0.0]), "sigma_y": jnp.array([2e-4, 2e-4])}  # fmt: skip
    _, std = screen.reading(beam, r)
    expected = np.sqrt(5e-6**2 + (3e-4**2 + r**2) / 2e4)
    np.testing.assert_allclose(std["mu_x"][0], expected, rtol=1e-9)
    assert float(std["mu_x"][1]) > 1e6 * float(std["mu_x"][0])  # 50 mm off a 6 mm screen
    half_x, half_y = field_of_view(r)
    assert float(half_x) == pytest.approx(0.5 * SENSOR_PIXELS[0] * r)
    assert float(half_y) == pytest.approx(0.5 * SENSOR_PIXELS[1] * r)


def test_cost_of_todays_screen():
    assert float(today().cost()) == pytest.approx(30.0)  # 20 station + 10 optics (kEUR)
    assert float(screen_cost(2 * TODAY_RESOLUTION)) == pytest.approx(22.5)


def test_covariance_without_nuisances_is_the_inverse_fisher_information():
    """With no nuisance and a constant-noise screen, the design covariance is
    (F + 1/B^2)^-1 with F from the existing Fisher information of the offsets."""
    diagnostics = Diagnostics((today_screen(),), ConstantScreen())
    covariance = offsets_covariance(SETTINGS, diagnostics, nuisance=())
    fisher = fisher_information(SETTINGS, {k: 1e-5 for k in ares.OBSERVABLES})
    expected = jnp.linalg.inv(fisher + jnp.eye(6) / DEFAULT_BOUND**2)
    np.testing.assert_allclose(covariance, expected, rtol=1e-8, atol=1e-22)


def test_profiling_the_beam_never_helps():
    diagnostics = Diagnostics((today_screen(),), ConstantScreen())
    fixed = offsets_covariance(SETTINGS, diagnostics, nuisance=())
    profiled = offsets_covariance(SETTINGS, diagnostics)
    assert float(jnp.linalg.eigvalsh(profiled - fixed).min()) > -1e-20


def _rotation_about(s_screen, plane):
    """Offsets of the quadrupoles on a line rotated about a point at s_screen."""
    centres, s = [], 0.0
    for name in ("Drift_AREASOLA1", "Q", "Drift_AREAMQZM1", "Q", "Drift_AREAMQZM2",
                 "C", "Drift_AREAMCVM1", "Q"):  # fmt: skip
        length = {"Q": ares.QUADRUPOLE_LENGTH, "C": ares.CORRECTOR_LENGTH}.get(name)
        length = DRIFTS[name] if length is None else length
        if name == "Q":
            centres.append(s + length / 2)
        s += length
    vector = np.zeros(6)
    vector[plane::2] = np.array(centres) - s_screen
    return vector / np.linalg.norm(vector)


def test_one_screen_cannot_tell_offsets_from_the_beam_angle_a_second_can():
    """With the incoming angles free, quadrupoles and beam on a line rotated about the
    screen read the same at every setting: that direction keeps its prior width; a second
    screen upstream determines it."""
    nuisance = ("mu_x", "mu_px", "mu_y", "mu_py", "sigma_x", "sigma_y")
    one = Diagnostics((today_screen(),), ConstantScreen())
    covariance = np.asarray(offsets_covariance(SETTINGS, one, nuisance=nuisance))
    s_screen = 0.17504 + 3 * ares.QUADRUPOLE_LENGTH + 2 * ares.CORRECTOR_LENGTH + sum(
        DRIFTS[d] for d in ("Drift_AREAMQZM1", "Drift_AREAMQZM2", "Drift_AREAMCVM1",
                            "Drift_AREAMQZM3", "Drift_AREAMCHM1")
    )  # fmt: skip
    values_, vectors = np.linalg.eigh(covariance)
    # the two widest directions are the rotations about the screen in x and in y, limited
    # by the prior only
    widest = vectors[:, -2:]
    for plane in (0, 1):
        direction = _rotation_about(s_screen, plane)
        assert np.linalg.norm(widest.T @ direction) > 0.99
    assert np.sqrt(values_[-2]) > 0.1 * DEFAULT_BOUND
    two = Diagnostics(
        (today_screen(), ScreenPlacement("S0", "Drift_AREAMQZM1", 0.2, TODAY_RESOLUTION)),
        ConstantScreen(),
    )
    covariance_two = np.asarray(offsets_covariance(SETTINGS, two, nuisance=nuisance))
    # 9 um with these settings and 10 um noise, against >= 50 um with one screen
    assert np.sqrt(np.linalg.eigvalsh(covariance_two)[-1]) < 0.02 * DEFAULT_BOUND


@pytest.mark.slow  # ~38 s on 2 cores: in CI's second stage (-m slow)
def test_design_gradient_matches_central_differences():
    problem = CalibrationDesign(np.asarray(SETTINGS[:8]) * 0 + np.asarray(SETTINGS[:8]),
                                Diagnostics((ScreenPlacement("S", "Drift_AREAMCHM1", 0.3,
                                                             25e-6),)),
                                cost_weight=0.01, points=np.zeros((2, 10)))  # fmt: skip
    params = values(problem.spec)
    loss = jax.jit(lambda p: problem.loss(p, None)[0])
    grad = jax.jit(jax.grad(loss))(params)
    for name, index, h in (("positions", (0,), 1e-5), ("resolutions", (0,), 1e-9),
                           ("settings", (2, 0), 1e-4), ("settings", (5, 3), 1e-4)):  # fmt: skip
        up = {**params, name: params[name].at[index].add(h)}
        down = {**params, name: params[name].at[index].add(-h)}
        numeric = (loss(up) - loss(down)) / (2 * h)
        np.testing.assert_allclose(grad[name][index], numeric, rtol=2e-5, atol=1e-9)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ScreenPlacement("S", "Drift_AREAMQZM1", 0.41, 2e-5), r"\[0.05, 0.378\] m"),
        (lambda: ScreenPlacement("S", "Drift_AREAMQZM1", -0.1, 2e-5), r"position must lie"),
        (lambda: ScreenPlacement("S", "AREAMQZM2", 0.1, 2e-5), r"drift must be one of"),
        (lambda: ScreenPlacement("S", "Drift_AREAMCHM1", 0.3, 0.0), r"resolution"),
        (lambda: ScreenPlacement("S", "Drift_AREAMCHM1", 0.3, 1e-3), r"\[2e-06, 0.0001\] m"),
        (lambda: ScreenPlacement("S", "Drift_AREAMCHM1", float("nan"), 2e-5), r"position"),
        (lambda: CalibrationDesign(np.zeros((5, 5))), r"n >= 6"),
        (lambda: CalibrationDesign(np.zeros((8, 5)), free={"magnets"}), r"free must be"),
        (lambda: CalibrationDesign(np.zeros((8, 5)), points=np.zeros((2, 9))), r"\(k, 10\)"),
        (lambda: CalibrationDesign(np.zeros((8, 5)), cost_weight=-1.0), r"cost_weight"),
        (lambda: CalibrationDesign(np.zeros((8, 5)), nuisance=("energy",)), r"nuisance"),
        (lambda: Diagnostics((today_screen(), today_screen())), r"unique"),
    ],
)
def test_bad_geometry_and_design_inputs_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()
