"""Ensemble training: members train independently, checkpoints resume exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffdesign._checkpoint import load_checkpoint, save_checkpoint
from diffdesign.inference.ensembles import MLP, init_ensemble, train_ensemble

TARGET = jnp.array([1.0, -2.0, 0.5])


def quadratic(params, batch):
    return jnp.sum((params["w"] - TARGET) ** 2) + 0.0 * jnp.sum(batch)


def starts():
    return {"w": jnp.stack([jnp.zeros(3), jnp.ones(3), -jnp.ones(3)])}


def batches(key):
    return jax.random.normal(key, (4,))


def test_every_member_converges_independently():
    run = train_ensemble(quadratic, starts(), optax.adam(0.1), batches, 300, jax.random.key(0),
                         chunk=100, progress=False)  # fmt: skip
    np.testing.assert_allclose(run.params["w"], np.tile(TARGET, (3, 1)), atol=1e-3)
    assert run.history.shape == (3, 3)
    assert np.all(run.history[-1] < run.history[0])


def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    def noisy(params, batch):
        return jnp.sum((params["w"] - TARGET - 0.1 * batch[:3]) ** 2)

    whole = train_ensemble(noisy, starts(), optax.adam(0.05), batches, 60, jax.random.key(1),
                           chunk=20, progress=False)  # fmt: skip
    path = tmp_path / "run.npz"
    first = train_ensemble(noisy, starts(), optax.adam(0.05), batches, 40, jax.random.key(1),
                           chunk=20, checkpoint=path, settings={"a": 1}, progress=False)  # fmt: skip
    # the first 40 steps were checkpointed; the rerun with 60 steps does only the rest
    resumed = train_ensemble(noisy, starts(), optax.adam(0.05), batches, 60, jax.random.key(1),
                             chunk=20, checkpoint=path, settings={"a": 1}, progress=False)  # fmt: skip
    np.testing.assert_array_equal(resumed.params["w"], whole.params["w"])
    assert resumed.wall_s > first.wall_s > 0  # training time summed over the two runs
    with pytest.raises(ValueError, match="other settings"):
        train_ensemble(noisy, starts(), optax.adam(0.05), batches, 60, jax.random.key(1),
                       chunk=20, checkpoint=path, settings={"a": 2}, progress=False)  # fmt: skip


def test_mlp_ensemble_shapes_and_independent_initialisations():
    params = init_ensemble(MLP(hidden=(7, 5), n_outputs=3), jax.random.key(0), 4, 2)
    kernel = params["params"]["Dense_0"]["kernel"]
    assert kernel.shape == (4, 2, 7)
    assert not np.allclose(kernel[0], kernel[1])
    out = jax.vmap(MLP(hidden=(7, 5), n_outputs=3).apply, in_axes=(0, None))(
        params, jnp.ones((6, 2))
    )
    assert out.shape == (4, 6, 3)


def test_checkpoint_files_are_checked(tmp_path):
    path = tmp_path / "c.npz"
    tree = {"a": np.arange(3.0), "b": (np.zeros((2, 2)), np.int32(4))}
    save_checkpoint(path, tree, {"settings": {"x": (1, 2)}, "step": 3})
    loaded, header = load_checkpoint(path, tree, {"x": (1, 2)})
    np.testing.assert_array_equal(loaded["a"], tree["a"])
    assert header["step"] == 3
    with pytest.raises(ValueError, match="structure"):
        load_checkpoint(path, {"a": np.arange(4.0), "b": tree["b"]})
    grown = {"a": np.arange(7.0), "b": tree["b"]}
    save_checkpoint(path, grown, {})
    assert load_checkpoint(path, tree, growing=True)[0]["a"].shape == (7,)
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        load_checkpoint(tmp_path / "bad.npz", tree)
    np.savez(tmp_path / "plain.npz", leaf_0=np.zeros(2))
    with pytest.raises(ValueError, match="not a readable"):
        load_checkpoint(tmp_path / "plain.npz", tree)
