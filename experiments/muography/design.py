"""optimise the panels from a deliberately poor layout (checkpointed)

Settings: TOML keys of MuographyStudyConfig (all optional). Writes results.json, the
checkpoint and plots; rerun into the same --out to resume.
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

    results = studies.run_design(config, args.out)
    meaning = studies.LOSS_MEANING[config.loss]
    figures = {
        f"{name.replace('_', ' ')} layout": f"{meaning} {entry[config.loss]:.4g} (validation "
        f"sample), panel cost {entry['cost']:.3g} budget units"
        for name, entry in results["validation"].items()
    }
    return StudySummary(figures, Verdict.from_json(results["verdict"]))
