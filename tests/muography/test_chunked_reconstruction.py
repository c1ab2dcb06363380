"""Chunked reconstruction and path likelihood (``chunk_size``) give the all-at-once X0 map,
loss and gradient.

Measured agreement (1003 muons, chunks of 128 and 4096, the second padded): X0 maps within
1.5e-11 relative, losses within 1.1e-12, gradients within 3.4e-11 of their largest component.
The residual is rounding, not chunking: a few muons are ill-conditioned (nearly parallel
incoming and outgoing lines put the PoCA at a ratio of tiny numbers; a muon that misses the
panels has a track fit on weights of 1e-12), so where XLA fuses the same arithmetic
differently their last bits grow to ~1e-8 relative in the PoCA. One chunk of all muons
differs from the default by as much, so the tolerances here are 1e-10.
"""

import jax
import numpy as np
import pytest

from diffdesign.muography import (
    ESTIMATORS,
    PathLikelihood,
    block_in_matrix,
    default_detector,
    generate_muons,
    predict_x0,
    propagate,
    reconstruct,
    x0_error,
)

VOLUME = block_in_matrix((0.31, 0.31, 0.41), (0.59, 0.59, 0.59), lower=(0.0, 0.0, 0.2))
TOLERANCE = 1e-10


@pytest.fixture(scope="module")
def setting():
    detector = default_detector(VOLUME, sigma=1e-4, efficiency=0.9)
    muons = generate_muons(jax.random.key(1), 1003, z=1.0, momentum=5e9)  # 1003: ragged chunks
    passage = propagate(jax.random.key(2), muons, VOLUME)
    return detector, muons, passage


@pytest.mark.slow  # three compiled reconstructions with gradients: 60-80 s each
@pytest.mark.parametrize(
    "estimator",
    [lambda chunk_size: ESTIMATORS["poca"],
     lambda chunk_size: PathLikelihood(iterations=5, chunk_size=chunk_size)],
    ids=["poca", "likelihood"],
)  # fmt: skip
def test_chunked_x0_and_detector_gradient_equal_unchunked(setting, estimator):
    """Reconstruction and (for the path likelihood) every EM step in chunks."""
    detector, muons, passage = setting

    def loss(det, chunk_size):
        pred = predict_x0(jax.random.key(4), det, passage, muons.p, VOLUME,
                          estimator(chunk_size), chunk_size=chunk_size)  # fmt: skip
        return x0_error(pred, VOLUME.x0), pred

    grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    (value, pred), g = grad(detector, None)
    leaves = jax.tree.leaves(g)
    scale = max(float(np.max(np.abs(a))) for a in leaves)
    assert scale > 0
    for chunk_size in (128, 4096):
        (value_c, pred_c), g_c = grad(detector, chunk_size)
        np.testing.assert_allclose(pred_c, pred, rtol=TOLERANCE)  # X0 > 0 everywhere
        np.testing.assert_allclose(value_c, value, rtol=TOLERANCE)
        for a, b in zip(leaves, jax.tree.leaves(g_c), strict=True):
            np.testing.assert_allclose(b, a, rtol=0, atol=TOLERANCE * scale)


def test_chunked_reconstruction_keeps_shapes_and_the_recorded_muons(setting):
    detector, _, passage = setting
    whole = reconstruct(jax.random.key(3), detector, passage, VOLUME)
    chunked = reconstruct(jax.random.key(3), detector, passage, VOLUME, chunk_size=300)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(chunked), strict=True):
        assert a.shape == b.shape
    # weights and measured angles are well conditioned for every muon
    for a, b in ((whole.scatters.weight, chunked.scatters.weight),
                 (whole.incoming.covariance, chunked.incoming.covariance)):  # fmt: skip
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * float(np.max(np.abs(a))))


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_chunk_size_is_checked(setting, bad):
    detector, _, passage = setting
    with pytest.raises(ValueError, match="chunk_size"):
        reconstruct(jax.random.key(3), detector, passage, VOLUME, chunk_size=bad)
    with pytest.raises(ValueError, match="chunk_size"):
        PathLikelihood(chunk_size=bad)
