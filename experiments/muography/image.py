"""image TomOpt's lead block in beryllium with PoCA and the path likelihood

Settings: TOML keys of MuographyStudyConfig (all optional). Writes results.json and plots.
"""

from __future__ import annotations

import argparse

from experiments.muography._common import study_config

#: The config class of this study (``diffdesign sweep`` validates every point with it).
CONFIG = "experiments.muography._studies:MuographyStudyConfig"


def run(args: argparse.Namespace):
    from diffdesign.core.verdict import StudySummary, Verdict
    from experiments.muography import _studies as studies

    results = studies.run_lead_block(study_config(args), args.out)
    for name, entry in results["estimators"].items():
        print(f"{name:10s} X0 error {entry['x0_error']:.4g}  log error "
              f"{entry['log_x0_error']:.4g}  lead median {entry['lead_median_x0_m'] * 1e3:.2f} "
              f"mm (true 5.61)")  # fmt: skip
    figures = {
        f"{name} lead median X0": f"{entry['lead_median_x0_m'] * 1e3:.2f} mm (true 5.61 mm)"
        for name, entry in results["estimators"].items()
    }
    return StudySummary(figures, Verdict.from_json(results["verdict"]))
