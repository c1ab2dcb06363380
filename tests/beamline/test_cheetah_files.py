"""Lattice files against Cheetah's own readers: Cheetah's lattice JSON (read and written
without PyTorch) and Elegant files with the syntax of Cheetah's test lattices, each tracked
here and in Cheetah on the same beam."""

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

import diffdesign.beamline as bl
from diffdesign.beamline.convert import from_cheetah, from_cheetah_beam
from diffdesign.beamline.lattice_json import read_lattice_json, write_lattice_json
from diffdesign.lattices import segment_from_description
from diffdesign.ring import read_elegant_file

from .cheetah_helpers import N, T, assert_covariance_close, assert_vector_close, cheetah
from .test_tracking import random_cheetah_segment

latticejson = pytest.importorskip("cheetah.latticejson")


def _beam():
    return cheetah.ParameterBeam.from_parameters(
        mu_x=T(1e-4), mu_px=T(-2e-5), mu_y=T(5e-5), mu_py=T(1e-5), sigma_x=T(1e-4),
        sigma_px=T(2e-5), sigma_y=T(2e-4), sigma_py=T(1e-5), sigma_p=T(1e-3), energy=T(1e8),
    )  # fmt: skip


def _assert_tracks_alike(ours: bl.Segment, theirs, rtol=1e-12):
    beam = _beam()
    expected = theirs.track(beam)
    got = ours.track(from_cheetah_beam(beam))
    assert_vector_close(got.mu, N(expected.mu), rtol=rtol)
    assert_covariance_close(got.cov, N(expected.cov), rtol=rtol)


def _names(segment) -> list[str]:
    """Element names in beam order, Cheetah's nested segments (a reversed line) flattened."""
    return [e.name for e in _leaves(segment)]


def _leaves(segment) -> list:
    return [leaf for e in segment.elements
            for leaf in (_leaves(e) if isinstance(e, cheetah.Segment) else [e])]  # fmt: skip


def _linear(segment):
    for element in segment.elements:
        if isinstance(element, cheetah.Segment):
            _linear(element)
        elif "linear" in element.supported_tracking_methods:
            element.tracking_method = "linear"
    return segment


@pytest.mark.filterwarnings("ignore:Aperture tracking is currently only supported")  # Cheetah's
def test_a_file_cheetah_saved_reads_and_tracks_as_cheetah_loads_it(rng, tmp_path):
    """Every element kind of the converter, plus the two ARES-lattice elements that do
    nothing at first order: an unpowered cavity (a Cavity that is a drift) and open or
    inactive apertures (Apertures that, on a ParameterBeam, are markers)."""
    segment = random_cheetah_segment(rng)
    extra = [
        cheetah.Cavity(T(1.2), T(0.0), T(0.0), T(3e9), name="CAV_OFF"),
        cheetah.Aperture(T(np.inf), T(np.inf), name="AP_OPEN"),
        cheetah.Aperture(T(1e-3), T(1e-3), is_active=False, name="AP_OFF"),
        cheetah.Drift(T(-0.2), name="D_BACK"),  # negative drifts, as in Cheetah's files
        cheetah.Drift(T(0.4), name="D0"),  # a repeated name
    ]
    theirs = cheetah.Segment([*segment.elements, *extra], name="lattice")
    path = tmp_path / "lattice.json"
    latticejson.save_cheetah_model(_linear(theirs), str(path))
    ours = read_lattice_json(path)
    assert ours.names == [e.name for e in theirs.elements] and ours.indices("D0") == [0, 19]
    assert [type(ours[n]).__name__ for n in ("CAV_OFF", "AP_OPEN", "AP_OFF")] == ["Cavity", "Aperture", "Aperture"]  # fmt: skip
    _assert_tracks_alike(ours, latticejson.load_cheetah_model(str(path)))
    # the live segment converts to the same elements as its file
    live = from_cheetah(theirs)
    assert [type(e) for e in live.elements] == [type(e) for e in ours.elements]


def test_a_file_we_write_loads_in_cheetah_and_reads_back(rng, tmp_path):
    ours = from_cheetah(_linear(random_cheetah_segment(rng)))
    marked = bl.Segment(ours.elements, "ring", second_order=[1, 8])
    path = tmp_path / "ours.json"
    write_lattice_json(marked, path, title="test")
    theirs = latticejson.load_cheetah_model(str(path))
    assert [e.tracking_method for e in theirs.elements if hasattr(e, "tracking_method")][1] == "second_order"
    _assert_tracks_alike(ours, _linear(theirs))
    back = read_lattice_json(path)
    assert back.names == marked.names and back.second_order == (1, 8)
    beam = from_cheetah_beam(_beam())
    np.testing.assert_array_equal(bl.Segment(back.elements).track(beam).cov, ours.track(beam).cov)


def _document(**changes):
    document = {
        "version": "cheetah-0.8", "title": "t", "info": "", "root": "line",
        "elements": {"D": ["Drift", {"length": 1.0}], "Q": ["Quadrupole", {"length": 0.1, "k1": 2.0}]},
        "lattices": {"line": ["D", "Q", "D"]},
    }  # fmt: skip
    for key, value in changes.items():
        document[key] = value
    return document


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe not json", r"bad.json: not a UTF-8 JSON file"),
        (b"{\"version\": ", r"bad.json: not a UTF-8 JSON file"),
        (b"[1, 2]", r"bad.json: a lattice JSON file holds an object"),
        (json.dumps({"version": "cheetah-0.8"}), r"missing entries \['root', 'elements', 'lattices'\]"),
        (_document(version="ocelot-1"), r"version 'ocelot-1' is not one of \['cheetah-0.7', 'cheetah-0.8'\]"),
        (_document(root="other"), r"root 'other' is not one of the lattices \['line'\]"),
        (_document(lattices={"line": ["D", "X"]}), r"lattice 'line' names 'X', which is neither"),
        (_document(lattices={"line": ["D", "sub"], "sub": ["line"]}), r"lattice 'line' contains itself"),
        (_document(elements={"D": ["Drift", 1.0]}, lattices={"line": ["D"]}), r"element 'D' must be \[CLASS"),
        (_document(elements={"D": ["Wiggler", {}]}, lattices={"line": ["D"]}), r"element 'D' of Cheetah type Wiggler has no"),
        (_document(elements={"D": ["Drift", {"length": 1.0, "lenght": 2.0}]}, lattices={"line": ["D"]}), r"element 'D' \(Drift\): unknown parameters \['lenght'\]"),
        (_document(elements={"D": ["Drift", {"length": "long"}]}, lattices={"line": ["D"]}), r"element 'D' \(Drift\): length must be a number"),
        (_document(elements={"C": ["Cavity", {"length": 1.0, "cavity_type": "pillbox"}]}, lattices={"line": ["C"]}), r"'C' \(Cavity\): cavity_type = 'pillbox' cannot be represented; one of \['standing_wave', 'traveling_wave'\]"),
        (_document(elements={"C": ["Cavity", {"length": 0.0}]}, lattices={"line": ["C"]}), r"length must be > 0 m; got 0.0 m for element 'C'"),
        (_document(elements={"A": ["Aperture", {"x_max": 1e-3, "shape": "triangular"}]}, lattices={"line": ["A"]}), r"'A' \(Aperture\): shape = 'triangular' cannot be represented; one of \['elliptical', 'rectangular'\]"),
        (_document(elements={"A": ["Aperture", {"x_max": -1e-3}]}, lattices={"line": ["A"]}), r"x_max must lie in \[0, inf\] m \(inf for an open side\); got -0.001 m for element 'A'"),
        (_document(elements={"B": ["Dipole", {"length": 1.0, "angle": 0.1, "fringe_at": "entrance"}]}, lattices={"line": ["B"]}), r"'B' \(Dipole\): fringe_at = 'entrance' cannot be represented"),
        (_document(elements={"B": ["Dipole", {"length": 1.0, "gap": 0.02, "gap_exit": 0.03}]}, lattices={"line": ["B"]}), r"gap_exit = 0.03 cannot be represented"),
        (_document(elements={"S": ["Sextupole", {"length": 0.5, "k2": 10.0, "tracking_method": "drift_kick_drift"}]}, lattices={"line": ["S"]}), r"elements \['S'\] use tracking methods \['drift_kick_drift'\]"),
        (_document(elements={"B": ["Dipole", {"length": 0.5, "angle": 0.1, "k1": 2.0, "tracking_method": "drift_kick_drift"}]}, lattices={"line": ["B"]}), r"dipole 'B' needs k1 = 0"),
    ],
)  # fmt: skip
def test_malformed_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError, match=message):
        read_lattice_json(path)
    with pytest.raises(ValueError, match=r"missing.json: no such file"):
        read_lattice_json(tmp_path / "missing.json")


#: The syntax of Cheetah's own Elegant test lattice (``tests/resources/fodo.lte``): ``;``
#: endings, ``#`` comments, a CHARGE element, quoted names with ':' and '-', a full-length
#: type (CSRCSBEND), a bend with HGAP and no FINT (Elegant's default 0.5), negative drifts.
FODO = """
c: charge,total=0.25e-9
q1: quad,l=0.1,k1=1.5;
q2: kquad,l=0.2,k1=-3
"long-name-quad": quad,l=0.3,k1=2
d1: drift,l=1; # a comment
d2: drift ,l=-2.0 # a drift backwards
d3: drift
b1: sben, l=0.3,angle=0.25,e1=0.25,hgap=0.02
csrbend: csrcsbend, l = 0.200981, angle = 0.113612175128842, e2 = 0.113612175128842, k1 = 0;
s1: sext,l=0.2,k2=-87.1;
m1: mark
"a:q3": quad, l=0.1, k1=1.5
fodo: line=(c,q1,d1,m1,b1,d1,q2,d2,s1,csrbend,"long-name-quad",d3,"a:q3")
reversed_fodo: line=(-fodo)
"""


@pytest.mark.filterwarnings("ignore:Information provided in element c of type charge")
@pytest.mark.parametrize("line", ["fodo", "reversed_fodo"])
def test_elegant_files_in_cheetahs_syntax_track_as_cheetah_reads_them(tmp_path, line):
    path = tmp_path / "fodo.lte"
    path.write_text(textwrap.dedent(FODO))
    theirs = _linear(cheetah.Segment.from_elegant(str(path), line))
    ours = segment_from_description(read_elegant_file(path, energy=1e8, use_line=line))
    # Cheetah keeps the CHARGE element as a marker; an AT description has no element for it
    assert [n.upper() for n in ours.names] == [n.upper() for n in _names(theirs) if n != "c"]
    if line == "reversed_fodo":
        # Cheetah reverses the order only; a bend passed backwards also swaps its entrance
        # and exit faces (Elegant, pyAT's swap_faces, and this reader)
        with pytest.raises(AssertionError):
            _assert_tracks_alike(ours, theirs)
        for bend in _leaves(theirs):
            if isinstance(bend, cheetah.Dipole):
                bend.dipole_e1, bend.dipole_e2 = bend.dipole_e2, bend.dipole_e1
    _assert_tracks_alike(ours, theirs)


def test_a_long_lattice_composes_densely_and_tracks_as_cheetah(rng, monkeypatch):
    """Past ``_affine.DENSE_FROM`` elements the maps are multiplied as arrays (a 195-element
    lattice compiled for minutes entry by entry); with a batch of settings on one magnet
    the unbatched runs stay unbatched. Same result as Cheetah and as the entry-by-entry
    composition."""
    from diffdesign.beamline import _affine

    theirs = cheetah.Segment(
        [e for _ in range(4) for e in _linear(random_cheetah_segment(rng)).elements]
    )
    ours = from_cheetah(theirs)
    assert len(ours) == 60 > _affine.DENSE_FROM
    k1 = np.array([-8.0, 0.0, 5.0])
    batched = ours.with_settings({"Q1[2].k1": k1})
    theirs.elements[34].k1 = T(k1)  # Q1's third placement
    _assert_tracks_alike(batched, theirs)
    beam = from_cheetah_beam(_beam())
    dense = batched.track(beam).cov
    monkeypatch.setattr(_affine, "DENSE_FROM", 10**6)
    np.testing.assert_allclose(batched.track(beam).cov, dense, rtol=1e-13, atol=1e-30)


def test_load_segment_reads_every_format(tmp_path, rng):
    """One entry for any lattice file: Cheetah JSON, AT .m, Elegant .lte, ring JSON."""
    from diffdesign.lattices import load_segment
    from diffdesign.ring import read_at_file
    from diffdesign.ring import write_lattice_json as write_ring_json

    path = tmp_path / "c.json"
    latticejson.save_cheetah_model(_linear(random_cheetah_segment(rng)), str(path))
    assert load_segment(path).names == read_lattice_json(path).names
    lte = tmp_path / "fodo.lte"
    lte.write_text(textwrap.dedent(FODO))
    assert len(load_segment(lte, energy=1e8)) == 12
    with pytest.raises(ValueError, match=r"the beam energy is not in the file"):
        load_segment(lte)
    small = Path(__file__).parents[1] / "ring" / "data" / "small_ring.m"
    ring_json = tmp_path / "ring.json"
    write_ring_json(read_at_file(small), ring_json)
    assert load_segment(ring_json).names == load_segment(small).names
    assert load_segment(small, start=2, end=4).names == load_segment(small).names[2:5]


def test_bpm_misalignment_survives_files_and_converters(tmp_path):
    """Cheetah keeps a BPM's misalignment outside its defining_features (its own files drop
    it); ours is in the one parameter table: written, loaded by Cheetah, read back, and
    converted both ways."""
    ours = bl.Segment([bl.Drift(1.0, "D"), bl.BPM((1e-4, -2e-4), name="B")], "line")
    path = tmp_path / "bpm.json"
    write_lattice_json(ours, path)
    np.testing.assert_array_equal(read_lattice_json(path)["B"].misalignment, [1e-4, -2e-4])
    theirs = latticejson.load_cheetah_model(str(path))
    np.testing.assert_array_equal(N(theirs.B.misalignment), [1e-4, -2e-4])
    np.testing.assert_array_equal(from_cheetah(theirs)["B"].misalignment, [1e-4, -2e-4])
    from diffdesign.beamline.convert import to_cheetah

    np.testing.assert_array_equal(N(to_cheetah(ours["B"]).misalignment), [1e-4, -2e-4])
