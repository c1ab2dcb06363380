"""Black-box baselines for L-GSO's benchmarks: numerical differentiation, CMA-ES, BO.

Each optimises ``E[R(F(x, psi))]`` through Monte Carlo estimates at single parameter
points, ``M`` simulator runs each (:func:`mc_objective`), counts every run as one call and
records each iteration like L-GSO does (:class:`TraceRecord`), so the methods are compared
at equal simulator calls:

* :func:`numerical_descent`: central differences (``2 d`` estimates per gradient) and the
  same Adam step, limited to length ``max_step``, as L-GSO;
* :func:`cma_es`: pycma's CMA-ES, one estimate per candidate; the record follows the
  distribution's mean;
* :func:`bayesian_optimisation`: :class:`diffdesign.design.BayesianOptimisation` (GP with a
  learned noise, log-EI) in a box around the start; the record follows the best estimate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffdesign._progress import say as _say
from diffdesign.surrogates.blackbox import (
    BlackBoxSimulator,
    derived_seed,
    run_simulation,
    sample_inputs_checked,
)
from diffdesign.surrogates.lgso import limit_step


class TraceRecord(NamedTuple):
    """One iteration of a baseline: calls so far, the current ``psi``, the method's own
    estimate of the objective there, wall seconds so far, the true objective (or None)."""

    iteration: int
    calls: int
    psi: list
    estimate: float
    wall_s: float
    true_objective: float | None


class BaselineResult(NamedTuple):
    """Final parameters, records and calls spent."""

    psi: np.ndarray
    records: list[TraceRecord]
    calls: int


def mc_objective(
    simulator: BlackBoxSimulator,
    objective: Callable[[jnp.ndarray], jnp.ndarray],
    psi: np.ndarray,
    n: int,
    seed: int,
) -> float:
    """``mean R(F(x_j, psi))`` over ``n`` fresh simulator runs (costs ``n`` calls)."""
    x = sample_inputs_checked(simulator, n, seed)
    y = run_simulation(simulator, np.tile(psi, (n, 1)), x, seed + 1)
    return float(jnp.mean(objective(jnp.asarray(y))))


def _record(iteration, calls, psi, estimate, tic, evaluate) -> TraceRecord:
    true = None if evaluate is None else float(evaluate(psi))
    return TraceRecord(
        iteration, calls, np.asarray(psi).tolist(), float(estimate), time.perf_counter() - tic, true
    )


def numerical_descent(
    simulator: BlackBoxSimulator,
    objective: Callable[[jnp.ndarray], jnp.ndarray],
    psi0,
    *,
    step: float,
    samples_per_point: int,
    learning_rate: float,
    max_step: float,
    max_calls: int,
    seed: int = 0,
    evaluate: Callable[[np.ndarray], float] | None = None,
    progress: bool = True,
) -> BaselineResult:
    """Adam on central-difference gradients ``(f(psi + h e_i) - f(psi - h e_i)) / 2h``.

    Each gradient costs ``2 d samples_per_point`` calls (independent draws at every point,
    as a black box gives them); the step is limited to length ``max_step``.
    """
    psi = np.array(psi0, dtype=float)
    d = psi.size
    optimiser = optax.adam(learning_rate)
    state = optimiser.init(jnp.asarray(psi))
    records, calls, tic = [], 0, time.perf_counter()
    per_iteration = 2 * d * samples_per_point
    while calls + per_iteration <= max_calls:
        iteration = len(records)
        values = np.array(
            [
                [
                    mc_objective(
                        simulator,
                        objective,
                        psi + sign * step * np.eye(d)[i],
                        samples_per_point,
                        derived_seed(seed, 7, iteration, i, sign > 0),
                    )
                    for sign in (1.0, -1.0)
                ]
                for i in range(d)
            ]
        )
        calls += per_iteration
        gradient = (values[:, 0] - values[:, 1]) / (2 * step)
        updates, state = optimiser.update(jnp.asarray(gradient), state)
        psi = psi + limit_step(np.asarray(updates), max_step)
        records.append(_record(iteration + 1, calls, psi, values.mean(), tic, evaluate))
        if progress and len(records) % 10 == 0:
            _say(
                f"numerical differentiation: iteration {len(records)}, {calls:,} calls, true "
                f"{records[-1].true_objective}"
            )
    return BaselineResult(psi, records, calls)


def cma_es(
    simulator: BlackBoxSimulator,
    objective: Callable[[jnp.ndarray], jnp.ndarray],
    psi0,
    *,
    sigma0: float,
    samples_per_point: int,
    max_calls: int,
    population: int | None = None,
    seed: int = 0,
    evaluate: Callable[[np.ndarray], float] | None = None,
    progress: bool = True,
) -> BaselineResult:
    """CMA-ES (pycma) on Monte Carlo estimates; records the distribution's mean."""
    try:
        import cma
    except ImportError:  # pragma: no cover - cma is a dependency
        raise ImportError("the CMA-ES baseline needs the 'cma' package (pip install cma)") from None

    psi0 = np.array(psi0, dtype=float)
    options = {
        "seed": seed + 1,
        "verbose": -9,
        "tolfun": 0,
        "tolx": 0,
        "tolfunhist": 0,
        "tolstagnation": int(1e9),
    }
    if population is not None:
        options["popsize"] = population
    strategy = cma.CMAEvolutionStrategy(psi0, sigma0, options)
    records, calls, tic = [], 0, time.perf_counter()
    while calls + strategy.popsize * samples_per_point <= max_calls:
        generation = len(records)
        candidates = strategy.ask()
        values = [
            mc_objective(
                simulator,
                objective,
                np.asarray(c),
                samples_per_point,
                derived_seed(seed, 7, generation, k),
            )
            for k, c in enumerate(candidates)
        ]
        calls += len(candidates) * samples_per_point
        strategy.tell(candidates, values)
        records.append(
            _record(generation + 1, calls, strategy.mean, np.mean(values), tic, evaluate)
        )
        if progress and len(records) % 10 == 0:
            _say(
                f"CMA-ES: generation {len(records)}, {calls:,} calls, true "
                f"{records[-1].true_objective}"
            )
    return BaselineResult(np.asarray(strategy.mean, dtype=float), records, calls)


def bayesian_optimisation(
    simulator: BlackBoxSimulator,
    objective: Callable[[jnp.ndarray], jnp.ndarray],
    psi0,
    *,
    half_width: float,
    samples_per_point: int,
    max_calls: int,
    seed: int = 0,
    evaluate: Callable[[np.ndarray], float] | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> BaselineResult:
    """GP Bayesian optimisation (log-EI) in ``psi0 +- half_width``; the start is evaluated
    first, then a Latin hypercube of ``min(d + 1, half the evaluations)`` points; records
    the point with the best estimate so far. Checkpointed when asked."""
    from diffdesign.design.bayesopt import BayesianOptimisation

    psi0 = np.array(psi0, dtype=float)
    search = BayesianOptimisation(psi0 - half_width, psi0 + half_width)
    n_evaluations = max_calls // samples_per_point
    counter = {"n": 0}

    def measured(psi):
        counter["n"] += 1
        return mc_objective(
            simulator, objective, psi, samples_per_point, derived_seed(seed, 7, counter["n"], 0)
        )

    tic = time.perf_counter()
    # d + 1 space-filling points first, but at most half the budget (100-D problems)
    n_initial = min(psi0.size + 1, max(2, n_evaluations // 2))
    if checkpoint is not None and Path(checkpoint).exists():
        state = search.load_checkpoint(checkpoint)
        counter["n"] = state.iteration
    else:
        design = search.init(jax.random.key(seed), n_initial=n_initial - 1)
        start = np.concatenate([psi0[None], design.initial_design])
        state = search.init(jax.random.key(seed), initial_points=start)
    records = []

    def record_up_to(n):  # the best estimate among the first n evaluations
        best = int(np.argmin(state.y[:n]))
        return _record(n, n * samples_per_point, state.X[best], state.y[best], tic, evaluate)

    records = [record_up_to(n) for n in range(1, state.iteration + 1)]  # a resumed run's
    while state.iteration < n_evaluations:
        state = search.step(state, measured, capacity=n_evaluations)
        if checkpoint is not None:
            search.save_checkpoint(state, checkpoint)
        records.append(record_up_to(state.iteration))
        if progress and state.iteration % 10 == 0:
            _say(
                f"Bayesian optimisation: {state.iteration}/{n_evaluations} evaluations, best "
                f"estimate {state.best_y:.5g}, true {records[-1].true_objective}"
            )
    return BaselineResult(state.best_x, records, state.iteration * samples_per_point)
