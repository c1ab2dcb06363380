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
    results = studies.run_budget_sweep(config, args.out)
    for row in results["rows"]:
        print(f"budget {row['budget']:6g}: cost {row['cost']:.3g}  {config.loss} "
              f"{row[config.loss]:.4g}")  # fmt: skip
    return {
        f"budget {row['budget']:g}": f"cost {row['cost']:.3g} budget units, {config.loss} "
        f"{row[config.loss]:.4g}"
        for row in results["rows"]
    }
