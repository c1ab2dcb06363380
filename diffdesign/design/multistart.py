"""Minimise a smooth function from many starting points at once (vmapped, scanned Adam).

Box constraints are the caller's bijection (e.g. a sigmoid onto the box), so every start
runs unconstrained; all starts advance together in one compiled loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PyTree


@eqx.filter_jit
def _run_starts(loss, starts, steps: int, learning_rate: float, final_fraction: float):
    optimiser = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=final_fraction))

    def run(params):
        def step(carry, _):
            params, state = carry
            value, grad = jax.value_and_grad(loss)(params)
            updates, state = optimiser.update(grad, state)
            return (optax.apply_updates(params, updates), state), value

        (params, _), history = jax.lax.scan(
            step, (params, optimiser.init(params)), None, length=steps
        )
        return params, loss(params), history

    return jax.vmap(run)(starts)


class MultistartResult(NamedTuple):
    """Attributes:
    params: the final parameters of every start (leading axis: start).
    loss: (num_starts,) final loss of every start.
    history: (num_starts, steps) loss before each step.
    best: index of the start with the lowest finite final loss.
    """

    params: PyTree
    loss: Float[Array, " num_starts"]
    history: Float[Array, "num_starts steps"]
    best: Array


def minimise_multistart(
    loss: Callable[[PyTree], Array],
    starts: PyTree,
    *,
    steps: int,
    learning_rate: float,
    final_fraction: float = 1e-3,
) -> MultistartResult:
    """Adam from every start (leading axis of ``starts``), cosine-decayed step size.

    The step shrinks to ``final_fraction`` of ``learning_rate``, so that non-smooth
    objectives (sums of |.|) settle instead of chattering around their minimum.

    Compiled once per loss *structure*: pass the loss as an ``eqx.Module`` holding its
    data as arrays and a later call with new data reuses the compiled loop (a new Python
    closure per call would compile again).
    """
    params, final, history = _run_starts(loss, starts, steps, learning_rate, final_fraction)
    # A start that diverged (NaN or inf) must never be the best one.
    finite = jnp.isfinite(final)
    best = jnp.where(finite, final, jnp.inf).argmin()
    best = eqx.error_if(best, ~jnp.any(finite), "every start of minimise_multistart diverged")
    return MultistartResult(params, final, history, best)
