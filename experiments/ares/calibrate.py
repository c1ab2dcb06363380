"""calibrate the quadrupole offsets on a simulated machine (the study's first phase)

Draw the study's random settings from --seed, read the simulated machine's noisy screens
and fit the six offsets by bounded least squares, as the first phase of ``ares study``
does (same config keys, same numbers). Writes results.json: offsets_m, std_m, errors_um,
mean_absolute_error_um, rms_error_um, chi2, chi2_per_dof, converged (SI units unless the
name says um) and the verdict (that of ``ares study``'s calibration). ``diffdesign sweep``
runs it batched over seed, screen_noise, incoming_sigma_y and bound (e.g.
experiments/sweeps/ares_noise.toml).
"""

from __future__ import annotations

import argparse

CONFIG = "experiments.ares._study:StudyConfig"
SMOKE = {"n_calibration": 8}


def sweep_target():
    from experiments.ares._calibrate import sweep_target

    return sweep_target()


def run(args: argparse.Namespace):
    from diffdesign.core.verdict import StudySummary, Verdict
    from experiments.ares._calibrate import run_calibration
    from experiments.ares._study import StudyConfig

    config = StudyConfig.from_toml(args.config) if args.config else StudyConfig()
    overrides = (SMOKE if args.smoke else {}) | (
        {"seed": args.seed} if args.seed is not None else {}
    )
    if overrides:
        import dataclasses

        config = dataclasses.replace(config, **overrides)
    results = run_calibration(config, args.out)
    figures = {
        "mean |offset error|": f"{results['mean_absolute_error_um']:.4g} um",
        "rms offset error": f"{results['rms_error_um']:.4g} um",
        "chi2 / dof": f"{results['chi2_per_dof']:.4g}",
        "results": f"{args.out}/results.json",
    }
    return StudySummary(figures, Verdict.from_json(results["verdict"]))
