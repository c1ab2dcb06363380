"""LOCO: the ORM Jacobian is exact, and the fit recovers planted errors with honest errors."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign import ring
from diffdesign.ring import loco

SMALL_RING = Path(__file__).parent / "data" / "small_ring.m"
ORM = jax.jit(lambda lattice: ring.orbit_response(lattice))


@pytest.fixture(scope="module")
def small():
    return ring.load_lattice(SMALL_RING)


@pytest.mark.slow  # ~34 s on 2 cores: in CI's second stage (-m slow)
def test_orm_jacobian_matches_central_differences(small):
    # (its chain rule is the one k1_jacobian shares, checked against jax.jacfwd to 1e-12)
    quads = small.indices("Quadrupole")
    orm, d_orm = ring.k1_orm_jacobian(small)
    np.testing.assert_allclose(orm, ORM(small), rtol=0, atol=1e-13)
    scale = float(jnp.max(jnp.abs(d_orm)))
    step = 1e-6
    for j in (0, 3, 15):
        difference = (ORM(small.add_k1(quads[j], step)) - ORM(small.add_k1(quads[j], -step))) / (
            2 * step
        )
        np.testing.assert_allclose(d_orm[..., j], difference, rtol=0, atol=1e-7 * scale)


@pytest.mark.slow  # ~33 s on 2 cores: in CI's second stage (-m slow)
def test_loco_recovers_planted_errors_within_their_uncertainties(small):
    setup = loco.LocoSetup.from_lattice(small)
    q, b, h, v = setup.sizes
    rng = np.random.default_rng(0)
    truth = loco.LocoParameters(
        jnp.asarray(rng.normal(0, 5e-3, q)),
        *(jnp.asarray(rng.normal(0, 0.02, n)) for n in (b, b, h, v)),
    )
    noise = 1e-4
    model_x, model_y = loco.model_response(small, setup, truth)
    measured_x = model_x + noise * rng.normal(size=model_x.shape)
    measured_y = model_y + noise * rng.normal(size=model_y.shape)
    result = loco.loco_fit(
        small, setup, measured_x, measured_y, noise_sigma=noise, prior_k1_sigma=1e-2, iterations=4
    )
    # converged: the last step changed chi2 by a negligible amount, and chi2 ~ its dof
    dof = result.n_data - len(truth.flat())
    assert abs(float(result.chi2[-1] - result.final_chi2)) < 1e-3 * dof
    assert abs(float(result.final_chi2) - dof) < 4 * np.sqrt(2 * dof)
    assert float(result.final_residual_rms) < 1.2 * noise
    z = (np.asarray(result.parameters.flat()) - np.asarray(truth.flat())) / np.asarray(
        result.std.flat()
    )
    assert np.all(np.abs(z) < 4.5)
    dk_z = z[:q]
    assert 0.5 < np.sqrt(np.mean(dk_z**2)) < 1.6
    # the gradient errors are measured far better than the prior
    assert np.all(np.asarray(result.std.dk1) < 0.01 * 1e-2)


def test_loco_rejects_bad_input(small):
    setup = loco.LocoSetup.from_lattice(small)
    _, b, h, v = setup.sizes
    good_x, good_y = np.zeros((b, h)), np.zeros((b, v))
    with pytest.raises(ValueError, match="measured_x must have shape"):
        loco.loco_fit(small, setup, good_x[:, :-1], good_y, noise_sigma=1e-4, prior_k1_sigma=1e-2)
    bad = good_y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="measured_y must be finite"):
        loco.loco_fit(small, setup, good_x, bad, noise_sigma=1e-4, prior_k1_sigma=1e-2)
    with pytest.raises(ValueError, match="noise_sigma must be > 0"):
        loco.loco_fit(small, setup, good_x, good_y, noise_sigma=0.0, prior_k1_sigma=1e-2)
