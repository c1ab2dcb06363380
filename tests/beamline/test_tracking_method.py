"""Cheetah's per-element ``tracking_method`` survives conversion: elements tracked at second
order in Cheetah are tracked at second order here (``Segment.second_order``), and a method
that cannot be kept (drift-kick-drift) is refused by name instead of silently linearised."""

import numpy as np
import pytest

import diffdesign.beamline as bl
from diffdesign.beamline.convert import from_cheetah, from_cheetah_beam, to_cheetah

from .cheetah_helpers import N, T, assert_vector_close, cheetah


def mixed_cheetah_segment(second=("Q1", "S1", "D3")):
    """A segment whose elements use different tracking methods."""
    specs = [
        (cheetah.Drift, (T(0.3),), "D1"),
        (cheetah.Quadrupole, (T(0.2), T(8.0), T([1e-4, -2e-4])), "Q1"),
        (cheetah.Dipole, (T(0.5), T(0.1)), "B1"),
        (cheetah.Drift, (T(0.2),), "D2"),
        (cheetah.Sextupole, (T(0.15), T(200.0)), "S1"),
        (cheetah.Quadrupole, (T(0.2), T(-6.0)), "Q2"),
        (cheetah.Drift, (T(0.4),), "D3"),
    ]
    return cheetah.Segment(
        [
            kind(*args, name=name, tracking_method="second_order" if name in second else "linear")
            for kind, args, name in specs
        ]
    )


def particles():
    return cheetah.ParticleBeam.from_parameters(
        num_particles=2000, sigma_x=T(2e-3), sigma_px=T(1e-3), sigma_y=T(2e-3),
        sigma_py=T(1e-3), sigma_p=T(1e-2), energy=T(1e8),
    )  # fmt: skip


def test_mixed_methods_track_as_cheetah():
    theirs_segment, theirs_beam = mixed_cheetah_segment(), particles()
    theirs = N(theirs_segment.track(theirs_beam).particles)
    segment = from_cheetah(theirs_segment)
    assert segment.second_order == (1, 4, 6)
    beam = from_cheetah_beam(theirs_beam)
    ours = segment.track(beam, reproduce_cheetah=True)
    assert_vector_close(ours.particles, theirs, rtol=1e-12)
    assert float(ours.s) == pytest.approx(float(theirs_segment.length), rel=1e-15)
    # what the converter used to do (every element linear) misses the second-order terms
    linear = bl.Segment(segment.elements).track(beam).particles
    scale = np.abs(theirs).max(axis=0)
    assert np.max(np.abs(np.asarray(linear) - theirs) / scale) > 1e-4
    # track_along ends where track does, element by element
    along = segment.track_along(beam)
    assert len(along) == len(segment) + 1
    np.testing.assert_allclose(along[-1].particles, segment.track(beam).particles, atol=1e-18)


def test_second_order_elements_refuse_a_parameter_beam_as_cheetah_does():
    segment = from_cheetah(mixed_cheetah_segment())
    with pytest.raises(TypeError, match=r"\['Q1', 'S1', 'D3'\] are tracked at second order"):
        segment.track(bl.ParameterBeam.from_parameters(energy=1e8))


def test_drift_kick_drift_bends_with_a_gradient_are_refused_by_name():
    """Cheetah drops a dipole's k1 when it tracks it drift-kick-drift; we refuse it."""
    theirs = cheetah.Segment(
        [cheetah.Drift(T(0.3), name="D1", tracking_method="drift_kick_drift"),
         cheetah.Dipole(T(0.5), T(0.1), k1=T(0.8), tracking_method="drift_kick_drift",
                        name="BK")]
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"dipole 'BK' needs k1 = 0.*got k1 = 0.8 1/m\^2"):
        from_cheetah(theirs)


def test_marks_survive_settings_split_subsegment_and_the_round_trip():
    segment = from_cheetah(mixed_cheetah_segment())
    assert segment.with_settings({"Q1.k1": 9.0}).second_order == (1, 4, 6)
    split = segment.split(0.05)
    assert [split.elements[i].name for i in split.second_order] == ["Q1", "S1", "D3"]
    assert segment.subsegment("B1", "D3").second_order == (2, 4)
    back = to_cheetah(segment)
    assert [e.tracking_method for e in back.elements] == [
        "linear",
        "second_order",
        "linear",
        "linear",
        "second_order",
        "linear",
        "second_order",
    ]
    with pytest.raises(ValueError, match=r"positions 0 \.\.\. 6; got 7"):
        bl.Segment(segment.elements, second_order=[7])
