"""the L-GSO paper's problems against numerical differentiation, CMA-ES and BO

Three hump, Rosenbrock 10D, submanifold Rosenbrock and nonlinear submanifold hump: L-GSO
against numerical differentiation, CMA-ES and Bayesian optimisation at equal simulator calls.
Settings: TOML keys of LgsoStudyConfig (all optional). Checkpointed: rerun to resume.
"""

from __future__ import annotations

import argparse

#: The config class of this study (``diffdesign sweep`` validates every point with it).
CONFIG = "experiments.lgso._study:LgsoStudyConfig"


def run(args: argparse.Namespace):
    from pathlib import Path

    from diffdesign.core.verdict import StudySummary, Verdict
    from experiments.lgso._study import LgsoStudyConfig, run_study

    config = LgsoStudyConfig.from_toml(args.config) if args.config else LgsoStudyConfig()
    config = config.smoke() if args.smoke else config
    if args.seed is not None:
        raise ValueError(
            "--seed: the L-GSO benchmarks repeat seeds 0 .. seeds-1; set `seeds` "
            "in the config instead"
        )
    results = run_study(config, args.out)
    print(
        f"\n{'problem':24s} {'method':10s} {'reached':>8s} {'calls to target':>16s} "
        f"{'final objective':>16s} {'wall s':>8s}"
    )
    for problem, methods in results["summary"].items():
        for method, entry in methods.items():
            calls = entry["median_calls_to_target"]
            print(
                f"{problem:24s} {method:10s} {entry['reached_target']:>8s} "
                f"{'-' if calls is None else format(int(calls), ','):>16s} "
                f"{entry['median_final_objective']:16.4g} {entry['median_wall_s']:8.0f}"
            )
    print(f"wrote {Path(args.out) / 'results.json'} and plots")
    figures = {
        f"{problem}, {method}": f"objective {entry['median_final_objective']:.4g}, target "
        f"reached {entry['reached_target']}"
        for problem, methods in results["summary"].items()
        for method, entry in methods.items()
    }
    return StudySummary(figures, Verdict.from_json(results["verdict"]))
