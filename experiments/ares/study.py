"""calibrate the quadrupole offsets, then tune the magnets (the two-phase study)

Run the ARES two-phase study on a simulated machine: calibration, experiment design,
gradient tuning, Bayesian optimisation with a physics prior and its baselines. Every key of
the TOML config is optional (see StudyConfig). Writes results.json, offsets.json and plots.
"""

from __future__ import annotations

import argparse

#: The config class of this study (``diffdesign sweep`` validates every point with it).
CONFIG = "experiments.ares._study:StudyConfig"

SMOKE_STUDY = {
    "budget": 8, "n_initial": 4, "design_sizes": [3, 5], "design_draws": 3, "n_calibration": 8,
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config_file", nargs="?", metavar="CONFIG", help="TOML config (same as --config)"
    )


def run(args: argparse.Namespace) -> dict[str, str]:
    from diffdesign.core.verdict import StudySummary, Verdict
    from experiments.ares._study import StudyConfig, run_study

    path = args.config or args.config_file
    config = StudyConfig.from_toml(path) if path else StudyConfig()
    if args.smoke:
        config = StudyConfig.from_mapping(_config_mapping(config) | SMOKE_STUDY, "--smoke")
    if args.seed is not None:
        config = StudyConfig.from_mapping(_config_mapping(config) | {"seed": args.seed}, "--seed")
    results = run_study(config, args.out)
    print(study_summary(results))
    calibration = results["calibration"]
    figures = {"mean |offset error|": f"{calibration['mean_absolute_error_um']:.3g} um "
               "(fitted quadrupole offsets against the simulated truth)"}  # fmt: skip
    return StudySummary(figures, Verdict.from_json(results["verdict"]))


def _config_mapping(config) -> dict:
    import dataclasses

    mapping = dataclasses.asdict(config)
    mapping["target"] = dict(config.target)
    return mapping


def study_summary(results: dict) -> str:
    import numpy as np

    calibration = results["calibration"]
    lines = [
        "",
        f"calibration: mean |offset error| {calibration['mean_absolute_error_um']:.3g} um "
        f"(mean 1-sigma {np.mean(calibration['std_m']) * 1e6:.3g} um) from "
        f"{calibration['machine_evaluations']} settings in {calibration['wall_time_s']:.3f} s",
        f"{'tuning method':24s} {'evaluations':>11s} {'best measured':>14s} {'noise-free':>11s}",
    ]
    for name, entry in results["tuning"].items():
        lines.append(
            f"{name:24s} {entry['machine_evaluations']:11d} "
            f"{entry['machine_mae_m'] * 1e3:11.4f} mm {entry['true_mae_m'] * 1e3:8.4f} mm"
        )
    table = results["tuning"].get("bo_fitted_offsets", {}).get("table")
    if table:
        lines.append("")
        lines.append(f"{'offset (um)':16s} {'true':>8s} {'calibrated':>16s} {'MLL (final)':>12s} "
                     f"{'MLL worst |error|':>18s}")  # fmt: skip
        for row in table:
            lines.append(
                f"{row['offset']:16s} {row['true_um']:8.1f} {row['calibrated_um']:9.2f} "
                f"± {row['calibrated_std_um']:4.2f} {row['mll_final_um']:12.1f} "
                f"{row['mll_worst_error_um']:18.1f}"
            )
    return "\n".join(lines)
