"""Muon source, scattering and hit model against analytic references."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from diffdesign.muography.detector import Detector, acceptance, check_detector, make_panels
from diffdesign.muography.materials import MATERIALS
from diffdesign.muography.scattering import highland_variance, propagate
from diffdesign.muography.source import MuonBatch, generate_muons, guan_flux
from diffdesign.muography.volume import block_in_matrix, fill_level, uniform_volume, walls

N = 40_000


def _vertical(n, p=5e9, z=1.0):
    zeros = jnp.zeros(n)
    return MuonBatch(jnp.full(n, 0.5), jnp.full(n, 0.5), zeros, zeros, jnp.full(n, p), z)


@pytest.mark.slow  # ~36 s on 2 cores: in CI's second stage (-m slow)
def test_zenith_distribution_follows_the_flux():
    """Sampled cos(zenith) against the flux through a horizontal plane integrated over
    energy by quadrature (scipy), in 10 bins: a chi^2 test at 40 000 muons."""
    muons = generate_muons(jax.random.key(0), N, energy_range=(1e9, 1e12))
    cos_theta = 1 / np.sqrt(1 + np.asarray(muons.tx) ** 2 + np.asarray(muons.ty) ** 2)
    edges = np.linspace(math.cos(math.radians(70)), 1, 11)

    def rate(c):
        return c * integrate.quad(lambda e: float(guan_flux(e, c)), 1.0, 1000.0, limit=200)[0]

    expected = np.array([integrate.quad(rate, a, b)[0] for a, b in itertools.pairwise(edges)])
    expected = N * expected / expected.sum()
    observed = np.histogram(cos_theta, edges)[0]
    chi2 = np.sum((observed - expected) ** 2 / expected)
    assert chi2 < 27.9, (chi2, observed, expected.round())  # p = 0.001 at 9 dof


def test_energy_spectrum_mean_matches_quadrature():
    muons = generate_muons(jax.random.key(1), N, energy_range=(1e9, 1e11))
    energy = np.sqrt(np.asarray(muons.p) ** 2 + 105.6583755e6**2) / 1e9
    c = 0.8  # a thin zenith band, so the energy spectrum is the one at cos = 0.8
    cos_theta = 1 / np.sqrt(1 + np.asarray(muons.tx) ** 2 + np.asarray(muons.ty) ** 2)
    band = np.abs(cos_theta - c) < 0.02
    norm = integrate.quad(lambda e: float(guan_flux(e, c)), 1, 100, limit=200)[0]
    mean = integrate.quad(lambda e: e * float(guan_flux(e, c)), 1, 100, limit=200)[0] / norm
    sample = energy[band]
    assert abs(sample.mean() - mean) < 4 * sample.std() / math.sqrt(sample.size)


def test_fixed_momentum_and_footprint():
    muons = generate_muons(jax.random.key(2), 1000, footprint=((0.2, 0.4), (1.0, 3.0)),
                           momentum=5e9)  # fmt: skip
    assert np.all(np.asarray(muons.p) == 5e9)
    assert 0.2 <= float(muons.x.min()) and float(muons.x.max()) <= 0.4
    assert 1.0 <= float(muons.y.min()) and float(muons.y.max()) <= 3.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"footprint": ((1.0, 0.0), (0.0, 1.0))}, "footprint"),
        ({"energy_range": (1e7, 1e9)}, "energy_range"),
        ({"max_zenith": 2.0}, "max_zenith"),
        ({"momentum": -1.0}, "momentum"),
    ],
)
def test_bad_source_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_muons(jax.random.key(0), 10, **kwargs)


@pytest.mark.parametrize("substeps", [1, 10])
def test_scattering_width_and_displacement_follow_highland(substeps):
    """Vertical 5 GeV/c muons through 30 cm of iron: the projected angle's sd is Highland's
    width of the whole path whatever the step, and the lateral displacement's variance is
    the sum over steps of the PDG's correlated increments (computed here step by step)."""
    volume = uniform_volume("iron", shape=(10, 10, 3), lower=(0.0, 0.0, 0.3))
    passage = propagate(jax.random.key(3), _vertical(N), volume, substeps=substeps)
    theta = np.arctan(np.asarray(passage.exit[2:]))  # (2, n)
    total = 0.3 / MATERIALS["iron"].x0
    width = math.sqrt(float(highland_variance(jnp.asarray(total), jnp.asarray(5e9))))
    # the path grows only by the scattered slopes: 1 + t^2 / 2 with t ~ 10 mrad
    assert np.all(np.asarray(passage.material) >= total * (1 - 1e-12))
    np.testing.assert_allclose(passage.material, total, rtol=2e-3)
    sd = theta.std(axis=1)
    np.testing.assert_allclose(sd, width, rtol=4 / math.sqrt(2 * N))
    # displacement: a kick spread evenly over step k, m = n - 1 - k steps above the bottom,
    # moves the exit point by h sigma_k (z1 / sqrt(12) + z2 (m + 1/2)) (the same sign: z falls
    # along the flight), so var = sum_k h^2 sigma_k^2 (1/12 + (m + 1/2)^2)
    n = 3 * substeps
    h = 0.3 / n
    steps = np.arange(1, n + 1) * h / MATERIALS["iron"].x0
    variance = np.diff(np.concatenate([[0.0], np.asarray(highland_variance(steps, 5e9))]))
    m = n - 1 - np.arange(n)
    expected = np.sum(h**2 * variance * (1 / 12 + (m + 0.5) ** 2))
    # and the angle and the displacement are correlated with the same sign
    cov = np.mean((np.asarray(passage.exit[0]) - 0.5) * -theta[0])
    np.testing.assert_allclose(cov, np.sum(h * variance * (m + 0.5)), rtol=6 / math.sqrt(N))
    dx = np.asarray(passage.exit[0]) - 0.5
    np.testing.assert_allclose(dx.var(), expected, rtol=6 / math.sqrt(2 * N))


def test_highland_per_step_would_underestimate():
    """The reason for accumulating: Highland on ten 1 cm steps of iron sums to less than
    Highland on 10 cm (the log term of a thin step is more negative)."""
    step = 0.01 / MATERIALS["iron"].x0
    per_step = 10 * float(highland_variance(jnp.asarray(step), 5e9))
    whole = float(highland_variance(jnp.asarray(10 * step), 5e9))
    assert per_step < 0.9 * whole


def test_energy_loss_slows_and_stops_muons():
    volume = uniform_volume("lead", shape=(2, 2, 10), size=0.5, lower=(0.0, 0.0, 0.0))
    density = np.full(volume.shape, MATERIALS["lead"].density)
    fast = propagate(jax.random.key(4), _vertical(100, p=20e9, z=6.0), volume, 5, density)
    slow = propagate(jax.random.key(4), _vertical(100, p=2e9, z=6.0), volume, 5, density)
    loss = 1.7e5 * MATERIALS["lead"].density * 5.0  # eV over 5 m
    energy_in = math.hypot(20e9, 105.6583755e6)
    np.testing.assert_allclose(
        np.hypot(np.asarray(fast.p_exit), 105.6583755e6), energy_in - loss, rtol=0.02
    )
    assert bool(np.all(fast.alive)) and not bool(np.any(slow.alive))


def test_volume_builders():
    block = block_in_matrix((0.31, 0.31, 0.41), (0.59, 0.59, 0.59))
    assert block.shape == (10, 10, 6)
    lead = np.asarray(block.x0) == MATERIALS["lead"].x0
    assert lead.sum() == 3 * 3 * 2 and lead[3:6, 3:6, 1:3].all()
    level = fill_level(0.3)  # voxel centres 0.05, 0.15, 0.25 m above the bottom are below it
    assert (np.asarray(level.x0)[0, 0] == MATERIALS["water"].x0).sum() == 3
    box = walls(0.1)
    assert np.asarray(box.x0)[0, 5, 0] == MATERIALS["iron"].x0
    assert np.asarray(box.x0)[5, 5, 0] == MATERIALS["air"].x0
    with pytest.raises(ValueError, match="height"):
        fill_level(2.0)
    with pytest.raises(ValueError, match="unknown material"):
        uniform_volume("kryptonite")


def test_acceptance_inside_outside_and_edges():
    panels = make_panels([1.0], xy=(0.5, 0.5), span=(0.4, 0.4), efficiency=0.8)
    x = jnp.array([[0.5], [0.7], [0.9]])
    y = jnp.full((3, 1), 0.5)
    a = np.asarray(acceptance(panels, x, y))[:, 0]
    np.testing.assert_allclose(a, [0.8, 0.4, 0.0], atol=1e-6)


@pytest.mark.parametrize(
    ("where", "value", "match"),
    [
        (lambda d: d.above.z, [0.8, 0.95, 0.92], "above.z.0. = 0.8 m overlaps the passive volume"),
        (lambda d: d.below.z, [0.25, 0.5], "below.z.1. = 0.5 m overlaps the passive volume"),
        (lambda d: d.above.sigma, [1e-4, 1e-4, 0.0], "above.sigma must be > 0"),
        (lambda d: d.below.span, [[1.0, 1.0], [1.0, -1.0]], "below.span must be > 0"),
        (lambda d: d.above.efficiency, [1.5, 0.9, 0.9], r"efficiency must lie in \(0, 1\]"),
        (lambda d: d.above.xy, [[np.nan, 0.5]] + [[0.5, 0.5]] * 2, "above.xy must be finite"),
        (lambda d: d.above.sigma, [1e-4, 1e-4], r"above.sigma must have shape \(3,\)"),
    ],
)
def test_bad_detectors_are_rejected(where, value, match):
    import equinox as eqx

    volume = uniform_volume()
    detector = Detector(make_panels([1.0, 0.95, 0.92]), make_panels([0.25, 0.2]))
    check_detector(detector, volume)
    bad = eqx.tree_at(where, detector, jnp.asarray(value, dtype=float))
    with pytest.raises(ValueError, match=match):
        check_detector(bad, volume)


def test_a_track_needs_two_panels():
    one_panel = Detector(make_panels([1.0]), make_panels([0.25, 0.2]))
    with pytest.raises(ValueError, match="at least 2 panels"):
        check_detector(one_panel, uniform_volume())
