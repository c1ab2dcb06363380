"""Gradients of the design loss against finite differences; losses; the optimisation loop."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.muography.detector import Detector, default_detector, make_panels
from diffdesign.muography.losses import (
    block_presence_loss,
    fill_height,
    log_x0_error,
    panel_cost,
    x0_error,
)
from diffdesign.muography.pipeline import PathLikelihood, Poca, predict_x0
from diffdesign.muography.scattering import propagate
from diffdesign.muography.source import generate_muons
from diffdesign.muography.volume import block_in_matrix, fill_level, stack_volumes
from experiments.muography._design import optimize_detector

VOLUME = block_in_matrix((0.31, 0.31, 0.41), (0.59, 0.59, 0.59))


def _poor_detector():
    """Panels covering a quarter of the footprint each, offset from each other."""
    return Detector(
        make_panels([1.0, 0.97, 0.94, 0.91], xy=(0.35, 0.35), span=(0.5, 0.5)),
        make_panels([0.25, 0.22, 0.19, 0.16], xy=(0.65, 0.65), span=(0.5, 0.5)),
    )


@pytest.fixture(scope="module")
def sample():
    muons = generate_muons(jax.random.key(0), 3000, z=0.9, momentum=5e9)
    return muons, propagate(jax.random.key(1), muons, VOLUME)


#: (side, field, index) of the entries checked against finite differences
ENTRIES = [
    ("above", "xy", (0, 0)), ("above", "z", (1,)), ("below", "span", (2, 1)),
    ("above", "sigma", (0,)), ("below", "efficiency", (3,)), ("below", "xy", (1, 1)),
]  # fmt: skip


@pytest.mark.slow  # ~30 s on 2 cores: in CI's second stage (-m slow)
@pytest.mark.parametrize("estimator", [Poca(), PathLikelihood(iterations=10)])
def test_design_gradient_matches_finite_differences(sample, estimator):
    """d loss / d panel parameter by autodiff (through hits, fits, PoCA and the unrolled EM)
    against central differences on the same key."""
    muons, passage = sample
    detector = _poor_detector()

    def loss(det):
        pred = predict_x0(jax.random.key(2), det, passage, muons.p, VOLUME, estimator)
        return log_x0_error(pred, VOLUME.x0) + 0.01 * panel_cost(det)

    grad = jax.jit(jax.grad(loss))(detector)
    value = jax.jit(loss)
    for side, field, index in ENTRIES:
        where = lambda d, side=side, field=field: getattr(getattr(d, side), field)
        x = where(detector)
        h = 1e-6 * max(1.0, abs(float(x[index])))
        plus = eqx.tree_at(where, detector, x.at[index].add(h))
        minus = eqx.tree_at(where, detector, x.at[index].add(-h))
        fd = (float(value(plus)) - float(value(minus))) / (2 * h)
        ad = float(where(grad)[index])
        assert abs(ad - fd) <= 1e-4 * max(abs(fd), 1e-3), (side, field, ad, fd)


def test_losses():
    true = VOLUME.x0
    assert float(x0_error(true, true)) == 0.0 and float(log_x0_error(true, true)) == 0.0
    np.testing.assert_allclose(x0_error(2 * true, true), 1.0)
    no_block = jnp.full_like(true, 0.3528)
    assert float(block_presence_loss(true, 1.0)) < 0.1
    assert float(block_presence_loss(no_block, 0.0)) < 0.1
    assert float(block_presence_loss(no_block, 1.0)) > 2.0
    level = fill_level(0.3)
    np.testing.assert_allclose(fill_height(level.x0, 0.3608, 303.9, level.size), 0.3, rtol=1e-12)
    detector = default_detector(VOLUME)  # 8 panels of 1 m^2 at 100 um, efficiency 0.9
    np.testing.assert_allclose(panel_cost(detector, 1.0, 1.0, 1e-4), 8 * 2 * 0.9)
    np.testing.assert_allclose(panel_cost(detector, 1.0, 0.0), 8 * 0.9)


@pytest.mark.smoke
def test_optimisation_improves_a_poor_layout_and_resumes(tmp_path):
    """14 epochs from a poor layout cut the loss; a run stopped after 7 epochs and resumed
    from its checkpoint ends exactly where the uninterrupted one does."""
    settings = dict(n_muons=3000, momentum=5e9, task_loss=log_x0_error, progress=False,
                    cost_weight=0.0)  # fmt: skip
    full = optimize_detector(_poor_detector(), VOLUME, epochs=14, **settings)
    losses = [h["loss"] for h in full.history]
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3]), losses
    ckpt = tmp_path / "run.npz"
    optimize_detector(_poor_detector(), VOLUME, epochs=7, checkpoint=ckpt, **settings)
    assert len(load_checkpoint_header(ckpt)["history"]) == 7
    resumed = optimize_detector(_poor_detector(), VOLUME, epochs=14, checkpoint=ckpt, **settings)
    np.testing.assert_allclose(resumed.detector.above.xy, full.detector.above.xy, rtol=1e-9)
    assert [h["loss"] for h in resumed.history] == pytest.approx(losses, rel=1e-9)
    # panels stayed outside the volume
    assert float(resumed.detector.above.z.min()) > VOLUME.z_range[1]
    assert float(resumed.detector.below.z.max()) < VOLUME.z_range[0]


def load_checkpoint_header(path):
    with np.load(path, allow_pickle=False) as archive:
        return json.loads(archive["__metadata__"].tobytes().decode())


@pytest.mark.smoke
def test_several_volumes_and_plots(tmp_path):
    volumes = stack_volumes([VOLUME, block_in_matrix((0.11, 0.61, 0.31), (0.39, 0.89, 0.49))])
    result = optimize_detector(
        default_detector(VOLUME), volumes, epochs=2, n_muons=1000, plot_dir=tmp_path,
        plot_every=1, progress=False, cost_weight=0.01, budget=10.0,
    )  # fmt: skip
    assert result.prediction.shape == (2, 10, 10, 6)
    assert {p.name for p in tmp_path.iterdir()} >= {"layout_0000.png", "x0_0001.png"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "steps must be a positive integer"),
        ({"learning_rates": {"colour": 0.1}}, "steps: fields"),
        ({"learning_rates": {"xy": -1.0}}, "steps: fields"),
        ({"cost_weight": float("nan")}, "cost_weight"),
        ({"budget": 0.0}, "budget must be > 0"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimize_detector(default_detector(VOLUME), VOLUME, **kwargs)


def test_estimator_must_be_an_object():
    with pytest.raises(TypeError, match="estimator must be an X0Estimator"):
        optimize_detector(default_detector(VOLUME), VOLUME, estimator="poca")
    with pytest.raises(ValueError, match="iterations must be a positive integer"):
        PathLikelihood(iterations=0)


@pytest.mark.slow  # ~50 s on 2 cores: in CI's second stage (-m slow)
def test_bad_checkpoints(tmp_path):
    ckpt = tmp_path / "run.npz"
    ckpt.write_text("{not a checkpoint")
    with pytest.raises(ValueError, match="not a readable diffdesign checkpoint"):
        optimize_detector(default_detector(VOLUME), VOLUME, epochs=1, checkpoint=ckpt)
    # predict=False: the final layout's X0 maps (a program of their own, compiled by
    # tests/muography/test_budget_traced.py) play no part in the checkpoint's checks
    optimize_detector(default_detector(VOLUME), VOLUME, epochs=1, n_muons=500,
                      checkpoint=ckpt.with_name("ok.npz"), progress=False,
                      predict=False)  # fmt: skip
    with pytest.raises(ValueError, match="other settings"):
        optimize_detector(default_detector(VOLUME), VOLUME, epochs=2, n_muons=600,
                          checkpoint=ckpt.with_name("ok.npz"), progress=False)  # fmt: skip


_SHARDED = """
import json, jax, numpy as np
import diffdesign
from diffdesign.muography import default_detector, generate_muons, predict_x0, propagate, x0_error
from diffdesign.muography.pipeline import shard_muons
from tests.muography.test_design import VOLUME
muons = generate_muons(jax.random.key(0), 4000, z=0.9, momentum=5e9)
def loss(det, muons):
    passage = propagate(jax.random.key(1), muons, VOLUME)
    return x0_error(predict_x0(jax.random.key(2), det, passage, muons.p, VOLUME), VOLUME.x0)
f = jax.jit(jax.value_and_grad(loss))
det = default_detector(VOLUME)
one_value, one_grad = f(det, muons)
sharded = shard_muons(muons)
two_value, two_grad = f(det, sharded)
assert len(sharded.x.sharding.device_set) == 2
diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / (np.abs(np.asarray(a)) + 1e-12)))
           for a, b in zip(jax.tree.leaves(one_grad), jax.tree.leaves(two_grad)))
print(json.dumps({"devices": jax.device_count(), "value": [float(one_value), float(two_value)],
                  "grad_difference": diff}))
"""


@pytest.mark.smoke
def test_muon_batches_shard_across_devices():
    """Loss and gradient with the muons split over 2 (emulated) devices equal the 1-device
    ones to rounding."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", _SHARDED], capture_output=True, text=True,
                          env=env, cwd=root, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2
    one, two = report["value"]
    assert abs(one - two) <= 1e-10 * abs(one)
    assert report["grad_difference"] < 1e-8


def test_sharding_needs_a_divisible_count():
    from diffdesign.muography.pipeline import shard_muons

    muons = generate_muons(jax.random.key(0), 7, z=0.9)
    with pytest.raises(ValueError, match="multiple of the"):
        shard_muons(muons, [jax.devices()[0]] * 2)
