"""Training many networks at once: an ensemble of initialisations as one vmapped PyTree.

Studies that report the spread of a result over random initialisations (INFERNO's Table 2
takes the median over 100) train all members in one computation: the parameters carry a
leading ensemble axis, every step evaluates ``jax.vmap(value_and_grad(loss))`` on a batch
shared by the members, and steps run in jitted ``lax.scan`` chunks between which the run
reports progress and writes a checkpoint it resumes from: the design layer's one loop
(:func:`diffdesign.core.run_members`), with the batches' keys split per chunk.

Networks are flax (linen) modules; parameters are plain PyTrees, so the loop does not care
what the loss computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from diffdesign.core import Optax, Problem, SplitPerChunk, run_members, unbounded


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


class _Ensemble(Problem):
    """One member's training as a problem: ``loss(params, sample_batch(key))``."""

    start: PyTree
    objective: Callable = eqx.field(static=True)
    sample_batch: Callable = eqx.field(static=True)
    label: str = eqx.field(static=True)

    @property
    def spec(self):
        return {"params": unbounded(self.start, step=1.0, label="weights")}

    @property
    def name(self):
        return self.label

    def loss(self, params, key):
        return self.objective(params["params"], self.sample_batch(key)), {}


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
    """Minimise ``loss`` for every member of an ensemble with one optimiser each: the design
    layer's :func:`~diffdesign.core.run_members` on a batch shared by the members.

    Args:
        loss: ``loss(member_params, batch) -> scalar``.
        params: initial parameters with a leading member axis (:func:`init_ensemble`).
        optimiser: an optax transformation, applied to each member independently.
        sample_batch: ``key -> batch``; one batch per step, shared by the members.
        n_steps: total steps (a multiple of ``chunk`` is not required).
        key: PRNG key of the batches (step ``j`` of chunk ``i`` uses
            ``split(fold_in(key, i), length)[j]``, so a resumed run draws the batches an
            uninterrupted one would have).
        chunk: steps per jitted scan; progress and checkpoints come between chunks.
        checkpoint: ``.npz`` file written after every chunk and resumed from if present.
        settings: JSON-able settings stored in the checkpoint; a checkpoint written with
            other settings is refused.
        label: name in the progress bar.
        progress: a progress bar on stderr.

    Returns:
        :class:`EnsembleRun`.
    """
    if n_steps < 0 or chunk < 1:
        raise ValueError(f"n_steps must be >= 0 and chunk >= 1; got {n_steps}, {chunk}")
    if n_steps == 0:
        return EnsembleRun(params, np.zeros((0, jax.tree.leaves(params)[0].shape[0])), 0, 0.0)
    first = jax.tree.map(lambda x: x[0], params)
    result = run_members(
        _Ensemble(first, loss, sample_batch, label), {"params": params}, steps=n_steps,
        key=key, optimiser=Optax(optimiser), keys=SplitPerChunk(chunk, n_steps), chunk=chunk,
        checkpoint=checkpoint, settings=settings, progress=progress,
    )  # fmt: skip
    return EnsembleRun(result.params["params"], result.history, n_steps, result.wall_s)
