"""The undulator's natural focusing against Cheetah 0.8.4 and the analytic matched beam;
files, misalignment and bad input (its map's parity and gradients: test_elements)."""

import equinox as eqx
import jax
import numpy as np
import pytest
from scipy.constants import physical_constants

import diffdesign.beamline as bl
from diffdesign.beamline.convert import from_cheetah, to_cheetah
from diffdesign.beamline.lattice_json import read_lattice_json, write_lattice_json

from .cheetah_helpers import N, T, assert_covariance_close, assert_vector_close, cheetah

latticejson = pytest.importorskip("cheetah.latticejson")

ENERGY = 1.5e9
MISALIGNMENT = (3e-4, -2e-4)


def test_displaced_undulator_tracks_as_cheetah():
    """Moments and particles through a displaced undulator (Cheetah's, between the shifts
    that displace it) between two quadrupoles."""
    shift, back = np.eye(7), np.eye(7)
    shift[[0, 2], 6] = MISALIGNMENT
    back[[0, 2], 6] = -np.asarray(MISALIGNMENT)
    ours = bl.Segment(
        [bl.Quadrupole(0.2, 3.0), bl.Undulator(2.5, 0.03, 4.0, 1.5, MISALIGNMENT, "U"),
         bl.Quadrupole(0.2, -3.0)]
    )  # fmt: skip
    theirs = cheetah.Segment(
        [cheetah.Quadrupole(T(0.2), T(3.0)), cheetah.CustomTransferMap(T(back)),
         cheetah.Undulator(T(2.5), T(0.03), T(4.0), T(1.5)),
         cheetah.CustomTransferMap(T(shift)), cheetah.Quadrupole(T(0.2), T(-3.0))]
    )  # fmt: skip
    beam = bl.ParameterBeam.from_parameters(
        energy=ENERGY, mu_x=1e-4, mu_py=1e-5, sigma_x=1e-4, sigma_y=2e-4, sigma_p=1e-3
    )
    got, expected = ours.track(beam), theirs.track(to_cheetah(beam))
    assert_vector_close(got.mu, N(expected.mu), rtol=1e-12)
    assert_covariance_close(got.cov, N(expected.cov), rtol=1e-12)
    particles = bl.ParticleBeam.from_parameters(32, jax.random.key(1), energy=ENERGY)
    got, expected = ours.track(particles), theirs.track(to_cheetah(particles))
    assert_vector_close(got.particles, N(expected.particles), rtol=1e-12)


def test_natural_focusing_matches_the_analytic_matched_beta():
    """A planar undulator with K = kx focuses y with k_beta = 2 pi K / (sqrt2 lambda_u gamma
    beta): the beta function 1 / k_beta is matched (unchanged after any length)."""
    mass = physical_constants["electron mass energy equivalent in MeV"][0] * 1e6
    gamma = ENERGY / mass
    beta = np.sqrt(1 - 1 / gamma**2)
    k_beta = 2 * np.pi * 3.0 / (np.sqrt(2) * 0.03 * gamma * beta)
    beam = bl.ParameterBeam.from_twiss(energy=ENERGY, beta_x=5.0, beta_y=1 / k_beta)
    out = bl.Segment([bl.Undulator(7.3, 0.03, kx=3.0)]).track(beam)
    np.testing.assert_allclose(out.beta_y, 1 / k_beta, rtol=1e-12)
    np.testing.assert_allclose(out.alpha_y, 0.0, atol=1e-12)
    drift = bl.Segment([bl.Drift(7.3)]).track(beam)
    np.testing.assert_allclose(out.beta_x, drift.beta_x, rtol=1e-14)  # ky = 0: no x focusing


def test_file_and_converter_round_trips(tmp_path):
    ours = bl.Segment([bl.Drift(0.3, "D"), bl.Undulator(2.5, 0.03, 4.0, 1.5, name="U")], "fel")
    path = tmp_path / "fel.json"
    write_lattice_json(ours, path)
    back = read_lattice_json(path)
    assert all(eqx.tree_equal(a, b) for a, b in zip(back.elements, ours.elements, strict=True))
    theirs = latticejson.load_cheetah_model(str(path))
    assert isinstance(theirs.elements[1], cheetah.Undulator)
    for segment in (from_cheetah(theirs), from_cheetah(to_cheetah(ours))):
        assert all(eqx.tree_equal(a, b) for a, b in zip(segment.elements, ours.elements, strict=True))  # fmt: skip


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: bl.Undulator(-1.0, name="U"), r"length must lie in \[0.0, inf\] m; got -1.0 m for element 'U'"),
        (lambda: bl.Undulator(1.0, period=0.0, name="U"), r"period must be > 0 m; got 0.0 m for element 'U'"),
        (lambda: bl.Undulator(1.0, kx=np.nan, name="U"), r"kx must be finite; got nan for element 'U'"),
        (lambda: bl.Undulator(1.0, misalignment=np.zeros(3), name="U"), r"misalignment must have shape \(\.\.\., 2\)"),
        (
            lambda: write_lattice_json(bl.Segment([bl.Undulator(1.0, misalignment=MISALIGNMENT, name="U")]), "/x"),
            r"element 'U' \(Undulator\): misalignment = \[0.0003, -0.0002\] m cannot be written",
        ),
    ],
)  # fmt: skip
def test_bad_input_is_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()
