"""Ring optics against pyAT: element maps, closed orbit, Twiss, dispersion, tunes,
chromaticity, Jacobians and orbit response; derivatives against finite differences."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign import ring
from diffdesign.ring import catalogue
from diffdesign.ring import optics as ring_optics
from diffdesign.ring.lattice import Lattice

RINGS = catalogue.DATA  # the lattices and pyAT reference optics packaged with diffdesign

SMALL_RING = Path(__file__).parent / "data" / "small_ring.m"

#: One jitted function for every lattice of these tests (compiled once per lattice shape).
OPTICS = jax.jit(lambda lattice: ring.linear_optics(lattice))

OPTICS_KEYS = ("beta_x", "beta_y", "alpha_x", "alpha_y", "mu_x", "mu_y", "eta_x", "etap_x")


def _relative(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(float).tiny)


@pytest.fixture(scope="module")
def esrf():
    return ring.load_lattice(RINGS / "esrf.m")


@pytest.fixture(scope="module")
def esrf_reference():
    return json.loads((RINGS / "esrf_reference_optics.json").read_text())


@pytest.fixture(scope="module")
def esrf_optics(esrf):
    return OPTICS(esrf)


@pytest.fixture(scope="module")
def esrf_jacobian(esrf):
    return jax.jit(lambda lat: ring.k1_jacobian(lat))(esrf)


# --------------------------------------------------------------- parity with pyAT's JSON


@pytest.mark.parametrize("key", OPTICS_KEYS)
def test_esrf_optics_match_pyat_reference(esrf, esrf_optics, esrf_reference, key):
    assert list(esrf.indices("Monitor")) == esrf_reference["bpm_indices"]
    assert _relative(esrf_optics[key], esrf_reference[key]) < 1e-9


def test_esrf_tunes_and_chromaticity_match_pyat_reference(esrf, esrf_optics, esrf_reference):
    np.testing.assert_allclose(esrf_optics["tunes"], esrf_reference["tunes"], rtol=0, atol=1e-10)
    chromaticity = jax.jit(ring.chromaticity)(esrf)
    # pyAT differentiates the tunes by finite differences (DPStep 3e-6)
    np.testing.assert_allclose(chromaticity, esrf_reference["chromaticity"], rtol=1e-6)
    assert float(esrf_optics["orbit_residual"]) == 0.0


def test_nsls2_optics_match_pyat_reference():
    lattice = ring.load_lattice(RINGS / "nsls2.m")
    reference = json.loads((RINGS / "nsls2_reference_optics.json").read_text())
    optics = OPTICS(lattice)
    for key in OPTICS_KEYS:
        assert _relative(optics[key], reference[key]) < 1e-9, key
    np.testing.assert_allclose(optics["tunes"], reference["tunes"], rtol=0, atol=1e-10)


def test_k1_jacobian_matches_pyat_finite_differences(esrf, esrf_jacobian, esrf_reference):
    quads = list(esrf.indices("Quadrupole"))
    assert quads == esrf_reference["quad_indices"]
    for column in esrf_reference["jacobian_first_quads"]:
        j = quads.index(column["quad_index"])
        for plane in "xy":
            reference = np.asarray(column[f"dbeta_{plane}_dk"])
            # pyAT's central differences (dk = 1e-5) carry ~1e-6 relative noise
            assert _relative(esrf_jacobian[f"beta_{plane}"][:, j], reference) < 1e-5


@pytest.fixture(scope="module")
def small():
    return ring.load_lattice(SMALL_RING)


@pytest.mark.slow  # generic forward mode over the whole ring: ~80 s
def test_k1_jacobian_equals_generic_forward_mode_and_differences(small):
    # k1_jacobian's core is jitted: called directly it shares its one compiled program with
    # test_k1_jacobian_refuses_a_displaced_orbit (the ESRF fixture covers it inside jax.jit)
    structured = ring.k1_jacobian(small)
    quads = small.indices("Quadrupole")
    keys = (*OPTICS_KEYS, "eta_y", "tunes")

    def optics_of(dk):
        result = ring.linear_optics(small.add_k1(quads, dk))
        return {k: result[k] for k in keys}

    generic = jax.jit(jax.jacfwd(optics_of))(jnp.zeros(len(quads)))
    for key in keys:
        assert _relative(structured[key], generic[key]) < 1e-12, key
    step = 1e-6
    for j in (0, 5):
        plus = OPTICS(small.add_k1(quads[j], step))
        minus = OPTICS(small.add_k1(quads[j], -step))
        for key in ("beta_x", "beta_y", "mu_x", "eta_x", "tunes"):
            difference = (np.asarray(plus[key]) - np.asarray(minus[key])) / (2 * step)
            assert _relative(structured[key][..., j], difference) < 1e-6, key


def test_k1_jacobian_refuses_a_displaced_orbit(small):
    kicked = small.with_field(
        "kick_angle", small.indices("Corrector")[:1], jnp.asarray([[1e-4, 0]])
    )
    with pytest.raises(ValueError, match="assume the design orbit"):
        ring.k1_jacobian(kicked)


@pytest.mark.slow  # ~55 s on 2 cores: in CI's second stage (-m slow)
def test_unstable_optics_are_reported(small):
    too_strong = small.add_k1(small.indices("QF.*"), 5.0)
    with pytest.raises(ValueError, match=r"unstable optics.*mode a \(x\).*traces"):
        ring.linear_optics(too_strong)
    with pytest.raises(ValueError, match="unstable optics"):
        ring.tunes(too_strong)
    with pytest.raises(ValueError, match="unstable optics"):
        ring.chromaticity(too_strong)
    # inside jit and vmap the values are unknown while tracing: the check runs with the program
    with pytest.raises(Exception, match="unstable optics"):
        OPTICS(too_strong)
    strengths = jnp.asarray([0.0, 5.0])  # one stable ring, one unstable
    quads = small.indices("QF.*")
    with pytest.raises(Exception, match="unstable optics"):
        jax.vmap(lambda dk: ring.tunes(small.add_k1(quads, dk)))(strengths)
    # a stability scan asks for NaN instead (the vmapped tunes program compiled just above)
    scan = jax.vmap(lambda dk: ring.tunes(small.add_k1(quads, dk), allow_unstable=True))
    tunes = np.asarray(scan(strengths))
    np.testing.assert_allclose(tunes[0], ring.tunes(small), rtol=1e-14)
    assert np.isnan(tunes[1, 0])
    assert np.all(np.isnan(ring.linear_optics(too_strong, allow_unstable=True)["beta_x"]))
    # and a stable ring passes the jitted check unchanged (one compiled program for both)
    np.testing.assert_allclose(
        OPTICS(small)["beta_x"], ring.linear_optics(small)["beta_x"], rtol=1e-14
    )


# ------------------------------------------------------------------ element maps vs pyAT

at = pytest.importorskip("at")


def _pyat_elements():
    rng = np.random.default_rng(1)
    rotation = np.eye(6)
    angle = 0.01
    rotation[0, 0] = rotation[1, 1] = rotation[2, 2] = rotation[3, 3] = np.cos(angle)
    rotation[0, 2] = rotation[1, 3] = np.sin(angle)
    rotation[2, 0] = rotation[3, 1] = -np.sin(angle)
    return [
        at.Drift("D", 1.3),
        at.Quadrupole("QF", 0.5, 1.2, NumIntSteps=7, FringeQuadEntrance=1, FringeQuadExit=1),
        at.Quadrupole(
            "QS",
            0.4,
            -0.8,
            PolynomA=[0.0, 0.05],
            T1=rng.normal(0, 1e-3, 6) * [1, 1, 1, 1, 0, 0],
            T2=np.zeros(6),
            R1=rotation,
            R2=rotation.T,
        ),
        at.Sextupole("S", 0.3, 25.0, NumIntSteps=5),
        at.Multipole("M", 0.2, [0, 0, 0, 3.0], [0, 0.4, 10.0, 100.0], NumIntSteps=4),
        at.Dipole(
            "B",
            1.1,
            0.08,
            -0.3,
            EntranceAngle=0.03,
            ExitAngle=0.05,
            FullGap=0.04,
            FringeInt1=0.5,
            FringeInt2=0.4,
            FringeQuadEntrance=1,
            NumIntSteps=9,
        ),
        at.Dipole(
            "B2",
            0.8,
            -0.05,
            0.0,
            EntranceAngle=-0.02,
            ExitAngle=0.01,
            FullGap=0.03,
            FringeInt1=0.5,
            FringeInt2=0.5,
            FringeBendEntrance=2,
            FringeBendExit=3,
        ),
        at.Corrector("C", 0.2, [2e-4, -1e-4]),
        at.Corrector("C0", 0.0, [-3e-4, 2e-4]),
        at.ThinMultipole("T", [0, 0, 1.5], [0, 0.2, -3.0]),
        at.M66("M66", np.eye(6) + 0.01 * rng.normal(size=(6, 6))),
        at.Marker("MK"),
        at.Monitor("BPM"),
    ]


def test_every_element_map_matches_pyat_tracking():
    from diffdesign.ring import from_pyat

    elements = _pyat_elements()
    description = from_pyat(at.Lattice(elements, energy=3e9))
    lattice = Lattice.from_description(description)
    rng = np.random.default_rng(7)
    particles = rng.normal(0, 1, (40, 6)) * np.asarray([1e-3, 1e-4, 1e-3, 1e-4, 1e-3, 1e-3])
    # every element receives the same particle; one compiled call for all of them
    every_exit = jax.jit(
        jax.vmap(
            lambda z: ring_optics.element_exits(lattice, jnp.broadcast_to(z, (len(elements), 6)))
        )
    )(jnp.asarray(particles))
    for i, element in enumerate(elements):
        r_in = np.asfortranarray(particles.T.copy())
        expected = np.asarray(at.element_track(element, r_in)).reshape(6, -1).T
        np.testing.assert_allclose(
            np.asarray(every_exit[:, i]), expected, rtol=0, atol=2e-16, err_msg=element.FamName
        )


def _kicked(lattice, pyat_ring, kicks):
    """The same corrector kicks on our lattice and on a pyAT copy."""
    cors = lattice.indices("Corrector")
    ours = lattice.with_field("kick_angle", cors, jnp.asarray(kicks))
    theirs = pyat_ring.deepcopy()
    for index, kick in zip(cors, kicks, strict=True):
        theirs[int(index)].KickAngle = np.asarray(kick, dtype=float)
    return ours, theirs


def test_closed_orbit_and_optics_with_kicks_match_pyat(small):
    pyat_ring = at.load_lattice(SMALL_RING)
    rng = np.random.default_rng(3)
    kicks = np.zeros((len(small.indices("Corrector")), 2))
    kicks[:, 0] = rng.normal(0, 2e-4, len(kicks))
    ours, theirs = _kicked(small, pyat_ring, kicks)
    solution = jax.jit(ring.closed_orbit)(ours)
    _, orbit = at.find_orbit4(theirs, refpts=np.arange(len(theirs) + 1))
    assert np.max(np.abs(orbit[:, :4])) > 1e-4
    # pyAT stops its Newton iterations when the step falls below 1e-12 (OrbConvergence)
    np.testing.assert_allclose(np.asarray(solution.orbit)[:, :4], orbit[:, :4], rtol=0, atol=1e-13)
    assert float(solution.residual) < 1e-15
    # optics on the displaced orbit (sextupole feed-down), horizontal kicks: uncoupled
    optics = OPTICS(ours)
    _, _, expected = theirs.get_optics(refpts=at.Monitor)
    assert _relative(optics["beta_x"], expected.beta[:, 0]) < 1e-7
    assert _relative(optics["eta_x"], expected.dispersion[:, 0]) < 1e-7


def test_orbit_response_matches_autodiff_and_pyat(small):
    cors = small.indices("Corrector")
    orm = jax.jit(lambda lat: ring.orbit_response(lat, "Monitor", "Corrector"))(small)
    bpms = small.indices("Monitor")

    def orbit_at_bpms(kicks):
        return ring.closed_orbit(small.with_field("kick_angle", cors, kicks)).orbit[bpms][:, [0, 2]]

    generic = jax.jit(jax.jacfwd(orbit_at_bpms))(jnp.zeros((len(cors), 2)))  # (bpm, 2, cor, 2)
    np.testing.assert_allclose(
        orm, np.transpose(generic, (1, 0, 3, 2)), rtol=0, atol=1e-12 * np.abs(generic).max()
    )
    pyat_ring = at.load_lattice(SMALL_RING)
    refpts = at.get_refpts(pyat_ring, at.Monitor)
    for j in (0, 3):
        for plane in (0, 1):
            columns = []
            for sign in (1.0, -1.0):
                kicks = np.zeros((len(cors), 2))
                kicks[j, plane] = sign * 1e-7
                _, theirs = _kicked(small, pyat_ring, kicks)
                _, orbit = at.find_orbit4(theirs, refpts=refpts)
                columns.append(orbit[:, 2 * plane])
            difference = (columns[0] - columns[1]) / 2e-7
            np.testing.assert_allclose(
                orm[plane, :, plane, j], difference, rtol=0, atol=1e-6 * np.abs(difference).max()
            )


def test_chromaticity_matches_pyat(small):
    _, data, _ = at.load_lattice(SMALL_RING).get_optics(get_chrom=True)
    # chromaticity's core is jitted: called directly it shares its compiled program with
    # test_unstable_optics_are_reported (the ESRF parity test covers it inside jax.jit)
    np.testing.assert_allclose(ring.chromaticity(small), data.chromaticity, rtol=1e-6)


@pytest.mark.slow  # ~33 s on 2 cores: in CI's second stage (-m slow)
def test_exact_integrator_is_the_converged_limit_of_at_integration(small):
    """AT's 4th-order integrator converges to the exact flows as its steps grow."""
    exact = OPTICS(small.with_integrator("exact"))
    pyat_ring = at.load_lattice(SMALL_RING)
    errors = {}
    for steps in (4, 80):
        stepped = pyat_ring.deepcopy()
        for element in stepped:
            if hasattr(element, "NumIntSteps"):
                element.NumIntSteps = steps
        _, _, optics = stepped.get_optics(refpts=at.Monitor)
        errors[steps] = _relative(exact["beta_x"], optics.beta[:, 0])
    assert errors[4] > 1e-7  # the default steps are visibly not converged
    assert errors[80] < errors[4] / 5e4  # ~ (80 / 4)^4 = 1.6e5 for a 4th-order method
    assert errors[80] < 1e-9


def test_coupled_optics_match_pyat_linopt4(small):
    """With a skew quadrupole the Twiss functions are the normal modes of AT's linopt4."""
    skewed = small.with_field("polynom_a", small.indices("QF0"), jnp.asarray([[0.0, 0.01, 0.0]]))
    optics = OPTICS(skewed)
    pyat_ring = at.load_lattice(SMALL_RING)
    pyat_ring[int(small.indices("QF0")[0])].PolynomA = np.asarray([0.0, 0.01])
    _, data, expected = pyat_ring.get_optics(refpts=at.Monitor, method=at.linopt4)
    assert expected.gamma.min() > 1.0 + 1e-4  # visibly coupled
    for key, field, column in (
        ("beta_x", "beta", 0),
        ("beta_y", "beta", 1),
        ("alpha_x", "alpha", 0),
        ("alpha_y", "alpha", 1),
        ("mu_x", "mu", 0),
        ("mu_y", "mu", 1),
    ):
        assert _relative(optics[key], getattr(expected, field)[:, column]) < 1e-10, key
    np.testing.assert_allclose(optics["tunes"], data.tune, rtol=0, atol=1e-12)
