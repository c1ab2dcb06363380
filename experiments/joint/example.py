"""ARES offsets and magnet settings with a muography detector, in one fit

The design layer's acceptance example: the ARES calibration (quadrupole offsets from screen
measurements at random settings), the ARES tuning (settings that give a centred, small beam
through the model with the offsets being calibrated) and a muon-tomography detector design
(panels for a lead block) summed into one problem and optimised by one ``diffdesign.design.run``
with each domain's own bounds and step sizes. Checkpointed every step: rerun into the same
--out to resume, even after kill -9. Writes results.json (history, final parameters, offset
errors in um, beam size in um, detector) into --out.
"""

from __future__ import annotations

import argparse

SMOKE = {"steps": 4, "n_muons": 400}
FULL = {"steps": 150, "n_muons": 2000}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, help="optimiser steps (default 150; smoke 4)")


def build(seed: int, n_muons: int):
    """The joint problem, the true offsets (m) and the calibration settings."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from diffdesign import muography
    from diffdesign.beamline import ares

    rng = np.random.default_rng(seed)
    true_offsets = rng.uniform(-2e-4, 2e-4, (3, 2))
    settings = rng.uniform(ares.SETTING_LOWER, ares.SETTING_UPPER, (12, 5))
    noise = 1e-5  # m, screen noise of every observable
    beam = ares.screen_beam(settings, np.broadcast_to(true_offsets, (12, 3, 2)))
    draws = noise * jax.random.normal(jax.random.key(seed), (4, 12))
    measured = {k: beam[k] + draws[i] for i, k in enumerate(ares.OBSERVABLES)}
    calibration = ares.CalibrationProblem(settings, measured, {k: noise for k in measured})
    tuning = ares.TuningProblem()  # shares the offsets being calibrated
    volume = muography.block_in_matrix((0.31, 0.31, 0.41), (0.59, 0.59, 0.59))
    detector = muography.DetectorDesign(
        muography.default_detector(volume), volume, n_muons=n_muons, estimator=muography.Poca(),
        momentum=5e9, cost_weight=0.01,
    )  # fmt: skip
    return calibration + tuning + detector, jnp.asarray(true_offsets), settings


def run(args: argparse.Namespace) -> dict[str, str]:
    import json
    from pathlib import Path

    import jax
    import numpy as np

    from diffdesign import design
    from diffdesign.beamline import ares
    from diffdesign.muography import detector_to_json

    sizes = dict(SMOKE if args.smoke else FULL)
    if args.steps is not None:
        sizes["steps"] = args.steps
    seed = 0 if args.seed is None else args.seed
    problem, true_offsets, _ = build(seed, sizes["n_muons"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = design.run(
        problem, steps=sizes["steps"], key=jax.random.key(seed),
        checkpoint=out / "checkpoint.npz", settings={"seed": seed, "n_muons": sizes["n_muons"]},
        progress=not args.quiet,
    )  # fmt: skip
    params = result.params
    error_um = np.abs(np.asarray(params["offsets"] - true_offsets)) * 1e6
    beam = ares.screen_beam(params["settings"], true_offsets)
    last = result.history[-1]
    results = {
        "steps": sizes["steps"], "n_muons": sizes["n_muons"], "seed": seed,
        "history": result.history,
        "offsets_m": np.asarray(params["offsets"]).tolist(),
        "true_offsets_m": np.asarray(true_offsets).tolist(),
        "offset_error_um": error_um.tolist(),
        "settings": np.asarray(params["settings"]).tolist(),
        "true_screen_beam_m": {k: float(v) for k, v in beam.items()},
        "detector": detector_to_json(params["detector"]),
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return {
        "steps": f"{sizes['steps']} (history in results.json)",
        "mean |offset error|": f"{error_um.mean():.3g} um (first step: offsets 0)",
        "tuned beam on the true machine": f"sigma_x {float(beam['sigma_x']) * 1e6:.3g} um, "
        f"sigma_y {float(beam['sigma_y']) * 1e6:.3g} um",
        "detector task loss": f"{last['detector.task_loss']:.4g} (first "
        f"{result.history[0]['detector.task_loss']:.4g})",
        "detector cost": f"{last['detector.cost']:.3g} budget units",
    }
