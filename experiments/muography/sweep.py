"""budget sweep: panel cost against the achievable X0 error

Settings: TOML keys of MuographyStudyConfig (all optional). Writes results.json and plots.
"""

from __future__ import annotations

import argparse

from experiments.muography._common import study_config

#: The config class of this study (``diffdesign sweep`` validates every point with it).
CONFIG = "experiments.muography._studies:MuographyStudyConfig"


def run(args: argparse.Namespace) -> dict[str, str]:
    from experiments.muography import _studies as studies

    config = study_config(args)
    from diffdesign.core.verdict import StudySummary, Verdict

    results = studies.run_budget_sweep(config, args.out)
    meaning = studies.LOSS_MEANING[config.loss]
    figures = {
        f"budget {row['budget']:g} units": f"panel cost {row['cost']:.3g} units, {meaning} "
        f"{row[config.loss]:.4g}"
        for row in results["rows"]
    }
    return StudySummary(figures, Verdict.from_json(results["verdict"]))
