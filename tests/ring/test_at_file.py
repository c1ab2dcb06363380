"""AT MATLAB lattice files: our reader against pyAT's ``at.load_lattice``, field by field."""

import functools
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from diffdesign.ring._matlab import Call, parse_lattice_file
from diffdesign.ring.at_file import SUPPORTED_CONSTRUCTORS, read_at_file
from diffdesign.ring.catalogue import DATA
from diffdesign.ring.description import ELEMENT_CLASSES
from diffdesign.ring.pyat_import import from_pyat

RINGS = DATA  # the lattices packaged with diffdesign


@pytest.fixture(scope="module")
def at():
    return pytest.importorskip("at")


def ring_file(name: str) -> Path:
    return RINGS / name


@functools.cache
def read_reference(name: str):
    """Our reading of a reference lattice, shared by the tests (which must not change it)."""
    return read_at_file(ring_file(name))


@functools.cache
def load_reference(at, name: str):
    return load_with_pyat(at, ring_file(name))


def load_with_pyat(at, path):
    with warnings.catch_warnings():
        # pyAT's own remarks (e.g. "tracking assumes beta==1" for electrons).
        warnings.simplefilter("ignore", at.AtWarning)
        return at.load_lattice(str(path))


def pyat_fields(element) -> dict:
    fields = {k: v for k, v in element.items() if not k.startswith("_")}
    fields["Class"] = type(element).__name__
    return fields


def assert_same_element(ours: dict, theirs: dict, where: str) -> None:
    assert set(ours) == set(theirs), f"{where}: fields differ: {sorted(set(ours) ^ set(theirs))}"
    for key, value in theirs.items():
        mine = ours[key]
        if isinstance(value, np.ndarray):
            assert np.shape(mine) == value.shape, f"{where}.{key}: shape"
            # Both parse the same decimal text, so the numbers agree exactly.
            assert np.array_equal(np.asarray(mine), value), f"{where}.{key}: {mine} != {value}"
        else:
            assert mine == value, f"{where}.{key}: {mine!r} != {value!r}"
            assert isinstance(mine, bool | str) == isinstance(value, bool | str), f"{where}.{key}"


def assert_matches_pyat(ours, theirs) -> None:
    assert len(ours.elements) == len(theirs)
    for index, (mine, element) in enumerate(zip(ours.elements, theirs, strict=True)):
        assert_same_element(mine, pyat_fields(element), f"element {index} {element.FamName}")
    assert ours.energy == theirs.energy
    assert ours.periodicity == theirs.periodicity
    assert ours.particle == theirs.particle.name


def write(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# --------------------------------------------------------------------------- reference rings


@pytest.mark.parametrize("name", ["esrf.m", "nsls2.m"])
def test_reference_lattices_match_pyat_field_by_field(at, name):
    ours, theirs = read_reference(name), load_reference(at, name)
    assert_matches_pyat(ours, theirs)
    assert ours.source == str(ring_file(name))
    assert {e["Class"] for e in ours.elements} <= set(ELEMENT_CLASSES)


def test_reference_lattice_details():
    esrf = read_reference("esrf.m")
    # No atringparam: the energy comes from the RF cavities, the name from the function.
    assert (esrf.energy, esrf.periodicity, esrf.particle, esrf.name) == (
        6.04e9,
        1,
        "relativistic",
        "esrf",
    )
    quad = next(e for e in esrf.elements if e["FamName"] == "QF2")
    assert quad == {
        "Class": "Quadrupole",
        "FamName": "QF2",
        "Length": 0.94341,
        "PassMethod": "StrMPoleSymplectic4Pass",
        "FringeQuadEntrance": 1,
        "FringeQuadExit": 1,
        "K": 0.39100749,
        "MaxOrder": 1,
        "NumIntSteps": 20,
        "PolynomA": [0.0, 0.0],
        "PolynomB": [0.0, 0.39100749],
    }
    nsls2 = read_reference("nsls2.m")
    assert (nsls2.energy, nsls2.periodicity, nsls2.name) == (3e9, 1, "RING")
    assert nsls2.extra == {"beam_current": 0.0}
    assert nsls2.elements[0] == {
        "Class": "Marker",
        "FamName": "MK4G1C30A",
        "Length": 0.0,
        "PassMethod": "IdentityPass",
        "fitpoint": 1,
        "origin": "MARK",
    }


@pytest.mark.parametrize("name", ["esrf.m", "nsls2.m"])
def test_from_pyat_equals_reading_the_file(at, name):
    ours, imported = read_reference(name), from_pyat(load_reference(at, name))
    assert imported.elements == ours.elements
    assert (imported.energy, imported.periodicity, imported.particle) == (
        ours.energy,
        ours.periodicity,
        ours.particle,
    )
    assert imported.source == "pyat"


def test_from_pyat_refuses_what_it_cannot_model(at):
    with pytest.raises(TypeError, match=r"at\.Lattice"):
        from_pyat([at.Drift("D", 1.0)])
    ring = at.Lattice([at.Drift("D", 1.0), at.Wiggler("W", 1.0, 0.1, 1.0)], energy=3e9)
    with pytest.raises(ValueError, match=r"'W'.*Wiggler"):
        from_pyat(ring)


# --------------------------------------------------------------------------- every constructor

#: One element per line, as pyAT's own .m reader needs.
EVERY_CONSTRUCTOR = """
function ring = cell()
ring = {...
    atringparam('CELL', 3e9, 4, 'Particle', struct('name', 'electron', 'rest_energy', 0.0, 'charge', -1.0), 'beam_current', 0.2);...
        atdrift('D1', 1.5);...
        atdrift('D2', 1.5, 'DriftPass', 'RApertures', [-0.01 0.01 -0.02 0.02], 'EApertures', [0.03 0.02]);...
   atquadrupole('Q1', 0.5, 1.2);...
   atquadrupole('Q2', 0.5, -1.2, 'QuadLinearPass', 'NumIntSteps', 7, 'PolynomB', [0 -1.2 0 4.5], 'PolynomA', [0 0 0.1]);...
   atquadrupole('Q3', 0.5, 0, 'MaxOrder', 3, 'FringeQuadEntrance', 2, 'FringeQuadExit', 1);...
   atquadrupole('Q4', 0.5, 1.0, 'R1', [1 0 0 0 0 0;0 1 0 0 0 0;0 0 1 0 0 0;0 0 0 1 0 0;0 0 0 0 1 0;0 0 0 0 0 1], 'R2', [1 0 0 0 0 0;0 1 0 0 0 0;0 0 1 0 0 0;0 0 0 1 0 0;0 0 0 0 1 0;0 0 0 0 0 1]);...
        atsbend('B1', 2.0, 0.1, -0.2, 'BndMPoleSymplectic4Pass', 'EntranceAngle', 0.05, 'ExitAngle', 0.04, 'FullGap', 0.03, 'FringeInt1', 0.5, 'FringeInt2', 0.4, 'FringeBendEntrance', 2, 'FringeBendExit', 3);...
        atsbend('B2', 2.0, 0.1, 0.0, 'PolynomB', [0 0 0.7], 'NumIntSteps', 20);...
        atrbend('B3', 2.0, 0.1, 0.0);...
        atrbend('B4', 2.0, 0.1, 0.0, 'EntranceAngle', 0.01);...
    atsextupole('S1', 0.2, 30.5, 'StrMPoleSymplectic4Pass', 'T1', [0.001 0 0 0 0 0], 'T2', [-0.001 0 0 0 0 0]);...
    atsextupole('S2', 0.2, 30.5, 'PolynomB', [0 0 30.5 0 2], 'MaxOrder', 4);...
     atoctupole('O1', 0.1, [0 0 0 0], [0 0 0 100]);...
    atmultipole('M1', 0.3, [0 0.1], [0 0 5], 'MaxOrder', 4);...
atthinmultipole('T1', [0 0], [0.001 0 7]);...
atthinmultipole('T2', [0. 0.], [0. 0.], 'origin', 'MULT');...
    atcorrector('C1', 0.1, [1e-4 -2e-4]);...
    atcorrector('C2', 0.0, [0. 0.], 'origin', 'HKICK');...
      atmonitor('BPM1', 'IdentityPass');...
      atmonitor('BPM2', 'origin', 'MONI');...
       atmarker('MK1', 'fitpoint', 1, 'flag', true, 'off', false, 'vec', [1 2 3], 'one', [5], 'col', [1;2], 'mat', [1 2;3 4]);...
     ataperture('AP1', [-0.03 0.03 -0.01 0.01]);...
     ataperture('AP2', [-Inf Inf -.01 1E-2]);...
     atrfcavity('RF', 0.0, 2e6, 352e6, 992, 3e9, 'RFCavityPass', 'TimeLag', 0.1);...
     atrfcavity('RF2', 0.5, 1e6, 352e6, 992, 3e9);...
           atM66('MAT', [1 2 0 0 0 0;0 1 0 0 0 0;0 0 1 0 0 0;0 0 0 1 0 0;0 0 0 0 1 0;0 0 0 0 0 1]);...
};
end
"""


def test_every_constructor_and_keyword_matches_pyat(at, tmp_path):
    path = write(tmp_path, "cell.m", EVERY_CONSTRUCTOR)
    ours = read_at_file(path)
    assert_matches_pyat(ours, load_with_pyat(at, path))
    assert (ours.name, ours.particle, ours.periodicity, ours.energy) == ("CELL", "electron", 4, 3e9)
    assert ours.extra == {"beam_current": 0.2}
    covered = {line.split("(")[0].strip() for line in EVERY_CONSTRUCTOR.splitlines()[3:-2]}
    assert covered == set(SUPPORTED_CONSTRUCTORS) - {"atskewquad", "atbaselem"}


def test_rectangular_bend_edges_default_to_half_the_angle(tmp_path):
    path = write(tmp_path, "cell.m", EVERY_CONSTRUCTOR)
    elements = {e["FamName"]: e for e in read_at_file(path).elements}
    assert (elements["B3"]["EntranceAngle"], elements["B3"]["ExitAngle"]) == (0.05, 0.05)
    # An explicit edge angle replaces the default, in AT MATLAB and pyAT alike.
    assert (elements["B4"]["EntranceAngle"], elements["B4"]["ExitAngle"]) == (0.01, 0.05)


def test_constructors_pyat_cannot_read_match_their_equivalents(at, tmp_path):
    """atskewquad and atbaselem, against pyAT reading the equivalent constructors."""
    ours = write(
        tmp_path,
        "ours.m",
        """
        function ring = ours()
        ring = {atringparam('R', 1e9, 1);...
          atskewquad('SQ', 0.2, 0.3);...
          atbaselem('Q', 'StrMPoleSymplectic4Pass', 'Class', 'Quadrupole', 'Length', 0.5, 'K', 1.2);...
          atbaselem('B', 'BndMPoleSymplectic4Pass', 'Class', 'Bend', 'Length', 1, 'BendingAngle', 0.1);...
          atbaselem('M', 'IdentityPass', 'Class', 'Marker', 'origin', 'MARK')};
        end
        """,
    )
    theirs = write(
        tmp_path,
        "theirs.m",
        """
        function ring = theirs()
        ring = {...
            atringparam('R', 1e9, 1);...
            atmultipole('SQ', 0.2, [0 0.3 0 0], [0 0 0 0]);...
            atquadrupole('Q', 0.5, 1.2);...
            atsbend('B', 1.0, 0.1, 0.0);...
            atmarker('M', 'origin', 'MARK');...
        };
        end
        """,
    )
    assert_matches_pyat(read_at_file(ours), load_with_pyat(at, theirs))


# --------------------------------------------------------------------------- random lattices


def _float(rng, scale=1.0) -> str:
    return repr(float(rng.normal(scale=scale)))


def _row(values) -> str:
    return "[" + " ".join(repr(float(v)) for v in values) + "]"


def _random_element(rng, index: int) -> str:
    """One pyAT-readable constructor call with random values and optional keywords."""
    name, length = f"E{index}", repr(float(rng.uniform(0.05, 2.0)))
    pass_method, keywords = "", []
    kind = int(rng.integers(9))
    if kind == 0:
        call = f"atdrift('{name}', {length}"
    elif kind in (1, 2, 3):
        constructor, strength = {
            1: ("atquadrupole", _float(rng)),
            2: ("atsbend", f"{_float(rng, 0.1)}, {_float(rng)}"),
            3: ("atsextupole", _float(rng, 20)),
        }[kind]
        call = f"{constructor}('{name}', {length}, {strength}"
        if rng.random() < 0.5:
            keywords.append(f"'NumIntSteps', {int(rng.integers(1, 40))}")
        if rng.random() < 0.3:
            keywords.append(f"'MaxOrder', {kind + int(rng.integers(0, 3))}")
        if rng.random() < 0.3:
            keywords.append(f"'FringeQuadEntrance', {int(rng.integers(3))}")
        if kind == 2 and rng.random() < 0.5:
            keywords.append(f"'EntranceAngle', {_float(rng, 0.05)}, 'FullGap', 0.02")
        if rng.random() < 0.3:
            pass_method = "'StrMPoleSymplectic4Pass'" if kind != 2 else "'BendLinearPass'"
    elif kind in (4, 5):
        poly_a = rng.normal(size=int(rng.integers(1, 5)))
        poly_b = rng.normal(size=int(rng.integers(1, 5)))
        polynoms = f"{_row(poly_a)}, {_row(poly_b)}"
        call = f"atmultipole('{name}', {length}, {polynoms}"
        if kind == 5:
            call = f"atthinmultipole('{name}', {polynoms}"
        if rng.random() < 0.4:
            order = max(len(poly_a), len(poly_b)) - 1 + int(rng.integers(0, 3))
            keywords.append(f"'MaxOrder', {order}")
    elif kind == 6:
        call = f"atcorrector('{name}', {length}, {_row(rng.normal(scale=1e-4, size=2))}"
    elif kind == 7:
        call = f"{'atmonitor' if rng.random() < 0.5 else 'atmarker'}('{name}'"
    else:
        call = f"atrfcavity('{name}', 0.0, {abs(float(rng.normal(1e6)))!r}, 3.52e8, 992, 3e9"
    if rng.random() < 0.3:
        keywords.append(f"'T1', {_row(rng.normal(scale=1e-3, size=6))}")
    if rng.random() < 0.2:
        keywords.append(f"'R2', [{';'.join(_row(r)[1:-1] for r in rng.normal(size=(6, 6)))}]")
    if rng.random() < 0.3:
        keywords.append("'origin', 'RANDOM'")
    return ", ".join([call, *filter(None, [pass_method]), *keywords]) + ");..."


def test_random_lattices_match_pyat(at, tmp_path, rng):
    lines = [_random_element(rng, index) for index in range(300)]
    text = "function ring = rand()\nring = {...\natringparam('R', 3e9, 1);...\n"
    path = tmp_path / "rand.m"
    path.write_text(text + "\n".join(lines) + "\n};\nend\n")
    assert_matches_pyat(read_at_file(path), load_with_pyat(at, path))


def test_matlab_conveniences_pyat_lacks(tmp_path):
    """Optional strengths, arguments given by keyword, a pass method right after them."""
    path = write(
        tmp_path,
        "easy.m",
        """
        ring = {atringparam('R', 3e9);...
           atquadrupole('Q1', 0.5);...
           atquadrupole('Q2', 'Length', 0.5, 'K', 1.5);...
           atsbend('B', 1.0, 0.1, 'BendLinearPass')};
        """,
    )
    ring = read_at_file(path)
    assert (ring.name, ring.periodicity) == ("R", 1)
    q1, q2, bend = ring.elements
    assert (q1["K"], q1["PolynomB"], q1["MaxOrder"]) == (0.0, [0.0, 0.0], 1)
    assert (q2["Length"], q2["K"], q2["PolynomB"]) == (0.5, 1.5, [0.0, 1.5])
    assert (bend["PassMethod"], bend["K"], bend["NumIntSteps"]) == ("BendLinearPass", 0.0, 10)


def test_coefficients_beyond_max_order_warn_as_in_pyat(at, tmp_path):
    path = write(
        tmp_path,
        "trunc.m",
        """
        function ring = trunc()
        ring = {...
            atringparam('R', 3e9, 1);...
            atmultipole('M', 0.3, [0], [0 0 5], 'MaxOrder', 1);...
        };
        end
        """,
    )
    with pytest.warns(UserWarning, match=r"'M': PolynomB\[2\] is beyond MaxOrder=1"):
        ours = read_at_file(path)
    assert_matches_pyat(ours, load_with_pyat(at, path))


# --------------------------------------------------------------------------- MATLAB syntax

FANCY = """
% A hand-written cell: comments, continuations, commas, transposes, helpers.
%{
   a block comment
%}
function ring = fancy()
% the lattice
ring = { ...   % a comment after a continuation
    atringparam('CELL', 3e9, 4, ...
                'Particle', struct('name','electron','rest_energy',0.0,'charge',-1.0)); ...
    atdrift('D1', 1.5)   % items separated by a new line
    atquadrupole('Q1', 0.5, 1.2, 'PolynomA', [0, 0, 0.1], 'R1', [1 0 0 0 0 0; 0 1 0 0 0 0; ...
        0 0 1 0 0 0; 0 0 0 1 0 0
        0 0 0 0 1 0; 0 0 0 0 0 1]);
    atsextupole("S1", 0.2, +30.5, 'T1', [0.001;0;0;0;0;0], 'T2', [-1e-3 0 0 0 0 0]')
    ataperture('AP', [-Inf, Inf, -.01, 1E-2]); atmarker('MK', 'flag', True(), 'off', False)
}';
    function v=True()
        v=true;
    end
    function v=False()
        v=false;
    end
end
"""

FANCY_PLAIN = """
function ring = plain()
ring = {...
    atringparam('CELL', 3e9, 4, 'Particle', struct('name', 'electron', 'rest_energy', 0.0, 'charge', -1.0));...
    atdrift('D1', 1.5);...
    atquadrupole('Q1', 0.5, 1.2, 'PolynomA', [0 0 0.1], 'R1', [1 0 0 0 0 0;0 1 0 0 0 0;0 0 1 0 0 0;0 0 0 1 0 0;0 0 0 0 1 0;0 0 0 0 0 1]);...
    atsextupole('S1', 0.2, 30.5, 'T1', [0.001 0 0 0 0 0], 'T2', [-1e-3 0 0 0 0 0]);...
    ataperture('AP', [-Inf Inf -.01 1E-2]);...
    atmarker('MK', 'flag', true, 'off', false);...
};
end
"""


def test_matlab_syntax_variants_read_like_the_plain_file(at, tmp_path):
    fancy = read_at_file(write(tmp_path, "fancy.m", FANCY))
    plain_path = write(tmp_path, "plain.m", FANCY_PLAIN)
    assert_matches_pyat(fancy, load_with_pyat(at, plain_path))
    assert fancy.elements == read_at_file(plain_path).elements


def test_parser_literals():
    parsed = parse_lattice_file(
        'ring = {f(\'it\'\'s\', "say ""hi""", -3, 2.5e-3, .5, 7, -Inf, NaN, true, '
        "[1 -2 3], [1,2;3,4], [0;0], [[1 2];[3 4]], [1 2]', [], {1, 'a'}, "
        "struct('a', 1, 'b', 'x'))};",
        "test.m",
    )
    (call,) = parsed.entries
    assert isinstance(call, Call) and call.name == "f" and call.line == 1
    args = call.args
    assert args[:8] == ("it's", 'say "hi"', -3, 2.5e-3, 0.5, 7, -np.inf, args[7])
    assert isinstance(args[5], int) and np.isnan(args[7]) and args[8] is True
    expected = [[[1, -2, 3]], [[1, 2], [3, 4]], [[0], [0]], [[1, 2], [3, 4]], [[1], [2]]]
    for got, want in zip(args[9:14], expected, strict=True):
        assert got.tolist() == want
    assert args[14].shape == (0, 0)
    assert args[15] == [1, "a"]
    assert args[16] == {"a": 1, "b": "x"}


def test_parser_refuses_arithmetic_inside_a_matrix():
    with pytest.raises(ValueError, match=r"line 1, column \d+.*arithmetic"):
        parse_lattice_file("ring = {f([1 - 2])};", "test.m")


# --------------------------------------------------------------------------- energy


def test_energy_sources(tmp_path):
    body = "function ring = r()\nring = {{{}}};\nend\n"
    cavity = "atrfcavity('RF', 0, 1e6, 5e8, 400, 2e9), atsbend('B', 1, 6.283185307179586)"
    assert read_at_file(write(tmp_path, "a.m", body.format(cavity))).energy == 2e9
    given = read_at_file(write(tmp_path, "b.m", body.format(cavity)), energy=1.5e9)
    assert given.energy == 1.5e9
    # pyAT takes the energy from other elements' Energy too, and removes the field.
    quad = "atquadrupole('Q', 1, 0.5, 'Energy', 3e9); atsbend('B', 1, 6.283185307179586)"
    ring = read_at_file(write(tmp_path, "c.m", body.format(quad)))
    assert ring.energy == 3e9 and "Energy" not in ring.elements[0]
    with pytest.raises(ValueError, match=r"energy is not given: add atringparam.*energy="):
        read_at_file(write(tmp_path, "d.m", body.format("atdrift('D', 1)")))
    disagree = (
        "atrfcavity('A', 0, 1, 5e8, 4, 2e9); atrfcavity('B', 0, 1, 5e8, 4, 3e9); "
        "atsbend('B', 1, 6.283185307179586)"
    )
    with pytest.warns(UserWarning, match="disagree on the energy"):
        ring = read_at_file(write(tmp_path, "e.m", body.format(disagree)))
    assert ring.energy == 3e9


def test_periodicity_is_guessed_from_the_bending_angles(at, tmp_path):
    path = write(
        tmp_path,
        "quarter.m",
        """
        function ring = quarter()
        ring = {...
             atrfcavity('RF', 0, 1e6, 5e8, 400, 2e9);...
             atsbend('B', 1, 0.7853981633974483, 0.0);...
             atsbend('B', 1, 0.7853981633974483, 0.0);...
        };
        end
        """,
    )
    ours = read_at_file(path)
    assert ours.periodicity == 4 and ours.name == "quarter"
    assert_matches_pyat(ours, load_with_pyat(at, path))


# --------------------------------------------------------------------------- bad files


def _element_file(tmp_path, element: str) -> Path:
    return write(
        tmp_path,
        "bad.m",
        f"""
        function ring = bad()
        ring = {{...
            atringparam('R', 3e9, 1);...
            {element};...
        }};
        end
        """,
    )


@pytest.mark.parametrize(
    ("element", "message"),
    [
        ("atfoo('X', 1)", r"bad.m, line 4: unknown element constructor 'atfoo'.*atdrift, "),
        ("atquadrupole('QF')", r"line 4: element 'QF' \(atquadrupole\).*missing.*Length"),
        ("atsbend('B', 1)", r"element 'B' \(atsbend\): missing required argument BendingAngle"),
        ("atdrift('D1, 1.0)", r"line 4, column \d+: unterminated string"),
        ("atdrift('D1', NaN)", r"line 4: element 'D1' \(atdrift\): Length must be finite"),
        ("atquadrupole('Q', 1, Inf)", r"element 'Q'.*K must be finite"),
        ("atmultipole('M', 1, [0 NaN], [0 0])", r"element 'M'.*PolynomA must be finite"),
        ("atquadrupole('Q', 0.5, 'K', 'strong')", r"element 'Q'.*K must be a number; got the str"),
        ("atdrift('D', [1 2])", r"element 'D'.*Length must be a number; got a 1x2 matrix"),
        ("atdrift('D', 1, 2)", r"too many positional arguments: atdrift takes FamName then Length"),
        ("atdrift('D', 1, 'origin')", r"field/value pairs.*'origin' has no value"),
        ("atdrift(1.5)", r"1st argument must be the element name"),
        ("atdrift('D', 2*pi)", r"line 4, column \d+: expected .*arithmetic is not supported"),
        ("atdrift('D', x)", r"line 4, column \d+: .*the name 'x'.*variables are not supported"),
        ("atquadrupole('Q', 1, 0.5, 'PolynomB', [0 0.4])", r"K=0.5 conflicts with PolynomB\[1\]"),
        ("atquadrupole('Q', 1, 0.5, 'NumIntSteps', 2.5)", r"NumIntSteps must be an integer"),
        ("atdrift('D', 1, 'Class', 'Quadrupole')", r"Class 'Quadrupole' contradicts atdrift"),
        ("atbaselem('X', 'DriftPass', 'Length', 1)", r"atbaselem needs a 'Class' keyword"),
        ("atdrift('D', 1, 'dx', 0.001)", r"'dx'.*not supported.*T1/T2/R1/R2"),
        ("atM66('M', [1 2 3])", r"M66 must be a 6x6 matrix"),
    ],
)
def test_bad_elements_name_the_line_element_and_field(tmp_path, element, message):
    with pytest.raises(ValueError, match=message):
        read_at_file(_element_file(tmp_path, element))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("function ring = r()\nring = {atdrift('D', 1)\n", r"line 3.*'\}' closing the cell"),
        ("function ring = r()\nring = {atdrift('D', 1,\n 2)};\nend", r"line 2.*end of the line"),
        (
            "function ring = r()\nring = {atdrift('D', 1); atdrift('E', 1), atdrift('F', 1)\n"
            "atdrift('G', 1), atdrift('H', 1)};\nend",
            r"one row or one column",
        ),
        ("function ring = r()\nring = 3;\nend", r"line 2.*'{' opening the cell array"),
        ("function ring = r()\nend", r"expected an assignment of the lattice cell array"),
        ("function ring = r()\nother = {atdrift('D', 1)};\nend", r"line 2.*function output 'ring'"),
        ("ring = {atdrift('D', 1)};\nend\n", r"line 2.*'end' without a 'function'"),
        ("ring = {atdrift('D', 1) # 1};", r"line 1, column 25: unexpected character '#'"),
        ("ring = {atdrift('D', 1e)};", r"line 1, column 22: malformed number"),
        ("%{\nring = {};\n", r"line 1.*unterminated block comment"),
        ("ring = {atdrift('D', 1); 3};", r"line 1, column 26: expected an element constructor"),
    ],
)
def test_bad_syntax_names_the_file_and_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_at_file(write(tmp_path, "bad.m", text))
