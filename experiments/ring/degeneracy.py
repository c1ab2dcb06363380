"""the degeneracy study (paper Sect. IV)

Correlated neighbouring quadrupoles, the single-fault fit, a near-orthogonal BPM subset and
the classification of repeated measurements. Writes results.json and plots into --out.
Every key of the TOML config is optional; LATTICE replaces the config's lattice.
"""

from __future__ import annotations

import argparse

from experiments.ring._common import add_lattice_argument, study_config

#: The config class of this study (``diffdesign sweep`` validates every point with it).
CONFIG = "experiments.ring._studies:DegeneracyStudyConfig"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_lattice_argument(parser)


def run(args: argparse.Namespace):
    from diffdesign.core.verdict import StudySummary, Verdict
    from experiments.ring._studies import (
        DegeneracyStudyConfig,
        run_degeneracy_study,
    )

    results = run_degeneracy_study(study_config(DegeneracyStudyConfig, args), args.out)
    pair, subset = results["pair"], results["subset"]
    fit = results["single_fault_fit"]
    print(
        f"\ncorrelation {pair['names'][0]}/{pair['names'][1]}: {pair['correlation']:.4f} "
        f"(paper {pair['paper_correlation']}); fit blames {fit['largest']['name']}; "
        f"BPMs {subset['indices']}: correlation {subset['correlation']:.2g}"
    )
    for label, entry in results["classification"].items():
        print(
            f"source {pair['names']['ab'.index(label)]}: identified "
            f"{entry['identified']} (log-likelihood ratio "
            f"{entry['subset']['log_likelihood_ratio']:+.4g}, single-measurement accuracy "
            f"{entry['subset_accuracy']:.0%})"
        )
    figures = {
        "correlation": f"{pair['correlation']:.4f} (paper {pair['paper_correlation']})",
        "fit blames": fit["largest"]["name"],
    }
    return StudySummary(figures, Verdict.from_json(results["verdict"]))
