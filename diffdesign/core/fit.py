"""The one optimisation loop: ``Fit(problem, optimiser)`` as pure ``init``/``step`` over
explicit state, a :func:`run` driver (progress, early stop, atomic checkpoints, exact
resume) and :func:`multistart` (the same step vmapped over starting points).

``Fit.step`` differentiates ``problem.loss`` with respect to every parameter of
``problem.spec`` through the parameters' bound transforms, applies the optimiser (one Adam
per label of the spec, each with its label's step size) and projects back inside the bounds.
The step's key is ``fold_in(state.key, state.step)``, so a resumed run draws the same random
numbers as an uninterrupted one and ends bit-identical.

Example:
    >>> fit = Fit(problem)                      # Adam with the spec's step sizes
    >>> state = fit.init(jax.random.key(0))
    >>> state, info = fit.step(state)           # jit / vmap / scan as you like
    >>> result = run(problem, steps=500, key=jax.random.key(0), checkpoint="out/fit.npz")
"""

from __future__ import annotations

import abc
import collections
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, PRNGKeyArray, PyTree

from diffdesign._checkpoint import load_checkpoint, save_checkpoint
from diffdesign._progress import bar, say
from diffdesign.core.interrupt import Interrupted, running, stop_requested
from diffdesign.core.problem import Problem
from diffdesign.core.spec import (
    check_params,
    internal,
    is_param,
    labels,
    param_names,
    project,
    step_sizes,
    to_physical,
)

#: Traces of the compiled multi-step program, per problem class (a recompilation guard:
#: tests assert that a second run with new values does not trace again).
TRACES: collections.Counter[str] = collections.Counter()


class Schedule(eqx.Module):
    """A factor on every label's step size as a function of the step count."""

    @abc.abstractmethod
    def __call__(self, count: Array) -> Array: ...


class Constant(Schedule):
    """The step sizes of the spec, unchanged."""

    def __call__(self, count):
        return jnp.ones((), dtype=float)


class CosineDecay(Schedule):
    """Cosine decay from 1 to ``final_fraction`` over ``steps`` steps (then constant), so
    non-smooth objectives settle instead of chattering around their minimum."""

    steps: int = eqx.field(static=True)
    final_fraction: float = eqx.field(static=True, default=1e-3)

    def __call__(self, count):
        return optax.cosine_decay_schedule(1.0, self.steps, alpha=self.final_fraction)(count)


class ConstantThenCosine(Schedule):
    """Constant for ``constant_steps``, then cosine-decayed to ``final_fraction`` over
    ``decay_steps``."""

    constant_steps: int = eqx.field(static=True)
    decay_steps: int = eqx.field(static=True)
    final_fraction: float = eqx.field(static=True, default=1e-3)

    def __call__(self, count):
        decay = optax.cosine_decay_schedule(1.0, self.decay_steps, alpha=self.final_fraction)
        return jnp.where(count < self.constant_steps, 1.0, decay(count - self.constant_steps))


class Optimiser(eqx.Module):
    """Turns a spec into the optax transformation that steps its parameters."""

    @abc.abstractmethod
    def transformation(self, spec: PyTree) -> optax.GradientTransformation: ...

    def describe(self) -> str:
        """What a checkpoint records of the optimiser (resuming under another is refused)."""
        return repr(self)


class Adam(Optimiser):
    """Adam with one step size per label of the spec (``optax.multi_transform``), each
    multiplied by ``schedule``."""

    schedule: Schedule = Constant()
    b1: float = eqx.field(static=True, default=0.9)
    b2: float = eqx.field(static=True, default=0.999)
    eps: float = eqx.field(static=True, default=1e-8)

    def transformation(self, spec: PyTree) -> optax.GradientTransformation:
        def adam(step):
            return optax.adam(lambda count: step * self.schedule(count), self.b1, self.b2, self.eps)

        transforms = {label: adam(step) for label, step in step_sizes(spec).items()}
        return optax.multi_transform(transforms, labels(spec))


class Optax(Optimiser):
    """Any optax transformation for the whole tree, as given (e.g.
    ``optax.apply_if_finite(optax.adam(schedule), 20)``); the spec's step sizes are not used."""

    tx: optax.GradientTransformation

    def transformation(self, spec):
        return self.tx

    def describe(self) -> str:
        return "Optax"  # its functions have no stable description; settings should say more


class KeySchedule(eqx.Module):
    """The key of step ``step`` from the run's key (what random numbers each step sees)."""

    @abc.abstractmethod
    def __call__(self, key: PRNGKeyArray, step: Array) -> PRNGKeyArray: ...


class FoldIn(KeySchedule):
    """A fresh key every step: ``fold_in(key, step)``."""

    def __call__(self, key, step):
        return jax.random.fold_in(key, step)


class SameKey(KeySchedule):
    """The run's key at every step: common random numbers (a sample-average objective)."""

    def __call__(self, key, step):
        return key


class Split(KeySchedule):
    """Step ``j`` of ``total`` uses ``split(key, total)[j]`` (a scanned loop over split keys)."""

    total: int = eqx.field(static=True)

    def __call__(self, key, step):
        return jax.random.split(key, self.total)[step]


class SplitPerChunk(KeySchedule):
    """Step ``j`` of chunk ``i`` (``chunk`` steps each, ``total`` in all) uses
    ``split(fold_in(key, i), length)[j]``, ``length`` the chunk's size (the last may be
    shorter): the keys of a scanned loop that splits one key per chunk."""

    chunk: int = eqx.field(static=True)
    total: int = eqx.field(static=True)

    def __call__(self, key, step):
        i, j = step // self.chunk, step % self.chunk
        chunk_key = jax.random.fold_in(key, i)
        last = self.total - (-(-self.total // self.chunk) - 1) * self.chunk
        if last == self.chunk:
            return jax.random.split(chunk_key, self.chunk)[j]
        full, short = jax.random.split(chunk_key, self.chunk), jax.random.split(chunk_key, last)
        in_last = i == (self.total - 1) // self.chunk
        return jax.lax.cond(in_last, lambda: short[jnp.minimum(j, last - 1)], lambda: full[j])


class FitState(NamedTuple):
    """Attributes:
    z: the optimiser's coordinates of the parameters (see :mod:`diffdesign.core.bounds`).
    opt_state: the optimiser's state.
    key: the run's key (each step uses ``fold_in(key, step)``).
    step: the number of steps taken.
    """

    z: PyTree
    opt_state: PyTree
    key: PRNGKeyArray
    step: Array


class StepInfo(NamedTuple):
    """The loss, aux and gradient norm (in the optimiser's coordinates) of the parameters a
    step started from."""

    loss: Array
    aux: PyTree
    grad_norm: Array


class Fit(eqx.Module):
    """Gradient descent on ``problem.loss`` within ``problem.spec`` (pure ``init``/``step``)."""

    problem: Problem
    optimiser: Optimiser = Adam()
    keys: KeySchedule = FoldIn()

    def init(self, key: PRNGKeyArray, params: PyTree | None = None) -> FitState:
        """The state at ``params`` (default: the spec's values)."""
        spec = self.problem.spec
        z = internal(spec, params)
        opt_state = self.optimiser.transformation(spec).init(z)
        return FitState(z, opt_state, key, jnp.zeros((), dtype=jnp.int32))

    def step(self, state: FitState) -> tuple[FitState, StepInfo]:
        spec = self.problem.spec
        key = self.keys(state.key, state.step)

        def objective(z):
            return self.problem.loss(to_physical(spec, z), key)

        (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.z)
        updates, opt_state = self.optimiser.transformation(spec).update(
            grads, state.opt_state, state.z
        )
        z = project(spec, optax.apply_updates(state.z, updates))
        info = StepInfo(loss, aux, optax.tree.norm(grads))
        return FitState(z, opt_state, state.key, state.step + 1), info

    def scan(self, state: FitState, n: int) -> tuple[FitState, StepInfo]:
        """``n`` steps in one ``lax.scan`` (pure; use inside jit), infos stacked."""
        return jax.lax.scan(lambda s, _: self.step(s), state, None, length=n)

    def params(self, state: FitState) -> PyTree:
        """The parameters (physical units) of ``state``."""
        return to_physical(self.problem.spec, state.z)


#: vmap axes of a members' state: parameters and optimiser state per member, one shared key
#: and step count (so every member sees the same batch, drawn once).
_MEMBER_AXES = FitState(0, 0, None, None)


@eqx.filter_jit
def _advance(fit: Fit, state: FitState, n: int) -> tuple[FitState, StepInfo]:
    TRACES[type(fit.problem).__name__] += 1
    return fit.scan(state, n)


@eqx.filter_jit
def _advance_members(fit: Fit, state: FitState, n: int) -> tuple[FitState, StepInfo]:
    TRACES[type(fit.problem).__name__ + ".members"] += 1
    step = jax.vmap(fit.step, in_axes=(_MEMBER_AXES,), out_axes=(_MEMBER_AXES, 0))
    return jax.lax.scan(lambda s, _: step(s), state, None, length=n)


class EarlyStop(eqx.Module):
    """Stop when the best loss of the last ``patience`` steps is not below the best before
    them by more than ``min_delta`` (loss units)."""

    patience: int = eqx.field(static=True)
    min_delta: float = eqx.field(static=True, default=0.0)

    def __call__(self, losses: list[float]) -> bool:
        if len(losses) <= self.patience:
            return False
        before, recent = min(losses[: -self.patience]), min(losses[-self.patience :])
        return not recent < before - self.min_delta


class FitResult(NamedTuple):
    """Outcome of :func:`run`: final parameters (physical units), final state, one history
    row per step (``step``, ``loss`` and the aux scalars, e.g. ``detector.cost``), and why
    it stopped (``"steps"`` or ``"early stop"``)."""

    params: PyTree
    state: FitState
    history: list[dict[str, float]]
    stopped: str


class MembersResult(NamedTuple):
    """Outcome of :func:`run_members`: final parameters (leading axis: member), final state,
    ``history`` (n_chunks, n_members): each member's mean loss over each chunk (NaN where a
    member's loss was not finite), steps done, and the seconds spent stepping (summed over
    resumed runs)."""

    params: PyTree
    state: FitState
    history: np.ndarray
    steps: int
    wall_s: float


def _scalars(aux: PyTree, prefix: str = "") -> dict[str, Array]:
    """Aux entries that are one number per step, keyed by dotted names."""
    out = {}
    if isinstance(aux, Mapping):
        for k, v in aux.items():
            out |= _scalars(v, f"{prefix}{k}.")
    elif hasattr(aux, "ndim") and aux.ndim == 1:  # stacked over the chunk's steps
        out[prefix[:-1]] = aux
    return out


def _storable(state: FitState) -> FitState:
    return state._replace(key=jax.random.key_data(state.key))


def _fit(problem: Problem, optimiser: Optimiser | None, keys: KeySchedule | None) -> Fit:
    """The :class:`Fit` of the drivers' arguments (Adam and FoldIn by default)."""
    if not isinstance(problem, Problem):
        raise TypeError(
            f"problem must be a diffdesign.core Problem (spec + loss); got {type(problem).__name__}"
        )
    return Fit(problem, Adam() if optimiser is None else optimiser,
               FoldIn() if keys is None else keys)  # fmt: skip


def _check_run(steps: int, chunk: int) -> None:
    for name, value in (("steps", steps), ("chunk", chunk)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")


class _Driver(NamedTuple):
    """What differs between a single run and a members' run."""

    advance: Callable
    record: Callable  # (done, n, info, seconds) -> history rows
    check: Callable  # (done, info) -> None, raises on a loss that must stop the run
    losses: Callable  # history -> the losses EarlyStop looks at
    #: the run stops on a non-finite loss, so a checkpoint with NaN or inf is damaged
    finite_state: bool = True


def _drive(
    fit: Fit,
    state: FitState,
    driver: _Driver,
    *,
    steps: int,
    chunk: int,
    checkpoint: str | Path | None,
    settings: Mapping[str, Any] | None,
    early_stop: EarlyStop | None,
    callback,
    progress: bool,
    params_of,
) -> tuple[FitState, list, str, float]:
    """The loop shared by :func:`run` and :func:`run_members`: chunks of scanned steps
    aligned to multiples of ``chunk``, a checkpoint after each, exact resume."""
    problem = fit.problem
    history: list = []
    wall = 0.0
    meta = {"problem": problem.name, "chunk": chunk, "optimiser": fit.optimiser.describe(),
            "keys": type(fit.keys).__name__, **dict(settings or {})}  # fmt: skip
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        stored, header = load_checkpoint(path, _storable(state), meta, finite=driver.finite_state)
        if not isinstance(header.get("history"), list):
            raise ValueError(
                f"checkpoint {path} has no 'history' list (written by another program?); "
                "delete it to start again"
            )
        state = stored._replace(key=jax.random.wrap_key_data(stored.key))
        history = list(header["history"])
        wall = header.get("wall_s", math.nan)
        if progress:
            print(f"{problem.name}: resumed {path} at step {int(state.step)}/{steps}",
                  file=sys.stderr)  # fmt: skip
    done = int(state.step)
    bar = _progress_bar(problem.name, steps, done, progress and done < steps)
    stopped = "steps"
    with running():
        try:
            while done < steps:
                n = min(chunk - done % chunk, steps - done)  # chunks aligned to multiples of chunk
                tic = time.perf_counter()
                new_state, info = driver.advance(fit, state, n)
                driver.check(done, info)
                seconds = time.perf_counter() - tic
                wall += seconds
                history += driver.record(done, n, info, seconds / n)
                state, done = new_state, done + n
                if path is not None:
                    header = {"settings": meta, "history": history, "wall_s": wall}
                    save_checkpoint(path, _storable(state), header)
                if callback is not None:
                    callback(done, params_of(state), info)
                bar.update(n)
                recent = driver.losses(history)
                if recent:
                    bar.set_postfix_str(f"loss {recent[-1]:.4g}", refresh=False)
                if early_stop is not None and early_stop(driver.losses(history)):
                    stopped = "early stop"
                    break
                if stop_requested() and done < steps:
                    raise Interrupted(problem.name, done, steps, path is not None)
        finally:
            bar.close()
    return state, history, stopped, wall


def run(
    problem: Problem,
    *,
    steps: int,
    key: PRNGKeyArray,
    optimiser: Optimiser | None = None,
    keys: KeySchedule | None = None,
    params: PyTree | None = None,
    chunk: int = 1,
    checkpoint: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
    early_stop: EarlyStop | None = None,
    callback: Callable[[int, PyTree, StepInfo], None] | None = None,
    progress: bool = True,
) -> FitResult:
    """Take ``steps`` optimiser steps on ``problem``; checkpointed, resumable, with progress.

    Args:
        problem: the loss and spec (a sum of problems is one problem).
        steps: total steps (a resumed run goes on to this count).
        key: the run's key (step ``k`` uses ``keys(key, k)``).
        optimiser: default ``Adam()`` with the spec's step sizes.
        keys: the key schedule (default :class:`FoldIn`: fresh random numbers every step).
        params: starting values (default: the spec's values); checked against the spec.
        chunk: steps compiled into one scanned program between host visits (progress,
            history, checkpoint, callback); larger is faster, 1 checkpoints every step.
        checkpoint: an ``.npz`` file written atomically after every chunk; if it exists the
            run resumes from it (refused, naming the differences, if ``settings`` or the
            problem's structure changed).
        settings: JSON-able description of the run saved in and checked against the
            checkpoint (e.g. the study's config); ``steps`` may grow between runs.
        early_stop: stop once it says so (checked after every chunk).
        callback: ``callback(step, params, info)`` after each chunk (plots, logs); ``info``
            holds the chunk's stacked losses and aux.
        progress: a progress bar with rate and ETA on stderr.

    Raises:
        ValueError: bad ``steps``/``chunk``/``params``, or a checkpoint that does not fit.
        FloatingPointError: a non-finite loss (naming the step); the last checkpoint stays.
    """
    _check_run(steps, chunk)
    if params is not None:
        check_params(problem.spec, params)
    fit = _fit(problem, optimiser, keys)

    def check(done, info):
        losses = np.asarray(info.loss)
        if not np.all(np.isfinite(losses)):
            bad = int(np.argmax(~np.isfinite(losses)))
            raise FloatingPointError(
                f"{problem.name}: loss is {losses[bad]} at step {done + bad}; stopping "
                "(the last checkpoint is kept)"
            )

    def record(done, n, info, seconds):
        losses = np.asarray(info.loss)
        columns = {k: np.asarray(v) for k, v in _scalars(info.aux).items()}
        return [
            {"step": done + i, "loss": float(losses[i]), "seconds": seconds}
            | {k: float(v[i]) for k, v in columns.items()}
            for i in range(n)
        ]

    driver = _Driver(_advance, record, check, lambda history: [r["loss"] for r in history])
    state, history, stopped, _ = _drive(
        fit, fit.init(key, params), driver, steps=steps, chunk=chunk, checkpoint=checkpoint,
        settings=settings, early_stop=early_stop, callback=callback, progress=progress,
        params_of=fit.params,
    )  # fmt: skip
    return FitResult(fit.params(state), state, history, stopped)


def run_members(
    problem: Problem,
    starts: PyTree,
    *,
    steps: int,
    key: PRNGKeyArray,
    optimiser: Optimiser | None = None,
    keys: KeySchedule | None = None,
    chunk: int = 250,
    checkpoint: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> MembersResult:
    """:func:`run` for an ensemble: every member (leading axis of ``starts``, physical
    params) steps at once in one vmapped, scanned program, all on the same random numbers
    (one batch per step, drawn once), checkpointed between chunks and resumed exactly.

    A member whose loss is not finite does not stop the run (its history entry is NaN; an
    optimiser such as ``Optax(optax.apply_if_finite(...))`` skips its updates).
    """
    _check_run(steps, chunk)
    n_members = _members(starts)
    fit = _fit(problem, optimiser, keys)
    state = jax.vmap(lambda p: fit.init(key, p), out_axes=_MEMBER_AXES)(starts)

    def record(done, n, info, seconds):
        mean = np.asarray(jnp.mean(info.loss, axis=0), dtype=float)
        return [[None if not np.isfinite(v) else float(v) for v in mean]]

    def nothing(done, info):
        return None

    def last_chunk_median(history):
        return [float(np.nanmedian(np.asarray(row, dtype=float))) for row in history]

    driver = _Driver(_advance_members, record, nothing, last_chunk_median, finite_state=False)
    params_of = jax.vmap(fit.params, in_axes=(_MEMBER_AXES,))
    state, history, _, wall = _drive(
        fit, state, driver, steps=steps, chunk=chunk, checkpoint=checkpoint, settings=settings,
        early_stop=None, callback=None, progress=progress, params_of=params_of,
    )  # fmt: skip
    table = np.array([[np.nan if v is None else v for v in row] for row in history], dtype=float)
    table = table.reshape(len(history), n_members)
    return MembersResult(params_of(state), state, table, int(state.step), float(wall))


def _members(starts: PyTree, problem: Problem | None = None) -> int:
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(starts)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"starts need one common leading axis; got sizes {sizes}")
    if isinstance(problem, Problem):  # each start must be params of the spec's shapes
        spec = problem.spec
        try:
            flat = jax.tree.structure(spec, is_leaf=is_param).flatten_up_to(starts)
        except (ValueError, TypeError) as error:
            raise ValueError(f"starts do not have the structure of the spec: {error}") from None
        names = jax.tree.leaves(param_names(spec))
        for p, name, start in zip(jax.tree.leaves(spec, is_leaf=is_param), names, flat,
                                  strict=True):  # fmt: skip
            if np.shape(start)[1:] != p.value.shape:
                raise ValueError(
                    f"starts of {name} must have shape (n_starts, *{tuple(p.value.shape)}); "
                    f"got {np.shape(start)}"
                )
    return sizes.pop()


def _progress_bar(name: str, total: int, done: int, enabled: bool):
    if enabled and done < total:
        say("compiling the step...", name)
    return bar(total, done, name, "step", disable=not enabled)


class MultistartResult(NamedTuple):
    """Attributes:
    params: final parameters of every start (leading axis: start).
    loss: (num_starts,) loss at each start's final parameters.
    history: (num_starts, steps) loss before each step.
    best: index of the start with the lowest finite final loss.
    path_params: every start's best parameters along its path (the points each step
        started from and the final one; the first of equal losses).
    path_loss: (num_starts,) their losses (inf if none was finite).
    """

    params: PyTree
    loss: Array
    history: Array
    best: Array
    path_params: PyTree
    path_loss: Array


@eqx.filter_jit
def _multistart(fit: Fit, starts: PyTree, key: PRNGKeyArray, steps: int):
    TRACES[type(fit.problem).__name__ + ".multistart"] += 1

    def keep_better(best_z, best_loss, z, loss):
        better = jnp.isfinite(loss) & (loss < best_loss)
        best_z = jax.tree.map(lambda b, new: jnp.where(better, new, b), best_z, z)
        return best_z, jnp.where(better, loss, best_loss)

    def one(start):
        def step(carry, _):
            state, best_z, best_loss = carry
            new, info = fit.step(state)
            best_z, best_loss = keep_better(best_z, best_loss, state.z, info.loss)
            return (new, best_z, best_loss), info.loss

        state = fit.init(key, start)
        carry = (state, state.z, jnp.asarray(jnp.inf, dtype=float))
        (state, best_z, best_loss), history = jax.lax.scan(step, carry, None, length=steps)
        params = fit.params(state)
        final, _ = fit.problem.loss(params, fit.keys(key, jnp.asarray(steps)))
        best_z, best_loss = keep_better(best_z, best_loss, state.z, final)
        path_params = to_physical(fit.problem.spec, best_z)
        return params, final, history, path_params, best_loss

    if _members(starts) == 1:  # one start: no batching transform (half the trace and compile)
        out = one(jax.tree.map(lambda a: a[0], starts))
        params, final, history, path_params, path_loss = jax.tree.map(lambda a: a[None], out)
    else:
        params, final, history, path_params, path_loss = jax.vmap(one)(starts)
    finite = jnp.isfinite(final)
    best = jnp.where(finite, final, jnp.inf).argmin()
    best = eqx.error_if(best, ~jnp.any(finite), f"{fit.problem.name}: every start diverged")
    return MultistartResult(params, final, history, best, path_params, path_loss)


def multistart(
    problem: Problem,
    starts: PyTree,
    *,
    steps: int,
    key: PRNGKeyArray,
    optimiser: Optimiser | None = None,
    keys: KeySchedule | None = None,
) -> MultistartResult:
    """:class:`Fit` from every start at once (``starts``: params with a leading axis), in one
    compiled, vmapped loop; usable inside ``jit``. A start whose final loss is not finite is
    never the best; each start's best point along its path is returned too.

    Raises:
        ValueError: bad ``steps``; starts without a common leading axis.
        FloatingPointError: every start diverged (outside jit; inside, equinox's runtime
            error with the same message).
    """
    _check_run(steps, 1)
    fit = _fit(problem, optimiser, keys)
    _members(starts, problem)
    try:
        return _multistart(fit, starts, key, steps)
    except eqx.EquinoxRuntimeError as error:
        if "every start diverged" in str(error):
            raise FloatingPointError(f"{problem.name}: every start diverged") from None
        raise


def n_parameters(problem: Problem) -> int:
    """The number of scalar parameters in the problem's spec."""
    return int(sum(math.prod(np.shape(x)) for x in jax.tree.leaves(internal(problem.spec))))
