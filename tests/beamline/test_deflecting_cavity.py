"""The transverse deflecting cavity against Cheetah 0.8.4's drift-kick-drift tracking:
particles (horizontal, vertical via tilt, displaced, batched), the first-order map a
ParameterBeam takes, gradients, files and bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffdesign.beamline as bl
from diffdesign.beamline.convert import to_cheetah

from .cheetah_helpers import N, T, assert_round_trips, assert_vector_close, cheetah
from .gradient_helpers import assert_gradients_match_central_differences

latticejson = pytest.importorskip("cheetah.latticejson")

ENERGY = 107e6
MISALIGNMENT = (2e-4, -1e-4)


@eqx.filter_jit
def _track(segment, beam):
    return segment.track(beam)


def _particles(n=64):
    return bl.ParticleBeam.from_parameters(
        n, jax.random.key(2), energy=ENERGY, mu_x=1e-4, sigma_x=1e-4, sigma_px=1e-5,
        sigma_y=2e-4, sigma_py=1e-5, sigma_tau=1e-5, sigma_p=1e-3,
    )  # fmt: skip


def test_particles_track_as_cheetah():
    """Horizontal, vertical (tilt pi/2) and rolled cavities, displaced, at the zero
    crossing, off it and on crest of the deflection, then a batch of voltages."""
    beam = _particles()
    for tilt in (0.0, np.pi / 2, 0.3):
        for phase in (0.0, 0.1, 0.25):
            ours = bl.Segment(
                [bl.TransverseDeflectingCavity(1.0, 1e6, phase, 2.998e9, MISALIGNMENT, tilt)]
            )
            theirs = cheetah.TransverseDeflectingCavity(
                T(1.0), T(1e6), T(phase), T(2.998e9), T(MISALIGNMENT), T(tilt)
            )
            got, expected = _track(ours, beam), theirs.track(to_cheetah(beam))
            assert_vector_close(got.particles, N(expected.particles), rtol=1e-12)
            np.testing.assert_allclose(got.energy, N(expected.energy), rtol=1e-15)
    voltages = jnp.asarray([-2e6, 5e5, 3e6])
    ours = bl.Segment([bl.TransverseDeflectingCavity(0.5, voltages, 0.05, 3e9, MISALIGNMENT)])
    theirs = cheetah.TransverseDeflectingCavity(
        T(0.5), T(voltages), T(0.05), T(3e9), T(MISALIGNMENT)
    )
    got, expected = _track(ours, beam), theirs.track(to_cheetah(beam))
    assert_vector_close(got.particles, N(expected.particles), rtol=1e-12)


def test_vertical_streak_at_the_zero_crossing():
    """Tilt pi/2 streaks y with tau at phase 0 and leaves x alone (a drift in x)."""
    cavity = bl.TransverseDeflectingCavity(1.0, 1e6, 0.0, 3e9, tilt=np.pi / 2)
    r = np.asarray(eqx.filter_jit(lambda c: c.transfer_map(ENERGY))(cavity))
    drift = np.asarray(bl.Drift(1.0).transfer_map(ENERGY))
    np.testing.assert_allclose(r[:2], drift[:2], atol=1e-15)
    assert abs(r[3, 4]) > 1e-2 and abs(r[1, 4]) < 1e-15


def test_parameter_beam_follows_the_first_order_map():
    """A ParameterBeam's mean is where the reference particle goes; a small beam's moments
    equal the particles' to first order."""
    cavity = bl.TransverseDeflectingCavity(1.0, 1e6, 0.1, 2.998e9, MISALIGNMENT, 0.3)
    small = bl.ParticleBeam.from_parameters(
        500, jax.random.key(0), energy=ENERGY, sigma_x=1e-6, sigma_px=1e-8, sigma_y=1e-6,
        sigma_py=1e-8, sigma_tau=1e-8, sigma_p=1e-6,
    )  # fmt: skip
    particles = _track(bl.Segment([cavity]), small)
    moments = _track(bl.Segment([cavity]), small.as_parameter_beam())
    np.testing.assert_allclose(moments.mean, particles.mean, rtol=1e-6, atol=1e-15)
    scale = np.sqrt(np.outer(np.diag(particles.covariance), np.diag(particles.covariance)))
    assert np.max(np.abs(moments.covariance - particles.covariance) / scale) < 1e-4


def test_gradients_match_central_differences(rng):
    """Through the particles' drift-kick-drift, w.r.t. every field (a ParameterBeam's map
    is the Jacobian of the same function)."""
    beam = _particles(8)
    weights = jnp.asarray(rng.normal(size=(8, 7)))

    @jax.jit
    @jax.value_and_grad
    def loss(fields):
        segment = bl.Segment([bl.TransverseDeflectingCavity(**fields)])
        scale = jnp.asarray([1e4, 1e5, 1e4, 1e5, 1e5, 1e3, 0.0])
        return jnp.sum(weights * segment.track(beam).particles * scale[None, :])

    fields = {  # strongly typed, so that the shifted values reuse the compiled program
        "length": 1.0, "voltage": 1e6, "phase": 0.1, "frequency": 2.998e9,
        "misalignment": MISALIGNMENT, "tilt": 0.3,
    }  # fmt: skip
    fields = {k: jnp.asarray(v, dtype=float) for k, v in fields.items()}
    assert_gradients_match_central_differences(loss, fields, rng)


def test_moment_gradients_match_central_differences(rng):
    """A ParameterBeam's map is the Jacobian (autodiff) of the particles' model: its
    gradient w.r.t. every field (a derivative of that Jacobian) against central
    differences, for the mean and the covariance."""
    beam = _particles(8).as_parameter_beam()
    mean_weights = jnp.asarray(rng.normal(size=7)) * jnp.asarray(
        [1e4, 1e5, 1e4, 1e5, 1e5, 1e3, 0.0]
    )
    cov_weights = jnp.asarray(rng.normal(size=(7, 7)))

    @jax.jit
    @jax.value_and_grad
    def loss(fields):
        out = bl.Segment([bl.TransverseDeflectingCavity(**fields)]).track(beam)
        scale = jnp.sqrt(jnp.outer(jnp.diag(beam.cov), jnp.diag(beam.cov))) + 1e-30
        return jnp.vdot(mean_weights, out.mu) + jnp.sum(cov_weights * out.cov / scale)

    fields = {
        "length": 1.0, "voltage": 1e6, "phase": 0.1, "frequency": 2.998e9,
        "misalignment": MISALIGNMENT, "tilt": 0.3,
    }  # fmt: skip
    fields = {k: jnp.asarray(v, dtype=float) for k, v in fields.items()}
    # steps of at least 1e-6 (misalignment 2e-4 m): a step of 2e-9 m is roundoff-bound
    assert_gradients_match_central_differences(loss, fields, rng, smallest=0.1)


def test_file_and_converter_round_trips(tmp_path):
    ours = bl.Segment(
        [bl.Drift(0.3, "D"),
         bl.TransverseDeflectingCavity(1.0, 1e6, 0.1, 2.998e9, MISALIGNMENT, np.pi / 2, "TDC")],
        "line",
    )  # fmt: skip
    theirs = assert_round_trips(ours, tmp_path / "line.json")
    assert theirs.elements[1].tracking_method == "drift_kick_drift"
    beam = _particles()
    assert_vector_close(
        _track(ours, beam).particles, N(theirs.track(to_cheetah(beam)).particles), rtol=1e-12
    )


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: bl.TransverseDeflectingCavity(-0.1, name="T"), r"length must lie in \[0.0, inf\] m; got -0.1 m for element 'T'"),
        (lambda: bl.TransverseDeflectingCavity(1.0, np.nan, name="T"), "voltage must be finite; got nan for element 'T'"),
        (lambda: bl.TransverseDeflectingCavity(1.0, frequency=-1.0, name="T"), r"frequency must lie in \[0.0, inf\] Hz"),
        (lambda: bl.TransverseDeflectingCavity(1.0, tilt=np.inf, name="T"), "tilt must be finite; got inf for element 'T'"),
        (lambda: bl.TransverseDeflectingCavity(1.0, misalignment=(1.0,), name="T"), r"misalignment must have shape \(\.\.\., 2\)"),
    ],
)  # fmt: skip
def test_bad_input_is_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()
