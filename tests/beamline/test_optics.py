"""Beamline optics functions (``diffdesign.beamline.optics``): Twiss propagation, phase
advance, dispersion along a segment and the periodic solution of a cell, against closed
forms, the integral of 1/beta, Cheetah's tracked beams, pyAT's periodic optics of the NSLS-II
ring's superperiod, eigenvalues of coupled cells, and central differences."""

import contextlib
import io
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffdesign.beamline as bl
from diffdesign.beamline.convert import to_cheetah
from diffdesign.beamline.optics import Optics, optics_along, periodic_optics, transfer_along
from diffdesign.lattices import segment_from_description
from diffdesign.ring.catalogue import DATA
from diffdesign.ring.elegant_file import read_elegant_file

from .gradient_helpers import assert_gradients_match_central_differences

ENERGY = 1e9
START = Optics(beta_x=4.0, alpha_x=-1.5, beta_y=2.0, alpha_y=0.7)


def _thin_quadrupole(focal_length: float, name: str) -> bl.CustomTransferMap:
    """An exact thin lens (focusing in x for f > 0), as the textbook FODO formulas use."""
    m = np.eye(7)
    m[1, 0], m[3, 2] = -1.0 / focal_length, 1.0 / focal_length
    return bl.CustomTransferMap(m, name=name)


def _thin_fodo(distance: float, focal_length: float) -> bl.Segment:
    """From the centre of F to the centre of the next F: half F, drift, D, drift, half F."""
    return bl.Segment([
        _thin_quadrupole(2 * focal_length, "HF1"), bl.Drift(distance),
        _thin_quadrupole(-focal_length, "QD"), bl.Drift(distance),
        _thin_quadrupole(2 * focal_length, "HF2"),
    ])  # fmt: skip


def _thick_fodo(k1: float = 1.2) -> bl.Segment:
    return bl.Segment([
        bl.Quadrupole(0.2, k1, name="QF"), bl.Drift(0.5),
        bl.Dipole(1.0, 0.15, e1=0.03, e2=0.04, gap=0.02, fringe_integral=0.5, name="B1"),
        bl.Drift(0.5), bl.Quadrupole(0.4, -k1, name="QD"), bl.Drift(0.5),
        bl.Dipole(1.0, 0.15, e1=0.04, e2=0.03, gap=0.02, fringe_integral=0.5, name="B2"),
        bl.Drift(0.5), bl.Quadrupole(0.2, k1, name="QF2"),
    ])  # fmt: skip


def _numpy(optics: Optics) -> Optics:
    return Optics(*(np.asarray(v) for v in optics))


def test_thin_lens_fodo_cell_has_the_textbook_periodic_solution():
    """sin(mu/2) = L_cell / (4 f), beta_max,min = L_cell (1 +- sin(mu/2)) / sin(mu) at the
    quadrupole centres, alpha = 0 there; no bends, no dispersion."""
    distance, f = 2.0, 1.5
    optics = _numpy(periodic_optics(_thin_fodo(distance, f), ENERGY))
    cell = 2 * distance
    half = cell / (4 * f)
    mu = 2 * np.arcsin(half)
    beta_max, beta_min = cell * (1 + half) / np.sin(mu), cell * (1 - half) / np.sin(mu)
    np.testing.assert_allclose(optics.beta_x[[0, 5]], beta_max, rtol=1e-14)
    np.testing.assert_allclose(optics.beta_y[[0, 5]], beta_min, rtol=1e-14)
    np.testing.assert_allclose(optics.beta_x[3], beta_min, rtol=1e-14)  # at D's centre
    np.testing.assert_allclose(optics.beta_y[3], beta_max, rtol=1e-14)
    np.testing.assert_allclose([optics.mu_x[-1], optics.mu_y[-1]], mu, rtol=1e-14)
    np.testing.assert_allclose(optics.mu_x[3], mu / 2, rtol=1e-14)  # symmetric cell
    np.testing.assert_allclose(optics.alpha_x[[0, 5]], 0.0, atol=1e-14)
    np.testing.assert_allclose(optics.alpha_x[3], -optics.alpha_x[2], rtol=1e-14)  # D's kick
    np.testing.assert_allclose(optics.s, [0, 0, 2, 2, 4, 4], atol=0)
    for eta in (optics.eta_x, optics.etap_x, optics.eta_y, optics.etap_y):
        np.testing.assert_array_equal(eta, 0.0)


def test_drift_follows_the_closed_form():
    """beta(s) = beta0 - 2 alpha0 s + gamma0 s^2, alpha(s) = alpha0 - gamma0 s,
    tan(mu) = s / (beta0 - alpha0 s); the start's mu and s are counted from."""
    segment = bl.Segment([bl.Drift(0.3)] * 5 + [bl.Drift(2.5)])
    start = START._replace(mu_x=0.25, s=10.0, eta_x=0.1, etap_x=-0.02)
    optics = optics_along(segment, start, ENERGY)
    s = np.asarray(optics.s) - 10.0
    np.testing.assert_allclose(s, [0, 0.3, 0.6, 0.9, 1.2, 1.5, 4.0], rtol=1e-14, atol=1e-14)
    for plane in ("x", "y"):
        b0, a0 = getattr(START, f"beta_{plane}"), getattr(START, f"alpha_{plane}")
        g0 = (1 + a0**2) / b0
        np.testing.assert_allclose(getattr(optics, f"beta_{plane}"), b0 - 2 * a0 * s + g0 * s**2,
                                   rtol=1e-14)  # fmt: skip
        np.testing.assert_allclose(getattr(optics, f"alpha_{plane}"), a0 - g0 * s, rtol=1e-13,
                                   atol=1e-15)  # fmt: skip
    # past a waist the advance exceeds pi/2 (arctan's branch): unwrapped, as atan2 gives it
    np.testing.assert_allclose(optics.mu_x - 0.25, np.arctan2(s, 4.0 + 1.5 * s), rtol=1e-14)
    np.testing.assert_allclose(optics.mu_y, np.arctan2(s, 2.0 - 0.7 * s), rtol=1e-14)
    assert float(optics.mu_y[-1]) > np.pi / 2
    np.testing.assert_allclose(optics.eta_x, 0.1 - 0.02 * s, rtol=1e-14)
    np.testing.assert_allclose(optics.etap_x, -0.02, rtol=1e-15)


def _phase_by_quadrature(segment: bl.Segment, start: Optics) -> np.ndarray:
    """mu_x, mu_y at the segment's end as the integral of ds / beta: beta inside each
    element from the optics at its entrance through the element cut short, at 32
    Gauss-Legendre nodes per element (a different route from the phases of the maps)."""
    optics = optics_along(segment, start, ENERGY)
    nodes, weights = np.polynomial.legendre.leggauss(32)
    total = np.zeros(2)
    for k, element in enumerate(segment):
        length = float(element.length)
        entrance = Optics(*(np.asarray(v)[k] for v in optics[:8]))

        def beta_at(fraction, element=element, entrance=entrance, length=length):
            piece = element.replace(length=fraction * length, name="")  # one program per kind
            if isinstance(element, bl.Dipole):  # the body so far, without the exit face
                piece = piece.replace(angle=fraction * element.angle, e2=0.0,
                                      fringe_integral_exit=0.0)  # fmt: skip
            piece = bl.Segment([piece])
            inside = optics_along(piece, entrance, ENERGY)
            return jnp.stack([inside.beta_x[-1], inside.beta_y[-1]])

        betas = np.asarray(jax.vmap(beta_at)(jnp.asarray((nodes + 1) / 2)))
        total += length / 2 * np.sum(weights[:, None] / betas, axis=0)
    return total


def test_phase_advance_equals_the_integral_of_one_over_beta():
    """Through quadrupoles, drifts and bends; and through one quadrupole whose own advance
    is beyond pi (sqrt(k) L = 4), which only the element's length tells apart from a
    negative advance."""
    segment = bl.Segment([
        bl.Drift(0.4), bl.Quadrupole(0.3, 3.0), bl.Drift(0.7), bl.Quadrupole(0.3, -2.5),
        bl.Drift(0.5), bl.Quadrupole(1.0, 16.0, name="STRONG"), bl.Drift(0.5),
    ])  # fmt: skip
    optics = optics_along(segment, START, ENERGY)
    integral = _phase_by_quadrature(segment.split(0.1), START)  # beta reaches 0.04 m
    np.testing.assert_allclose([optics.mu_x[-1], optics.mu_y[-1]], integral, rtol=1e-12)
    strong = float(optics.mu_x[6] - optics.mu_x[5])
    assert np.pi < strong < 2 * np.pi, strong
    # the same for a periodic solution's advance per cell, bends and edges included
    cell = periodic_optics(_thick_fodo(), ENERGY)
    start = Optics(cell.beta_x[0], cell.alpha_x[0], cell.beta_y[0], cell.alpha_y[0])
    integral = _phase_by_quadrature(_thick_fodo(), start)
    np.testing.assert_allclose([cell.mu_x[-1], cell.mu_y[-1]], integral, rtol=1e-12)


def test_negative_drift_goes_back_in_phase():
    """Lattice files overlap elements with negative drifts: 1 m then -0.4 m is 0.6 m."""
    back = optics_along(bl.Segment([bl.Drift(1.0), bl.Drift(-0.4)]), START, ENERGY)
    plain = optics_along(bl.Segment([bl.Drift(0.6)]), START, ENERGY)
    for field in ("beta_x", "alpha_x", "mu_x", "beta_y", "alpha_y", "mu_y", "s"):
        np.testing.assert_allclose(getattr(back, field)[-1], getattr(plain, field)[-1],
                                   rtol=1e-14, err_msg=field)  # fmt: skip
    assert float(back.mu_y[2]) < float(back.mu_y[1])


def test_sector_bend_dispersion_follows_the_closed_form():
    """From eta = 0 a sector bend gives eta_delta = rho (1 - cos theta), eta'_delta =
    sin theta; with respect to Cheetah's p = beta0 delta both are divided by beta0
    (10 MeV electrons: beta0 = 0.99869)."""
    energy, length, angle = 10e6, 0.8, 0.4
    optics = optics_along(bl.Segment([bl.Dipole(length, angle)]), START, energy)
    beta0 = np.sqrt(1 - (bl.ELECTRON.mass_eV / energy) ** 2)
    rho = length / angle
    np.testing.assert_allclose(optics.eta_x[-1], rho * (1 - np.cos(angle)) / beta0, rtol=1e-14)
    np.testing.assert_allclose(optics.etap_x[-1], np.sin(angle) / beta0, rtol=1e-14)


@pytest.fixture(scope="module")
def cheetah():
    return pytest.importorskip("cheetah")


def _cheetah_along(segment: bl.Segment, beam: bl.ParameterBeam, names):
    theirs = to_cheetah(segment)
    values = theirs.get_beam_attrs_along_segment(tuple(names), to_cheetah(beam))
    return {name: v.detach().numpy() for name, v in zip(names, values, strict=True)}


def test_twiss_and_dispersion_along_a_line_equal_cheetahs_tracked_beam(cheetah):
    """Cheetah's ParameterBeam properties (dispersion-corrected beta, alpha; cov / var(p)
    dispersion) after every element of a line with bends, edges, fringe fields, a corrector
    and a sextupole, from a beam with dispersion: equal to the optics to 1e-12."""
    segment = bl.Segment([
        bl.Drift(0.3), bl.Quadrupole(0.2, 4.0), bl.Drift(0.2),
        bl.Dipole(0.6, 0.2, e1=0.05, e2=-0.02, gap=0.03, fringe_integral=0.4, name="B"),
        bl.HorizontalCorrector(0.1, 1e-3), bl.Quadrupole(0.3, -3.0), bl.Sextupole(0.2, 30.0),
        bl.Dipole(0.4, -0.1, e1=-0.05, name="B2"), bl.Drift(1.1),
    ])  # fmt: skip
    beam = bl.ParameterBeam.from_twiss(
        energy=150e6, beta_x=6.0, alpha_x=1.2, beta_y=3.0, alpha_y=-0.4,
        emittance_x=2e-9, emittance_y=1e-9, sigma_p=1e-4, dispersion_x=0.05,
        dispersion_px=-0.01, dispersion_y=0.02,
    )  # fmt: skip
    names = ("beta_x", "alpha_x", "beta_y", "alpha_y", "dispersion_x", "dispersion_px",
             "dispersion_y", "dispersion_py")  # fmt: skip
    expected = _cheetah_along(segment, beam, names)
    optics = optics_along(segment, Optics.from_beam(beam), beam.energy)
    fields = ("beta_x", "alpha_x", "beta_y", "alpha_y", "eta_x", "etap_x", "eta_y", "etap_y")
    for name, field in zip(names, fields, strict=True):
        theirs = expected[name]
        np.testing.assert_allclose(getattr(optics, field), theirs, rtol=0,
                                   atol=1e-12 * np.abs(theirs).max(), err_msg=field)  # fmt: skip


def test_cavity_damping_equals_cheetahs_tracked_beam(cheetah):
    """Through accelerating cavities (standing and travelling wave) the betatron motion is
    damped: beta and alpha of the optics equal those of Cheetah's tracked beam (whose
    emittance shrinks by the map's determinant) and of our own tracked beam."""
    segment = bl.Segment([
        bl.Quadrupole(0.2, 1.0), bl.Drift(0.3), bl.Cavity(1.04, 2e7, -10.0, 2.998e9),
        bl.Drift(0.3), bl.Quadrupole(0.2, -2.0),
        bl.TravelingWaveCavity(1.04, 3e7, 20.0, 2.998e9), bl.Drift(0.5),
    ])  # fmt: skip
    beam = bl.ParameterBeam.from_twiss(energy=20e6, beta_x=6.0, alpha_x=1.2, beta_y=3.0,
                                       alpha_y=-0.4, sigma_p=1e-4)  # fmt: skip
    names = ("beta_x", "alpha_x", "beta_y", "alpha_y")
    expected = _cheetah_along(segment, beam, names)
    optics = optics_along(segment, Optics.from_beam(beam), beam.energy)
    ours = segment.track_along(beam)
    for name in names:
        theirs = expected[name]
        np.testing.assert_allclose(getattr(optics, name), theirs, rtol=0,
                                   atol=1e-12 * np.abs(theirs).max(), err_msg=name)  # fmt: skip
        tracked = [float(getattr(b, name)) for b in ours]
        np.testing.assert_allclose(getattr(optics, name), tracked, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def nsls2_superperiod():
    """The first 238 elements of NSLS-II (elegant file of the paper's ring): one of its 15
    superperiods, as our segment and as pyAT's lattice (integrators at 400 steps, which
    converge to the closed-form maps to ~3e-12; see test_from_description)."""
    at = pytest.importorskip("at")
    ours = segment_from_description(read_elegant_file(DATA / "comm-ring.lte", energy=3e9), end=237)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        ring = at.load_elegant(str(DATA / "comm-ring.lte"), energy=3e9)
    theirs = at.Lattice(ring[:238], energy=3e9, periodicity=15)
    for element in theirs:
        if hasattr(element, "NumIntSteps"):
            element.NumIntSteps = 400
    theirs.disable_6d()
    return ours, theirs


def test_periodic_superperiod_of_nsls2_equals_pyat(nsls2_superperiod):
    """Periodic beta, alpha, unwrapped phase and dispersion at every element of a real
    superperiod (sextupoles, correctors, BPMs, combined-function bends) against pyAT's
    ``get_optics``; dispersion converted from pyAT's delta to p (x beta0). Measured: beta
    1.8e-11, phase 2.8e-11 rad, dispersion 8e-11 m (of 0.46 m): pyAT's integrators at 400
    steps are that close to the closed-form maps."""
    ours, theirs = nsls2_superperiod
    _, _, expected = theirs.get_optics(refpts=range(len(theirs) + 1))
    optics = periodic_optics(ours, 3e9)
    beta0 = np.sqrt(1 - (bl.ELECTRON.mass_eV / 3e9) ** 2)
    for i, plane in enumerate("xy"):
        np.testing.assert_allclose(getattr(optics, f"beta_{plane}"), expected.beta[:, i],
                                   rtol=2e-10)  # fmt: skip
        np.testing.assert_allclose(getattr(optics, f"alpha_{plane}"), expected.alpha[:, i],
                                   atol=2e-10 * np.abs(expected.alpha[:, i]).max())  # fmt: skip
        np.testing.assert_allclose(getattr(optics, f"mu_{plane}"), expected.mu[:, i],
                                   atol=2e-10)  # fmt: skip
    np.testing.assert_allclose(np.asarray(optics.eta_x) * beta0, expected.dispersion[:, 0],
                               atol=1e-9 * np.abs(expected.dispersion[:, 0]).max())  # fmt: skip
    np.testing.assert_allclose(np.asarray(optics.etap_x) * beta0, expected.dispersion[:, 1],
                               atol=1e-9 * np.abs(expected.dispersion[:, 1]).max())  # fmt: skip


def test_coupled_cell_advances_equal_the_eigenvalues():
    """A FODO cell with a solenoid and a rolled quadrupole couples x and y: the normal-mode
    advances per cell equal the arguments of the one-period matrix's eigenvalues (numpy),
    the cell maps its periodic normal-mode betas onto themselves, and without the
    coupling elements the modes are the planes."""
    coupled = bl.Segment([
        *_thick_fodo().elements[:4], bl.Solenoid(0.5, 0.8),
        bl.Quadrupole(0.1, 1.0, tilt=0.3), *_thick_fodo().elements[4:],
    ])  # fmt: skip
    optics = periodic_optics(coupled, ENERGY)
    one_period = np.asarray(coupled.transfer_map(ENERGY))[:4, :4]
    phases = np.sort(np.abs(np.angle(np.linalg.eigvals(one_period))))[::2]
    advances = np.array([optics.mu_x[-1], optics.mu_y[-1]])
    folded = np.minimum(np.mod(advances, 2 * np.pi), 2 * np.pi - np.mod(advances, 2 * np.pi))
    np.testing.assert_allclose(np.sort(folded), phases, rtol=1e-12)
    for field in ("beta_x", "alpha_x", "beta_y", "alpha_y", "eta_x", "etap_x", "eta_y"):
        values = getattr(optics, field)
        np.testing.assert_allclose(values[-1], values[0], rtol=1e-10, atol=1e-12, err_msg=field)
    assert np.all(np.isfinite(np.asarray(optics.beta_y)))
    uncoupled = periodic_optics(_thick_fodo(), ENERGY)
    one_period = np.asarray(_thick_fodo().transfer_map(ENERGY))
    for plane, p in (("x", 0), ("y", 2)):
        block = one_period[p : p + 2, p : p + 2]
        cos_mu = np.trace(block) / 2
        beta = block[0, 1] / np.sin(getattr(uncoupled, f"mu_{plane}")[-1])
        np.testing.assert_allclose(
            np.cos(getattr(uncoupled, f"mu_{plane}")[-1]), cos_mu, rtol=1e-13
        )
        np.testing.assert_allclose(getattr(uncoupled, f"beta_{plane}")[0], beta, rtol=1e-12)


def test_long_line_uses_the_maps_in_beam_order():
    """A 300-element line of many kinds (computed per kind, then put back in order): the
    map to its end equals the segment's own composed map, and a line of identical cells
    has identical optics in every cell."""
    rng = np.random.default_rng(7)
    elements = []
    for i in range(25):
        elements += [
            bl.Drift(rng.uniform(0.1, 0.5)), bl.Quadrupole(0.2, rng.normal(0, 2), name=f"Q{i}"),
            bl.Dipole(0.5, rng.normal(0, 0.05), e1=0.02), bl.Sextupole(0.1, 10.0),
            bl.HorizontalCorrector(0.05, 1e-4), bl.Marker(), bl.BPM(), bl.Drift(0.1),
            bl.Quadrupole(0.1, 1.0, tilt=0.05), bl.Solenoid(0.2, 0.3), bl.Drift(-0.05),
            bl.VerticalCorrector(0.05, 0.0),
        ]  # fmt: skip
    line = bl.Segment(elements)
    transfer = transfer_along(line, ENERGY)
    assert transfer.shape == (301, 7, 7)
    np.testing.assert_allclose(transfer[-1], line.transfer_map(ENERGY), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(transfer[1], line.elements[0].transfer_map(ENERGY), rtol=1e-15)
    cells = bl.Segment(list(_thick_fodo().elements) * 20)
    start = periodic_optics(_thick_fodo(), ENERGY)
    optics = optics_along(cells, Optics(*(np.asarray(v)[0] for v in start[:8])), ENERGY)
    n = len(_thick_fodo())
    np.testing.assert_allclose(np.asarray(optics.beta_x)[::n], start.beta_x[0], rtol=1e-10)
    np.testing.assert_allclose(optics.mu_x[-1], 20 * start.mu_x[-1], rtol=1e-12)


def test_gradients_match_central_differences(rng):
    """d/d(quadrupole strengths, bend angle, initial Twiss) of a loss that mixes the
    periodic solution, the phase advance per cell and the dispersion along a line."""
    cell = _thick_fodo()

    @jax.jit
    def loss(fields):
        tuned = cell.with_settings(
            {
                "QF.k1": fields["k1"],
                "QF2.k1": fields["k1"],
                "QD.k1": -fields["k1"],
                "B1.angle": fields["angle"],
            }
        )
        periodic = periodic_optics(tuned, ENERGY)
        start = Optics(fields["beta"], -0.5, 3.0, 0.2, eta_x=0.1)
        along = optics_along(tuned, start, ENERGY)
        return (jnp.max(periodic.beta_x) + periodic.mu_y[-1] + jnp.sum(periodic.eta_x**2)
                + along.beta_y[-1] + along.mu_x[-1] + along.etap_x[-1])  # fmt: skip

    fields = {name: jnp.asarray(value, dtype=jnp.float64)  # strongly typed: one program
              for name, value in (("k1", 1.2), ("angle", 0.15), ("beta", 5.0))}  # fmt: skip
    assert_gradients_match_central_differences(
        jax.jit(jax.value_and_grad(loss)), fields, rng, rtol=1e-7
    )


def test_unstable_cell_is_refused_naming_the_mode():
    cell = _thin_fodo(2.0, 0.9)  # L_cell / 4f > 1: no periodic solution
    with pytest.raises(ValueError, match=r"unstable optics.*mode a \(x\).*traces"):
        periodic_optics(cell, ENERGY)
    with pytest.raises(Exception, match="unstable optics"):
        jax.jit(lambda c: periodic_optics(c, ENERGY).beta_x)(cell)
    values = periodic_optics(cell, ENERGY, allow_unstable=True)
    assert np.all(np.isnan(np.asarray(values.beta_x)))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: optics_along(_thick_fodo(), START._replace(beta_x=-1.0), ENERGY),
            "beta_x must lie in",
        ),
        (
            lambda: optics_along(_thick_fodo(), START._replace(alpha_y=np.nan), ENERGY),
            "alpha_y must be finite",
        ),
        (
            lambda: optics_along(_thick_fodo(), START._replace(beta_y=[1.0, 2.0]), ENERGY),
            "beta_y must be a scalar",
        ),
        (lambda: optics_along(_thick_fodo(), {"beta_x": 1.0}, ENERGY), "initial must be"),
        (lambda: optics_along(_thick_fodo(), START, 1e5), "energy - rest energy"),
        (lambda: periodic_optics([bl.Drift(1.0)], ENERGY), "must be a diffdesign.beamline.Segment"),
        (lambda: periodic_optics(bl.Segment([]), ENERGY), "no elements"),
        (
            lambda: periodic_optics(_thick_fodo().with_settings({"QF.k1": jnp.ones(3)}), ENERGY),
            r"'QF' \(Quadrupole\) has settings with batch shape \(3,\).*jax.vmap",
        ),
        (
            lambda: periodic_optics(
                bl.Segment([bl.Drift(1.0), bl.Cavity(1.0, 1e7, 0.0, 3e9)]), ENERGY
            ),
            "changes the reference energy",
        ),
    ],
    ids=[
        "negative beta",
        "nan alpha",
        "batched start",
        "not Optics",
        "energy below mass",
        "not a segment",
        "empty",
        "batched setting",
        "cavity in a cell",
    ],
)
def test_bad_input_is_refused_by_name(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_plot_writes_a_png_and_refuses_optics_of_another_segment(tmp_path):
    from diffdesign.beamline.plot import plot_optics

    cell = _thick_fodo()
    path = plot_optics(cell, periodic_optics(cell, ENERGY), tmp_path / "cell.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"len\(segment\) \+ 1 = 10 points"):
        plot_optics(cell, periodic_optics(_thin_fodo(2.0, 1.5), ENERGY), tmp_path / "x.png")
