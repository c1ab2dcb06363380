"""the correction study (paper Sects. II-III)

Plant gradient errors, measure beta-beat, phase and dispersion with noise, estimate with the
Bayesian, evidence, pseudo-inverse, Tikhonov and TSVD estimators, correct. Writes
results.json and plots into --out. Every key of the TOML config is optional; LATTICE
replaces the config's lattice.
"""

from __future__ import annotations

import argparse

from experiments.ring._common import add_lattice_argument, study_config

#: The config class of this study (``diffdesign sweep`` validates every point with it).
CONFIG = "experiments.ring._studies:CorrectionStudyConfig"

DEFAULT_OUT = "results/ring_correction"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_lattice_argument(parser)


def run(args: argparse.Namespace):
    from diffdesign.core.verdict import StudySummary, Verdict
    from experiments.ring._studies import (
        ESTIMATORS,
        CorrectionStudyConfig,
        run_correction_study,
    )

    results = run_correction_study(study_config(CorrectionStudyConfig, args), args.out)
    summary = results["summary"]
    columns = (
        ("rms_beta_beat_x", "beat x %", 100),
        ("rms_beta_beat_y", "beat y %", 100),
        ("rms_phase_x_rad", "phase x mrad", 1e3),
        ("rms_phase_y_rad", "phase y mrad", 1e3),
        ("rms_dispersion_x_m", "disp. x mm", 1e3),
        ("rms_error_relative", "error 1e-3", 1e3),
    )
    print(f"\nmedian over {len(results['machines'])} machines [quartiles]")
    print(f"{'':16s}" + "".join(f"{label:>22s}" for _, label, _ in columns))
    for name in ("before", *ESTIMATORS):
        cells = []
        for metric, _, scale in columns:
            q = summary[name][metric]
            cells.append(
                f"{q['median'] * scale:8.3f} [{q['q25'] * scale:.3f}, {q['q75'] * scale:.3f}]"
            )
        print(f"{name:16s}" + "".join(f"{c:>22s}" for c in cells))
    bayes = summary["bayes"]
    figures = {
        "machines": str(len(results["machines"])),
        "beta-beat x/y after bayes (median)": (
            f"{bayes['rms_beta_beat_x']['median']:.3%} / {bayes['rms_beta_beat_y']['median']:.3%}"
        ),
    }
    return StudySummary(figures, Verdict.from_json(results["verdict"]))
