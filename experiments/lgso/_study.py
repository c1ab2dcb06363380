"""The L-GSO paper's benchmarks against its baselines: ``diffdesign lgso benchmarks``.

Every method sees each problem (:mod:`experiments.lgso._problems`) only as a black box
and spends simulator calls (one call = one simulated row); after each of its iterations
the true objective at its current parameters is recorded (100,000 fresh runs, or the
closed form where there is one; not counted). Reported per problem and method, median
over seeds: calls to reach the target, the final objective, wall time.

Each (problem, method, seed) run is written to ``runs/*.json`` when it ends and skipped
when the study is rerun into the same folder; L-GSO and BO also checkpoint every iteration
(``checkpoints/``), so an interrupted study loses at most one iteration.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

from diffdesign._checkpoint import check_settings
from diffdesign._config import TomlConfig
from diffdesign._progress import say
from diffdesign.core.verdict import (
    Verdict,
    all_finite,
    bound_below,
    improved,
    within_budget,
)
from diffdesign.surrogates.blackbox import run_simulation, sample_inputs_checked
from diffdesign.surrogates.lgso import LgsoConfig, minimise
from experiments.lgso import _baselines as baselines
from experiments.lgso._problems import PROBLEMS, paper_problem

METHODS = ("lgso", "numerical", "cma_es", "bayesopt")
#: what could be checked of the paper's results (its figures were not readable here).
PAPER_RESULTS = {
    "source": "Shirobokov et al., NeurIPS 2020, arXiv:2002.04632; settings from the authors' "
    "code (shir994/L-GSO)",
    "claim": "when the parameters act through a low-dimensional submanifold, L-GSO reaches "
    "minima faster (fewer simulator calls) than Bayesian optimisation, numerical "
    "optimisation and score-function methods",
    "figures": "not quoted: the paper's results are plots only, and no copy of the PDF's "
    "figures was readable from this environment",
}


@dataclasses.dataclass(frozen=True)
class LgsoStudyConfig(TomlConfig):
    """Settings of the benchmark study (every key optional in TOML).

    Attributes:
        problems: which of ``three_hump``, ``rosenbrock_10d``, ``submanifold_rosenbrock``,
            ``nonlinear_hump``.
        methods: which of ``lgso``, ``numerical``, ``cma_es``, ``bayesopt``.
        budgets: simulator calls per problem, in the order of ``problems``.
        seeds: number of repetitions (seeds 0, 1, ...).
        samples_per_point: simulator runs ``M`` per parameter point (every method).
        learning_rate: Adam step of L-GSO and numerical differentiation.
        train_steps, batch_size, gradient_samples: L-GSO surrogate fit and gradient.
        cma_sigma0: CMA-ES initial step (psi units).
        bo_half_width: half-width of the BO box around the start (the paper: 7.5).
        bo_max_evaluations: cap on BO evaluations (a GP's cost grows as n^3).
        bo_seeds: repetitions of BO (seeds 0, 1, ...; default ``seeds``): its runs cost
            minutes where the others cost seconds.
        evaluation_samples: runs per true-objective evaluation (not counted).
    """

    problems: tuple[str, ...] = PROBLEMS
    methods: tuple[str, ...] = METHODS
    budgets: tuple[float, ...] = (1.5e6, 6e6, 6e6, 3e6)
    seeds: int = 3
    samples_per_point: int = 3000
    learning_rate: float = 0.1
    train_steps: int = 600
    batch_size: int = 512
    gradient_samples: int = 10_000
    cma_sigma0: float = 0.5
    bo_half_width: float = 7.5
    bo_max_evaluations: int = 100
    bo_seeds: int | None = None
    evaluation_samples: int = 100_000

    OPTIONAL: ClassVar[dict[str, type]] = {"bo_seeds": int}

    SMOKE: ClassVar[dict] = {
        "problems": ("three_hump",),
        "budgets": (30_000.0,),
        "seeds": 1,
        "samples_per_point": 500,
        "train_steps": 20,
        "gradient_samples": 500,
        "bo_max_evaluations": 6,
        "evaluation_samples": 2000,
    }

    def __post_init__(self) -> None:
        unknown = sorted(set(self.problems) - set(PROBLEMS))
        if not self.problems or unknown:
            raise ValueError(
                f"problems must be a non-empty subset of {PROBLEMS}; got {self.problems}"
            )
        unknown = sorted(set(self.methods) - set(METHODS))
        if not self.methods or unknown:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}; got {self.methods}")
        if len(self.budgets) != len(self.problems) or min(self.budgets) <= 0:
            raise ValueError(
                f"budgets must be {len(self.problems)} positive call counts (one "
                f"per problem); got {self.budgets}"
            )
        for name in (
            "seeds",
            "samples_per_point",
            "train_steps",
            "batch_size",
            "gradient_samples",
            "bo_max_evaluations",
            "evaluation_samples",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.bo_seeds is not None and not 1 <= self.bo_seeds <= self.seeds:
            raise ValueError(f"bo_seeds must be in [1, seeds={self.seeds}]; got {self.bo_seeds}")
        for name in ("learning_rate", "cma_sigma0", "bo_half_width"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")


_say = functools.partial(say, who="lgso")


def true_objective(settings, n: int):
    """``psi -> E[R]``: the closed form where there is one, else ``n`` fixed-seed runs."""
    problem = settings.problem

    def evaluate(psi):
        exact = problem.expected_objective(np.asarray(psi))
        if exact is not None:
            return exact
        x = sample_inputs_checked(problem, n, 2**31 - 1)
        y = run_simulation(problem, np.tile(psi, (n, 1)), x, 2**31 - 2)
        return float(np.mean(np.asarray(problem.objective(y))))

    return evaluate


def run_one(
    config: LgsoStudyConfig, name: str, method: str, seed: int, budget: int, out: Path
) -> dict:
    """One optimisation run; returns its records (calls, true objective, wall time)."""
    settings = paper_problem(name)
    problem = settings.problem
    evaluate = true_objective(settings, config.evaluation_samples)
    m = config.samples_per_point
    checkpoints = out / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    label = f"{name} {method} seed {seed}"
    if method == "lgso":
        lgso = LgsoConfig(
            epsilon=settings.epsilon,
            n_points=settings.n_points,
            samples_per_point=m,
            gradient_samples=config.gradient_samples,
            learning_rate=config.learning_rate,
            train_steps=config.train_steps,
            batch_size=config.batch_size,
        )
        result = minimise(
            problem,
            problem.objective,
            settings.start,
            lgso,
            max_calls=budget,
            seed=seed,
            evaluate=evaluate,
            label=label,
            checkpoint=checkpoints / f"{name}_lgso_{seed}.npz",
        )
    elif method == "numerical":
        result = baselines.numerical_descent(
            problem,
            problem.objective,
            settings.start,
            step=settings.step,
            samples_per_point=m,
            learning_rate=config.learning_rate,
            max_step=settings.epsilon,
            max_calls=budget,
            seed=seed,
            evaluate=evaluate,
        )
    elif method == "cma_es":
        result = baselines.cma_es(
            problem,
            problem.objective,
            settings.start,
            sigma0=config.cma_sigma0,
            samples_per_point=m,
            max_calls=budget,
            seed=seed,
            evaluate=evaluate,
        )
    else:
        result = baselines.bayesian_optimisation(
            problem,
            problem.objective,
            settings.start,
            half_width=config.bo_half_width,
            samples_per_point=m,
            max_calls=min(budget, config.bo_max_evaluations * m),
            seed=seed,
            evaluate=evaluate,
            checkpoint=checkpoints / f"{name}_bayesopt_{seed}.json",
        )
    records = result.records
    calls = [0] + [r.calls for r in records]
    values = [evaluate(np.asarray(settings.start))] + [r.true_objective for r in records]
    reached = next((c for c, v in zip(calls, values, strict=True) if v <= settings.target), None)
    run = {
        "problem": name,
        "method": method,
        "seed": seed,
        "budget": budget,
        "calls": calls,
        "true_objective": values,
        "wall_s": [0.0] + [r.wall_s for r in records],
        "final_objective": values[-1],
        "best_objective": float(np.min(values)),
        "calls_to_target": reached,
        "target": settings.target,
        "final_psi": records[-1].psi if records else list(settings.start),
        "total_wall_s": time.perf_counter() - tic,
    }
    _say(
        f"{label}: final {values[-1]:.5g}, target {settings.target} "
        f"{'reached at ' + format(reached, ',') + ' calls' if reached else 'not reached'}, "
        f"{run['total_wall_s']:.0f} s"
    )
    return run


_METHOD_SETTINGS = {
    "lgso": ("learning_rate", "train_steps", "batch_size", "gradient_samples"),
    "numerical": ("learning_rate",),
    "cma_es": ("cma_sigma0",),
    "bayesopt": ("bo_half_width", "bo_max_evaluations"),
}


def _run_settings(config: LgsoStudyConfig, method: str, budget: float) -> dict:
    """What a saved run must have been made with to count as this config's run."""
    keys = ("samples_per_point", "evaluation_samples", *_METHOD_SETTINGS[method])
    return {"budget": float(budget), **{key: getattr(config, key) for key in keys}}


def _load_run(path: Path, settings: dict) -> dict:
    try:
        run = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read the saved run {path}: {error}") from None
    check_settings(run.get("settings", {}), settings, f"the saved run {path} was made")
    return run


def summarise(runs: list[dict]) -> dict:
    """Per problem and method: medians over seeds of calls to target, final objective, wall."""
    summary: dict = {}
    for run in runs:
        entry = summary.setdefault(run["problem"], {}).setdefault(run["method"], [])
        entry.append(run)
    table = {}
    for problem, methods in summary.items():
        table[problem] = {}
        for method, group in methods.items():
            reached = [r["calls_to_target"] for r in group]
            hits = [c for c in reached if c is not None]
            table[problem][method] = {
                "seeds": len(group),
                "reached_target": f"{len(hits)}/{len(group)}",
                "median_calls_to_target": float(np.median(hits))
                if len(hits) == len(group)
                else None,
                "calls_to_target": reached,
                "median_start_objective": float(np.median([r["true_objective"][0] for r in group])),
                "median_final_objective": float(np.median([r["final_objective"] for r in group])),
                "median_best_objective": float(np.median([r["best_objective"] for r in group])),
                "median_calls_spent": float(np.median([r["calls"][-1] for r in group])),
                "median_wall_s": float(np.median([r["total_wall_s"] for r in group])),
            }
    return table


def _run_order(config: LgsoStudyConfig) -> list[tuple[str, str, int, float]]:
    """(problem, method, seed, budget) of every run; BO's slow runs last, seed by seed."""
    budgets = dict(zip(config.problems, config.budgets, strict=True))
    fast = [m for m in config.methods if m != "bayesopt"]
    order = [
        (name, method, seed, budgets[name])
        for name in config.problems
        for method in fast
        for seed in range(config.seeds)
    ]
    if "bayesopt" in config.methods:
        bo_seeds = config.seeds if config.bo_seeds is None else config.bo_seeds
        order += [
            (name, "bayesopt", seed, budgets[name])
            for seed in range(bo_seeds)
            for name in config.problems
        ]
    return order


def run_study(config: LgsoStudyConfig, out: str | Path) -> dict:
    """All runs of the config (resumable), ``results.json`` and one plot per problem."""
    from experiments.lgso._plots import plot_problem

    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    runs = []
    for name, method, seed, budget in _run_order(config):
        path = out / "runs" / f"{name}_{method}_{seed}.json"
        settings = _run_settings(config, method, budget)
        if path.exists():
            run = _load_run(path, settings)
        else:
            run = run_one(config, name, method, seed, int(budget), out)
            path.write_text(json.dumps({**run, "settings": settings}))
        runs.append(run)
    for name in config.problems:
        settings = paper_problem(name)
        plot_problem(
            name,
            [r for r in runs if r["problem"] == name],
            settings.target,
            settings.optimum,
            out / f"{name}.png",
            METHOD_NAMES,
        )
    results = {
        "config": config.to_json(),
        "problems": {
            name: {
                "start": list(s.start),
                "epsilon": s.epsilon,
                "n_points": s.n_points,
                "target": s.target,
                "optimum": s.optimum,
                "psi_dim": s.problem.psi_dim,
            }
            for name in config.problems
            for s in [paper_problem(name)]
        },
        "summary": summarise(runs),
        "paper": PAPER_RESULTS,
    }
    results["verdict"] = study_verdict(results).to_json()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown_table(results))
    return results


def study_verdict(results: dict) -> Verdict:
    """The checks of the benchmarks (results.json's layout): per problem and method the
    median final objective no worse than at the start; per problem the best objective any
    method found not below the true minimum (1 % of it for the Monte Carlo estimates), and
    no method's median spend over the call budget; every objective finite."""
    budgets = dict(zip(results["config"]["problems"], results["config"]["budgets"], strict=True))
    checks, objectives = [], []
    for problem, methods in results["summary"].items():
        for method, entry in methods.items():
            checks.append(improved(f"objective, {problem} {method}",
                                   entry["median_start_objective"],
                                   entry["median_final_objective"]))  # fmt: skip
            objectives += [entry["median_final_objective"], entry["median_best_objective"]]
        best = min(e["median_best_objective"] for e in methods.values())
        checks.append(bound_below(f"{problem}: true minimum <= best found",
                                  results["problems"][problem]["optimum"], best,
                                  tolerance=0.01))  # fmt: skip
        spent = max(e["median_calls_spent"] for e in methods.values())
        checks.append(within_budget(
            f"{problem}: simulator calls", spent, budgets[problem], " calls", tolerance=0.0,
            advice="a method spent more simulator calls than its budget: its call count or "
            "its stopping rule is wrong",
        ))  # fmt: skip
    checks.append(all_finite("finite objectives", objectives))
    return Verdict(tuple(checks))


METHOD_NAMES = {
    "lgso": "L-GSO",
    "numerical": "numerical differentiation",
    "cma_es": "CMA-ES",
    "bayesopt": "Bayesian optimisation",
}


def _calls(value: float | None) -> str:
    return "—" if value is None else f"{value / 1e3:,.0f}k"


def markdown_table(results: dict) -> str:
    """One row per problem and method: calls to the target per seed, objectives, wall time."""
    lines = [
        "| problem (target) | method | reached | calls to target (per seed) | final objective "
        "(median) | best objective (median) | calls spent | wall s (median) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for problem, methods in results["summary"].items():
        target = results["problems"][problem]["target"]
        for method, row in methods.items():
            per_seed = ", ".join(_calls(c) for c in row["calls_to_target"])
            lines.append(
                f"| {problem} ({target}) | {METHOD_NAMES.get(method, method)} "
                f"| {row['reached_target']} | {per_seed} "
                f"| {row['median_final_objective']:.3g} | {row['median_best_objective']:.3g} "
                f"| {_calls(row['median_calls_spent'])} | {row['median_wall_s']:.0f} |"
            )
    return "\n".join(lines) + "\n"
