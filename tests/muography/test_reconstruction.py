"""Track fits, PoCA, scattering angles and X0 inference on analytic geometries."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.muography.detector import Hits, default_detector, record_hits
from diffdesign.muography.inference import x0_likelihood, x0_poca
from diffdesign.muography.losses import log_x0_error
from diffdesign.muography.pipeline import (
    ESTIMATORS,
    estimator_from_name,
    predict_x0,
    reconstruct,
)
from diffdesign.muography.reconstruction import _poca, at_least_two, fit_tracks
from diffdesign.muography.scattering import propagate
from diffdesign.muography.source import generate_muons
from diffdesign.muography.volume import block_in_matrix, uniform_volume


def test_at_least_two_against_enumeration():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (5, 4))
    brute = np.zeros(5)
    for outcome in itertools.product([0, 1], repeat=4):
        o = np.array(outcome)
        p = np.prod(np.where(o, a, 1 - a), axis=1)
        brute += p * (o.sum() >= 2)
    np.testing.assert_allclose(at_least_two(jnp.asarray(a)), brute, rtol=1e-12)


def test_track_fit_is_weighted_least_squares():
    """Against numpy's weighted lstsq: the lines, and the covariance of the estimate under
    hit noise sigma (the sandwich (J^T W J)^-1 J^T W S W J (J^T W J)^-1)."""
    rng = np.random.default_rng(1)
    z = jnp.array([1.2, 1.1, 1.0, 0.95])
    sigma = jnp.array([1e-4, 2e-4, 1e-4, 5e-4])
    xy = jnp.asarray(rng.normal(0.5, 0.01, (3, 4, 2)))
    weight = jnp.asarray(rng.uniform(0.2, 1.0, (3, 4)))
    tracks = fit_tracks(Hits(xy, weight, z, sigma), z_ref=0.9)
    design = np.stack([np.ones(4), np.asarray(z) - 0.9], 1)
    for m in range(3):
        w = np.asarray(weight[m]) / np.asarray(sigma) ** 2
        normal = design.T @ (w[:, None] * design)
        for axis, (pos, slope) in enumerate(((0, 2), (1, 3))):
            coef = np.linalg.solve(normal, design.T @ (w * np.asarray(xy[m, :, axis])))
            np.testing.assert_allclose(tracks.line[[pos, slope], m], coef, rtol=1e-9)
        inv = np.linalg.inv(normal)
        middle = design.T @ ((w**2 * np.asarray(sigma) ** 2)[:, None] * design)
        np.testing.assert_allclose(tracks.covariance[m], inv @ middle @ inv, rtol=1e-6)


def test_poca_of_lines_through_a_known_point():
    """Two lines through (0.3, 0.6, 0.55): PoCA returns it; skew lines: the midpoint of the
    common perpendicular (checked against a brute-force distance minimisation)."""
    point = np.array([0.3, 0.6, 0.55])
    tin, tout = np.array([0.1, -0.2]), np.array([-0.05, 0.3])
    line_in = np.concatenate([point[:2] + tin * (0.9 - point[2]), tin])
    line_out = np.concatenate([point[:2] + tout * (0.3 - point[2]), tout])
    params = jnp.asarray(np.concatenate([line_in, line_out]))
    np.testing.assert_allclose(_poca(params, 0.9, 0.3), point, atol=1e-12)
    skew = params.at[4].add(0.01)
    s = np.linspace(-1, 1, 2001)
    a = np.stack([line_in[0] + line_in[2] * s, line_in[1] + line_in[3] * s, 0.9 + s], 1)
    p2 = np.asarray(skew[4:])
    b = np.stack([p2[0] + p2[2] * s, p2[1] + p2[3] * s, 0.3 + s], 1)
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)
    i, j = np.unravel_index(np.argmin(d), d.shape)
    np.testing.assert_allclose(_poca(skew, 0.9, 0.3), 0.5 * (a[i] + b[j]), atol=2e-3)


def test_measured_angles_and_their_variance():
    """Through air (no scattering) the measured angle change is pure resolution: its spread
    matches the reported variance."""
    volume = uniform_volume("air")
    detector = default_detector(volume, sigma=1e-3)
    muons = generate_muons(jax.random.key(5), 20_000, z=0.9, momentum=5e9)
    passage = propagate(jax.random.key(6), muons, volume)
    rec = reconstruct(jax.random.key(7), detector, passage, volume)
    sc = rec.scatters
    keep = np.asarray(sc.weight) > 0.9
    pulls = np.asarray(sc.dtheta)[keep] / np.sqrt(np.asarray(sc.dtheta_variance)[keep])
    np.testing.assert_allclose(pulls.std(axis=0), 1.0, atol=0.05)


@pytest.fixture(scope="module")
def uniform_runs():
    """120k 5 GeV/c muons through uniform iron and uniform beryllium."""
    out = {}
    for name in ("iron", "beryllium"):
        volume = uniform_volume(name)
        detector = default_detector(volume)
        muons = generate_muons(jax.random.key(8), 120_000, z=0.9, momentum=5e9)
        passage = propagate(jax.random.key(9), muons, volume)
        rec = reconstruct(jax.random.key(10), detector, passage, volume)
        out[name] = (volume, muons, rec)
    return out


@pytest.mark.slow  # ~33 s on 2 cores: in CI's second stage (-m slow)
@pytest.mark.parametrize("name", ["iron", "beryllium"])
def test_x0_inference_is_consistent_on_uniform_volumes(uniform_runs, name):
    """The path likelihood returns the volume's X0 in every layer (median over the inner
    voxels within 5 %; measured within 2.4 %). PoCA is right on the whole (its global estimate)
    but not voxel by voxel: PoCAs of strongly scattered muons cluster mid-depth, so it reads
    the middle layers denser and the outer ones lighter (measured -28 % to +87 % in iron,
    -33 % to +34 % in beryllium).

    120k muons: at 60k the likelihood's outer layers read ~2.5 % light with a spread of
    ~2.2 % between random realisations (16 seeds, the same before and after scattering moved
    into the muon's frame), so the 5 % check failed on a quarter to a third of the seeds."""
    volume, muons, rec = uniform_runs[name]
    true = float(volume.x0[0, 0, 0])
    like = np.asarray(x0_likelihood(rec.scatters, muons.p, rec.incoming, rec.outgoing, volume))
    layers = np.median(like[2:-2, 2:-2], axis=(0, 1))
    np.testing.assert_allclose(layers, true, rtol=0.05)
    assert np.percentile(np.abs(np.log(like[2:-2, 2:-2] / true)), 90) < 0.25
    poca = np.asarray(x0_poca(rec.scatters, muons.p, volume, prior_muons=1e12))
    np.testing.assert_allclose(poca, true, rtol=0.05)  # all weight on the global estimate
    layers = np.median(np.asarray(x0_poca(rec.scatters, muons.p, volume))[2:-2, 2:-2], (0, 1))
    assert layers[0] > 1.1 * true and layers[-1] > 1.1 * true and layers[2] < 0.85 * true


@pytest.fixture(scope="module")
def lead_block():
    volume = block_in_matrix((0.31, 0.31, 0.41), (0.59, 0.59, 0.59))
    detector = default_detector(volume)
    muons = generate_muons(jax.random.key(11), 60_000, z=0.9, momentum=5e9)
    passage = propagate(jax.random.key(12), muons, volume)
    maps = {
        name: np.asarray(predict_x0(jax.random.key(13), detector, passage, muons.p, volume, est))
        for name, est in ESTIMATORS.items()
    }
    return volume, maps


def test_likelihood_sees_the_lead_block_and_beats_poca(lead_block):
    """Lead (X0 5.6 mm) in beryllium (353 mm): the path likelihood finds the block's voxels
    (median within 1.5x, every one within 2.5x; measured 1.2x and 1.7x) and its depth (the
    layers above and below stay light), and its log-error over the volume is well below
    PoCA's (which reads the block 3x too light and ghosts it in depth)."""
    volume, maps = lead_block
    true = np.asarray(volume.x0)
    block = true < 0.01
    like, poca = maps["likelihood"], maps["poca"]
    ratio = np.abs(np.log(like[block] / true[block]))
    assert np.median(ratio) < math.log(1.5) and np.all(ratio < math.log(2.5))
    column = like[4, 4]
    assert column[1] < 0.01 and column[2] < 0.01
    assert column[0] > 0.05 and column[4] > 0.05 and column[5] > 0.05
    err_like = float(log_x0_error(jnp.asarray(like), jnp.asarray(true)))
    err_poca = float(log_x0_error(jnp.asarray(poca), jnp.asarray(true)))
    assert err_like < 0.5 * err_poca, (err_like, err_poca)


def test_unknown_estimator(lead_block):
    volume, _ = lead_block
    muons = generate_muons(jax.random.key(0), 10, z=0.9)
    passage = propagate(jax.random.key(0), muons, volume)
    with pytest.raises(TypeError, match="estimator must be an X0Estimator"):
        predict_x0(jax.random.key(0), default_detector(volume), passage, muons.p, volume, "poca")
    with pytest.raises(ValueError, match=r"estimator must be one of \['likelihood', 'poca'\]"):
        estimator_from_name("mlem")


def test_hits_have_the_panel_resolution():
    volume = uniform_volume()
    panels = default_detector(volume, sigma=2e-3).above
    line = jnp.stack([jnp.full(5000, 0.5), jnp.full(5000, 0.5), jnp.zeros(5000), jnp.zeros(5000)])
    hits = record_hits(jax.random.key(14), panels, line, 0.9)
    np.testing.assert_allclose(np.asarray(hits.xy).std(axis=0), 2e-3, rtol=0.05)
    np.testing.assert_allclose(hits.weight, 0.9, rtol=1e-6)
