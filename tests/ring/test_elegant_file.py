"""The native Elegant reader: the packaged NSLS-II ring as pyAT reads it, each syntax
feature on small files, and the malformed files' messages."""

import contextlib
import io
import math
import re
import textwrap
import warnings

import numpy as np
import pytest

from diffdesign import ring
from diffdesign.ring.catalogue import DATA
from diffdesign.ring.elegant_file import read_elegant_file
from diffdesign.ring.lattice import Lattice

at = pytest.importorskip("at")
from tests.ring.test_machine_data import assert_same_as_pyat  # noqa: E402

COMM_RING = DATA / "comm-ring.lte"


def _pyat(path, **kwargs):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return at.load_elegant(str(path), energy=3e9, **kwargs)


def _write(tmp_path, text: str, name: str = "lattice.lte"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def _read(tmp_path, text: str, **kwargs):
    return read_elegant_file(_write(tmp_path, text), energy=3e9, **kwargs)


def _names(description) -> list[str]:
    return [e["FamName"] for e in description.elements]


# --------------------------------------------------------------------------- comm-ring


@pytest.fixture(scope="module")
def comm_ring():
    return read_elegant_file(COMM_RING, energy=3e9), _pyat(COMM_RING)


def test_comm_ring_equals_pyat_field_by_field(comm_ring):
    ours, theirs = comm_ring
    assert_same_as_pyat(ours, theirs)
    assert len(ours.elements) == 3570 and ours.name == "RING" and ours.particle == "relativistic"
    classes = {e["Class"] for e in ours.elements}
    assert classes == {
        "Drift", "Marker", "ThinMultipole", "Sextupole", "Monitor", "Quadrupole", "Corrector",
        "Dipole",
    }  # fmt: skip


def test_comm_ring_tunes_agree_with_pyat(comm_ring):
    ours, theirs = comm_ring
    tunes = ring.tunes(Lattice.from_description(ours))
    _, data, _ = theirs.disable_6d(copy=True).get_optics()
    np.testing.assert_allclose(tunes, data.tune[:2], rtol=0, atol=1e-9)


def test_use_line_selects_another_line():
    longer = read_elegant_file(COMM_RING, energy=3e9, use_line="ring0")
    assert longer.name == "RING0"
    assert _names(longer)[-4:] == ["LMALIGN", "BPMMALIGN", "LMALIGN", "BPMMALIGN"]
    assert len(longer.elements) == 3574


# --------------------------------------------------------------------------- mapping


def test_every_mapped_type_equals_pyat(tmp_path):
    """Types, inheritance, N_KICKS, tilts, shifts, reversal and multiplicities as pyAT."""
    text = """
        Q1: KQUAD, L=0.3, K1="0.5 2 *", TILT=0.1, N_KICKS=16
        Q2: Q1, K1=-0.4
        Q3: QUAD, L=0.3, K1=0.2, DX=0.001, DY=-0.002
        B1: CSBEND, L=1.0, ANGLE=0.1, E1=0.02, E2=0.03, HGAP=0.015, FINT=0.5, K1=-0.1, K2=1.0
        B2: RBEN, L=1.0, ANGLE=0.1, E1=0.01
        B3: SBEND, L=1.2, ANGLE=0.05, N_SLICES=7
        M1: MULT, KNL=0.2, ORDER=2
        M2: MULT, L=0.1, KNL=0.2, ORDER=2
        M3: MULT
        BP: MONI, L=0.2
        HB: HMON
        HK: HKICK, L=0.1, KICK=1e-4
        VK: VKICK, KICK=2e-4
        K3: KICKER, HKICK=1e-5, VKICK=2e-5
        S1: KSEXT, L=0.2, K2=3
        O1: KOCT, L=0.2, K3=6
        QS: KQUSE, L=0.2, K1=1, K2=4
        RF: RFCA, L=0.0, VOLT=2e6, FREQ=500e6, PHASE=170
        RF2: RFCW, L=0.3, VOLT=2e6, FREQ=500e6
        CO: ECOL, L=0.5
        MK: MARK, FITPOINT=1
        W: WATCH, FILENAME="%s.w1", MODE=coordinate
        D: DRIFT, L=1
        C: LINE=(D,Q1,-B1,B1)
        RING: LINE=(C,-C,2*Q2,Q3,B2,B3,M1,M2,M3,BP,HB,HK,VK,K3,S1,O1,QS,RF,RF2,CO,MK,W)
    """
    path = _write(tmp_path, text)
    ours = read_elegant_file(path, energy=3e9)
    assert_same_as_pyat(ours, _pyat(path))
    assert ours.extra == {"harmonic_number": ours.elements[-3]["HarmNumber"]}


def test_tilt_and_shift_together_as_pyat(tmp_path):
    path = _write(
        tmp_path, "Q: KQUAD, L=0.3, K1=0.2, DX=0.001, DY=0.002, TILT=0.2\nRING: LINE=(Q, Q)\n"
    )
    (ours, _), (theirs, _) = read_elegant_file(path, energy=3e9).elements, _pyat(path)
    for key in ("R1", "R2", "T1", "T2"):  # pyAT rotates the shift there and back
        np.testing.assert_allclose(ours[key], getattr(theirs, key), rtol=0, atol=1e-17)


def test_values_differing_from_pyat_on_purpose(tmp_path):
    ours = _read(
        tmp_path,
        """
        S: KSEXT, L=0.2, K1=0.5, K2=3
        B: RBEN, L=1.0, ANGLE=-0.1
        Q: KQUAD, L=0.2, K1=1, N_KICKS=2
        R: LINE=(S, B, Q)
        """,
    )
    sextupole, bend, quadrupole = ours.elements
    assert sextupole["PolynomB"] == [0.0, 0.5, 1.5]  # pyAT drops K1
    assert bend["EntranceAngle"] == bend["ExitAngle"] == -0.05  # pyAT: +|angle|/2
    assert bend["Length"] == pytest.approx(0.05 / math.sin(0.05))
    assert quadrupole["NumIntSteps"] == 1  # pyAT: int(2 / 4) = 0 steps


# --------------------------------------------------------------------------- syntax


def test_syntax_case_comments_continuations_quotes(tmp_path):
    ours = _read(
        tmp_path,
        """
        ! a comment line
        d1: drif, l=0.5   ! trailing comment, with "quotes" and , commas
        "Q-a": kquad, &
           L=0.25, &   ! continued
           k1=1.5
        line1: line = ( D1, "Q-a", &
                        d1 )
        """,
    )
    assert _names(ours) == ["D1", "Q-a", "D1"]
    assert ours.elements[1]["K"] == 1.5 and ours.elements[1]["Length"] == 0.25
    assert ours.name == "LINE1"


def test_rpn_values_and_variables(tmp_path):
    ours = _read(
        tmp_path,
        """
        % 0.5 sto kq
        % 2 sqrt sto r2
        % pi 4 / sin sto s45 pop
        % 3 2 pow sto nine
        Q1: KQUAD, L="0.1 2 *", K1="kq r2 *"
        Q2: KQUAD, L=0.2, K1="s45 s45 * 1 swap - chs"
        Q3: KQUAD, L=0.2, K1="nine 10 / 3 - abs", TILT="pi 4 /"
        Q4: KQUAD, L=0.2, K1="1 exp ln sqr 2 /"
        R: LINE=(Q1, Q2, Q3, Q4)
        """,
    )
    q1, q2, q3, q4 = ours.elements
    assert q1["Length"] == pytest.approx(0.2) and q1["K"] == pytest.approx(0.5 * math.sqrt(2))
    assert q2["K"] == pytest.approx(-0.5)  # -(1 - sin^2 45)
    assert q3["K"] == pytest.approx(2.1)
    assert q3["R1"][0][2] == pytest.approx(math.sin(math.pi / 4))
    assert q4["K"] == pytest.approx(0.5)


def test_reversed_lines_and_multiplicities(tmp_path):
    ours = _read(
        tmp_path,
        """
        A: DRIF, L=1
        B: MARK
        E: CSBEND, L=1, ANGLE=0.1, E1=0.01, E2=0.03
        C: KQUAD, L=0.1, K1=1
        SUB: LINE=(A, B, E)
        R: LINE=(-SUB, 2*C, 2*(A, B), -2*(A, E), -(C, SUB))
        """,
    )
    assert _names(ours) == [
        "E", "B", "A", "C", "C", "A", "B", "A", "B", "E", "A", "E", "A", "E", "B", "A", "C",
    ]  # fmt: skip
    edges = [(e["EntranceAngle"], e["ExitAngle"]) for e in ours.elements if e["FamName"] == "E"]
    assert edges == [(0.03, 0.01)] * 4  # every E is placed reversed


def test_inheritance_keeps_and_overrides(tmp_path):
    ours = _read(
        tmp_path,
        """
        Q1: KQUAD, L=0.3, K1=1.0, N_KICKS=8
        Q2: Q1, K1=-2.0
        Q3: Q2
        R: LINE=(Q1, Q2, Q3)
        """,
    )
    assert [(e["Length"], e["K"], e["NumIntSteps"]) for e in ours.elements] == [
        (0.3, 1.0, 2), (0.3, -2.0, 2), (0.3, -2.0, 2),
    ]  # fmt: skip
    assert {e["origin"] for e in ours.elements} == {"KQUAD"}


def test_use_statement_and_last_line_default_and_return(tmp_path):
    text = """
        A: DRIF, L=1
        B: MARK
        FIRST: LINE=(A)
        SECOND: LINE=(B, A)
        {use}
        RETURN
        C: NOT_A_TYPE_EVER
        THIRD: LINE=(C)
    """
    assert _read(tmp_path, text.format(use="USE, first")).name == "FIRST"
    assert _read(tmp_path, text.format(use="")).name == "SECOND"
    assert _read(tmp_path, text.format(use=""), use_line="First").name == "FIRST"


def test_include_reads_the_file_in_place(tmp_path):
    _write(tmp_path, "QX: KQUAD, L=0.2, K1=0.7\n", "magnets.lte")
    ours = _read(tmp_path, '#include "magnets.lte"\nD: DRIF, L=1\nR: LINE=(D, QX)\n')
    assert _names(ours) == ["D", "QX"]


def test_unused_unknown_types_are_not_an_error(tmp_path):
    ours = _read(tmp_path, "S: SOLENOID, L=1, KS=0.1\nD: DRIF, L=1\nR: LINE=(D)\n")
    assert _names(ours) == ["D"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("D: DRIF, L=1\nR: LINE=(D, (D)\n", r":2: unbalanced parentheses"),
        ("D: DRIF, L=1\nR: LINE=(D))\n", r":2: unbalanced parentheses"),
        ("D: DRIF, L=1\nR: LINE=(D, X)\n", r":2: LINE 'R': 'X' is neither an element nor a line"),
        ('D: DRIF, L="lx 2 *"\nR: LINE=(D)\n', r":1: RPN 'lx 2 \*': unknown variable .* 'lx'"),
        ("% 1 sto LX\nD: DRIF, L=\"lx\"\n", r":2: .*'lx'.*did you mean 'LX'"),
        ('D: DRIF, L="1 +"\nR: LINE=(D)\n', r":1: RPN '1 \+': '\+' needs 2 value"),
        ("D: DRIF, L=\"1 2\"\n", r":1: L=\"1 2\": the RPN expression leaves 2 values"),
        ("D: DRIF, L=abc\n", r":1: L=abc: not a number"),
        ("D: DRIF, L=1\nA: LINE=(D, B)\nB: LINE=(A)\n", r":3: LINE 'B' contains itself \(B -> A -> B\)"),
        ("D: DRIF, L=1\n\nS: SOLENOID, L=1\nR: LINE=(D, S)\n", r":3: element 'S' \(SOLENOID\): unknown element type 'SOLENOID'"),
        ("Q: KQUAD, L=1, K1=1, FSE=0.01\nR: LINE=(Q)\n", r":1: element 'Q' \(KQUAD\): FSE=0.01 is not supported"),
        ("B: CSBEND, L=1, ANGLE=0.1, TILT=0.1\nR: LINE=(B)\n", r":1: element 'B' \(CSBEND\): TILT=0.1 is not"),
        ("M: MALIGN, DX=0.001\nD: DRIF, L=1\nR: LINE=(M, D)\n", r":1: element 'M' \(MALIGN\): DX=0.001"),
        ("Q: KQUAD, K1=1\nR: LINE=(Q)\n", r":1: element 'Q' \(KQUAD\): missing parameter L"),
        ("C: RFCA, VOLT=1e6\nR: LINE=(C)\n", r":1: element 'C' \(RFCA\): missing parameter FREQ"),
        ("D: DRIF, L=1\n\nR: LINE=(D, &\n", r":3: the file ends inside a continued statement"),
        ('D: DRIF, L="1\nR: LINE=(D)\n', r":1: unbalanced quote"),
        ("D: DRIF, L=1\nR: LINE=(D)\nUSE, NOPE\n", r":3: USE, NOPE: there is no LINE 'NOPE'"),
        ("D: DRIF, L=1\n", r":1: the file defines no LINE to use"),
        ("", r":1: the file defines no elements and no LINE"),
        ("! only a comment\n", r":1: the file defines no elements and no LINE"),
        ('#include "missing.lte"\n', r":1: #include: file .*missing.lte.* does not exist"),
        ("D: DRIF, L=1\nR: LINE=(D)\nwhat is this\n", r":3: cannot read the statement"),
        ("D: DRIF, L\nR: LINE=(D)\n", r":1: element 'D': expected KEY=VALUE; got 'L'"),
        ("D: DRIF, L=1\nR: LINE=(D, 2.5*D)\n", r":2: invalid multiplicity '2.5'"),
        ("D: DRIF, L=1\nR: LINE=(D, D)\nL2: LINE=(R)\n", None),
    ],
)  # fmt: skip
def test_malformed_files_are_named(tmp_path, text, message):
    path = _write(tmp_path, text) if text else tmp_path / "lattice.lte"
    if not text:
        path.write_text("")
    if message is None:
        assert _names(read_elegant_file(path, energy=3e9)) == ["D", "D"]
        return
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}{message}"):
        read_elegant_file(path, energy=3e9)


def test_non_utf8_and_bad_arguments(tmp_path):
    path = tmp_path / "latin1.lte"
    path.write_bytes("D: DRIF, L=1 ! caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.lte:1: not a text file in UTF-8"):
        read_elegant_file(path, energy=3e9)
    good = _write(tmp_path, "D: DRIF, L=1\nR: LINE=(D)\n")
    with pytest.raises(ValueError, match="energy must be a finite energy > 0 eV"):
        read_elegant_file(good, energy=0.0)
    with pytest.raises(ValueError, match="no LINE named 'nope'; the lines are: R"):
        read_elegant_file(good, energy=3e9, use_line="nope")
    with pytest.raises(ValueError, match="does not exist"):
        read_elegant_file(tmp_path / "absent.lte", energy=3e9)
