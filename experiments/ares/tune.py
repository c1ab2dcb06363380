"""tune the magnets through the model with calibrated offsets

Gradient-based tuning through the model with offsets read from a JSON file (e.g. the
study's offsets.json); the target beam defaults to a centred, smallest beam. Writes
tuned_settings.json (with the verdict) into --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments.ares._arguments import accept_negative_numbers, add_incoming_sigma_y


def add_arguments(parser: argparse.ArgumentParser) -> None:
    accept_negative_numbers(parser)
    parser.add_argument("--offsets", required=True, help="offsets JSON (offsets_m: 3 x 2, m)")
    for name in ("mu_x", "sigma_x", "mu_y", "sigma_y"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float,
                            help=f"target {name} in m (default 0)")  # fmt: skip
    add_incoming_sigma_y(parser)


def run(args: argparse.Namespace):
    import jax
    import numpy as np

    from diffdesign.beamline import ares
    from diffdesign.beamline.ares.calibration import load_offsets
    from diffdesign.beamline.ares.tuning import tune_with_gradients
    from diffdesign.core.verdict import StudySummary

    offsets, _ = load_offsets(args.offsets)
    target = {
        name: value
        for name, value in (("mu_x", args.mu_x), ("sigma_x", args.sigma_x),
                            ("mu_y", args.mu_y), ("sigma_y", args.sigma_y))
        if value is not None
    }  # fmt: skip
    incoming = ares.incoming_beam(sigma_y=args.incoming_sigma_y)
    seed = 0 if args.seed is None else args.seed
    result = tune_with_gradients(offsets, jax.random.key(seed), target=target, incoming=incoming)
    settings = np.asarray(result.settings)
    beam = {k: float(v) for k, v in ares.screen_beam(settings, offsets, incoming).items()}
    print(f"settings tuned through the model with offsets from {args.offsets}:")
    for name, value in zip(ares.SETTING_NAMES, settings, strict=True):
        unit = "rad" if name.endswith(".angle") else "1/m^2"  # corrector kick, quad k1
        print(f"  {name:16s} {value:+.6g} {unit}")
    for name in ares.OBSERVABLES:
        print(f"  predicted {name:8s} {beam[name] * 1e3:+.6f} mm")
    print(f"  predicted objective {float(result.predicted) * 1e3:.6f} mm (mean distance of "
          "mu_x, sigma_x, mu_y, sigma_y from the target)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tuned = {
        "offsets_file": str(args.offsets),
        "target_m": target,
        "settings": dict(zip(ares.SETTING_NAMES, settings.tolist(), strict=True)),
        "predicted_screen_beam_m": beam,
        "start_objective_m": float(np.asarray(result.history)[0]),
        "predicted_objective_m": float(result.predicted),
    }
    verdict = tune_verdict(tuned)
    tuned["verdict"] = verdict.to_json()
    (out / "tuned_settings.json").write_text(json.dumps(tuned, indent=2))
    print(f"wrote {out / 'tuned_settings.json'}")
    figures = {"predicted objective": f"{float(result.predicted) * 1e3:.6f} mm (mean |beam - "
               "target| over mu_x, sigma_x, mu_y, sigma_y on AREABSCR1)"}  # fmt: skip
    return StudySummary(figures, verdict)


def tune_verdict(tuned: dict):
    """The checks of a tuning (tuned_settings.json's layout): the best start's objective
    ended no worse than where it started, no magnet at the end of its range, and the
    predicted beam finite."""
    from diffdesign.beamline import ares
    from diffdesign.core.verdict import Verdict, all_finite, improved, values_at_bounds

    names = ares.SETTING_NAMES
    return Verdict((
        improved("predicted objective", 1e3 * tuned["start_objective_m"],
                 1e3 * tuned["predicted_objective_m"], " mm",
                 "the tuning made the beam worse: run more steps or starts, or lower the step"),
        values_at_bounds(tuned["settings"], dict(zip(names, ares.SETTING_LOWER, strict=True)),
                         dict(zip(names, ares.SETTING_UPPER, strict=True)),
                         name="settings at magnet limits",
                         advice="the target needs more than the magnets' range: relax the "
                         "target, or check the offsets file (large offsets steer the beam off)"),
        all_finite("finite beam", list(tuned["predicted_screen_beam_m"].values())),
    ))  # fmt: skip
