"""AT rings saved as MATLAB .mat files: read as pyAT reads them, and refused with the file's
name when malformed. The comparisons with pyAT need it (the ``peers`` extra) and its
``machine_data`` package; the malformed files do not."""

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io

from diffdesign import ring
from diffdesign.ring.mat_file import read_mat_file

#: every .mat file of machine_data that pyAT 0.9.0 loads
READ_BY_PYAT = ("dba.mat", "err.mat", "hmba.mat", "noenergy.mat", "noringparam.mat")


@pytest.fixture(scope="module")
def pyat() -> SimpleNamespace:
    """pyAT, its reader and the comparisons of tests/ring/test_machine_data.py."""
    at = pytest.importorskip("at")
    from tests.ring import test_machine_data

    return SimpleNamespace(
        at=at,
        load=test_machine_data._pyat,
        assert_same=test_machine_data.assert_same_as_pyat,
        assert_optics=test_machine_data.assert_optics_match_pyat,
    )


@pytest.fixture(scope="module")
def machine_data(pyat) -> Path:
    return Path(pytest.importorskip("machine_data").__file__).parent


def test_every_mat_file_of_machine_data_is_covered(machine_data):
    assert {p.name for p in machine_data.glob("*.mat")} == {*READ_BY_PYAT, "errnoclass.mat"}


@pytest.mark.parametrize("name", READ_BY_PYAT)
def test_mat_files_read_like_pyat(pyat, machine_data, name):
    if name == "err.mat":  # 987 quadrupoles' and dipoles' K contradict their PolynomB
        with pytest.warns(UserWarning, match=r"err.mat: 1620 fields.*RING\{6\} 'QF1J': K="):
            ours = read_mat_file(machine_data / name)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ours = read_mat_file(machine_data / name)
    theirs = pyat.load(machine_data / name)
    pyat.assert_same(ours, theirs)
    assert ours.name == (theirs.name or Path(name).stem)
    if name == "err.mat":  # the K that pyAT drops is replaced by PolynomB[1], as pyAT does
        quad = next(e for e in ours.elements if e["FamName"] == "QF1J")
        assert quad["K"] == quad["PolynomB"][1] == 1.0957951545472804


def test_errnoclass_is_refused_as_pyat_refuses_it(pyat, machine_data):
    """Without Class, its quadrupoles are Multipoles (StrMPoleSymplectic4Pass) whose K
    contradicts PolynomB: pyAT raises, and so do we."""
    with pytest.raises(pyat.at.AtError, match="Conflicting element data"):
        pyat.load(machine_data / "errnoclass.mat")
    with pytest.raises(
        ValueError,
        match=r"errnoclass.mat, RING\{6\}: element 'QF1J': K=1.09578.* conflicts with "
        r"PolynomB\[1\]=1.09579.* for Class 'Multipole'",
    ):
        read_mat_file(machine_data / "errnoclass.mat")


def test_hmba_optics_match_pyat(pyat, machine_data):
    """4-D optics at every element as pyAT's. noenergy.mat and noringparam.mat hold the same
    elements (their rings differ only in how the energy and periodicity are given), so
    their optics are these."""
    lattice = ring.load_lattice(machine_data / "hmba.mat")
    pyat.assert_optics(lattice, pyat.load(machine_data / "hmba.mat"))
    hmba = read_mat_file(machine_data / "hmba.mat")
    for name in ("noenergy.mat", "noringparam.mat"):
        other = read_mat_file(machine_data / name)
        assert other.elements == hmba.elements
        assert (other.energy, other.periodicity) == (hmba.energy, hmba.periodicity)


@pytest.mark.slow  # ~28 s on 2 cores: in CI's second stage (-m slow)
def test_err_closed_orbit_and_optics_match_pyat(pyat, machine_data):
    """A ring with errors (a 0.6 mm closed orbit through 4,175 elements, skew errors that
    couple the planes): the orbit at every element entrance to 1e-12 m, tunes to 1e-9 and
    the normal-mode beta to 1e-8 relative against pyAT's Sagan-Rubin optics (``linopt4``,
    our definition; its default ``linopt6`` defines coupled beta otherwise, 3e-4 apart
    here). Its PolynomB rows run to 17 coefficients but every MaxOrder is 8, so the lattice
    keeps 9 (AT's passes stop at MaxOrder; the 17-wide table made the optics 2.4x slower)."""
    with pytest.warns(UserWarning, match="err.mat: 1620 fields"):
        lattice = ring.load_lattice(machine_data / "err.mat")
    assert lattice.params.polynom_b.shape == (4175, 9)
    theirs = pyat.load(machine_data / "err.mat").disable_6d(copy=True)
    _, data, elements = theirs.get_optics(refpts=range(4176), method=pyat.at.linopt4)
    optics = ring.linear_optics(lattice, None)
    np.testing.assert_allclose(optics["tunes"], data.tune[:2], rtol=0, atol=1e-9)
    beta = np.stack([optics["beta_x"], optics["beta_y"]], axis=1)
    np.testing.assert_allclose(beta, elements.beta, rtol=1e-8)
    orbit = optics["orbit"]  # the closed orbit the optics were linearised on
    assert np.max(np.abs(elements.closed_orbit[:, 0])) > 5e-4  # the errors' orbit
    np.testing.assert_allclose(orbit[:, :4], elements.closed_orbit[:, :4], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- written files


def _cells(*elements: dict) -> np.ndarray:
    cells = np.empty((len(elements), 1), dtype=object)
    for i, element in enumerate(elements):
        cells[i, 0] = element
    return cells


def _save(path: Path, **variables) -> Path:
    scipy.io.savemat(path, variables)
    return path


def test_classes_are_guessed_as_pyat_guesses_them(pyat, tmp_path):
    path = _save(
        tmp_path / "guess.mat",
        ring=_cells(
            {"FamName": "R", "PassMethod": "IdentityPass", "Energy": 3e9, "Periodicity": 0.0},
            {"FamName": "D", "PassMethod": "DriftPass", "Length": 1.0},
            {"FamName": "BPM", "PassMethod": "IdentityPass", "Length": 0.0},
            {"FamName": "M", "PassMethod": "IdentityPass", "Length": 0.0},
            {
                "FamName": "QF", "PassMethod": "StrMPoleSymplectic4Pass", "Length": 0.5,
                "PolynomA": [0.0, 0.0], "PolynomB": [0.0, 0.6], "MaxOrder": 1.0,
                "NumIntSteps": 10.0,
            },
            {
                "FamName": "QD", "Class": "Quadrupole", "PassMethod": "StrMPoleSymplectic4Pass",
                "Length": 0.5, "K": -0.5, "PolynomA": [0.0, 0.0], "PolynomB": [0.0, -0.45],
                "MaxOrder": 1.0, "NumIntSteps": 10.0,
            },
            {
                "FamName": "S", "PassMethod": "ThinMPolePass", "Length": 0.0,
                "PolynomA": [0.0, 0.0, 0.0], "PolynomB": [0.0, 0.0, 3.0], "MaxOrder": 2.0,
            },
            {
                "FamName": "B", "PassMethod": "BndMPoleSymplectic4E2Pass", "Length": 1.0,
                "BendingAngle": np.pi / 4, "EntranceAngle": 0.0, "ExitAngle": 0.0,
                "PolynomA": [0.0, 0.0], "PolynomB": [0.0, 0.0], "MaxOrder": 1.0,
                "NumIntSteps": 10.0, "H1": 0.1,
            },
            {"FamName": "C", "PassMethod": "CorrectorPass", "Length": 0.0, "KickAngle": [0.0, 0.0]},
        ),
    )  # fmt: skip
    with pytest.warns(UserWarning, match=r"ring\{6\} 'QD': K=-0.5 conflicts with PolynomB"):
        ours = read_mat_file(path)
    theirs = pyat.load(path)
    pyat.assert_same(ours, theirs)
    assert [e["Class"] for e in ours.elements] == [
        "Drift", "Monitor", "Marker", "Multipole", "Quadrupole", "ThinMultipole", "Dipole",
        "Corrector",
    ]  # fmt: skip
    assert ours.periodicity == 8  # guessed from the bending angles, as pyAT does
    assert ours.elements[4]["K"] == ours.elements[4]["PolynomB"][1] == -0.45


def _small_ring() -> np.ndarray:
    return _cells(
        {"FamName": "R", "Class": "RingParam", "PassMethod": "IdentityPass", "Energy": 3e9,
         "Periodicity": 4.0},
        {"FamName": "D", "Class": "Drift", "PassMethod": "DriftPass", "Length": 1.0},
        {
            "FamName": "Q", "Class": "Quadrupole", "PassMethod": "StrMPoleSymplectic4Pass",
            "Length": 0.5, "PolynomA": [0.0, 0.0], "PolynomB": [0.0, 0.6], "MaxOrder": 1.0,
            "NumIntSteps": 10.0,
        },
    )  # fmt: skip


def test_use_selects_the_variable(tmp_path):
    """As pyAT: `use`, else the only variable, else RING; then the only cell array."""
    cells = _small_ring()
    expected = read_mat_file(_save(tmp_path / "one.mat", anything=cells))
    assert [e["FamName"] for e in expected.elements] == ["D", "Q"]
    assert (expected.energy, expected.periodicity, expected.name) == (3e9, 4, "R")
    only_cells = _save(tmp_path / "cells.mat", lattice=cells, other=np.eye(2))
    assert read_mat_file(only_cells).elements == expected.elements
    two = _save(tmp_path / "two.mat", lattice=cells, copy=cells[1:])
    with pytest.raises(ValueError, match=r"two.mat: no variable 'RING'.*use=NAME"):
        read_mat_file(two)
    assert read_mat_file(two, use="lattice").elements == expected.elements
    with pytest.raises(ValueError, match=r"two.mat: no variable 'ring'"):
        read_mat_file(two, use="ring")


def _v73_header() -> bytes:
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5"
    return text.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM" + b"\0" * 384


_STRUCT_WITHOUT_NAME = {"PassMethod": "DriftPass", "Length": 1.0}
_STRUCT_WITHOUT_PASS = {"FamName": "D", "Length": 1.0}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"bad.mat: not a MATLAB .mat file"),
        (b"function ring = bad()\n" * 20, r"bad.mat: not a MATLAB .mat file"),
        (_v73_header(), r"bad.mat: a MATLAB v7.3 \(HDF5\) .mat file, which scipy cannot read"),
        ("truncated", r"bad.mat: a damaged or unsupported .mat file \(OSError"),
        ("corrupted", r"bad.mat: a damaged or unsupported .mat file \(error: Error -3"),
        ({"RING": np.eye(3)}, r"bad.mat: variable 'RING' is not a cell array.*3x3 matrix"),
        ({"RING": _cells(_STRUCT_WITHOUT_NAME)}, r"RING\{1\}: element '\?'.*FamName must be"),
        ({"RING": _cells(_STRUCT_WITHOUT_PASS)}, r"RING\{1\}: element 'D'.*PassMethod must be"),
        (
            {"RING": _cells({"FamName": "W", "Class": "Wiggler", "PassMethod": "GWigPass"})},
            r"RING\{1\}: element 'W'.*Class 'Wiggler' is not supported",
        ),
        (
            {"RING": _cells(
                {"FamName": "D", "Class": "Drift", "PassMethod": "DriftPass", "Length": np.nan}
            )},
            r"bad.mat, RING\{1\}: element 'D'.*Length must be finite",
        ),
        (
            {"RING": _cells({"FamName": "X", "PassMethod": "XPass"})},
            r"RING\{1\}: element 'X'.*no Class field, and neither its name",
        ),
        (
            {"RING": _cells({"FamName": "D", "PassMethod": "DriftPass", "Length": 1.0})},
            r"bad.mat: the ring energy is not given.*energy=ENERGY_eV",
        ),
    ],
)  # fmt: skip
def test_malformed_files_name_the_file_and_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad.mat"
    if isinstance(content, dict):
        scipy.io.savemat(path, content)
    elif isinstance(content, str):  # a compressed (v7) file, cut short or with bad bytes
        scipy.io.savemat(path, {"RING": _small_ring()}, do_compression=True)
        data = path.read_bytes()
        cut = data[: len(data) // 2]
        path.write_bytes(cut if content == "truncated" else cut + b"\xff" * 40 + data[-40:])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_mat_file(path)


def test_load_lattice_reads_mat_files_and_names_the_suffixes(tmp_path):
    path = _save(tmp_path / "small.mat", RING=_small_ring())
    lattice = ring.load_lattice(path)
    assert lattice.names == ("D", "Q") and lattice.periodicity == 4
    assert ring.lattice_path(str(path)) == path
    with pytest.raises(ValueError, match=r"\.mat \(AT saved by MATLAB\).*got 'ring.txt'"):
        ring.lattice_path("ring.txt")
