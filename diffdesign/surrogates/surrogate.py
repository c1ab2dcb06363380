"""A local generative surrogate ``y ~ S(z, x; psi)`` of a simulator, and its training.

The surrogate is a :class:`~diffdesign.surrogates.flows.ConditionalFlow` on standardised
variables: the context is ``c = ([psi, x] - mean) / scale`` and the output
``y = y_mean + y_scale * T(z; c)``, with the standardisation taken from the training rows
of each fit. :func:`fit` maximises the likelihood of simulator samples with Adam over
minibatches drawn from the first ``n_rows`` rows of fixed-capacity buffers, so a growing
training set recompiles only when it outgrows its buffer (capacities are powers of two).
:func:`sample` is differentiable in ``psi``; :func:`expected_objective` is the Monte Carlo
estimate ``mean_k R(S(z_k, x_k; psi))`` whose gradient L-GSO follows.

Float32 throughout (a surrogate, not physics).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from diffdesign.core import Fit, Optax, Problem, Split, unbounded
from diffdesign.surrogates.flows import ConditionalFlow


class Surrogate(NamedTuple):
    """Weights and standardisation of a surrogate (all float32 arrays).

    Attributes:
        params: the flow's parameters.
        context_mean, context_scale: ``(psi_dim + x_dim,)`` standardisation of ``[psi, x]``.
        y_mean, y_scale: ``(y_dim,)`` standardisation of the outputs.
    """

    params: PyTree
    context_mean: Array
    context_scale: Array
    y_mean: Array
    y_scale: Array


def init(flow: ConditionalFlow, key: PRNGKeyArray, psi_dim: int, x_dim: int) -> Surrogate:
    """An untrained surrogate (the identity flow, unit standardisation)."""
    c_dim = psi_dim + x_dim
    params = flow.init(
        key, jnp.zeros((1, flow.y_dim), jnp.float32), jnp.zeros((1, c_dim), jnp.float32)
    )
    return Surrogate(
        params=params,
        context_mean=jnp.zeros(c_dim, jnp.float32),
        context_scale=jnp.ones(c_dim, jnp.float32),
        y_mean=jnp.zeros(flow.y_dim, jnp.float32),
        y_scale=jnp.ones(flow.y_dim, jnp.float32),
    )


def _context(surrogate: Surrogate, psi, x):
    context = jnp.concatenate([psi, x], axis=-1).astype(jnp.float32)
    return (context - surrogate.context_mean[None, :]) / surrogate.context_scale[None, :]


def sample(
    flow: ConditionalFlow,
    surrogate: Surrogate,
    z: Float[Array, "n y_dim"],
    psi: Float[Array, "n psi_dim"],
    x: Float[Array, "n x_dim"],
) -> Float[Array, "n y_dim"]:
    """Surrogate outputs for base noise ``z``, parameters ``psi`` and inputs ``x``."""
    standard = flow.apply(
        surrogate.params,
        z.astype(jnp.float32),
        _context(surrogate, psi, x),
        method=ConditionalFlow.sample,
    )
    return surrogate.y_mean[None, :] + surrogate.y_scale[None, :] * standard


def log_prob(
    flow: ConditionalFlow,
    surrogate: Surrogate,
    y: Float[Array, "n y_dim"],
    psi: Float[Array, "n psi_dim"],
    x: Float[Array, "n x_dim"],
) -> Float[Array, " n"]:
    """``log p_S(y | x; psi)`` in the units of ``y``."""
    standard = (y.astype(jnp.float32) - surrogate.y_mean[None, :]) / surrogate.y_scale[None, :]
    return flow.apply(surrogate.params, standard, _context(surrogate, psi, x)) - jnp.sum(
        jnp.log(surrogate.y_scale)
    )


def expected_objective(flow, objective, surrogate, psi, z, x) -> Float[Array, ""]:
    """``mean_k R(S(z_k, x_k; psi))`` for one ``psi (psi_dim,)``: differentiate it in ``psi``."""
    rows = jnp.broadcast_to(psi, (x.shape[0], psi.shape[-1]))
    return jnp.mean(objective(sample(flow, surrogate, z, rows, x)))


def _standardisation(values, n_rows):
    valid = (jnp.arange(values.shape[0]) < n_rows)[:, None]
    mean = jnp.sum(jnp.where(valid, values, 0.0), axis=0) / n_rows
    variance = jnp.sum(jnp.where(valid, (values - mean[None, :]) ** 2, 0.0), axis=0) / n_rows
    scale = jnp.sqrt(variance)
    return mean, jnp.where(scale > 1e-6 * (1 + jnp.abs(mean)), scale, 1.0)


class _Likelihood(Problem):
    """Mean negative log-likelihood of a minibatch (rows drawn with replacement from the
    first ``n_rows``, standardised units): the surrogate's training problem."""

    start: PyTree
    flow: ConditionalFlow = eqx.field(static=True)
    y: Array
    context: Array
    n_rows: Array
    batch_size: int = eqx.field(static=True)

    @property
    def spec(self):
        return {"params": unbounded(self.start, step=1.0, label="weights")}

    def loss(self, params, key):
        rows = jax.random.randint(key, (self.batch_size,), 0, self.n_rows)
        log_prob = self.flow.apply(params["params"], self.y[rows], self.context[rows])
        return -jnp.mean(log_prob), {}


@functools.partial(jax.jit, static_argnames=("flow", "steps", "batch_size", "learning_rate"))
def fit(
    flow: ConditionalFlow,
    surrogate: Surrogate,
    y: Float[Array, "capacity y_dim"],
    context: Float[Array, "capacity c_dim"],
    n_rows: Array,
    key: PRNGKeyArray,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
) -> tuple[Surrogate, Float[Array, " steps"]]:
    """Maximum-likelihood training from ``surrogate``'s weights (a warm start).

    Args:
        flow: the flow module (static).
        surrogate: weights to start from; the standardisation is recomputed from the data.
        y: ``(capacity, y_dim)`` outputs; only the first ``n_rows`` rows are used.
        context: ``(capacity, psi_dim + x_dim)`` the rows' ``[psi, x]``.
        n_rows: number of valid rows (a traced scalar: no recompilation when it changes).
        key: PRNG key of the minibatches.
        steps: Adam steps.
        batch_size: rows per step (drawn with replacement).
        learning_rate: initial step size (cosine-decayed to a tenth of it).

    Returns:
        The trained surrogate and the ``(steps,)`` mean negative log-likelihood per step
        (standardised units).
    """
    y = y.astype(jnp.float32)
    context = context.astype(jnp.float32)
    context_mean, context_scale = _standardisation(context, n_rows)
    y_mean, y_scale = _standardisation(y, n_rows)
    y_standard = (y - y_mean[None, :]) / y_scale[None, :]
    context_standard = (context - context_mean[None, :]) / context_scale[None, :]
    # the step decays to a tenth: large steps to move, small ones to settle
    optimiser = Optax(optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.1)))
    problem = _Likelihood(surrogate.params, flow, y_standard, context_standard, n_rows, batch_size)
    fit = Fit(problem, optimiser, Split(steps))
    state, info = fit.scan(fit.init(key), steps)
    params = fit.params(state)["params"]
    return Surrogate(params, context_mean, context_scale, y_mean, y_scale), info.loss


def buffer_capacity(n_rows: int, minimum: int = 4096) -> int:
    """The power-of-two buffer size that holds ``n_rows`` (at least ``minimum``)."""
    return max(minimum, 1 << int(np.ceil(np.log2(max(n_rows, 1)))))


def padded(values: np.ndarray, capacity: int) -> np.ndarray:
    """``values`` with zero rows appended up to ``capacity`` rows."""
    out = np.zeros((capacity, *values.shape[1:]), dtype=np.float32)
    out[: len(values)] = values
    return out
