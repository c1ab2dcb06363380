"""The diffdesign-ring JSON format: exact round trips and clear errors for bad files."""

import dataclasses
import json
import math

import numpy as np
import pytest

from diffdesign.ring.at_file import read_at_file
from diffdesign.ring.description import RingDescription
from diffdesign.ring.json_format import (
    FORMAT,
    VERSION,
    read_lattice_json,
    validate_element,
    write_lattice_json,
)

from .test_at_file import EVERY_CONSTRUCTOR, read_reference, write


def small_ring() -> RingDescription:
    return RingDescription(
        elements=[
            {"Class": "Drift", "FamName": "D", "Length": 1.5, "PassMethod": "DriftPass"},
            {
                "Class": "Quadrupole",
                "FamName": "Q",
                "Length": 0.5,
                "PassMethod": "StrMPoleSymplectic4Pass",
                "K": 1.2,
                "MaxOrder": 1,
                "NumIntSteps": 10,
                "PolynomA": [0.0, 0.0],
                "PolynomB": [0.0, 1.2],
                "T1": [1e-3, 0.0, 0.0, 0.0, 0.0, 0.0],
                "origin": "KQUAD",
            },
            {
                "Class": "Aperture",
                "FamName": "AP",
                "Length": 0.0,
                "PassMethod": "AperturePass",
                "Limits": [-math.inf, math.inf, -0.01, 0.01],
            },
        ],
        energy=3e9,
        periodicity=4,
        particle="electron",
        name="cell",
        source="test",
        extra={"beam_current": 0.2},
    )


def assert_round_trip(description: RingDescription, path) -> RingDescription:
    write_lattice_json(description, path)
    back = read_lattice_json(path)
    assert back.source == str(path)
    assert dataclasses.replace(back, source=description.source) == description
    return back


@pytest.mark.parametrize("name", ["esrf.m", "nsls2.m"])
def test_reference_lattices_round_trip_exactly(tmp_path, name):
    assert_round_trip(read_reference(name), tmp_path / "ring.json")


def test_every_constructor_round_trips(tmp_path):
    description = read_at_file(write(tmp_path, "cell.m", EVERY_CONSTRUCTOR))
    back = assert_round_trip(description, tmp_path / "cell.json")
    # ints stay ints and floats floats, so types survive too
    q3 = next(e for e in back.elements if e["FamName"] == "Q3")
    assert type(q3["MaxOrder"]) is int and type(q3["Length"]) is float


def test_file_layout_is_versioned_with_one_element_per_line(tmp_path):
    path = write_lattice_json(small_ring(), tmp_path / "cell.json")
    data = json.loads(path.read_text())
    assert (data["format"], data["version"]) == (FORMAT, VERSION) == ("diffdesign-ring", 1)
    assert list(data) == [
        "format",
        "version",
        "name",
        "energy",
        "periodicity",
        "particle",
        "extra",
        "elements",
    ]
    lines = path.read_text().splitlines()
    assert sum(line.lstrip().startswith('{"Class"') for line in lines) == 3
    assert "Infinity" in path.read_text()  # aperture limits may be infinite
    assert_round_trip(small_ring(), tmp_path / "again.json")


def test_numpy_values_are_written_as_lists(tmp_path):
    ring = small_ring()
    ring.elements[1]["PolynomB"] = np.array([0.0, 1.2])
    ring.elements[1]["NumIntSteps"] = np.int64(10)
    back = read_lattice_json(write_lattice_json(ring, tmp_path / "np.json"))
    assert back.elements[1]["PolynomB"] == [0.0, 1.2] and back.elements[1]["NumIntSteps"] == 10


def _json_file(tmp_path, **changes):
    data = json.loads(write_lattice_json(small_ring(), tmp_path / "ok.json").read_text())
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


def _with_element(tmp_path, index, **fields):
    data = json.loads(write_lattice_json(small_ring(), tmp_path / "ok.json").read_text())
    for key, value in fields.items():
        if value is None:
            del data["elements"][index][key]
        else:
            data["elements"][index][key] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "other"}, r"bad.json: expected 'format': 'diffdesign-ring'; got 'other'"),
        ({"format": None}, r"got no 'format' key"),
        ({"version": 2}, r"knows 'version': 1; got 2"),
        ({"energy": None}, r"missing key\(s\) 'energy'"),
        ({"colour": "red"}, r"unknown key\(s\) 'colour'"),
        ({"energy": "3 GeV"}, r"energy must be a number; got the string '3 GeV' in .*bad.json"),
        ({"energy": -1.0}, r"energy must be > 0 eV"),
        ({"periodicity": 1.5}, r"periodicity must be an integer; got 1.5"),
        ({"periodicity": 0}, r"periodicity must be >= 1; got 0"),
        ({"particle": "muon"}, r"particle 'muon' is not one of .*extra\['particle'\]"),
        ({"elements": {"D": 1}}, r"elements must be a JSON array"),
        ({"extra": [1]}, r"extra must be a JSON object"),
    ],
)
def test_bad_top_level_is_named(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        read_lattice_json(_json_file(tmp_path, **changes))


@pytest.mark.parametrize(
    ("index", "fields", "message"),
    [
        (0, {"Class": "Wiggler"}, r"unknown Class 'Wiggler' for element 'D'.*allowed: Drift, "),
        (0, {"Class": None}, r"missing field 'Class' for element 'D' in .*\(element 0\)"),
        (1, {"PolynomB": None}, r"missing field 'PolynomB' for element 'Q'.*Quadrupole"),
        (1, {"T1": [0.0, 0.0]}, r"T1 must have 6 numbers; got 2 for element 'Q'"),
        (1, {"MaxOrder": 1.5}, r"MaxOrder must be an integer; got 1.5"),
        (1, {"Length": "long"}, r"Length must be a number; got the string 'long'"),
        (1, {"Length": math.nan}, r"Length must be finite; got nan for element 'Q'"),
        (1, {"K": True}, r"K must be a number; got True"),
        (1, {"PolynomB": [0.0, "x"]}, r"PolynomB must contain numbers only"),
        (2, {"Limits": [0.0, math.nan, 0.0, 0.0]}, r"Limits must be finite; got nan"),
        (0, {"FamName": 3}, r"FamName must be a string; got 3"),
    ],
)
def test_bad_elements_are_named(tmp_path, index, fields, message):
    with pytest.raises(ValueError, match=message):
        read_lattice_json(_with_element(tmp_path, index, **fields))


def test_short_polynoms_are_padded_to_max_order(tmp_path):
    """AT reads MaxOrder + 1 coefficients and pads missing ones with zeros; so do we."""
    ring = read_lattice_json(_with_element(tmp_path, 1, PolynomA=[], PolynomB=[0.0]))
    assert ring.elements[1]["PolynomA"] == ring.elements[1]["PolynomB"] == [0.0, 0.0]


def test_not_json_and_not_an_object(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"format": ')
    with pytest.raises(ValueError, match=r"broken.json is not valid JSON: .* line 1"):
        read_lattice_json(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"expected a JSON object at the top"):
        read_lattice_json(path)


def test_invalid_descriptions_are_never_written(tmp_path):
    ring = small_ring()
    ring.elements[0]["Class"] = "Solenoid"
    with pytest.raises(ValueError, match=r"unknown Class 'Solenoid'.*\(element 0\)"):
        write_lattice_json(ring, tmp_path / "no.json")
    assert not (tmp_path / "no.json").exists()
    ring = dataclasses.replace(small_ring(), extra={"when": object()})
    with pytest.raises(TypeError, match=r"extra cannot be written as JSON"):
        write_lattice_json(ring, tmp_path / "no.json")
    assert not (tmp_path / "no.json").exists()


def test_validate_element_gives_canonical_values():
    element = validate_element(
        {"PassMethod": "DriftPass", "FamName": "D", "Class": "Drift", "Length": 2, "zeta": 1}
    )
    assert list(element) == ["Class", "FamName", "Length", "PassMethod", "zeta"]
    assert type(element["Length"]) is float
    with pytest.raises(TypeError, match="mapping"):
        validate_element(["Drift"])
