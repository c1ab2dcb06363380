"""Beams: construction and derived quantities against Cheetah, sampling, bad input."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import diffdesign.beamline as bl
from diffdesign.beamline.species import Species

from .cheetah_helpers import N, T, assert_covariance_close, cheetah

PARAMETERS = dict(
    mu_x=1e-4,
    mu_px=-2e-5,
    mu_y=3e-5,
    mu_py=1e-6,
    mu_tau=2e-6,
    mu_p=1e-3,
    sigma_x=2e-4,
    sigma_px=3e-5,
    sigma_y=1e-4,
    sigma_py=2e-5,
    sigma_tau=1e-5,
    sigma_p=2e-3,
    cov_xpx=-2e-9,
    cov_ypy=1e-9,
    cov_taup=1e-9,
    cov_xp=1e-7,
    cov_pxp=1e-8,
    cov_xy=1e-9,
)
DERIVED = (
    "mu_x",
    "mu_px",
    "mu_y",
    "mu_py",
    "mu_tau",
    "mu_p",
    "sigma_x",
    "sigma_px",
    "sigma_y",
    "sigma_py",
    "sigma_tau",
    "sigma_p",
    "cov_xpx",
    "cov_ypy",
    "cov_taup",
    "cov_xp",
    "cov_pxp",
    "cov_yp",
    "cov_pyp",
    "cov_xy",
    "emittance_x",
    "emittance_y",
    "projected_emittance_x",
    "normalized_emittance_x",
    "beta_x",
    "beta_y",
    "alpha_x",
    "alpha_y",
    "dispersion_x",
    "dispersion_px",
    "relativistic_gamma",
    "relativistic_beta",
    "p0c",
)


def test_parameter_beam_matches_cheetah():
    ours = bl.ParameterBeam.from_parameters(energy=1e9, total_charge=1e-12, **PARAMETERS)
    theirs = cheetah.ParameterBeam.from_parameters(
        energy=T(1e9), total_charge=T(1e-12), **{k: T(v) for k, v in PARAMETERS.items()}
    )
    np.testing.assert_array_equal(ours.mu, N(theirs.mu))
    np.testing.assert_array_equal(ours.cov, N(theirs.cov))
    for name in DERIVED:
        np.testing.assert_allclose(
            getattr(ours, name), N(getattr(theirs, name)), rtol=1e-12, err_msg=name
        )


def test_from_twiss_matches_cheetah():
    twiss = dict(beta_x=5.0, alpha_x=-1.2, emittance_x=2e-9, beta_y=12.0, alpha_y=0.7,
                 emittance_y=5e-10, sigma_p=1e-3, dispersion_x=0.3, dispersion_px=-0.02)  # fmt: skip
    ours = bl.ParameterBeam.from_twiss(energy=3e9, **twiss)
    theirs = cheetah.ParameterBeam.from_twiss(energy=T(3e9), **{k: T(v) for k, v in twiss.items()})
    assert_covariance_close(ours.cov, N(theirs.cov), rtol=1e-13)
    for name in ("beta_x", "alpha_x", "emittance_x", "beta_y", "alpha_y", "dispersion_x"):
        np.testing.assert_allclose(
            getattr(ours, name), twiss.get(name, N(getattr(theirs, name))), rtol=1e-10
        )


def test_particle_beam_sample_has_the_requested_moments():
    beam = bl.ParticleBeam.from_parameters(
        20_000, jax.random.key(3), energy=1e9, total_charge=1e-9, **PARAMETERS
    )
    target = bl.ParameterBeam.from_parameters(energy=1e9, **PARAMETERS)
    np.testing.assert_allclose(beam.mean, target.mean, rtol=1e-10, atol=1e-18)
    assert_covariance_close(beam.covariance, target.covariance, rtol=1e-10)
    np.testing.assert_allclose(beam.total_charge, 1e-9, rtol=1e-12)
    # a different key gives different particles with the same moments
    other = bl.ParticleBeam.from_parameters(20_000, jax.random.key(4), energy=1e9, **PARAMETERS)
    assert not np.allclose(other.particles, beam.particles)


def test_particle_statistics_match_cheetah_with_losses(rng):
    particles = np.concatenate([rng.normal(size=(500, 6)) * 1e-4, np.ones((500, 1))], axis=1)
    survival = rng.uniform(0, 1, 500)
    ours = bl.ParticleBeam(particles, 1e9, survival_probabilities=survival)
    theirs = cheetah.ParticleBeam(T(particles), T(1e9), survival_probabilities=T(survival))
    for name in ("mu_x", "sigma_x", "sigma_py", "cov_xpx", "emittance_x", "beta_y", "total_charge"):
        np.testing.assert_allclose(
            getattr(ours, name), N(getattr(theirs, name)), rtol=1e-12, err_msg=name
        )


@settings(max_examples=25, deadline=None)
@given(
    beta=st.floats(0.1, 100.0),
    alpha=st.floats(-5.0, 5.0),
    emittance=st.floats(1e-12, 1e-6),
)
def test_twiss_round_trip(beta, alpha, emittance):
    """Twiss in, Twiss out, for any physical (beta > 0, emittance > 0) plane."""
    beam = bl.ParameterBeam.from_twiss(beta_x=beta, alpha_x=alpha, emittance_x=emittance)
    np.testing.assert_allclose(
        [beam.beta_x, beam.alpha_x, beam.emittance_x],
        [beta, alpha, emittance],
        rtol=1e-9,
        atol=1e-12,
    )


def test_other_species():
    proton = bl.ParameterBeam.from_parameters(energy=2e9, species=Species.from_name("proton"))
    np.testing.assert_allclose(proton.relativistic_gamma, 2e9 / 938272089.43, rtol=1e-9)
    ion = Species("C6+", mass_eV=11.178e9, num_elementary_charges=6)
    beam = bl.ParticleBeam.from_parameters(100, jax.random.key(0), energy=20e9, species=ion)
    np.testing.assert_allclose(beam.total_charge, 100 * 6 * 1.602176634e-19, rtol=1e-12)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (
            lambda: bl.ParameterBeam.from_parameters(sigma_x=np.nan),
            ValueError,
            "sigma_x must be finite; got nan for beam",
        ),
        (
            lambda: bl.ParameterBeam.from_parameters(sigma_y=-1e-3),
            ValueError,
            r"sigma_y must lie in \[0.0, inf\]",
        ),
        (
            lambda: bl.ParameterBeam.from_parameters(sigma_x=1e-4, sigma_px=1e-5, cov_xpx=1e-8),
            ValueError,
            "positive definite",
        ),
        (
            lambda: bl.ParameterBeam.from_parameters(sigma_q=1.0),
            TypeError,
            r"unknown beam parameter\(s\) \['sigma_q'\]",
        ),
        (lambda: bl.ParameterBeam.from_parameters(energy=1e5), ValueError, "energy - rest energy"),
        (lambda: bl.ParameterBeam.from_twiss(beta_x=0.0), ValueError, "beta_x must be > 0 m"),
        (
            lambda: bl.ParameterBeam(np.zeros(6), np.zeros((7, 7)), 1e9),
            ValueError,
            r"mu must have shape \(\.\.\., 7\)",
        ),
        (lambda: bl.ParticleBeam(np.zeros((1, 7)), 1e9), ValueError, "n >= 2"),
        (
            lambda: bl.ParticleBeam.from_parameters(3, jax.random.key(0)),
            ValueError,
            "num_particles must be an integer >= 7",
        ),
        (
            lambda: Species("x", mass_eV=0.0, num_elementary_charges=1),
            ValueError,
            "mass_eV must be > 0 eV",
        ),
        (lambda: Species.from_name("muon"), ValueError, "unknown species 'muon'"),
    ],
)
def test_bad_beam_input_is_named(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_particle_beam_validation_and_zero_energy_spread():
    particles = np.concatenate(
        [np.random.default_rng(0).normal(size=(50, 6)) * 1e-4, np.ones((50, 1))], axis=1
    )
    with pytest.raises(ValueError, match=r"particles\[\.\.\., 6\] must be 1"):
        bl.ParticleBeam(particles * np.array([1, 1, 1, 1, 1, 1, 0.0]), 1e9)
    with pytest.raises(ValueError, match=r"survival_probabilities must lie in \[0.0, 1.0\]"):
        bl.ParticleBeam(particles, 1e9, survival_probabilities=-np.ones(50))
    with pytest.raises(ValueError, match=r"particle_charges must have shape \(\.\.\., 50\)"):
        bl.ParticleBeam(particles, 1e9, particle_charges=np.ones(49))
    monoenergetic = bl.ParticleBeam(particles * np.array([1, 1, 1, 1, 1, 0.0, 1]), 1e9)
    for name in ("emittance_x", "beta_x", "alpha_y", "dispersion_x"):
        assert np.isfinite(float(getattr(monoenergetic, name))), name
    np.testing.assert_allclose(
        monoenergetic.emittance_x, monoenergetic.projected_emittance_x, rtol=1e-12
    )
