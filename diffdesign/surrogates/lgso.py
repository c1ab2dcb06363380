"""L-GSO: gradient descent on a black-box simulator through local generative surrogates.

Shirobokov et al. (NeurIPS 2020), Algorithm 1. To minimise ``E[R(F(x, psi))]`` when ``F``
cannot be differentiated, each iteration

1. draws ``N`` parameter points in the trust region ``psi +- epsilon`` (a Latin hypercube)
   plus ``psi`` itself, and runs the simulator ``M`` times at each (``(N + 1) M`` calls);
2. keeps every sample in a history and reuses those whose parameters lie in the current
   trust region (``|psi_l - psi|_inf <= epsilon``);
3. fits a conditional generative surrogate ``y ~ S(z, x; psi)`` to them by maximum
   likelihood (:mod:`diffdesign.surrogates.surrogate`, warm-started from the last fit);
4. takes one Adam step along ``grad_psi mean_k R(S(z_k, x_k; psi))`` over ``K`` surrogate
   samples, the step limited to length ``epsilon`` (the surrogate is only trusted there).

:func:`minimise` runs the loop with progress lines, a checkpoint after every iteration that
a rerun resumes from, and a record per iteration (calls so far, ``psi``, the surrogate's
objective and, when an ``evaluate`` callback is given, the true objective).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike

from diffdesign._checkpoint import load_checkpoint, save_checkpoint
from diffdesign._progress import say as _say
from diffdesign._sampling import latin_hypercube
from diffdesign.core import Fit, FitState, Optax, Param, Problem, StepInfo
from diffdesign.surrogates import surrogate as surrogate_model
from diffdesign.surrogates.blackbox import (
    BlackBoxSimulator,
    derived_seed,
    run_simulation,
    sample_inputs_checked,
)
from diffdesign.surrogates.flows import ConditionalFlow


@dataclasses.dataclass(frozen=True)
class LgsoConfig:
    """Settings of :func:`minimise` (defaults: the paper's, where it gives them).

    Attributes:
        epsilon: half-width of the trust region and largest step length (psi units).
        n_points: parameter points ``N`` per iteration (besides the current one).
        samples_per_point: simulator runs ``M`` per point.
        gradient_samples: surrogate samples ``K`` per gradient.
        learning_rate: Adam step size on ``psi``.
        train_steps, batch_size, surrogate_learning_rate: Adam steps, rows per step and
            step size of each surrogate fit.
        max_training_rows: most rows per fit (the most recent are kept).
        history_radius: samples whose parameters are farther than this many ``epsilon``
            (infinity norm) from the current ``psi`` are forgotten.
        flow_layers, flow_bins, flow_hidden: surrogate architecture.
    """

    epsilon: float
    n_points: int
    samples_per_point: int = 3000
    gradient_samples: int = 10_000
    learning_rate: float = 0.1
    train_steps: int = 600
    batch_size: int = 512
    surrogate_learning_rate: float = 1e-3
    max_training_rows: int = 250_000
    history_radius: float = 3.0
    flow_layers: int = 2
    flow_bins: int = 16
    flow_hidden: tuple[int, ...] = (64, 64)

    def __post_init__(self) -> None:
        for name in ("epsilon", "learning_rate", "surrogate_learning_rate", "history_radius"):
            value = getattr(self, name)
            number = isinstance(value, int | float | np.number) and not isinstance(value, bool)
            if not (number and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a number > 0; got {value!r}")
        for name in (
            "n_points",
            "samples_per_point",
            "gradient_samples",
            "train_steps",
            "batch_size",
            "max_training_rows",
            "flow_layers",
            "flow_bins",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be >= 1; got {value}")
        hidden = self.flow_hidden
        if not isinstance(hidden, tuple | list) or not all(
            isinstance(h, int | np.integer) and not isinstance(h, bool) and h >= 1 for h in hidden
        ):
            raise ValueError(f"flow_hidden must be a tuple of layer widths >= 1; got {hidden!r}")
        if self.history_radius < 1:
            raise ValueError(f"history_radius must be >= 1 (epsilons); got {self.history_radius}")

    def flow(self, y_dim: int) -> ConditionalFlow:
        return ConditionalFlow(
            y_dim=y_dim,
            n_layers=self.flow_layers,
            n_bins=self.flow_bins,
            hidden=tuple(self.flow_hidden),
        )

    @property
    def calls_per_iteration(self) -> int:
        return (self.n_points + 1) * self.samples_per_point


class LgsoRecord(NamedTuple):
    """One iteration: simulator calls so far, the new ``psi``, what the surrogate said, the
    training rows, the final mean training NLL, wall seconds so far and the true
    objective at the new ``psi`` (``None`` without an ``evaluate`` callback)."""

    iteration: int
    calls: int
    psi: list
    surrogate_objective: float
    gradient_norm: float
    training_rows: int
    training_nll: float
    wall_s: float
    true_objective: float | None


class LgsoResult(NamedTuple):
    """Final parameters, the records of every iteration and the calls spent."""

    psi: np.ndarray
    records: list[LgsoRecord]
    calls: int


class _History(NamedTuple):
    """Simulator samples: distinct parameter points and, per row, its point, input, output."""

    points: np.ndarray
    row_point: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def add(self, points, x, y, repeats) -> _History:
        offset = len(self.points)
        rows = offset + np.repeat(np.arange(len(points)), repeats)
        return _History(
            np.concatenate([self.points, points]),
            np.concatenate([self.row_point, rows]),
            np.concatenate([self.x, x]),
            np.concatenate([self.y, y]),
        )

    def near(self, psi, radius) -> np.ndarray:
        """Row indices whose point lies within ``radius`` of ``psi`` (infinity norm)."""
        close = np.max(np.abs(self.points - psi), axis=1) <= radius * (1 + 1e-12)
        return np.flatnonzero(close[self.row_point])

    def keep(self, rows) -> _History:
        used, row_point = np.unique(self.row_point[rows], return_inverse=True)
        return _History(self.points[used], row_point.astype(np.int64), self.x[rows], self.y[rows])


def limit_step(step: np.ndarray, max_length: float) -> np.ndarray:
    """``step`` shortened to ``max_length`` (Euclidean, > 0) if it is longer."""
    if not (np.isfinite(max_length) and max_length > 0):
        raise ValueError(f"max_length must be finite and > 0; got {max_length!r}")
    length = np.linalg.norm(step)
    return step * (max_length / length) if length > max_length else step


def limit_length(max_length: float) -> optax.GradientTransformation:
    """An optax transformation that shortens the update of ``psi`` to ``max_length``
    (Euclidean) if it is longer: :func:`limit_step` inside the optimiser chain."""

    def update(updates, state, params=None):
        step = updates["psi"]
        length = jnp.sqrt(jnp.dot(step, step))
        short = jnp.where(length > max_length, step * (max_length / length), step)
        return {"psi": short}, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class _SurrogateObjective(Problem):
    """The expected objective through the surrogate at ``psi`` (evaluated in float32, the
    surrogate's precision), for fixed latent samples ``z`` and inputs ``x``."""

    start: Array
    surrogate: surrogate_model.Surrogate
    z: Array
    x: Array
    flow: ConditionalFlow = eqx.field(static=True)
    objective: Callable = eqx.field(static=True)

    @property
    def spec(self):
        return {"psi": Param(self.start, step=1.0, label="psi")}

    def loss(self, params, key):
        psi = params["psi"].astype(jnp.float32)
        value = surrogate_model.expected_objective(
            self.flow, self.objective, self.surrogate, psi, self.z, self.x
        )
        return value, {}


@eqx.filter_jit
def _outer_step(fit: Fit, state: FitState) -> tuple[FitState, StepInfo]:
    return fit.step(state)


def minimise(
    simulator: BlackBoxSimulator,
    objective: Callable[[jnp.ndarray], jnp.ndarray],
    psi0: ArrayLike,
    config: LgsoConfig,
    *,
    max_calls: int,
    seed: int = 0,
    evaluate: Callable[[np.ndarray], float] | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    label: str = "L-GSO",
) -> LgsoResult:
    """Minimise ``E[objective(simulator(x, psi))]`` by L-GSO until ``max_calls`` are spent.

    Args:
        simulator: the black box.
        objective: ``R(y)`` of outputs ``(..., y_dim)``, a JAX function.
        psi0: ``(psi_dim,)`` initial parameters.
        config: :class:`LgsoConfig`.
        max_calls: simulator-call budget (an iteration that would exceed it is not started).
        seed: of every random draw (simulator seeds, designs, surrogate noise).
        evaluate: optional ``psi -> true objective`` for the records (its calls are not
            counted: the paper's evaluation with 100,000 samples).
        checkpoint: ``.npz`` written after every iteration and resumed from.
        progress: print one line per iteration.
        label: name in the progress lines.

    Returns:
        :class:`LgsoResult`.

    Raises:
        ValueError: on a ``psi0`` of the wrong shape or non-finite values.
    """
    try:
        psi = np.array(psi0, dtype=float)
    except (TypeError, ValueError):
        psi = np.full(0, np.nan)  # not numbers: refused below
    if psi.shape != (simulator.psi_dim,) or not np.all(np.isfinite(psi)):
        raise ValueError(f"psi0 must be a finite ({simulator.psi_dim},) array; got {psi0!r}")
    if max_calls < config.calls_per_iteration:
        raise ValueError(
            f"max_calls must be >= the {config.calls_per_iteration} simulator calls of one "
            f"iteration ((n_points + 1) * samples_per_point); got {max_calls}"
        )
    flow = config.flow(simulator.y_dim)
    # one Adam step through the surrogate per iteration, no longer than epsilon
    optimiser = Optax(optax.chain(optax.adam(config.learning_rate), limit_length(config.epsilon)))
    opt_state = optimiser.transformation(None).init({"psi": jnp.asarray(psi)})
    state_surrogate = surrogate_model.init(
        flow, jax.random.key(seed), simulator.psi_dim, simulator.x_dim
    )
    history = _History(
        np.zeros((0, simulator.psi_dim)),
        np.zeros(0, np.int64),
        np.zeros((0, simulator.x_dim)),
        np.zeros((0, simulator.y_dim)),
    )
    records: list[LgsoRecord] = []
    calls, iteration, wall = 0, 0, 0.0
    settings = {
        "simulator": simulator.name,
        "psi0": psi.tolist(),
        "seed": seed,
        **dataclasses.asdict(config),
    }
    if checkpoint is not None and Path(checkpoint).exists():
        (psi, opt_state, state_surrogate, history, calls, iteration, wall, records) = _resume(
            checkpoint, settings, psi, opt_state, state_surrogate, history
        )
        if progress:
            _say(f"{label}: resumed {checkpoint} at iteration {iteration}, {calls} calls")

    while calls + config.calls_per_iteration <= max_calls:
        tic = time.perf_counter()
        # 1. parameter points in the trust region, the current one included
        unit = latin_hypercube(
            jax.random.key(derived_seed(seed, iteration, 0)), config.n_points, simulator.psi_dim
        )
        points = np.concatenate([psi[None], psi + config.epsilon * (2 * unit - 1)])
        m = config.samples_per_point
        rows_psi = np.repeat(points, m, axis=0)
        x = sample_inputs_checked(simulator, len(rows_psi), derived_seed(seed, iteration, 1))
        y = run_simulation(simulator, rows_psi, x, derived_seed(seed, iteration, 2))
        if not records:
            _check_objective(objective, y)  # before the first (long) surrogate fit
        calls += len(rows_psi)
        # 2. history: forget what is far, reuse what is in the trust region
        history = history.add(points, x, y, m)
        history = history.keep(history.near(psi, config.history_radius * config.epsilon))
        rows = history.near(psi, config.epsilon)[-config.max_training_rows :]
        # 3. refit the surrogate
        capacity = surrogate_model.buffer_capacity(len(rows))
        context = np.concatenate([history.points[history.row_point[rows]], history.x[rows]], axis=1)
        state_surrogate, nll = surrogate_model.fit(
            flow,
            state_surrogate,
            jnp.asarray(surrogate_model.padded(history.y[rows], capacity)),
            jnp.asarray(surrogate_model.padded(context, capacity)),
            jnp.asarray(len(rows)),
            jax.random.key(derived_seed(seed, iteration, 3)),
            steps=config.train_steps,
            batch_size=config.batch_size,
            learning_rate=config.surrogate_learning_rate,
        )
        # 4. one step through the surrogate, no longer than epsilon
        k = config.gradient_samples
        x_gradient = sample_inputs_checked(simulator, k, derived_seed(seed, iteration, 4))
        z = jax.random.normal(
            jax.random.key(derived_seed(seed, iteration, 5)), (k, simulator.y_dim)
        )
        problem = _SurrogateObjective(
            jnp.asarray(psi), state_surrogate, z, jnp.asarray(x_gradient, jnp.float32), flow,
            objective,
        )  # fmt: skip
        fit = Fit(problem, optimiser)
        state = FitState(
            {"psi": jnp.asarray(psi)}, opt_state, jax.random.key(0), jnp.zeros((), jnp.int32)
        )
        state, info = _outer_step(fit, state)
        psi, opt_state = np.asarray(state.z["psi"]), state.opt_state
        value, gradient_norm = info.loss, info.grad_norm
        if not (np.isfinite(float(value)) and np.all(np.isfinite(psi))):
            raise FloatingPointError(
                f"{label}: the surrogate's expected objective is {float(value)} at iteration "
                f"{iteration + 1} (psi {np.asarray(state.z['psi']).tolist()}): the objective is "
                "not finite on the surrogate's samples; check it for NaN/inf outputs (log of "
                "negative values, division by zero)"
            )
        iteration += 1
        wall += time.perf_counter() - tic
        true = None if evaluate is None else float(evaluate(psi))
        records.append(
            LgsoRecord(
                iteration,
                calls,
                psi.tolist(),
                float(value),
                float(gradient_norm),
                len(rows),
                float(jnp.mean(nll[-50:])),
                wall,
                true,
            )
        )
        if checkpoint is not None:
            _save(
                checkpoint,
                settings,
                psi,
                opt_state,
                state_surrogate,
                history,
                calls,
                iteration,
                wall,
                records,
            )
        if progress:
            shown = f", true {true:.5g}" if true is not None else ""
            _say(
                f"{label}: iteration {iteration}, {calls:,} calls, surrogate {float(value):.5g}"
                f"{shown}, |grad| {records[-1].gradient_norm:.3g}, {len(rows):,} rows, "
                f"{wall:.0f} s"
            )
    return LgsoResult(psi, records, calls)


def _check_objective(objective, y: np.ndarray) -> None:
    """Refuse an objective that is not one finite number per simulator output row."""
    values = np.asarray(objective(jnp.asarray(y, jnp.float32)))
    if values.shape != y.shape[:-1]:
        raise ValueError(
            f"objective must map outputs (..., y_dim) to (...,), one value per row; got shape "
            f"{values.shape} from outputs of shape {y.shape}"
        )
    if not np.all(np.isfinite(values)):
        bad = int(np.sum(~np.isfinite(values)))
        raise ValueError(
            f"objective is not finite on {bad} of {values.size} simulator outputs (e.g. "
            f"{values[~np.isfinite(values)][0]}); it must give a finite number for every output"
        )


def _save(path, settings, psi, opt_state, surrogate, history, calls, iteration, wall, records):
    tree = {"psi": psi, "opt_state": opt_state, "surrogate": surrogate, "history": tuple(history)}
    metadata = {
        "settings": settings,
        "calls": calls,
        "iteration": iteration,
        "wall_s": wall,
        "records": [r._asdict() for r in records],
    }
    save_checkpoint(path, tree, metadata)


def _resume(path, settings, psi, opt_state, surrogate, history):
    """The state saved by :func:`_save` (the history's length is whatever was saved)."""
    template = {
        "psi": psi,
        "opt_state": opt_state,
        "surrogate": surrogate,
        "history": tuple(history),
    }
    state, header = load_checkpoint(path, template, settings, growing=True, finite=True)
    missing = [k for k in ("records", "calls", "iteration", "wall_s") if k not in header]
    if missing:
        raise ValueError(f"L-GSO checkpoint {path} lacks {missing}; delete it to start again")
    records = [LgsoRecord(**r) for r in header["records"]]
    return (
        state["psi"],
        state["opt_state"],
        state["surrogate"],
        _History(*state["history"]),
        header["calls"],
        header["iteration"],
        header["wall_s"],
        records,
    )
