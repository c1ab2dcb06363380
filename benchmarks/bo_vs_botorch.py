"""One Bayesian-optimisation step, ours against BoTorch's, on the ARES tuning problem.

    python benchmarks/bo_vs_botorch.py [--seeds 0 1 2] [--budget 50] [--n-initial 5]
        [--out benchmarks/results/cpu/bo_vs_botorch.json] [--smoke]

The problem is the tuning phase of ``diffdesign ares study``: the five magnet settings
inside their ranges, the objective the mean absolute error (m) of the four screen
observables of a simulated ARES (true offsets of the published scenario, 10 um screen noise)
from the target beam, ``--budget`` machine evaluations of which the first ``--n-initial``
are the same random settings for both. Both sides use a GP with a constant mean, an ARD
Matern-5/2 kernel and log expected improvement, with the settings mapped to the unit cube
and the observations standardised:

- ours: :class:`diffdesign.design.BayesianOptimisation` with its defaults (MAP hyperparameters
  by 4 Adam restarts of 200 steps, warm-started from the previous step's fit; acquisition by
  16 gradient starts of 100 Adam steps from 512 raw samples, the incumbent and the previous
  proposal; data padded to the run's budget, so one compiled fit and one acquisition);
- BoTorch: ``SingleTaskGP`` (its default priors), ``fit_gpytorch_mll`` (L-BFGS-B), and
  ``optimize_acqf`` of ``LogExpectedImprovement`` with the same 16 restarts and 512 raw
  samples, refitted from its defaults every step (its documented loop).

Per side and seed: the wall time of every BO step (fit, acquisition and the one machine
evaluation, the same simulated machine on both sides), the first step (ours includes its
compilation, which the other steps reuse), the median of the others, the whole run after the
initial design, and the noise-free MAE of the incumbent at the end. ``--smoke`` runs one seed
with a budget of 8 (CI: the script and both peers run end to end).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from diffdesign.beamline.ares import (
    OBSERVABLES,
    SETTING_LOWER,
    SETTING_UPPER,
    incoming_beam,
    mae,
    screen_beam,
)
from diffdesign.beamline.ares.experiment_design import random_settings
from diffdesign.beamline.ares.tuning import simulated_machine
from diffdesign.design import BayesianOptimisation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import environment

TRUE_OFFSETS = np.array([[0.0, 200e-6], [100e-6, -300e-6], [-100e-6, 150e-6]])  # m
SCREEN_NOISE = 1e-5  # m
TARGET = dict.fromkeys(OBSERVABLES, 0.0)  # m: a centred, focused beam (the study's default)


class TuningProblem:
    """The objective a machine returns and its noise-free counterpart (both in m)."""

    def __init__(self, seed: int):
        key = jax.random.key(seed)
        noise_key, self.initial_key = jax.random.split(key)
        incoming = incoming_beam(sigma_y=100e-6)
        self.machine = simulated_machine(TRUE_OFFSETS, incoming, SCREEN_NOISE, noise_key)
        self.true = jax.jit(lambda x: mae(screen_beam(x, TRUE_OFFSETS, incoming), TARGET))

    def __call__(self, x: np.ndarray) -> float:
        return float(mae(self.machine(x), TARGET))

    def initial(self, n: int) -> np.ndarray:
        return np.asarray(random_settings(n, self.initial_key))


def run_ours(problem: TuningProblem, budget: int, n_initial: int, seed: int) -> dict:
    lower, upper = np.asarray(SETTING_LOWER), np.asarray(SETTING_UPPER)
    search = BayesianOptimisation(lower, upper, acquisition="ei")
    state = search.init(jax.random.key(seed), initial_points=problem.initial(n_initial))
    while state.iteration < n_initial:
        state = search.step(state, problem, capacity=budget)
    steps = []
    start = time.perf_counter()
    while state.iteration < budget:  # a proposal and one machine evaluation
        tic = time.perf_counter()
        state = search.step(state, problem, capacity=budget)
        steps.append(time.perf_counter() - tic)
    return _summary(steps, time.perf_counter() - start, state.X, state.y, n_initial, problem)


def run_botorch(problem: TuningProblem, budget: int, n_initial: int, seed: int) -> dict:
    import torch
    from botorch.acquisition import LogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood

    torch.manual_seed(seed)
    lower, upper = np.asarray(SETTING_LOWER), np.asarray(SETTING_UPPER)
    bounds = torch.tensor(np.stack([lower, upper]), dtype=torch.float64)
    X = problem.initial(n_initial)
    y = np.array([problem(x) for x in X])
    steps = []
    start = time.perf_counter()
    while len(y) < budget:  # a proposal and one machine evaluation
        tic = time.perf_counter()
        train_x = torch.tensor(X, dtype=torch.float64)
        train_y = -torch.tensor(y, dtype=torch.float64)[:, None]  # BoTorch maximises
        model = SingleTaskGP(
            train_x, train_y, input_transform=Normalize(5, bounds=bounds),
            outcome_transform=Standardize(1),
        )  # fmt: skip
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        acquisition = LogExpectedImprovement(model, best_f=train_y.max())
        candidate, _ = optimize_acqf(
            acquisition, bounds=bounds, q=1, num_restarts=16, raw_samples=512
        )
        x = candidate.detach().numpy()[0]
        X = np.concatenate([X, x[None, :]])
        y = np.append(y, problem(x))
        steps.append(time.perf_counter() - tic)
    return _summary(steps, time.perf_counter() - start, X, y, n_initial, problem)


def _summary(steps, wall, X, y, n_initial, problem) -> dict:
    best = int(np.argmin(y))
    return {
        "initial_best_machine_mae_m": float(np.min(y[:n_initial])),
        "first_step_s": steps[0],
        "median_steady_step_s": statistics.median(steps[1:]),
        "step_s": steps,
        "run_s": wall,
        "best_machine_mae_m": float(y[best]),
        "best_true_mae_m": float(problem.true(jnp.asarray(X[best]))),
    }


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Medians over seeds per side; ``cold_first_step_s`` is the first seed's first step (the
    only one that compiles: later seeds reuse the process's compiled programs)."""

    def median(side, key):
        return statistics.median(r[key] for r in runs[side])

    summary = {
        side: {
            "cold_first_step_s": runs[side][0]["first_step_s"],
            "median_first_step_s": median(side, "first_step_s"),
            "median_steady_step_s": median(side, "median_steady_step_s"),
            "median_run_s": median(side, "run_s"),
            "median_best_true_mae_m": median(side, "best_true_mae_m"),
        }
        for side in runs
    }
    ours, peer = summary["diffdesign"], summary["botorch"]
    summary["steady_step_ratio"] = peer["median_steady_step_s"] / ours["median_steady_step_s"]
    summary["run_ratio"] = peer["median_run_s"] / ours["median_run_s"]
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--n-initial", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/cpu/bo_vs_botorch.json")
    parser.add_argument("--smoke", action="store_true", help="one seed, budget 8")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.budget = args.seeds[:1], 8
    if args.budget <= args.n_initial or args.n_initial < 2:
        parser.error("need 2 <= --n-initial < --budget")
    import botorch
    import torch

    runs = {"diffdesign": [], "botorch": []}
    for seed in args.seeds:
        problem = TuningProblem(seed)
        for name, run in (("diffdesign", run_ours), ("botorch", run_botorch)):
            result = run(problem, args.budget, args.n_initial, seed)
            runs[name].append({"seed": seed} | result)
            print(
                f"seed {seed} {name:10s}: first step {result['first_step_s']:.2f} s, "
                f"steady {result['median_steady_step_s']:.3f} s, run {result['run_s']:.1f} s, "
                f"best true MAE {result['best_true_mae_m'] * 1e3:.4f} mm",
                flush=True,
            )

    summary = summarise(runs)
    report = {
        "description": __doc__,
        "smoke": args.smoke,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "problem": {
            "budget": args.budget,
            "n_initial": args.n_initial,
            "seeds": args.seeds,
            "screen_noise_m": SCREEN_NOISE,
            "true_offsets_m": TRUE_OFFSETS.tolist(),
        },
        "machine": environment(),
        "versions": {"botorch": botorch.__version__, "torch": torch.__version__},
        "summary": summary,
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"steady step: ours {summary['diffdesign']['median_steady_step_s']:.3f} s, "
        f"BoTorch {summary['botorch']['median_steady_step_s']:.3f} s "
        f"(BoTorch / ours = {summary['steady_step_ratio']:.2f}); whole run ratio "
        f"{summary['run_ratio']:.2f}; wrote {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
