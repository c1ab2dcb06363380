"""Beamline segments from ring descriptions: the transverse maps agree with pyAT's, the
Cheetah round trip tracks the same, and what cannot be represented is named."""

import contextlib
import io
import math
import warnings

import numpy as np
import pytest

from diffdesign import beamline as bl
from diffdesign.lattices import segment_from_description
from diffdesign.ring.catalogue import DATA
from diffdesign.ring.description import RingDescription
from diffdesign.ring.elegant_file import read_elegant_file

at = pytest.importorskip("at")

ENERGY = 3e9
# AT's 4th-order integrator converges as NumIntSteps^-4 to the closed-form maps used here:
# with the file's 10 steps the 4x4 maps of the first 60 comm-ring elements differ by 9e-6
# of their largest entry, with 400 steps by 3e-12.
STEPS = 400


@pytest.fixture(scope="module")
def comm_ring():
    path = DATA / "comm-ring.lte"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        theirs = at.load_elegant(str(path), energy=ENERGY)
    return read_elegant_file(path, energy=ENERGY), theirs


def _pyat_m44(elements, xy_step: float = 3e-8) -> np.ndarray:
    elements = [e.deepcopy() for e in elements]
    for element in elements:
        if hasattr(element, "NumIntSteps"):
            element.NumIntSteps = STEPS
    lattice = at.Lattice(elements, energy=ENERGY)
    m44, _ = at.find_m44(lattice, orbit=np.zeros(6), XYStep=xy_step)
    return m44


def _assert_m44_close(ours, m44, rtol=1e-10):
    ours = np.asarray(ours)[:4, :4]
    assert np.max(np.abs(ours - m44)) <= rtol * np.max(np.abs(m44)), np.abs(ours - m44).max()


def test_first_60_comm_ring_elements_match_pyat_m44(comm_ring):
    ours, theirs = comm_ring
    segment = segment_from_description(ours, end=59)
    kinds = {type(e).__name__ for e in segment}
    assert kinds == {
        "Drift", "Quadrupole", "Sextupole", "Dipole", "HorizontalCorrector",
        "VerticalCorrector", "BPM", "Marker",
    }  # fmt: skip
    assert segment.names == [e.FamName for e in theirs[:60]]
    _assert_m44_close(segment.transfer_map(ENERGY), _pyat_m44(theirs[:60]))
    # element by element too
    for index in (12, 37):  # a quadrupole, the first dipole
        one = segment_from_description(ours, start=index, end=index)
        _assert_m44_close(one.transfer_map(ENERGY), _pyat_m44(theirs[index : index + 1]))


def test_start_and_end_by_name(comm_ring):
    ours, _ = comm_ring
    segment = segment_from_description(ours, start="QH1G2C30A", end="B1G3C30A")
    assert segment.names[0] == "QH1G2C30A" and segment.names[-1] == "B1G3C30A"
    repeated = segment_from_description(ours, start="DFT[1]", end="DFT[2]")
    assert repeated.names[0] == repeated.names[-1] == "DFT"
    with pytest.raises(ValueError, match=r"start: element name 'DFT' occurs .* times"):
        segment_from_description(ours, start="DFT")
    with pytest.raises(ValueError, match="end: no element named 'NOPE'"):
        segment_from_description(ours, end="NOPE")
    with pytest.raises(ValueError, match=r"start .element 5. comes after end .element 2."):
        segment_from_description(ours, start=5, end=2)


def test_cheetah_round_trip_tracks_the_same(comm_ring):
    from diffdesign.beamline.convert import from_cheetah_beam, to_cheetah
    from tests.beamline.cheetah_helpers import assert_covariance_close, assert_vector_close

    ours, _ = comm_ring
    segment = segment_from_description(ours, end=59)
    beam = bl.ParameterBeam.from_parameters(
        energy=ENERGY, mu_x=1e-4, mu_py=-2e-5, sigma_x=1e-4, sigma_y=2e-5, sigma_px=1e-5
    )
    tracked = segment.track(beam)
    back = from_cheetah_beam(to_cheetah(segment).track(to_cheetah(beam)))
    assert_vector_close(back.mu, tracked.mu, rtol=1e-10)
    assert_covariance_close(back.cov, tracked.cov, rtol=1e-10)


def _element(cls, name="E", **fields):
    base = {"Class": cls, "FamName": name, "Length": 0.0, "PassMethod": "IdentityPass"}
    return base | fields


def _description(*elements) -> RingDescription:
    return RingDescription(elements=list(elements), energy=ENERGY, name="test")


def _described(elements) -> RingDescription:
    return RingDescription(
        elements=[{**dict(e.items()), "Class": type(e).__name__} for e in elements],
        energy=ENERGY,
    )


def test_synthetic_elements_match_pyat():
    """A tilted quadrupole, a bend with fringe fields, a thin (skew) quadrupole."""
    quad = at.Quadrupole("Q", 0.3, 1.2)
    quad.R1, quad.R2 = _roll(0.1), _roll(0.1).T
    bend = at.Dipole("B", 1.1, 0.12, -0.3, EntranceAngle=0.02, ExitAngle=0.05)
    bend.FullGap, bend.FringeInt1, bend.FringeInt2 = 0.03, 0.5, 0.4
    thin = at.ThinMultipole("T", [0.0, 0.02], [0.0, 0.3])
    sext = at.Sextupole("S", 0.2, 5.0)
    elements = [quad, at.Drift("D", 0.5), bend, thin, sext]
    segment = segment_from_description(_described(elements))
    assert [type(e).__name__ for e in segment] == [
        "Quadrupole", "Drift", "Dipole", "CustomTransferMap", "Sextupole",
    ]  # fmt: skip
    assert float(segment["Q"].tilt) == pytest.approx(0.1)
    assert float(segment["S"].k2) == 10.0
    _assert_m44_close(segment.transfer_map(ENERGY), _pyat_m44(elements))


def test_displaced_quadrupole_steers_as_in_pyat():
    """The map and the orbit from zero (the maps are first order about the design orbit:
    past a displaced magnet AT linearises about the moved orbit, so one element)."""
    quad = at.Quadrupole("Q", 0.3, 1.2)
    quad.R1, quad.R2 = _roll(-0.2), _roll(-0.2).T
    quad.T1, quad.T2 = np.array([-1e-3, 0, 2e-3, 0, 0, 0]), np.array([1e-3, 0, -2e-3, 0, 0, 0])
    segment = segment_from_description(_described([quad]))
    np.testing.assert_allclose(segment["Q"].misalignment, [1e-3, -2e-3])
    # find_m44's finite differences: its default step (3e-8) loses 3e-10 of the map to
    # rounding with the orbit 1e-3 off axis in the magnet; the element is linear: 1e-6
    _assert_m44_close(segment.transfer_map(ENERGY), _pyat_m44([quad], xy_step=1e-6))
    orbit = at.lattice_pass(_with_steps([quad]), np.zeros((6, 1)), 1)[:4, 0, 0, 0]
    offset = np.asarray(segment.transfer_map(ENERGY))[:4, 6]
    np.testing.assert_allclose(offset, orbit, rtol=1e-10, atol=1e-10 * np.abs(orbit).max())


def _with_steps(elements):
    elements = [e.deepcopy() for e in elements]
    for element in elements:
        if hasattr(element, "NumIntSteps"):
            element.NumIntSteps = STEPS
    return elements


def _roll(angle):
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.eye(6)
    rotation[:4, :4] = [[c, 0, s, 0], [0, c, 0, s], [-s, 0, c, 0], [0, -s, 0, c]]
    return rotation


def test_correctors_and_kicks():
    elements = [
        _element("Corrector", "H", KickAngle=[1e-4, 0.0], PassMethod="CorrectorPass", origin="HKICK"),
        _element("Corrector", "V", KickAngle=[0.0, 2e-4], PassMethod="CorrectorPass", origin="VKICK"),
        _element("Corrector", "C", KickAngle=[3e-5, -1e-5], PassMethod="CorrectorPass"),
        _element("Drift", "D", Length=2.0, PassMethod="DriftPass"),
        _element("Monitor", "BPM1"),
        _element("RFCavity", "RF", Voltage=1e6, Frequency=5e8, HarmNumber=1, PassMethod="IdentityPass"),
    ]  # fmt: skip
    segment = segment_from_description(_description(*elements))
    assert [type(e).__name__ for e in segment] == [
        "HorizontalCorrector", "VerticalCorrector", "CombinedCorrector", "Drift", "BPM", "Marker",
    ]  # fmt: skip
    offset = np.asarray(segment.transfer_map(ENERGY))[:4, 6]
    np.testing.assert_allclose(offset, [2 * 1.3e-4, 1.3e-4, 2 * 1.9e-4, 1.9e-4], rtol=1e-12)


@pytest.mark.parametrize(
    ("element", "message"),
    [
        (_element("Quadrupole", "QS", Length=0.2, PolynomA=[0, 0.1], PolynomB=[0, 1.0], MaxOrder=1,
                  PassMethod="StrMPoleSymplectic4Pass"), r"'QS' \(Class Quadrupole\).*PolynomA\[1\]=0.1"),
        (_element("ThinMultipole", "M3", PolynomA=[0, 0, 0], PolynomB=[0, 0, 2.0], MaxOrder=2),
         r"'M3' .*PolynomB\[2\]=2.0: a thin multipole's sextupole"),
        (_element("Dipole", "BX", Length=1.0, BendingAngle=0.1, PolynomA=[0, 0], PolynomB=[1e-3, 0],
                  MaxOrder=1), r"'BX' .*PolynomB\[0\]=0.001"),
        (_element("Dipole", "BT", Length=1.0, BendingAngle=0.1, PolynomA=[0, 0], PolynomB=[0, 0],
                  MaxOrder=1, T1=[1e-3, 0, 0, 0, 0, 0], T2=[-1e-3, 0, 0, 0, 0, 0]),
         r"'BT' .*T1/T2 \(a displacement\) cannot be held"),
        (_element("RFCavity", "CAV", Length=0.3, Voltage=1e6, Frequency=5e8, HarmNumber=1,
                  PassMethod="RFCavityPass"), r"'CAV' .*an RF cavity that is on"),
        (_element("M66", "MM", M66=np.eye(6).tolist(), PassMethod="Matrix66Pass"),
         r"'MM' \(Class M66\).*no beamline counterpart"),
        (_element("Quadrupole", "QN", Length=0.2, PolynomA=[0, 0], PolynomB=[0, math.nan],
                  MaxOrder=1), r"PolynomB must be finite.*'QN'"),
        ({"FamName": "NOCLASS"}, r"missing field 'Class'.*'NOCLASS'"),
    ],
)  # fmt: skip
def test_bad_descriptions_are_named(element, message):
    ok = _element("Drift", "D", Length=1.0, PassMethod="DriftPass")
    with pytest.raises(ValueError, match=message):
        segment_from_description(_description(ok, element))
    # outside the selected range it does not matter
    assert segment_from_description(_description(ok, element), end=0).names == ["D"]


def test_bad_arguments():
    with pytest.raises(TypeError, match="expected a RingDescription"):
        segment_from_description([{"Class": "Drift"}])
    with pytest.raises(ValueError, match="has no elements"):
        segment_from_description(_description())
    with pytest.raises(ValueError, match="end=3 is outside the 1 elements"):
        segment_from_description(_description(_element("Marker", "M")), end=3)
