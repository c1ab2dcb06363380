"""fit two-time data: bounded least squares and/or Consensus Monte Carlo

Fit the homodyne model (static or laminar flow) or the two-component (heterodyne) model to
two-time correlation data (APS 8-ID-I
HDF5 or diffdesign .npz) by bounded least squares (nlsq) and/or Consensus Monte Carlo (cmc,
NUTS on shards, warm-started from nlsq). Writes results.json, posterior.nc and plots into
--out. The TOML config has tables [data], [model], [nlsq], [cmc].
"""

from __future__ import annotations

import argparse
import dataclasses


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="?", help="data file (default: [data] file of --config)")
    parser.add_argument("--mode", choices=("static", "laminar_flow", "two_component"),
                        help="model (default: [model] mode, else static)")  # fmt: skip
    parser.add_argument(
        "--method", choices=("nlsq", "cmc", "both"), default="nlsq",
        help="nlsq: bounded least squares; cmc: Consensus Monte Carlo warm-started from nlsq; "
        "both: the two, side by side (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--example", action="store_true",
        help="fit a packaged example: laminar flow (3 angles, 100 frames), or with --mode "
        "two_component the two-component one (4 angles, 80 frames)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, str]:
    from diffdesign.core.verdict import StudySummary, Verdict
    from experiments.xpcs._job import load_job, run_fit

    data, config = args.data, args.config
    if args.example:
        from diffdesign.xpcs.examples import example_path

        if data is not None or config is not None:
            raise ValueError("--example runs the packaged example: give no DATA or --config")
        name = "two_component" if args.mode == "two_component" else "laminar_flow"
        config = example_path(f"{name}_example.toml")
    job = load_job(data, config, args.mode)
    if args.seed is not None:  # the starts of the least-squares fit and the chains' keys
        job = dataclasses.replace(
            job,
            nlsq=dataclasses.replace(job.nlsq, seed=args.seed),
            cmc=dataclasses.replace(job.cmc, seed=args.seed),
        )
    results = run_fit(job, args.method, args.out, smoke=args.smoke)
    nlsq = results["nlsq"]
    summary = {
        "nlsq": f"{'converged' if nlsq['converged'] else 'NOT converged'} in "
        f"{nlsq['num_steps']} steps",
        "reduced chi2": f"{nlsq['reduced_chi2']:.4f} (chi2 per degree of freedom)",
    }
    if results["cmc"] is not None:
        cmc = results["cmc"]
        summary["cmc"] = f"{cmc['n_shards']} shard(s), {cmc['divergences']} divergence(s)"
    return StudySummary(summary, Verdict.from_json(results["verdict"]))
