"""Drift-kick-drift (Bmad's nonlinear) tracking of drifts and quadrupoles against Cheetah's
``tracking_method="drift_kick_drift"``, its symplecticity, its linear limit and its
conversion."""

from __future__ import annotations

import cheetah
import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

import diffdesign.beamline as bl
from diffdesign.beamline import _bmad
from diffdesign.beamline.convert import from_cheetah, to_cheetah
from diffdesign.beamline.lattice_json import read_lattice_json, write_lattice_json
from diffdesign.beamline.species import Species
from tests.beamline.cheetah_helpers import T, assert_vector_close


def _particles(rng, n=200):
    """Large amplitudes, where the nonlinear terms matter: 1 mm, 2 mrad, 1% energy."""
    particles = np.zeros((n, 7))
    particles[:, [0, 2]] = rng.normal(0.0, 1e-3, (n, 2))
    particles[:, [1, 3]] = rng.normal(0.0, 2e-3, (n, 2))
    particles[:, 4] = rng.normal(0.0, 1e-3, n)
    particles[:, 5] = rng.normal(0.0, 1e-2, n)
    particles[:, 6] = 1.0
    return particles


CASES = {
    "drift": lambda: (
        bl.DriftKickDrift(bl.Drift(1.3, "D")),
        cheetah.Drift(T(1.3), tracking_method="drift_kick_drift", name="D"),
    ),
    "quadrupole": lambda: (
        bl.DriftKickDrift(bl.Quadrupole(0.3, 12.0, misalignment=(2e-4, -3e-4), tilt=0.1,
                                        name="Q"), num_steps=1),
        cheetah.Quadrupole(T(0.3), T(12.0), misalignment=T([2e-4, -3e-4]), tilt=T(0.1),
                           tracking_method="drift_kick_drift", name="Q"),
    ),
    "quadrupole, 4 steps, defocusing": lambda: (
        bl.DriftKickDrift(bl.Quadrupole(0.25, -20.0, name="Q"), num_steps=4),
        cheetah.Quadrupole(T(0.25), T(-20.0), num_steps=4, tracking_method="drift_kick_drift",
                           name="Q"),
    ),
    "quadrupole, weak": lambda: (
        bl.DriftKickDrift(bl.Quadrupole(0.2, 1e-7, name="Q"), num_steps=2),
        cheetah.Quadrupole(T(0.2), T(1e-7), num_steps=2, tracking_method="drift_kick_drift",
                           name="Q"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(
    ("species", "energy"), [("electron", 1e8), ("proton", 1.2e9), ("electron", 3e6)]
)
def test_particles_match_cheetah(case, species, energy, rng):
    ours, theirs = CASES[case]()
    particles = _particles(rng)
    beam = bl.ParticleBeam(particles, energy, species=Species.from_name(species))
    out = ours.track(beam).particles
    their_beam = cheetah.ParticleBeam(T(particles), T(energy), species=cheetah.Species(species))
    _assert_like_cheetah(out, theirs.track(their_beam).particles.numpy())
    np.testing.assert_allclose(ours.track(beam).s, ours.length)


def _assert_like_cheetah(ours, theirs):
    """Every coordinate to 1e-12 of its scale, tau to 1e-9: through a quadrupole Bmad (and
    Cheetah) take beta / beta0 - 1 from a third-order series in pz below a switch point,
    ours is exact (test_velocity_lag_is_exact); the series' error reaches 2e-11 of the
    bunch length here (6e-14 m)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    columns = [0, 1, 2, 3, 5, 6]
    assert_vector_close(ours[:, columns], theirs[:, columns], rtol=1e-12)
    assert_vector_close(ours[:, [4]], theirs[:, [4]], rtol=1e-9)


def test_velocity_lag_is_exact():
    """L (beta / beta0 - 1) against 50-digit arithmetic, for small and large pz."""
    mpmath.mp.dps = 50
    mass, p0c, length = 0.51099895e6, 1e8, 0.7
    for pz in (1e-9, -3e-6, 2e-3, -0.05, 0.4):
        ours = float(_bmad.velocity_lag(length, pz, p0c, mass))
        p, p0, m = mpmath.mpf(p0c) * (1 + mpmath.mpf(pz)), mpmath.mpf(p0c), mpmath.mpf(mass)
        exact = length * ((p / mpmath.sqrt(p**2 + m**2)) / (p0 / mpmath.sqrt(p0**2 + m**2)) - 1)
        np.testing.assert_allclose(ours, float(exact), rtol=1e-14)


@pytest.mark.parametrize("case", list(CASES))
def test_map_is_symplectic_away_from_the_reference(case, rng):
    """M^T J M = J for the Jacobian at particles with large amplitudes (Cheetah's
    (tau, p) pair is canonical up to the sign of tau)."""
    ours, _ = CASES[case]()
    j = np.kron(np.eye(3), np.array([[0.0, 1.0], [-1.0, 0.0]]))
    j[4:, 4:] *= -1.0

    def after(vector):
        particle = jnp.concatenate([vector, jnp.ones(1)])[None]
        return ours.track(bl.ParticleBeam(jnp.tile(particle, (2, 1)), 1e8)).particles[0, :6]

    for particle in _particles(rng, 3)[:, :6]:
        m = np.asarray(jax.jacfwd(after)(jnp.asarray(particle)))
        np.testing.assert_allclose(m.T @ j @ m, j, atol=1e-12)


def test_linear_limit_is_the_first_order_map():
    """Near the reference particle the nonlinear map's Jacobian is the element's own
    first-order map (the path-length terms are second order)."""
    element = bl.Quadrupole(0.3, 12.0, tilt=0.1, name="Q")
    ours = bl.DriftKickDrift(element, num_steps=3)

    def after(vector):
        particle = jnp.concatenate([vector, jnp.ones(1)])[None]
        return ours.track(bl.ParticleBeam(jnp.tile(particle, (2, 1)), 1e8)).particles[0, :6]

    jacobian = np.asarray(jax.jacfwd(after)(jnp.zeros(6)))
    np.testing.assert_allclose(jacobian, np.asarray(element.transfer_map(1e8))[:6, :6],
                               rtol=1e-12, atol=1e-14)  # fmt: skip


def test_settings_reach_the_element_and_gradients_match_differences(rng):
    segment = bl.Segment([bl.DriftKickDrift(bl.Quadrupole(0.3, 5.0, name="Q"), 2), bl.Drift(1.0)])
    beam = bl.ParticleBeam(_particles(rng, 500), 1e8)
    changed = segment.with_settings({"Q.k1": -3.0})
    assert isinstance(changed["Q"], bl.DriftKickDrift) and changed["Q"].element.k1 == -3.0
    assert changed["Q"].num_steps == 2

    def size(k1):
        return segment.with_settings({"Q.k1": k1}).track(beam).sigma_x

    grad = jax.grad(size)(5.0)
    fd = (size(5.0 + 1e-5) - size(5.0 - 1e-5)) / 2e-5
    np.testing.assert_allclose(grad, fd, rtol=1e-7)
    # moments pass through the first-order map, as the neighbours'
    moments = bl.ParameterBeam.from_parameters(sigma_x=1e-4, energy=1e8)
    plain = bl.Segment([bl.Quadrupole(0.3, 5.0), bl.Drift(1.0)])
    np.testing.assert_allclose(segment.track(moments).cov, plain.track(moments).cov, rtol=1e-15)


def test_converts_both_ways_with_its_tracking_method(tmp_path, rng):
    theirs = cheetah.Segment(
        [cheetah.Drift(T(0.4), tracking_method="drift_kick_drift", name="D1"),
         cheetah.Quadrupole(T(0.2), T(8.0), num_steps=3, tracking_method="drift_kick_drift",
                            name="Q1"),
         cheetah.Drift(T(0.4), name="D2")]
    )  # fmt: skip
    ours = from_cheetah(theirs)
    assert [type(e).__name__ for e in ours.elements] == ["DriftKickDrift", "DriftKickDrift",
                                                        "Drift"]  # fmt: skip
    assert ours["Q1"].num_steps == 3
    particles = _particles(rng)
    out = ours.track(bl.ParticleBeam(particles, 1e8)).particles
    their_out = theirs.track(cheetah.ParticleBeam(T(particles), T(1e8))).particles.numpy()
    _assert_like_cheetah(out, their_out)
    back = to_cheetah(ours)
    assert [e.tracking_method for e in back.elements] == ["drift_kick_drift"] * 2 + ["linear"]
    assert back.elements[1].num_steps == 3
    write_lattice_json(ours, tmp_path / "line.json")
    assert read_lattice_json(tmp_path / "line.json").elements == ours.elements


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: bl.DriftKickDrift(bl.Dipole(0.5, 0.1, name="B")), TypeError,
         "drift-kick-drift tracking is built for Drift and Quadrupole; got Dipole 'B'"),
        (lambda: bl.DriftKickDrift(bl.Quadrupole(0.2, name="Q"), num_steps=0), ValueError,
         "num_steps must be an integer >= 1; got 0 for element 'Q'"),
        (lambda: bl.DriftKickDrift(bl.Drift(0.2, "D"), num_steps=1.5), ValueError,
         "num_steps must be an integer >= 1; got 1.5"),
    ],
)  # fmt: skip
def test_bad_input_is_named(build, error, match):
    with pytest.raises(error, match=match):
        build()
