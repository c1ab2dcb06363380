"""Element names placed several times, as lattice files do (a drift ``D1`` between every pair
of quadrupoles; seven repeats in Cheetah's ARES lattice): the segment accepts them, a setting
by name reaches every occurrence, ``"NAME[k]"`` addresses one, and an ambiguous lookup says so."""

import numpy as np
import pytest

import diffdesign.beamline as bl
from diffdesign.beamline.convert import from_cheetah, from_cheetah_beam

from .cheetah_helpers import N, T, assert_vector_close, cheetah


def fodo() -> bl.Segment:
    return bl.Segment(
        [
            bl.Drift(0.5, "D1"),
            bl.Quadrupole(0.2, k1=4.0, name="QF"),
            bl.BPM(name="M"),
            bl.Drift(0.5, "D1"),
            bl.Quadrupole(0.2, k1=-4.0, name="QD"),
            bl.BPM(name="M"),
            bl.Drift(0.3, "D2"),
        ]
    )


def beam() -> bl.ParameterBeam:
    return bl.ParameterBeam.from_parameters(
        mu_x=1e-3, mu_y=-5e-4, sigma_x=1e-4, sigma_y=2e-4, sigma_px=1e-5, sigma_py=1e-5,
        energy=1e8,
    )  # fmt: skip


def test_positions_and_occurrences():
    segment = fodo()
    assert segment.indices("D1") == [0, 3] and segment.indices("D2") == [6]
    assert segment.indices("D1[1]") == [3] and segment.indices("D1[2]") == []
    assert segment.index("D2") == 6 and segment.index("D1[0]") == 0
    assert segment["D1[1]"] is segment.elements[3]


@pytest.mark.parametrize(
    ("lookup", "error", "message"),
    [
        (lambda s: s.index("D1"), KeyError, r"'D1' occurs 2 times .*positions \[0, 3\].*'D1\[0\]'"),
        (lambda s: s["D1"], KeyError, r"'D1' occurs 2 times"),
        (lambda s: s.D1, AttributeError, r"'D1' occurs 2 times .*'D1\[1\]' or by position"),
        (lambda s: s["D1[2]"], KeyError, r"no element named 'D1\[2\]'.*D1, QF, M, QD, D2"),
        (lambda s: s.subsegment("QF", "D1"), KeyError, r"'D1' occurs 2 times"),
    ],
)
def test_ambiguous_or_missing_names_are_explained(lookup, error, message):
    with pytest.raises(error, match=message):
        lookup(fodo())


def test_a_setting_by_name_reaches_every_occurrence_and_an_indexed_one_only_its_own():
    segment = fodo()
    both = segment.with_settings({"D1.length": 0.7})
    assert [float(both.elements[i].length) for i in (0, 3)] == [0.7, 0.7]
    second = segment.with_settings({"D1[1].length": 0.9})
    assert [float(second.elements[i].length) for i in (0, 3)] == [0.5, 0.9]
    with pytest.raises(ValueError, match=r"'M' \(BPM\) has no setting 'k1'"):
        segment.with_settings({"M.k1": 1.0})


def test_readings_of_a_repeated_monitor_are_numbered_and_correct():
    segment, incoming = fodo(), beam()
    readings = segment.readings(incoming)
    assert sorted(readings) == ["M[0]", "M[1]"]
    first = segment.subsegment(None, "M[0]").track(incoming).mu
    second = segment.subsegment(None, "M[1]").track(incoming).mu
    np.testing.assert_allclose(readings["M[0]"], first[np.array([0, 2])], rtol=1e-15)
    np.testing.assert_allclose(readings["M[1]"], second[np.array([0, 2])], rtol=1e-15)
    assert abs(float(first[0]) - float(second[0])) > 1e-5  # two different places


def test_a_cheetah_segment_with_repeated_names_converts_and_tracks_the_same():
    theirs = cheetah.Segment(
        [
            cheetah.Drift(T(0.4), name="D1"),
            cheetah.Quadrupole(T(0.2), T(5.0), name="Q"),
            cheetah.Drift(T(0.4), name="D1"),
            cheetah.Quadrupole(T(0.2), T(-5.0), name="Q2"),
            cheetah.Drift(T(0.4), name="D1"),
        ]
    )
    incoming = cheetah.ParameterBeam.from_parameters(
        mu_x=T(1e-4), mu_px=T(-2e-5), sigma_x=T(1e-4), sigma_px=T(2e-5), energy=T(1e8)
    )
    segment = from_cheetah(theirs)
    assert segment.indices("D1") == [0, 2, 4]
    ours = segment.track(from_cheetah_beam(incoming))
    assert_vector_close(ours.mu, N(theirs.track(incoming).mu), rtol=1e-12)
    # one setting for the three drifts moves the beam as Cheetah's three drifts do
    longer = segment.with_settings({"D1.length": 0.6}).track(from_cheetah_beam(incoming))
    for element in theirs.elements[::2]:
        element.length = T(0.6)
    assert_vector_close(longer.mu, N(theirs.track(incoming).mu), rtol=1e-12)
