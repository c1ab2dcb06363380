"""BndMPoleSymplectic4E2Pass: AT's bend with a curvilinear body and second-order edges
(pole-face curvature H1/H2, fringe field FullGap * FringeInt), against pyAT."""

import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign import ring
from diffdesign.ring import optics as ring_optics
from tests.ring.test_machine_data import assert_optics_match_pyat

at = pytest.importorskip("at")
machine_data = pytest.importorskip("machine_data")

MACHINE_DATA = Path(machine_data.__file__).parent
E2 = "BndMPoleSymplectic4E2Pass"


def _bend(name: str, pass_method: str = E2, **fields):
    values = {
        "EntranceAngle": 0.05, "ExitAngle": 0.08, "FullGap": 0.04, "FringeInt1": 0.5,
        "FringeInt2": 0.6, "H1": 0.3, "H2": -0.4, "PolynomB": [0.0, 0.7, 5.0, 20.0],
        "PolynomA": [0.0, 0.2, 0.0, 0.0], "MaxOrder": 3, "NumIntSteps": 7,
    }  # fmt: skip
    values.update(fields)
    return at.Dipole(name, 1.2, 0.15, PassMethod=pass_method, **values)


def _tilt(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.eye(6)
    for i in (0, 1):
        rotation[i, i] = rotation[i + 2, i + 2] = c
        rotation[i, i + 2], rotation[i + 2, i] = s, -s
    return rotation


ELEMENTS = [
    _bend("FULL"),  # PolynomA is ignored by this pass
    _bend("NO_FRINGE", FringeInt1=0.0, FullGap=0.0),
    _bend("KICKED", KickAngle=[1e-3, 2e-3]),
    _bend(
        "MOVED",
        T1=np.array([1e-3, 0.0, -2e-3, 0.0, 0.0, 0.0]),
        T2=np.array([-1e-3, 0.0, 2e-3, 0.0, 0.0, 0.0]),
        R1=_tilt(2e-3),
        R2=_tilt(-2e-3),
    ),
    _bend("SEXTUPOLE_ONLY", PolynomB=[0.0, 0.0, 8.0], PolynomA=[0.0, 0.0, 0.0], MaxOrder=2),
    # a plain bend in a lattice with E2 bends takes the same map as elsewhere
    _bend("PLAIN", "BndMPoleSymplectic4Pass", FringeQuadEntrance=1, FringeQuadExit=1),
]


def test_element_tracking_matches_pyat():
    lattice = ring.Lattice.from_description(ring.from_pyat(at.Lattice(ELEMENTS, energy=3e9)))
    assert lattice.kinds == ("bend",) * len(ELEMENTS)
    particles = np.random.default_rng(7).normal(
        scale=[3e-3, 2e-4, 2e-3, 2e-4, 1e-3, 1e-3], size=(4, 6)
    )
    entry = jnp.broadcast_to(jnp.asarray(particles)[:, None, :], (4, len(ELEMENTS), 6))
    exits = np.asarray(jax.vmap(lambda z: ring_optics.element_exits(lattice, z))(entry))
    for i, element in enumerate(ELEMENTS):
        expected = at.element_track(element, np.asfortranarray(particles.T.copy()))
        np.testing.assert_allclose(
            exits[:, i], np.asarray(expected).T, rtol=0, atol=1e-12, err_msg=element.FamName
        )
    # the second-order edge terms matter at this amplitude: without H1/H2 pyAT moves
    no_curvature = at.element_track(_bend("FLAT", H1=0.0, H2=0.0), particles[:1].T.copy())
    assert np.abs(np.asarray(no_curvature).T - exits[:1, 0]).max() > 1e-8


def test_gradients_of_the_pole_face_curvatures_match_central_differences():
    lattice = ring.Lattice.from_description(ring.from_pyat(at.Lattice(ELEMENTS[:1], energy=3e9)))
    entry = jnp.asarray([[3e-3, 1e-4, -2e-3, 2e-4, 1e-3, 0.0]])

    @jax.jit
    def exit_momenta(h):
        moved = lattice.with_field("h1", [0], h[0]).with_field("h2", [0], h[1])
        z = ring_optics.element_exits(moved, entry)[0]
        return z[1] + 3.0 * z[3]

    h = jnp.asarray([0.3, -0.4])
    gradient = jax.jit(jax.grad(exit_momenta))(h)
    step = 1e-3
    central = [
        (exit_momenta(h.at[i].add(step)) - exit_momenta(h.at[i].add(-step))) / (2 * step)
        for i in range(2)
    ]
    np.testing.assert_allclose(gradient, central, rtol=1e-7)
    assert np.all(np.abs(gradient) > 1e-7)


def test_dba_optics_match_pyat():
    """dba.mat's bends use the E2 pass (pyAT and our readers agree on its fields)."""
    lattice = ring.load_lattice(MACHINE_DATA / "dba.mat")
    assert lattice.kinds.count("bend") == 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", at.AtWarning)
        theirs = at.load_lattice(str(MACHINE_DATA / "dba.mat"))
    # through pyAT the same fields give the same arrays
    via_pyat = ring.Lattice.from_description(ring.from_pyat(theirs))
    for mine, other in zip(
        jax.tree.leaves(lattice.params), jax.tree.leaves(via_pyat.params), strict=True
    ):
        np.testing.assert_array_equal(mine, other)
    assert_optics_match_pyat(lattice, theirs)


def test_lattices_without_e2_bends_carry_no_e2_fields():
    lattice = ring.Lattice.from_description(ring.from_pyat(at.Lattice(ELEMENTS[-1:], energy=3e9)))
    assert lattice.params.e2 is None and lattice.params.h1 is None
    with pytest.raises(ValueError, match="'h1' exists only in lattices with E2 bends"):
        lattice.with_field("h1", [0], 0.1)
