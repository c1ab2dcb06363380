"""Training many networks at once: an ensemble of initialisations as one vmapped PyTree.

Studies that report the spread of a result over random initialisations (INFERNO's Table 2
takes the median over 100) train all members in one computation: the parameters carry a
leading ensemble axis, every step evaluates ``jax.vmap(value_and_grad(loss))`` on a batch
shared by the members, and steps run in jitted ``lax.scan`` chunks between which the run
reports progress and writes a checkpoint it resumes from.

Networks are flax (linen) modules; parameters are plain PyTrees, so the loop does not care
what the loss computes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from diffdesign._checkpoint import load_checkpoint, save_checkpoint


class MLP(nn.Module):
    """A ReLU multilayer perceptron with He-normal hidden layers and a linear output.

    Attributes:
        hidden: widths of the hidden layers.
        n_outputs: width of the output (logits).
    """

    hidden: Sequence[int] = (100, 100)
    n_outputs: int = 10

    @nn.compact
    def __call__(self, x: Float[Array, "... n_features"]) -> Float[Array, "... n_outputs"]:
        x = jnp.asarray(x, dtype=jnp.float32)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width, kernel_init=nn.initializers.he_normal())(x))
        return nn.Dense(self.n_outputs)(x)


def init_ensemble(network: nn.Module, key: PRNGKeyArray, n_members: int, n_features: int) -> PyTree:
    """Parameters of ``n_members`` independent initialisations, stacked on a leading axis."""
    keys = jax.random.split(key, n_members)
    return jax.vmap(lambda k: network.init(k, jnp.zeros((1, n_features))))(keys)


class EnsembleRun(NamedTuple):
    """Result of :func:`train_ensemble`.

    Attributes:
        params: the trained parameters (leading axis: members).
        history: ``(n_chunks, n_members)`` mean loss of each member over each chunk of steps
            (non-finite where a member's loss was: its updates are the optimiser's to skip,
            e.g. with ``optax.apply_if_finite``).
        steps: steps done.
        wall_s: seconds spent training, summed over resumed runs (NaN when resumed from a
            checkpoint that did not record them).
    """

    params: PyTree
    history: np.ndarray
    steps: int
    wall_s: float


def train_ensemble(
    loss: Callable[[PyTree, Any], Float[Array, ""]],
    params: PyTree,
    optimiser: optax.GradientTransformation,
    sample_batch: Callable[[PRNGKeyArray], Any],
    n_steps: int,
    key: PRNGKeyArray,
    *,
    chunk: int = 250,
    checkpoint: str | Path | None = None,
    settings: dict | None = None,
    label: str = "ensemble",
    progress: bool = True,
) -> EnsembleRun:
    """Minimise ``loss`` for every member of an ensemble with one optimiser each.

    Args:
        loss: ``loss(member_params, batch) -> scalar``.
        params: initial parameters with a leading member axis (:func:`init_ensemble`).
        optimiser: an optax transformation, applied to each member independently.
        sample_batch: ``key -> batch``; one batch per step, shared by the members.
        n_steps: total steps (a multiple of ``chunk`` is not required).
        key: PRNG key of the batches (chunk ``i`` uses ``fold_in(key, i)``, so a resumed
            run draws the batches an uninterrupted one would have).
        chunk: steps per jitted scan; progress and checkpoints come between chunks.
        checkpoint: ``.npz`` file written after every chunk and resumed from if present.
        settings: JSON-able settings stored in the checkpoint; a checkpoint written with
            other settings is refused.
        label: name in the progress lines.
        progress: print one line per chunk to stderr.

    Returns:
        :class:`EnsembleRun`.
    """
    if n_steps < 0 or chunk < 1:
        raise ValueError(f"n_steps must be >= 0 and chunk >= 1; got {n_steps}, {chunk}")
    opt_state = jax.vmap(optimiser.init)(params)
    n_chunks = -(-n_steps // chunk)
    history = np.full((n_chunks, jax.tree.leaves(params)[0].shape[0]), np.nan)
    done, wall = 0, 0.0
    if checkpoint is not None and Path(checkpoint).exists():
        template = {"params": params, "opt_state": opt_state}
        state, header = load_checkpoint(checkpoint, template, settings)
        params, opt_state = state["params"], state["opt_state"]
        done = min(int(header["chunks_done"]), n_chunks)
        history[:done] = np.array(header["history"], dtype=float)[:done]
        wall = np.nan if header.get("wall_s") is None else float(header["wall_s"])
        if progress:
            _say(f"{label}: resumed {checkpoint} at step {min(done * chunk, n_steps)}")

    def run_chunk(params, opt_state, key, length):
        def step(carry, step_key):
            params, opt_state = carry
            batch = sample_batch(step_key)
            values, grads = jax.vmap(jax.value_and_grad(loss), in_axes=(0, None))(params, batch)
            updates, opt_state = jax.vmap(optimiser.update)(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), values

        (params, opt_state), values = jax.lax.scan(
            step, (params, opt_state), jax.random.split(key, length)
        )
        return params, opt_state, jnp.mean(values, axis=0)

    run_chunk = jax.jit(run_chunk, static_argnums=3)
    for i in range(done, n_chunks):
        length = min(chunk, n_steps - i * chunk)
        tic = time.perf_counter()
        params, opt_state, values = run_chunk(params, opt_state, jax.random.fold_in(key, i), length)
        history[i] = np.asarray(values)
        wall += time.perf_counter() - tic
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                {"params": params, "opt_state": opt_state},
                {
                    "settings": settings or {},
                    "chunks_done": i + 1,
                    "wall_s": wall if np.isfinite(wall) else None,
                    "history": np.where(
                        np.isnan(history[: i + 1]), None, history[: i + 1]
                    ).tolist(),
                },
            )
        if progress:
            values = history[i][np.isfinite(history[i])]
            line = f"{label}: step {i * chunk + length}/{n_steps}, loss "
            if values.size:
                line += (
                    f"median {np.median(values):.5g} [min {values.min():.5g}, max "
                    f"{values.max():.5g}]"
                )
            if values.size < history.shape[1]:
                line += f", {history.shape[1] - values.size} member(s) non-finite"
            _say(f"{line} ({wall:.0f} s)")
    return EnsembleRun(params, history, n_steps, wall)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
