"""Space charge by the rms envelope equations (diffrax) against the analytic KV limits (free
expansion of a laminar beam in a drift, the matched beam in uniform focusing), the linear
tracking at zero charge, central differences, and bad input."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

import diffdesign.beamline as bl
from diffdesign.beamline import space_charge as sc

from .gradient_helpers import assert_gradients_match_central_differences

ENERGY = 5e6  # eV: a 5 MeV electron beam, where 1 nC in 1 mm matters


def _beam(charge=1e-9, sigma=1e-3, sigma_px=1e-9, sigma_tau=1e-3, **extra):
    """Round; by default laminar (emittance 1e-12 m: its pressure eps^2 / X^3 is 3e-13 of
    the space charge's K / 4X here)."""
    return bl.ParameterBeam.from_parameters(
        energy=ENERGY, total_charge=charge, sigma_x=sigma, sigma_y=sigma, sigma_px=sigma_px,
        sigma_py=sigma_px, sigma_tau=sigma_tau, sigma_p=1e-4, **extra,
    )  # fmt: skip


def test_perveance_of_a_gaussian_bunch():
    """I_0 = 4 pi eps_0 m c^3 / e = 17,045 A for electrons; I = Q beta c / (sqrt(2 pi) sigma_z)
    with sigma_z = beta sigma_tau (tau = c dt, the delay behind the reference particle)."""
    beam = _beam()
    np.testing.assert_allclose(sc.characteristic_current(beam), 17045.09, rtol=1e-6)
    gamma = ENERGY / 510998.95
    beta = math.sqrt(1 - 1 / gamma**2)
    current = 1e-9 * beta * 299792458.0 / (math.sqrt(2 * math.pi) * beta * 1e-3)
    np.testing.assert_allclose(sc.peak_current(beam), current, rtol=1e-8)
    expected = 2 * current / (17045.09 * (beta * gamma) ** 3)
    np.testing.assert_allclose(sc.perveance(beam), expected, rtol=1e-6)


def test_laminar_free_expansion_in_a_drift_is_the_analytic_kv_solution():
    """Zero emittance, round: X'' = K / (4 X) from X0 at rest gives
    s = X0 sqrt(2 pi / K) erfi(sqrt(ln(X / X0))) exactly."""
    beam = _beam()
    k = float(sc.perveance(beam))
    for length in (0.3, 1.0, 2.5):
        out = sc.track_envelope(bl.Segment([bl.Drift(length)]), beam)
        for index in (0, 2):
            size = math.sqrt(float(out.cov[index, index]))
            assert size > 1.01e-3  # the charge blew it up
            reached = (
                1e-3 * math.sqrt(2 * math.pi / k) * special.erfi(math.sqrt(math.log(size / 1e-3)))
            )
            np.testing.assert_allclose(reached, length, rtol=1e-8)
        assert float(out.s) == length


def test_matched_beam_in_uniform_focusing_keeps_its_analytic_size():
    """Focusing k in both planes, emittance eps: the size X with k X^4 - K X^2 / 4 - eps^2 = 0
    stays X over 20 m (one diffrax solve), and a zero-charge size would not."""
    focusing, emittance = 4.0, 2e-7
    beam = _beam()
    k = sc.perveance(beam)
    size2 = (k / 4 + jnp.sqrt(k**2 / 16 + 4 * focusing * emittance**2)) / (2 * focusing)
    matched = _beam(sigma=jnp.sqrt(size2), sigma_px=emittance / jnp.sqrt(size2))
    generator = jnp.zeros((7, 7))
    generator = generator.at[0, 1].set(1.0).at[2, 3].set(1.0)
    generator = generator.at[1, 0].set(-focusing).at[3, 2].set(-focusing)
    mu, cov = sc.envelope_flow(generator, 20.0, matched.mu, matched.cov, k)
    for index in (0, 1, 2, 3):
        np.testing.assert_allclose(cov[index, index], matched.cov[index, index], rtol=1e-8)
    np.testing.assert_allclose(mu, matched.mu, atol=1e-30)
    _, uncharged = sc.envelope_flow(generator, 20.0, matched.mu, matched.cov, 0.0)
    assert abs(float(uncharged[0, 0] / matched.cov[0, 0]) - 1) > 0.1


def _line():
    return bl.Segment(
        [bl.Drift(0.4, "D1"), bl.Quadrupole(0.2, 6.0, (2e-4, -1e-4), tilt=0.1, name="Q1"),
         bl.Drift(0.3, "D2"), bl.Solenoid(0.5, 1.5, name="S"), bl.Dipole(0.3, 0.05, name="B"),
         bl.Quadrupole(0.2, -5.0, name="Q2"), bl.Drift(-0.1, "BACK"), bl.Drift(0.6, "D3")]
    )  # fmt: skip


def test_zero_charge_equals_linear_tracking():
    """Every generator (drift, displaced and tilted quadrupole, solenoid, a backwards drift)
    and the bend passed through: the moments of Segment.track to 1e-9."""
    beam = _beam(charge=0.0, sigma_px=1e-4, mu_x=1e-4, mu_py=-2e-5, cov_xpx=1e-8)
    ours, linear = sc.track_envelope(_line(), beam), _line().track(beam)
    scale = np.sqrt(np.outer(np.diag(linear.cov), np.diag(linear.cov)))[:6, :6]
    assert np.max(np.abs(ours.cov - linear.cov)[:6, :6] / scale) < 1e-9
    np.testing.assert_allclose(ours.mu, linear.mu, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(ours.s, linear.s, rtol=1e-15)


@pytest.mark.slow  # ~58 s on 2 cores: in CI's second stage (-m slow)
def test_gradients_match_central_differences(rng):
    """d sigma_x^2 / d charge and d sigma_x^2 / d k1 through diffrax's adjoint, to 1e-6."""
    beam = _beam(sigma_px=1e-4)
    segment = bl.Segment([bl.Drift(0.4), bl.Quadrupole(0.2, -5.0, name="Q2"), bl.Drift(0.6)])

    @jax.jit
    def value_and_grad(fields):
        def size(fields):
            charged = eqx.tree_at(lambda b: b.total_charge, beam, fields["charge"])
            out = sc.track_envelope(segment.with_settings({"Q2.k1": fields["k1"]}), charged)
            return out.cov[0, 0]

        return jax.value_and_grad(size)(fields)

    fields = {"charge": jnp.asarray(1e-9), "k1": jnp.asarray(-5.0)}
    assert_gradients_match_central_differences(value_and_grad, fields, rng, rtol=1e-6)


def _with_cov(index, value):
    """A beam whose variance ``index`` is set past the constructor's checks."""
    beam = _beam()
    return eqx.tree_at(lambda b: b.cov, beam, beam.cov.at[index, index].set(value))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: sc.track_envelope(_line(), _with_cov(4, 0.0)), ValueError,
         r"sigma_tau\^2 \(the bunch length sets the peak current\) must be > 0 m\^2"),
        (lambda: sc.track_envelope(_line(), _with_cov(0, 0.0)), ValueError,
         r"sigma_x\^2 must be > 0 m\^2"),
        (lambda: sc.track_envelope(_line(), bl.ParticleBeam.from_parameters(8, jax.random.key(0))),
         TypeError, "incoming must be a ParameterBeam"),
        (lambda: sc.track_envelope(_line().with_settings({"Q1.k1": jnp.array([1.0, 2.0])}), _beam()),
         TypeError, "element 'Q1' has batched settings"),
        (lambda: sc.generator(bl.Dipole(0.3, 0.05, name="B"), ENERGY, bl.ELECTRON), TypeError,
         r"element 'B' \(Dipole\) has no constant generator"),
    ],
)  # fmt: skip
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()
