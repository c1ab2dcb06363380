"""tune the magnets through the model with calibrated offsets

Gradient-based tuning through the model with offsets read from a JSON file (e.g. the
study's offsets.json); the target beam defaults to a centred, smallest beam. Writes
tuned_settings.json into --out.
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


def run(args: argparse.Namespace) -> dict[str, str]:
    import jax
    import numpy as np

    from diffdesign.beamline import ares
    from diffdesign.beamline.ares.calibration import load_offsets
    from diffdesign.beamline.ares.tuning import tune_with_gradients

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
    (out / "tuned_settings.json").write_text(json.dumps({
        "offsets_file": str(args.offsets),
        "target_m": target,
        "settings": dict(zip(ares.SETTING_NAMES, settings.tolist(), strict=True)),
        "predicted_screen_beam_m": beam,
        "predicted_objective_m": float(result.predicted),
    }, indent=2))  # fmt: skip
    print(f"wrote {out / 'tuned_settings.json'}")
    return {"predicted objective": f"{float(result.predicted) * 1e3:.6f} mm (mean |beam - target|"
            " over mu_x, sigma_x, mu_y, sigma_y on AREABSCR1)"}  # fmt: skip
