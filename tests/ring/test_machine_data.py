"""pyAT's machine_data rings whose correctors carry PolynomA/B shorter than MaxOrder + 1.

AT accepts these (its multipole constructors pad them with zeros; a Corrector keeps them
and its pass never reads them). Our readers pad them to ``MaxOrder + 1`` everywhere.
The comparisons with pyAT here serve the .mat and E2-bend tests too.
"""

import textwrap
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign import ring
from diffdesign.ring import optics as ring_optics
from diffdesign.ring.at_file import read_at_file
from diffdesign.ring.json_format import validate_element

at = pytest.importorskip("at")
machine_data = pytest.importorskip("machine_data")

MACHINE_DATA = Path(machine_data.__file__).parent
TUNES = jax.jit(ring.tunes)


def _pyat(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", at.AtWarning)
        return at.load_lattice(str(path))


def _padded(value, size: int) -> list[float]:
    value = list(np.atleast_1d(np.asarray(value, dtype=float)))
    return value + [0.0] * (size - len(value))


def assert_same_as_pyat(ours, theirs) -> None:
    """Field by field; PolynomA/B equal pyAT's once both are padded to MaxOrder + 1."""
    assert len(ours.elements) == len(theirs)
    for index, (mine, element) in enumerate(zip(ours.elements, theirs, strict=True)):
        where = f"element {index} {element.FamName}"
        fields = {k: v for k, v in element.items() if not k.startswith("_")}
        assert mine["Class"] == type(element).__name__, where
        assert set(mine) - {"Class"} == set(fields), where
        for key, value in fields.items():
            if key in ("PolynomA", "PolynomB"):
                size = fields["MaxOrder"] + 1
                assert len(mine[key]) >= size, where
                assert mine[key] == _padded(value, len(mine[key])), f"{where}.{key}"
            else:
                np.testing.assert_array_equal(np.asarray(mine[key]), value, err_msg=where)
    assert ours.energy == theirs.energy and ours.periodicity == theirs.periodicity


def assert_optics_match_pyat(lattice, theirs) -> None:
    """4-D optics at every element entrance and the ring's end: tunes to 1e-9, beta to 1e-8
    relative (pyAT's rings have the cavity on, so its default optics would be 6-D)."""
    optics = ring.linear_optics(lattice, None)
    _, data, elements = theirs.disable_6d(copy=True).get_optics(
        refpts=range(lattice.n_elements + 1)
    )
    np.testing.assert_allclose(optics["tunes"], data.tune[:2], rtol=0, atol=1e-9)
    beta = np.stack([optics["beta_x"], optics["beta_y"]], axis=1)
    np.testing.assert_allclose(beta, elements.beta, rtol=1e-8)


@pytest.mark.parametrize(
    ("name", "short"),
    [("thomx.m", "HCOR"), ("soleil.m", "K3"), ("australian_synchrotron.m", "KICK")],
)
def test_files_with_short_corrector_polynoms_read_like_pyat(name, short):
    ours, theirs = read_at_file(MACHINE_DATA / name), _pyat(MACHINE_DATA / name)
    assert_same_as_pyat(ours, theirs)
    corrector = next(e for e in ours.elements if e["FamName"] == short)
    assert (corrector["PolynomA"], corrector["PolynomB"], corrector["MaxOrder"]) == (
        [0.0, 0.0],
        [0.0, 0.0],
        1,
    )
    np.testing.assert_allclose(
        sum(e["Length"] for e in ours.elements), theirs.circumference, rtol=1e-14
    )


@pytest.mark.parametrize("name", ["thomx.m", "soleil.m"])
def test_tunes_match_pyat(name):
    """4-D tunes: pyAT's rings have the cavity on, so its default optics would be 6-D."""
    ours = TUNES(ring.load_lattice(MACHINE_DATA / name))
    _, data, _ = _pyat(MACHINE_DATA / name).disable_6d(copy=True).get_optics()
    np.testing.assert_allclose(ours, data.tune[:2], rtol=0, atol=1e-9)


def test_short_polynoms_are_padded_in_a_written_file(tmp_path):
    path = tmp_path / "short.m"
    path.write_text(
        textwrap.dedent(
            """
            function ring = short()
            ring = {...
                atringparam('R', 3e9, 1);...
                atcorrector('KICK', 0, [0 0], 'PolynomA', 0, 'PolynomB', 0, 'MaxOrder', 1);...
                atmultipole('M', 0.3, [0], [0 0.5], 'MaxOrder', 3);...
                atquadrupole('Q', 0.3, 0.5, 'PolynomA', [0], 'MaxOrder', 1);...
            };
            end
            """
        ).lstrip("\n")
    )
    ours, theirs = read_at_file(path), _pyat(path)
    assert_same_as_pyat(ours, theirs)
    kick, multipole, quadrupole = ours.elements
    assert kick["PolynomA"] == kick["PolynomB"] == [0.0, 0.0]
    # the multipole classes are padded by pyAT too: exactly its arrays
    assert multipole["PolynomB"] == list(theirs[1].PolynomB) == [0.0, 0.5, 0.0, 0.0]
    assert quadrupole["PolynomA"] == list(theirs[2].PolynomA) == [0.0, 0.0]


def test_validate_element_pads_and_keeps_longer_polynoms():
    short = validate_element(
        {
            "Class": "Corrector", "FamName": "C", "Length": 0.0, "PassMethod": "CorrectorPass",
            "KickAngle": [0.0, 0.0], "PolynomA": [0.0], "PolynomB": [], "MaxOrder": 2,
        }
    )  # fmt: skip
    assert short["PolynomA"] == short["PolynomB"] == [0.0, 0.0, 0.0]
    longer = validate_element(
        {
            "Class": "Multipole", "FamName": "M", "Length": 0.2,
            "PassMethod": "StrMPoleSymplectic4Pass", "PolynomA": [0.0, 0.0, 0.0],
            "PolynomB": [0.0, 1.0, 2.0, 3.0], "MaxOrder": 1, "NumIntSteps": 10,
        }
    )  # fmt: skip
    # as pyAT: coefficients beyond MaxOrder are kept (and ignored by the passes)
    assert longer["PolynomB"] == [0.0, 1.0, 2.0, 3.0]


def test_coefficients_beyond_max_order_are_ignored_in_tracking_as_in_pyat():
    """pyAT keeps longer PolynomA/B, and its passes stop at MaxOrder; ours do the same."""
    elements = [
        at.Multipole("M", 0.2, [0, 0, 0, 20.0], [0, 0.3, 0, 300.0]),
        at.ThinMultipole("T", [0, 0, 0, 20.0], [0, 0.3, 0, 300.0]),
        at.Quadrupole("Q", 0.2, 0.3, PolynomB=[0, 0.3, 50.0, 300.0]),
    ]
    for element in elements:
        with pytest.warns(at.AtWarning, match="truncated by MaxOrder=1"):
            element.MaxOrder = 1
    lattice = ring.Lattice.from_description(ring.from_pyat(at.Lattice(elements, energy=3e9)))
    z = np.array([3e-3, 1e-4, 2e-3, -1e-4, 1e-3, 0.0])
    exits = ring_optics.element_exits(lattice, jnp.broadcast_to(jnp.asarray(z), (3, 6)))
    for i, element in enumerate(elements):
        expected = at.element_track(element, np.asfortranarray(z[:, None].copy()))
        np.testing.assert_allclose(
            exits[i], np.asarray(expected).reshape(6), rtol=0, atol=1e-18, err_msg=element.FamName
        )
