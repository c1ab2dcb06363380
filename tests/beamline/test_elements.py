"""Each element's first-order map against Cheetah's, and the laws every map obeys."""

import inspect
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffdesign.beamline as bl
from diffdesign.beamline.species import Species

from .cheetah_helpers import N, T, assert_map_close, cheetah

GAMMAS = (1.5, 210.0, 5000.0)  # energies relative to the rest energy: E = gamma m c^2
SPECIES = ("electron", "proton")


def _quadrupole(rng, tilted):
    p = dict(
        length=rng.uniform(0.05, 0.5),
        k1=rng.uniform(-40, 40),
        misalignment=rng.uniform(-5e-4, 5e-4, 2),
        tilt=rng.uniform(-0.8, 0.8) if tilted else None,
    )
    theirs = cheetah.Quadrupole(
        T(p["length"]), T(p["k1"]), T(p["misalignment"]), T(p["tilt"] or 0.0), name="Q"
    )
    return bl.Quadrupole(**p, name="Q"), theirs


def _dipole(rng, tilted):
    p = dict(
        length=rng.uniform(0.2, 2.0),
        angle=rng.uniform(-0.3, 0.3),
        k1=rng.uniform(-2, 2),
        e1=rng.uniform(-0.2, 0.2),
        e2=rng.uniform(-0.2, 0.2),
        tilt=rng.uniform(-1.6, 1.6) if tilted else None,
        gap=rng.uniform(0.0, 0.05),
        fringe_integral=rng.uniform(0.0, 0.6),
        fringe_integral_exit=rng.uniform(0.0, 0.6),
    )
    theirs = cheetah.Dipole(
        T(p["length"]),
        T(p["angle"]),
        T(p["k1"]),
        T(p["e1"]),
        T(p["e2"]),
        T(p["tilt"] or 0.0),
        T(p["gap"]),
        fringe_integral=T(p["fringe_integral"]),
        fringe_integral_exit=T(p["fringe_integral_exit"]),
        name="B",
    )
    return bl.Dipole(**p, name="B"), theirs


def _cavity(rng, cls, cavity_type):
    p = dict(
        length=rng.uniform(0.3, 4.0),
        voltage=rng.uniform(-2e5, 3e7),  # decelerating, but not stopping a 766 keV electron
        phase=rng.uniform(-80, 80),
        frequency=rng.uniform(1e9, 1.2e10),
    )
    theirs = cheetah.Cavity(*(T(v) for v in p.values()), cavity_type=cavity_type, name="C")
    return cls(**p, name="C"), theirs


def _deflecting_cavity(rng):
    p = dict(
        length=rng.uniform(0.1, 1.0),
        voltage=rng.uniform(-5e4, 5e4),  # kicks below 0.1 rad for a 766 keV electron
        phase=rng.uniform(-0.5, 0.5),
        frequency=rng.uniform(1e9, 1.2e10),
        misalignment=rng.uniform(-5e-4, 5e-4, 2),
        tilt=rng.uniform(-1.6, 1.6),
    )
    theirs = cheetah.TransverseDeflectingCavity(*(T(v) for v in p.values()), name="TDC")
    return bl.TransverseDeflectingCavity(**p, name="TDC"), theirs


def _cheetah_jacobian(element, energy, species, h=1e-7):
    """The affine first-order map of a Cheetah element it only tracks particles through
    (drift-kick-drift): central differences about the reference particle."""
    offsets = np.vstack([np.zeros(6), h * np.eye(6), -h * np.eye(6)])
    particles = np.hstack([offsets, np.ones((13, 1))])
    beam = cheetah.ParticleBeam(T(particles), T(energy), species=cheetah.Species(species))
    out = N(element.track(beam).particles)
    jacobian = np.eye(7)
    jacobian[:6, :6] = ((out[1:7] - out[7:13]) / (2 * h))[:, :6].T
    jacobian[:6, 6] = out[0, :6]
    return jacobian


#: element class -> list of builders rng -> (ours, cheetah's); the registry test below
#: fails when an element class has no parity case.
CASES = {
    bl.Drift: [lambda r: (bl.Drift(length := r.uniform(0, 3)), cheetah.Drift(T(length)))],
    bl.Quadrupole: [lambda r: _quadrupole(r, False), lambda r: _quadrupole(r, True)],
    bl.Dipole: [lambda r: _dipole(r, False), lambda r: _dipole(r, True)],
    bl.Sextupole: [
        lambda r: (
            bl.Sextupole(length := r.uniform(0.05, 0.4), k2 := r.uniform(-100, 100)),
            cheetah.Sextupole(T(length), T(k2)),
        )
    ],
    bl.HorizontalCorrector: [
        lambda r: (
            bl.HorizontalCorrector(length := r.uniform(0, 0.3), a := r.uniform(-5e-3, 5e-3)),
            cheetah.HorizontalCorrector(T(length), T(a)),
        )
    ],
    bl.VerticalCorrector: [
        lambda r: (
            bl.VerticalCorrector(length := r.uniform(0, 0.3), a := r.uniform(-5e-3, 5e-3)),
            cheetah.VerticalCorrector(T(length), T(a)),
        )
    ],
    bl.CombinedCorrector: [
        lambda r: (
            bl.CombinedCorrector(
                length := r.uniform(0, 0.3),
                h := r.uniform(-5e-3, 5e-3),
                v := r.uniform(-5e-3, 5e-3),
            ),
            cheetah.CombinedCorrector(T(length), T(h), T(v)),
        )
    ],
    bl.Solenoid: [
        lambda r: (
            bl.Solenoid(
                length := r.uniform(0.05, 1.0),
                k := r.uniform(-3, 3),
                m := r.uniform(-1e-3, 1e-3, 2),
            ),
            cheetah.Solenoid(T(length), T(k), T(m)),
        )
    ],
    bl.CustomTransferMap: [
        lambda r: (
            bl.CustomTransferMap(
                matrix := np.vstack([r.normal(size=(6, 7)), [0, 0, 0, 0, 0, 0, 1.0]]),
                length := r.uniform(0, 2),
            ),
            cheetah.CustomTransferMap(T(matrix), T(length)),
        )
    ],
    bl.Cavity: [lambda r: _cavity(r, bl.Cavity, "standing_wave")],
    bl.TravelingWaveCavity: [lambda r: _cavity(r, bl.TravelingWaveCavity, "traveling_wave")],
    # an aperture's first-order map is the identity; its losses: test_aperture
    bl.Aperture: [
        lambda r: (
            bl.Aperture(x := r.uniform(0, 1e-2), y := r.uniform(0, 1e-2)),
            cheetah.Aperture(T(x), T(y)),
        )
    ],
    bl.EllipticalAperture: [
        lambda r: (
            bl.EllipticalAperture(x := r.uniform(0, 1e-2), y := r.uniform(0, 1e-2)),
            cheetah.Aperture(T(x), T(y), shape="elliptical"),
        )
    ],
    bl.TransverseDeflectingCavity: [_deflecting_cavity],
    bl.Undulator: [
        lambda r: (
            bl.Undulator(
                length := r.uniform(0, 3),
                period := r.uniform(0.02, 0.1),
                kx := r.uniform(-3, 3),
                ky := r.uniform(-1, 1),
                misalignment=None,
            ),
            cheetah.Undulator(T(length), T(period), T(kx), T(ky)),
        )
    ],
    bl.Screen: [lambda r: (bl.Screen(), cheetah.Screen())],
    bl.BPM: [lambda r: (bl.BPM(), cheetah.BPM())],
    bl.Marker: [lambda r: (bl.Marker(), cheetah.Marker())],
}
#: elements with no first-order map in Cheetah (it raises NotImplementedError): their
#: parity with Cheetah's tracking is tested where named.
KICK_PARITY = {
    bl.SpaceChargeKick: "test_space_charge_kick.py::test_solver_reproduces_cheetah_given_its_two_choices",
    bl.DriftKickDrift: "test_drift_kick_drift.py::test_particles_match_cheetah",
}
CASE_IDS = [(cls, i) for cls, makers in CASES.items() for i in range(len(makers))]


def test_every_element_has_a_parity_case():
    exported = {
        obj
        for obj in vars(bl).values()
        if inspect.isclass(obj) and issubclass(obj, bl.Element) and not inspect.isabstract(obj)
    }
    exported.discard(bl.Element)
    assert exported <= set(CASES) | set(KICK_PARITY), (
        f"no Cheetah parity case for {exported - set(CASES) - set(KICK_PARITY)}"
    )
    for path in KICK_PARITY.values():
        file, test = path.split("::")
        assert f"def {test}(" in (Path(__file__).parent / file).read_text(), path


@pytest.mark.parametrize(("cls", "case"), CASE_IDS, ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize("species", SPECIES)
def test_first_order_map_matches_cheetah(cls, case, species, rng):
    for _ in range(5):
        ours, theirs = CASES[cls][case](rng)
        for gamma in GAMMAS:
            energy = gamma * Species.from_name(species).mass_eV
            ours_map = ours.transfer_map(energy, Species.from_name(species))
            if cls is bl.TransverseDeflectingCavity:
                their_map = _cheetah_jacobian(theirs, energy, species)
                assert_map_close(ours_map, their_map, rtol=1e-6)  # differences: O(h^2)
                continue
            their_map = N(theirs.first_order_transfer_map(T(energy), cheetah.Species(species)))
            if cls in (bl.Cavity, bl.TravelingWaveCavity):
                # Cheetah's r55 loses digits to cancellation (1e-6 and worse at gamma 5000);
                # ours is checked against 50-digit arithmetic in test_cavity.
                ours_map = np.asarray(ours_map).copy()
                ours_map[4, 4] = their_map[4, 4]
            assert_map_close(ours_map, their_map, rtol=1e-12)


#: Elements whose map must be symplectic: not a user's map (it need not be), not the
#: cavities (they change the reference momentum; test_cavity checks their damping).
SYMPLECTIC_IDS = [
    (cls, case) for cls, case in CASE_IDS
    if cls not in (bl.CustomTransferMap, bl.Cavity, bl.TravelingWaveCavity)
]  # fmt: skip


@pytest.mark.parametrize(("cls", "case"), SYMPLECTIC_IDS, ids=lambda v: getattr(v, "__name__", v))
def test_first_order_map_is_symplectic(cls, case, rng):
    ours, _ = CASES[cls][case](rng)
    r = np.asarray(ours.transfer_map(107.32e6))[:6, :6]
    j = np.kron(np.eye(3), np.array([[0.0, 1.0], [-1.0, 0.0]]))
    # Cheetah's (tau, p) pair is canonical up to the sign convention of tau.
    j[4:, 4:] *= -1.0
    np.testing.assert_allclose(r.T @ j @ r, j, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, rtol=1e-12)


def test_quadrupole_map_is_smooth_through_zero_strength():
    """k1 = 0 switches between series and closed forms; value and slope must be continuous."""

    def entry(k1):
        return bl.Quadrupole(0.3, k1).transfer_map(1e8)[1, 0]

    for k1 in (0.0, 1e-9, -1e-9, 1 / 0.09, -1 / 0.09):  # |k1 L^2| = 1 is the switch
        grad = jax.grad(entry)(k1)
        h = 1e-6
        fd = (entry(k1 + h) - entry(k1 - h)) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-7)


def test_gradients_match_finite_differences(rng):
    """d(map)/d(field) by autodiff against central differences, for every differentiable field."""
    kinds = (
        bl.Quadrupole, bl.Dipole, bl.VerticalCorrector, bl.Solenoid, bl.CombinedCorrector,
        bl.Undulator,
    )  # fmt: skip
    elements = [CASES[cls][-1](rng)[0] for cls in kinds]
    weights = jnp.asarray(rng.normal(size=(7, 7)))
    for element in elements:
        for field in element.settings:
            value = getattr(element, field)
            if value is None:
                continue

            def f(v, element=element, field=field):
                return jnp.sum(weights * element.replace(**{field: v}).transfer_map(3e8))

            value = jnp.asarray(value)
            direction = jnp.asarray(rng.normal(size=value.shape))
            h = 1e-6 * max(1.0, float(jnp.max(jnp.abs(value))))
            fd = (f(value + h * direction) - f(value - h * direction)) / (2 * h)
            ad = jnp.vdot(jax.grad(f)(value), direction)
            np.testing.assert_allclose(ad, fd, rtol=1e-6, atol=1e-9, err_msg=f"{element}.{field}")


def test_displaced_quadrupole_steers_towards_its_displacement():
    """Cheetah's convention: a magnet displaced by +dx with k1 > 0 pulls the beam to +x."""
    quad = bl.Quadrupole(0.122, k1=20.0, misalignment=(1e-4, 0.0))
    out = bl.Segment([quad, bl.Drift(1.0)]).track(bl.ParameterBeam.from_parameters())
    assert out.mu_x > 0.0 and out.mu_px > 0.0


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: bl.Quadrupole(-1.0, name="Q1"),
            r"length must lie in \[0.0, inf\] m; got -1.0 m for element 'Q1'",
        ),
        (
            lambda: bl.Drift(np.nan, name="D1"),
            "length must be finite; got nan for element 'D1'",
        ),
        (
            lambda: bl.Quadrupole(0.1, k1=np.nan, name="Q1"),
            "k1 must be finite; got nan for element 'Q1'",
        ),
        (
            lambda: bl.Quadrupole(0.1, misalignment=(1.0, 2.0, 3.0)),
            r"misalignment must have shape \(\.\.\., 2\)",
        ),
        (
            lambda: bl.Dipole(0.0, angle=0.1, name="B"),
            "length must be > 0 m; got 0.0 m for element 'B'",
        ),
        (lambda: bl.Screen(resolution=(100, 0)), "resolution must be two positive integers"),
        (lambda: bl.Screen(resolution=(100, 100), binning=3), "binning must be a positive integer"),
        (lambda: bl.Quadrupole(0.1, name="Q").replace(k2=1.0), r"has no field\(s\) \['k2'\]"),
        (
            lambda: bl.CustomTransferMap(np.eye(7) * 2, name="M"),
            r"last row \(0, 0, 0, 0, 0, 0, 1\) for element 'M'",
        ),
        (
            lambda: bl.CustomTransferMap(np.eye(6)),
            r"transfer_map_array must have shape \(\.\.\., 7, 7\)",
        ),
    ],
)
def test_bad_element_input_is_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize(("cls", "case"), CASE_IDS, ids=lambda v: getattr(v, "__name__", v))
def test_replace_without_changes_is_the_same_element(cls, case, rng):
    """replace() rebuilds every element class (thin elements derive their length)."""
    ours, _ = CASES[cls][case](rng)
    assert ours.replace() == ours
