"""LOCO: fit gradient errors, BPM gains and corrector calibrations to an ORM

Fit quadrupole gradient errors, BPM gains and corrector calibrations to an orbit response
matrix with Bayesian regularisation (diffdesign.ring.loco). With --measured, fit that file;
otherwise simulate the LOCO study (planted errors, noisy ORM) of --config. Writes
results.json and plots into --out.
"""

from __future__ import annotations

import argparse

from experiments.ring._common import add_lattice_argument, study_config

#: The config class of this study (``diffdesign sweep`` validates every point with it).
CONFIG = "experiments.ring._loco:LocoStudyConfig"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_lattice_argument(parser)
    parser.add_argument("--measured", help="measured ORM JSON to fit instead of a simulation")


def run(args: argparse.Namespace) -> dict[str, str]:
    from diffdesign.core.verdict import StudySummary, Verdict
    from experiments.ring._loco import (
        LocoStudyConfig,
        fit_measured_orm,
        run_loco_study,
    )

    config = study_config(LocoStudyConfig, args)
    if args.measured:
        results = fit_measured_orm(config, args.measured, args.out)
    else:
        results = run_loco_study(config, args.out)
    summary = results["summary"]
    chi2, dof = summary["final_chi2"], summary["degrees_of_freedom"]
    figures = {"final chi2": f"{chi2:.4g} for {dof} degrees of freedom ({chi2 / dof:.3g} per dof)"}
    if "rms_relative_k1_error_after_fit" in summary:
        figures["K1 error (rms, relative)"] = (
            f"{summary['rms_relative_k1_error_planted']:.2e} planted -> "
            f"{summary['rms_relative_k1_error_after_fit']:.2e} after the fit"
        )
    return StudySummary(figures, Verdict.from_json(results["verdict"]))
