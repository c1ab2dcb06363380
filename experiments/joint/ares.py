"""jointly design the ARES calibration settings and its screens (issue 20)

The offsets' Cramer-Rao bound (incoming beam profiled out) plus a cost for the screens,
minimised over the calibration settings and the screens' positions and resolutions:
jointly, sequentially in both orders, and against the published practice (random settings,
today's screen). Each design is then checked with simulated calibrations (least squares and
NUTS on the same likelihood) and with tuning to a target beam on the true machine.
Settings: TOML keys of AresJointConfig (all optional). Writes results.json and plots;
every stage is saved, so rerunning into the same --out resumes.
"""

from __future__ import annotations

import argparse
import dataclasses

#: The config class of this study (``diffdesign sweep`` validates every point with it).
CONFIG = "experiments.joint._ares_study:AresJointConfig"


def run(args: argparse.Namespace):
    from diffdesign.core.verdict import StudySummary, Verdict
    from experiments.joint._ares_study import AresJointConfig, run_study

    config = AresJointConfig.from_toml(args.config) if args.config else AresJointConfig()
    config = config.smoke() if args.smoke else config
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    results = run_study(config, args.out)
    summary = {}
    for name, entry in results["realised"].items():
        summary[name] = (
            f"bound {entry['predicted_rms_bound_um']:.3g} um, realised "
            f"{entry['realised_rms_error_um']:.3g} um, coverage {entry['coverage_95']:.0%}, "
            f"cost {results['designs'][_key(results, name)]['cost_keur']:.3g} kEUR"
        )
    timing = results["timing"]
    line = f"{timing['joint_optimisation_steady_s']:.3g} s after compilation"
    if "gradient_steady_s" in timing:
        line += (
            f" (gradient step {1e3 * timing['gradient_steady_s']:.3g} ms, compile "
            f"{timing['gradient_compile_s']:.3g} s)"
        )
    summary["joint optimisation"] = line
    return StudySummary(summary, Verdict.from_json(results["verdict"]))


def _key(results, name):
    tagged = f"{name}@{results['chosen_cost_weight']:g}"
    return tagged if tagged in results["designs"] else name
