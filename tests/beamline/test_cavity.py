"""RF cavities (standing and travelling wave) against Cheetah 0.8.4: tracked beams, the
reference energy along a segment, misalignment, batches, gradients, files and bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffdesign.beamline as bl
from diffdesign.beamline.convert import from_cheetah_beam, to_cheetah
from diffdesign.beamline.lattice_json import read_lattice_json, write_lattice_json

from .cheetah_helpers import (
    N,
    T,
    assert_covariance_close,
    assert_round_trips,
    assert_vector_close,
    cheetah,
)
from .gradient_helpers import assert_gradients_match_central_differences

latticejson = pytest.importorskip("cheetah.latticejson")

KINDS = {bl.Cavity: "standing_wave", bl.TravelingWaveCavity: "traveling_wave"}
#: (voltage V, phase deg): on crest-ish, off crest, far off crest, decelerating
SETTINGS = ((1.6e7, -10.0), (2.0e7, 70.0), (-5.0e6, 20.0))
ENERGY = 107e6
MISALIGNMENT = (2e-4, -1e-4)
#: Cheetah overwrites these covariance entries of a ParameterBeam with second-order terms
#: (cov_pp kept unchanged, cov_tautau and cov_taup set to T566 cov_pp^2 + ...); ours are
#: R cov R^T. Every other moment is compared.
CHEETAH_OVERWRITTEN = ((4, 4), (4, 5), (5, 4), (5, 5))


@eqx.filter_jit
def _track(segment, beam):
    """One compiled program per segment structure and beam kind (settings are arguments)."""
    return segment.track(beam)


def _ours(cls, voltage, phase, misalignment=MISALIGNMENT, length=1.04, frequency=2.998e9):
    return cls(length, voltage, phase, frequency, misalignment, name="C")


def _theirs(cls, voltage, phase, misalignment=MISALIGNMENT, length=1.04, frequency=2.998e9):
    """Cheetah's cavity, displaced by the shifts around it (Cheetah's cavities have no
    misalignment; the cavity's transverse map is linear, so the sandwich is exact)."""
    shift = np.eye(7)
    shift[[0, 2], 6] = misalignment
    back = np.eye(7)
    back[[0, 2], 6] = -np.asarray(misalignment)
    cavity = cheetah.Cavity(T(length), T(voltage), T(phase), T(frequency), KINDS[cls], name="C")
    return [cheetah.CustomTransferMap(T(back)), cavity, cheetah.CustomTransferMap(T(shift))]


def _parameter_beam():
    return bl.ParameterBeam.from_parameters(
        energy=ENERGY, mu_x=1e-4, mu_px=-2e-5, mu_y=5e-5, mu_py=1e-5, mu_tau=3e-6, mu_p=1e-3,
        sigma_x=1e-4, sigma_px=2e-5, sigma_y=2e-4, sigma_py=1e-5, sigma_tau=1e-5,
        sigma_p=2e-3, cov_xpx=1e-9, cov_taup=1e-8, cov_xp=2e-8,
    )  # fmt: skip


def _particle_beam(n=64):
    return bl.ParticleBeam.from_parameters(
        n, jax.random.key(3), energy=ENERGY, mu_x=1e-4, sigma_x=1e-4, sigma_px=2e-5,
        sigma_y=2e-4, sigma_py=1e-5, sigma_tau=1e-4, sigma_p=3e-3,
    )  # fmt: skip


def _assert_moments_match(ours, theirs):
    assert_vector_close(ours.mu[:6], N(theirs.mu)[:6], rtol=1e-12)
    expected, got = N(theirs.cov).copy(), np.asarray(ours.cov).copy()
    for i, j in CHEETAH_OVERWRITTEN:
        expected[i, j] = got[i, j] = 0.0
    expected[4, 4] = got[4, 4] = expected[5, 5] = got[5, 5] = 1.0  # keep the scale defined
    assert_covariance_close(got, expected, rtol=1e-12)


@pytest.mark.parametrize("cls", list(KINDS), ids=lambda c: c.__name__)
def test_tracks_as_cheetah(cls):
    """Mean and covariance of a ParameterBeam, every coordinate of a ParticleBeam and the
    outgoing energy, a displaced cavity between two quadrupoles (whose maps must use the
    energies entering them), at on-crest, off-crest and decelerating settings."""
    beam, particles = _parameter_beam(), _particle_beam()
    for voltage, phase in SETTINGS:
        ours = bl.Segment(
            [bl.Quadrupole(0.2, 5.0), _ours(cls, voltage, phase), bl.Quadrupole(0.2, -8.0)]
        )
        theirs = cheetah.Segment(
            [cheetah.Quadrupole(T(0.2), T(5.0)), *_theirs(cls, voltage, phase),
             cheetah.Quadrupole(T(0.2), T(-8.0))]
        )  # fmt: skip
        expected = theirs.track(to_cheetah(beam))
        got = _track(ours, beam)
        _assert_moments_match(got, expected)
        np.testing.assert_allclose(got.energy, N(expected.energy), rtol=1e-15)
        np.testing.assert_allclose(got.s, N(expected.s), rtol=1e-15)
        expected = theirs.track(to_cheetah(particles))
        got = _track(ours, particles)
        assert_vector_close(got.particles, N(expected.particles), rtol=1e-12)
        np.testing.assert_allclose(got.energy, N(expected.energy), rtol=1e-15)


def test_segment_map_and_track_along_follow_the_energy():
    """The composed map, track_along and second-order tracking all take each element's
    map at the energy entering it."""
    cavity = _ours(bl.Cavity, 1.6e7, -10.0)
    segment = bl.Segment([bl.Drift(0.5), cavity, bl.Quadrupole(0.2, 5.0, name="Q"), bl.Drift(1)])
    energy1 = cavity.outgoing_energy(ENERGY)
    np.testing.assert_allclose(segment.outgoing_energy(ENERGY), energy1, rtol=1e-15)
    expected = (
        bl.Segment(segment.elements[2:]).transfer_map(energy1)
        @ cavity.transfer_map(ENERGY)
        @ segment.elements[0].transfer_map(ENERGY)
    )
    np.testing.assert_allclose(segment.transfer_map(ENERGY), expected, rtol=1e-14, atol=1e-18)
    beam = _parameter_beam()
    along = segment.track_along(beam)
    np.testing.assert_allclose(along[-1].mu, segment.track(beam).mu, rtol=1e-14, atol=1e-20)
    assert [float(b.energy) for b in along] == [ENERGY, ENERGY] + [float(energy1)] * 3
    particles = _particle_beam()
    second = bl.Segment(segment.elements, second_order=[0, 2, 3]).track(particles)
    expected = segment.track_second_order(particles)
    np.testing.assert_allclose(second.particles, expected.particles, rtol=1e-13, atol=1e-20)
    np.testing.assert_allclose(second.energy, energy1, rtol=1e-15)


def test_only_a_cavity_that_may_be_powered_tracks_itself(monkeypatch):
    """An unpowered cavity (a drift) composes into its neighbours' map; one whose voltage is
    traced (a setting being differentiated at 0 V) tracks itself, so the energy gain's
    derivative dE/dV = cos(phase) (electrons) reaches the gradient."""
    segment = bl.Segment(
        [bl.Drift(0.5, "D"), bl.Cavity(1.2, 0.0, -10.0, 3e9, name="C"),
         bl.Quadrupole(0.2, 5.0, name="Q")]
    )  # fmt: skip
    beam = _parameter_beam()
    assert not segment["C"].tracks_itself(beam)
    assert segment.with_settings({"C.voltage": 1e6})["C"].tracks_itself(beam)
    monkeypatch.setattr(bl.Cavity, "track", lambda *_: pytest.fail("unpowered cavity tracked"))
    drift = bl.Segment([bl.Drift(0.5, "D"), bl.Drift(1.2), bl.Quadrupole(0.2, 5.0, name="Q")])
    np.testing.assert_allclose(segment.track(beam).cov, drift.track(beam).cov, rtol=1e-14)
    monkeypatch.undo()

    def energy(voltage):
        return segment.with_settings({"C.voltage": voltage}).track(beam).energy

    np.testing.assert_allclose(jax.grad(energy)(0.0), np.cos(np.radians(10.0)), rtol=1e-14)


@pytest.mark.parametrize("cls", list(KINDS), ids=lambda c: c.__name__)
def test_unpowered_cavity_is_a_drift(cls):
    """A standing-wave cavity at zero voltage is a drift; a travelling-wave one too except
    for tau, which its map (Cheetah's) does not slip (r56 = 0)."""
    beam, particles = _parameter_beam(), _particle_beam()
    cavity, drift = bl.Segment([cls(1.2, 0.0, 30.0, 3e9)]), bl.Segment([bl.Drift(1.2)])
    keep = [0, 1, 2, 3, 4, 5] if cls is bl.Cavity else [0, 1, 2, 3, 5]
    np.testing.assert_allclose(
        cavity.track(beam).cov[np.ix_(keep, keep)], drift.track(beam).cov[np.ix_(keep, keep)],
        rtol=1e-14,
    )  # fmt: skip
    np.testing.assert_allclose(
        cavity.track(particles).particles[:, keep], drift.track(particles).particles[:, keep],
        rtol=1e-14, atol=0,
    )  # fmt: skip
    assert float(cavity.track(beam).energy) == ENERGY


def test_standing_wave_r55_is_exact_where_cheetahs_cancels():
    """r55 - 1 is proportional to (1 - g0 g1 (1 - b0 b1)) / (b1 g1 (g1 - g0)), whose
    numerator vanishes to second order: against 50-digit arithmetic ours keeps full
    precision where Cheetah's formula loses up to 3% of that factor (gamma 5000, +1)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    mass = bl.ELECTRON.mass_eV
    length, phase, frequency = 2.0, 40.0, 3e9
    for gamma0, gain in ((1.5, 1e-4), (1.5, 0.1), (210.0, 0.5), (5000.0, 1.0), (1.5, -0.2)):
        voltage = gain * mass / np.cos(np.deg2rad(phase))
        ours = bl.Cavity(length, voltage, phase, frequency).transfer_map(gamma0 * mass)[4, 4]
        g0 = mpmath.mpf(gamma0)
        g1 = g0 + mpmath.mpf(voltage) * mpmath.cos(mpmath.radians(phase)) / mpmath.mpf(mass)
        b0, b1 = mpmath.sqrt(1 - 1 / g0**2), mpmath.sqrt(1 - 1 / g1**2)
        k = 2 * mpmath.pi * frequency / mpmath.mpf(299792458)
        factor = (g0 * g1 * (b0 * b1 - 1) + 1) / (b1 * g1 * (g1 - g0))
        exact = 1 + k * length * b0 * mpmath.tan(mpmath.radians(phase)) * factor
        np.testing.assert_allclose(float(ours), float(exact), rtol=1e-14, atol=5e-16)


@pytest.mark.parametrize("cls", list(KINDS), ids=lambda c: c.__name__)
def test_adiabatic_damping(cls):
    """Each transverse plane's map has determinant E0 / E1, in both cavity types."""
    cavity = _ours(cls, 1.6e7, -10.0)
    r = np.asarray(cavity.transfer_map(ENERGY))
    ratio = ENERGY / float(cavity.outgoing_energy(ENERGY))
    np.testing.assert_allclose(np.linalg.det(r[:2, :2]), ratio, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r[2:4, 2:4]), ratio, rtol=1e-12)


def test_batched_settings_track_as_one_setting_each():
    """Voltage, phase and frequency batches (mixed signs of energy gain) in one call equal
    the settings one at a time; an all-accelerating batch equals Cheetah's batch."""
    voltage = jnp.asarray([1.6e7, -5e6, 2e7])
    phase = jnp.asarray([-10.0, 20.0, 70.0])
    frequency = jnp.asarray([1.3e9, 2.998e9, 12e9])
    particles = _particle_beam(16)
    batch = _track(bl.Segment([bl.Cavity(1.04, voltage, phase, frequency)]), particles)
    for i in range(3):
        one = _track(bl.Segment([bl.Cavity(1.04, voltage[i], phase[i], frequency[i])]), particles)
        np.testing.assert_allclose(batch.particles[i], one.particles, rtol=1e-13, atol=1e-20)
        np.testing.assert_allclose(batch.energy[i], one.energy, rtol=1e-15)
    accelerating = jnp.asarray([1.6e7, 5e6, 2e7])
    theirs = cheetah.Cavity(T(1.04), T(accelerating), T(phase), T(frequency))
    expected = cheetah.Segment([theirs]).track(to_cheetah(_parameter_beam()))
    got = _track(bl.Segment([bl.Cavity(1.04, accelerating, phase, frequency)]), _parameter_beam())
    for i in range(3):
        _assert_moments_match(
            jax.tree_util.tree_map(lambda a, i=i: a[i] if jnp.ndim(a) else a, got),
            cheetah.ParameterBeam(expected.mu[i], expected.cov[i], expected.energy[i]),
        )


@pytest.mark.parametrize("cls", list(KINDS), ids=lambda c: c.__name__)
def test_gradients_match_central_differences(cls, rng):
    """d(outgoing particles, covariance, energy)/d(every field) against central differences,
    accelerating and decelerating."""
    particles = _particle_beam(8)
    beam = _parameter_beam()
    weights = jnp.asarray(rng.normal(size=(8, 7)))
    cov_weights = jnp.asarray(rng.normal(size=(7, 7)))

    @jax.jit
    @jax.value_and_grad
    def loss(fields):
        segment = bl.Segment([cls(**fields)])
        out, moments = segment.track(particles), segment.track(beam)
        scale = jnp.asarray([1e4, 1e5, 1e4, 1e5, 1e5, 1e3, 0.0])
        return (
            jnp.sum(weights * out.particles * scale[None, :])
            + jnp.sum(cov_weights * moments.cov) * 1e8
            + moments.energy / ENERGY
        )

    for voltage, phase in ((1.6e7, -10.0), (-5e6, 20.0)):
        fields = {  # strongly typed, so that the shifted values reuse the compiled program
            "length": 1.04, "voltage": voltage, "phase": phase, "frequency": 2.998e9,
            "misalignment": MISALIGNMENT,
        }  # fmt: skip
        fields = {k: jnp.asarray(v, dtype=float) for k, v in fields.items()}
        assert_gradients_match_central_differences(
            loss, fields, rng, rtol=2e-6, atol=1e-9, smallest=1e-3
        )


def test_file_and_converter_round_trips(tmp_path):
    """Both cavity types, powered, written by us, loaded by Cheetah and read back; live
    Cheetah segments convert to the same classes."""
    ours = bl.Segment(
        [bl.Drift(0.3, "D"), bl.Cavity(1.04, 1.6e7, -10.0, 2.998e9, name="SW"),
         bl.TravelingWaveCavity(3.0, 2e7, 5.0, 2.856e9, name="TW"), bl.Drift(0.5, "D2")],
        "linac",
    )  # fmt: skip
    theirs = assert_round_trips(ours, tmp_path / "linac.json")
    assert [getattr(e, "cavity_type", None) for e in theirs.elements][1:3] == [
        "standing_wave",
        "traveling_wave",
    ]
    beam = _parameter_beam()
    _assert_moments_match(ours.track(beam), theirs.track(to_cheetah(beam)))
    assert from_cheetah_beam(to_cheetah(beam)).energy == beam.energy


def test_ares_cavities_load_as_cavities(tmp_path):
    """The four cavities of Cheetah's ARES lattice file (ARESlatticeStage3v1_9.json, as its
    entries read there: unpowered, standing wave) load as cavities that can be powered."""
    entry = {"length": 4.138999938964844, "voltage": 0.0, "phase": 0.0,
             "frequency": 2998000128.0, "cavity_type": "standing_wave"}  # fmt: skip
    document = {
        "version": "cheetah-0.7", "title": "ares", "info": "", "root": "ares",
        "elements": {"ARLIRSBL1": ["Cavity", entry], "D": ["Drift", {"length": 0.5}],
                     "ARDLRXBD1": ["Cavity", entry | {"length": 1.0, "frequency": 11995199488.0}]},
        "lattices": {"ares": ["ARLIRSBL1", "D", "ARDLRXBD1"]},
    }  # fmt: skip
    path = tmp_path / "ares.json"
    path.write_text(__import__("json").dumps(document))
    segment = read_lattice_json(path)
    assert isinstance(segment["ARLIRSBL1"], bl.Cavity)
    powered = segment.with_settings({"ARLIRSBL1.voltage": 1e7, "ARLIRSBL1.phase": -5.0})
    theirs = latticejson.load_cheetah_model(str(path))
    theirs.ARLIRSBL1.voltage, theirs.ARLIRSBL1.phase = T(1e7), T(-5.0)
    _assert_moments_match(
        powered.track(_parameter_beam()), theirs.track(to_cheetah(_parameter_beam()))
    )


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: bl.Cavity(-1.0, name="C"), r"length must lie in \[0.0, inf\] m; got -1.0 m for element 'C'"),
        (lambda: bl.Cavity(0.0, name="C"), r"length must be > 0 m; got 0.0 m for element 'C'"),
        (lambda: bl.Cavity(1.0, np.nan, name="C"), "voltage must be finite; got nan for element 'C'"),
        (lambda: bl.TravelingWaveCavity(1.0, 1e6, np.inf, name="T"), "phase must be finite; got inf for element 'T'"),
        (lambda: bl.Cavity(1.0, 1e6, 0.0, -3e9, name="C"), r"frequency must lie in \[0.0, inf\] Hz; got -3000000000.0 Hz for element 'C'"),
        (lambda: bl.Cavity(1.0, misalignment=(1.0, 2.0, 3.0), name="C"), r"misalignment must have shape \(\.\.\., 2\)"),
        (lambda: bl.Cavity(1.0, name="C").replace(k1=1.0), r"has no field\(s\) \['k1'\]"),
        (
            lambda: bl.Segment([bl.Cavity(1.0, -2e8, 0.0, name="C")]).track(_parameter_beam()),
            r"voltage and phase of cavity 'C' would stop the beam: .* rest energy 510998.95",
        ),
        (
            lambda: write_lattice_json(bl.Segment([_ours(bl.Cavity, 1e6, 0.0)]), "/nonexistent"),
            r"element 'C' \(Cavity\): misalignment = \[0.0002, -0.0001\] m cannot be written",
        ),
    ],
)  # fmt: skip
def test_bad_input_is_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_stopping_the_beam_under_jit_is_an_error():
    beam = _parameter_beam()

    @jax.jit
    def energy(voltage):
        return bl.Segment([bl.Cavity(1.0, voltage, 0.0)]).track(beam).energy

    assert energy(1e6) > ENERGY
    with pytest.raises(Exception, match="stops the beam"):
        energy(-2e8).block_until_ready()
