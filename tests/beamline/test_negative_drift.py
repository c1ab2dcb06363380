"""Negative drift lengths: a drift backwards over overlapping elements, as in AT, Elegant,
Bmad and Cheetah. Same formulas as a forward drift, so exact on every tracking path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffdesign.beamline as bl
from diffdesign.beamline.convert import from_cheetah, from_cheetah_beam, to_cheetah

from .cheetah_helpers import N, T, assert_covariance_close, assert_vector_close, cheetah

RTOL = 1e-12


def overlapping_cheetah_segment(rng, tracking_method="linear"):
    """A quadrupole and a sextupole that overlap: the drift between them is negative."""
    u = rng.uniform
    elements = [
        cheetah.Drift(T(0.8), tracking_method=tracking_method, name="D0"),
        cheetah.Quadrupole(
            T(0.3), T(u(-15, 15)), T(u(-1e-4, 1e-4, 2)), tracking_method=tracking_method, name="Q0"
        ),
        cheetah.Drift(T(-0.12), tracking_method=tracking_method, name="DBACK"),
        cheetah.Sextupole(T(0.2), T(0.0), tracking_method=tracking_method, name="S0"),
        cheetah.Drift(T(-0.05), tracking_method=tracking_method, name="DBACK2"),
        cheetah.Drift(T(1.1), tracking_method=tracking_method, name="D1"),
    ]
    return cheetah.Segment(elements)


def test_parameter_beam_matches_cheetah(rng):
    theirs_segment = overlapping_cheetah_segment(rng)
    theirs_beam = cheetah.ParameterBeam.from_parameters(
        mu_x=T(1e-4), mu_px=T(-2e-5), mu_y=T(-5e-5), mu_py=T(1e-5), mu_p=T(1e-3),
        sigma_x=T(1e-4), sigma_px=T(2e-5), sigma_y=T(2e-4), sigma_py=T(1e-5),
        sigma_tau=T(1e-5), sigma_p=T(1e-3), cov_xpx=T(-1e-9), energy=T(1e8),
    )  # fmt: skip
    theirs = theirs_segment.track(theirs_beam)
    segment = from_cheetah(theirs_segment)
    assert float(segment.DBACK.length) == -0.12
    ours = segment.track(from_cheetah_beam(theirs_beam))
    assert_vector_close(ours.mu, N(theirs.mu), rtol=RTOL)
    assert_covariance_close(ours.cov, N(theirs.cov), rtol=RTOL)
    np.testing.assert_allclose(ours.s, N(theirs.s), rtol=1e-15)
    # the converter keeps the negative length both ways
    assert float(to_cheetah(segment).DBACK.length) == -0.12


@pytest.mark.parametrize("tracking_method", ["linear", "second_order"])
def test_particle_beam_matches_cheetah(rng, tracking_method):
    theirs_segment = overlapping_cheetah_segment(rng, tracking_method)
    theirs_beam = cheetah.ParticleBeam.from_parameters(
        num_particles=2000, sigma_x=T(1e-3), sigma_px=T(1e-3), sigma_y=T(1e-3),
        sigma_py=T(1e-3), sigma_p=T(1e-2), energy=T(5e8),
    )  # fmt: skip
    theirs = theirs_segment.track(theirs_beam)
    segment, beam = from_cheetah(theirs_segment), from_cheetah_beam(theirs_beam)
    if tracking_method == "linear":
        ours = segment.track(beam)
    else:
        ours = segment.track_second_order(beam)
    assert_vector_close(ours.particles, N(theirs.particles), rtol=RTOL)


def test_second_order_drift_map_matches_cheetah():
    """The whole T tensor of a backwards drift, entry by entry."""
    theirs = cheetah.Drift(T(-0.7)).second_order_transfer_map(T(3e8), cheetah.Species("electron"))
    ours = bl.Drift(-0.7).second_order_map(3e8)
    scale = np.max(np.abs(N(theirs)))
    np.testing.assert_allclose(ours, N(theirs), rtol=0, atol=RTOL * scale)


@pytest.mark.parametrize("length", [0.3, 2.7, -1.4])
def test_backwards_drift_undoes_the_forward_drift(rng, length):
    segment = bl.Segment([bl.Drift(length, name="F"), bl.Drift(-length, name="B")])
    energy = 1e8  # low energy, so the longitudinal slip is not negligible
    np.testing.assert_allclose(segment.transfer_map(energy), np.eye(7), rtol=0, atol=1e-15)
    particles = (
        jnp.asarray(rng.normal(0, 1, (500, 7)) * [1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-2, 0])
        .at[:, 6]
        .set(1.0)
    )
    beam = bl.ParticleBeam(particles, energy=energy)
    for out in (segment.track(beam), segment.track_second_order(beam)):
        np.testing.assert_allclose(out.particles, particles, rtol=0, atol=1e-17)
        assert float(out.s) == float(beam.s)
    parameter_beam = bl.ParameterBeam.from_parameters(
        mu_x=1e-4, sigma_x=1e-4, sigma_px=2e-5, cov_xpx=-1e-9, energy=energy
    )
    out = segment.track(parameter_beam)
    np.testing.assert_allclose(out.mu, parameter_beam.mu, rtol=0, atol=1e-20)
    np.testing.assert_allclose(out.cov, parameter_beam.cov, rtol=0, atol=1e-22)


def test_length_gradient_is_the_same_through_zero():
    """d x_out / d L = x' on both sides of L = 0 (one formula, no kink)."""
    beam = bl.ParameterBeam.from_parameters(mu_px=3e-5, energy=1e9)

    def mu_x(length):
        return bl.Segment([bl.Drift(length)]).track(beam).mu_x

    for length in (-0.5, 0.0, 0.5):
        np.testing.assert_allclose(jax.grad(mu_x)(length), 3e-5, rtol=1e-14)


def test_split_cuts_by_magnitude():
    segment = bl.Segment([bl.Drift(-1.0, name="D")])
    pieces = segment.split(0.25)
    assert len(pieces) == 4
    assert all(float(p.length) == -0.25 for p in pieces.elements)
    np.testing.assert_allclose(pieces.transfer_map(1e9), segment.transfer_map(1e9), atol=1e-15)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_lengths_are_named(bad):
    with pytest.raises(ValueError, match=rf"length must be finite; got {bad} for element 'D1'"):
        bl.Drift(bad, name="D1")
    segment = bl.Segment([bl.Drift(1.0, name="D1")])
    with pytest.raises(ValueError, match=r"length must be finite; got .* for element 'D1'"):
        segment.with_settings({"D1.length": jnp.asarray([0.5, bad])})
    # negative values are settings like any other
    assert float(segment.with_settings({"D1.length": -0.5}).length) == -0.5
