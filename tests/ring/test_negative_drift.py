"""Negative drift lengths in rings: accepted and tracked as pyAT tracks them."""

import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign import ring
from diffdesign.ring import optics as ring_optics
from diffdesign.ring.at_file import read_at_file
from diffdesign.ring.json_format import read_lattice_json, write_lattice_json
from diffdesign.ring.lattice import Lattice

at = pytest.importorskip("at")

SMALL_RING = Path(__file__).parent / "data" / "small_ring.m"


def _relative(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.fixture(scope="module")
def overlapping_ring(tmp_path_factory) -> Path:
    """The small ring with each 0.4 m drift made 0.7 m and followed by a -0.3 m drift.

    The backwards drift sits between a corrector and a quadrupole, so the optics differ
    from the original ring's wherever the beam is off axis or diverging.
    """
    text = SMALL_RING.read_text()
    original = "atdrift('D2', 0.4);...\n"
    assert original in text
    text = text.replace(original, "atdrift('D2', 0.7);...\n    atdrift('DNEG', -0.3);...\n")
    path = tmp_path_factory.mktemp("negative") / "overlapping.m"
    path.write_text(text)
    return path


def _pyat(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", at.AtWarning)
        return at.load_lattice(str(path))


def test_optics_match_pyat(overlapping_ring):
    lattice = ring.load_lattice(overlapping_ring)
    negative = lattice.indices("DNEG")
    assert len(negative) == 8 and np.all(np.asarray(lattice.params.length)[negative] == -0.3)
    theirs = _pyat(overlapping_ring)
    assert [e.Length for e in theirs if e.FamName == "DNEG"] == [-0.3] * 8
    optics = jax.jit(ring.linear_optics)(lattice)
    _, data, expected = theirs.get_optics(refpts=at.Monitor)
    np.testing.assert_allclose(optics["tunes"], data.tune, rtol=0, atol=1e-11)
    for ours, column in (("beta_x", 0), ("beta_y", 1)):
        assert _relative(optics[ours], expected.beta[:, column]) < 1e-10
    # pyAT differentiates the orbit in delta numerically: 4.4e-10 on the original ring too
    assert _relative(optics["eta_x"], expected.dispersion[:, 0]) < 1e-9
    np.testing.assert_allclose(optics["s"], expected.s_pos, rtol=1e-14)


def test_backwards_drift_tracks_like_pyat():
    elements = [at.Drift("DF", 1.3), at.Drift("DB", -1.3), at.Drift("DB2", -0.45)]
    lattice = Lattice.from_description(ring.from_pyat(at.Lattice(elements, energy=3e9)))
    rng = np.random.default_rng(5)
    particles = rng.normal(0, 1, (40, 6)) * np.asarray([1e-3, 1e-4, 1e-3, 1e-4, 1e-3, 1e-3])
    every_exit = jax.vmap(
        lambda z: ring_optics.element_exits(lattice, jnp.broadcast_to(z, (len(elements), 6)))
    )(jnp.asarray(particles))
    for i, element in enumerate(elements):
        expected = at.element_track(element, np.asfortranarray(particles.T.copy()))
        expected = np.asarray(expected).reshape(6, -1).T
        np.testing.assert_allclose(
            np.asarray(every_exit[:, i]), expected, rtol=0, atol=2e-16, err_msg=element.FamName
        )
    # forward then backward over the same length is the identity to rounding
    back = jax.vmap(lambda z: ring_optics.element_exits(lattice, z[None].repeat(3, 0)))(
        jnp.asarray(every_exit[:, 0])
    )
    np.testing.assert_allclose(back[:, 1], particles, rtol=0, atol=1e-18)


def test_negative_length_survives_json(overlapping_ring, tmp_path):
    description = read_at_file(overlapping_ring)
    write_lattice_json(description, tmp_path / "ring.json")
    again = read_lattice_json(tmp_path / "ring.json")
    lengths = [e["Length"] for e in again.elements if e["FamName"] == "DNEG"]
    assert lengths == [-0.3] * 8


@pytest.mark.parametrize("bad", ["NaN", "Inf", "-Inf"])
def test_non_finite_drift_length_is_named(tmp_path, bad):
    path = tmp_path / "bad.m"
    path.write_text(
        f"function ring = bad()\nring = {{...\n    atringparam('R', 3e9, 1);...\n"
        f"    atdrift('D1', {bad});...\n}};\nend\n"
    )
    with pytest.raises(ValueError, match=r"element 'D1' \(atdrift\): Length must be finite"):
        read_at_file(path)
