"""The ``diffdesign`` command: one subcommand group per domain.

diffdesign ares track [--q1 K1 ...] [--misalignments DX1 DY1 DX2 DY2 DX3 DY3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import diffdesign  # noqa: F401  (float64 on)


def _ares_track(args: argparse.Namespace) -> int:
    from diffdesign._validation import check_range
    from diffdesign.beamline import ares
    from diffdesign.beamline.plot import plot_envelope

    settings = np.array([args.q1, args.q2, args.cv, args.q3, args.ch], dtype=float)
    labels = ("--q1 (1/m^2)", "--q2 (1/m^2)", "--cv (rad)", "--q3 (1/m^2)", "--ch (rad)")
    for value, label, low, high in zip(
        settings, labels, ares.SETTING_LOWER, ares.SETTING_UPPER, strict=True
    ):
        check_range(value, label, low=float(low), high=float(high), owner="ARES")
    misalignments = np.array(args.misalignments, dtype=float).reshape(3, 2)
    check_range(misalignments, "--misalignments (m)", low=-2e-3, high=2e-3, owner="ARES")
    incoming = ares.incoming_beam(sigma_y=args.sigma_y)
    beam = {k: float(v) for k, v in ares.screen_beam(settings, misalignments, incoming).items()}
    objective = float(ares.mae(beam))

    print(f"ARES experimental area, screen {ares.SCREEN}")
    print("settings   q1 {:+.4g} 1/m^2, q2 {:+.4g} 1/m^2, cv {:+.4g} rad, q3 {:+.4g} 1/m^2, "
          "ch {:+.4g} rad".format(*settings))  # fmt: skip
    for name in ares.OBSERVABLES:
        print(f"  {name:8s} {beam[name] * 1e3:+.6f} mm")
    print(f"  MAE      {objective * 1e3:.6f} mm")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "settings": dict(zip(ares.SETTING_NAMES, settings.tolist(), strict=True)),
        "misalignments_m": dict(zip(ares.QUADRUPOLES, misalignments.tolist(), strict=True)),
        "incoming_sigma_y_m": args.sigma_y,
        "screen_beam_m": beam,
        "mae_m": objective,
    }
    (out / "screen_beam.json").write_text(json.dumps(result, indent=2))
    plot = plot_envelope(
        ares.segment(settings, misalignments),
        incoming,
        out / "envelope.png",
        title="ARES experimental area: beam envelope",
    )
    print(f"wrote {out / 'screen_beam.json'} and {plot}")
    return 0


# argparse takes "-2e-3" for an option unless it looks like a negative number; teach it
# scientific notation so that `--ch -2e-3` works as a physicist would type it.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _accept_negative_numbers(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser._negative_number_matcher = _NEGATIVE_NUMBER
    return parser


SMOKE_STUDY = {
    "budget": 8, "n_initial": 4, "design_sizes": [3, 5], "design_draws": 3, "n_calibration": 8,
}  # fmt: skip


def _ares_study(args: argparse.Namespace) -> int:
    from diffdesign.beamline.ares.study import StudyConfig, run_study

    config = StudyConfig.from_toml(args.config) if args.config else StudyConfig()
    if args.smoke:
        config = StudyConfig.from_mapping(
            {k: v for k, v in _config_mapping(config).items()} | SMOKE_STUDY, "--smoke"
        )
    results = run_study(config, args.out)
    print(_study_summary(results))
    return 0


def _config_mapping(config) -> dict:
    import dataclasses

    mapping = dataclasses.asdict(config)
    mapping["target"] = dict(config.target)
    return mapping


def _study_summary(results: dict) -> str:
    calibration = results["calibration"]
    lines = [
        "",
        f"calibration: mean |offset error| {calibration['mean_absolute_error_um']:.3g} um "
        f"(mean 1-sigma {np.mean(calibration['std_m']) * 1e6:.3g} um) from "
        f"{calibration['machine_evaluations']} settings in {calibration['wall_time_s']:.3f} s",
        f"{'tuning method':24s} {'evaluations':>11s} {'best measured':>14s} {'noise-free':>11s}",
    ]
    for name, entry in results["tuning"].items():
        lines.append(
            f"{name:24s} {entry['machine_evaluations']:11d} "
            f"{entry['machine_mae_m'] * 1e3:11.4f} mm {entry['true_mae_m'] * 1e3:8.4f} mm"
        )
    table = results["tuning"].get("bo_fitted_offsets", {}).get("table")
    if table:
        lines.append("")
        lines.append(f"{'offset (um)':16s} {'true':>8s} {'calibrated':>16s} {'MLL (final)':>12s} "
                     f"{'MLL worst |error|':>18s}")  # fmt: skip
        for row in table:
            lines.append(
                f"{row['offset']:16s} {row['true_um']:8.1f} {row['calibrated_um']:9.2f} "
                f"± {row['calibrated_std_um']:4.2f} {row['mll_final_um']:12.1f} "
                f"{row['mll_worst_error_um']:18.1f}"
            )
    return "\n".join(lines)


def _ares_tune(args: argparse.Namespace) -> int:
    import jax

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
    incoming = ares.incoming_beam(sigma_y=args.sigma_y_in)
    result = tune_with_gradients(
        offsets, jax.random.key(args.seed), target=target, incoming=incoming
    )
    settings = np.asarray(result.settings)
    beam = {k: float(v) for k, v in ares.screen_beam(settings, offsets, incoming).items()}
    print(f"settings tuned through the model with offsets from {args.offsets}:")
    for name, value in zip(ares.SETTING_NAMES, settings, strict=True):
        print(f"  {name:16s} {value:+.6g}")
    for name in ares.OBSERVABLES:
        print(f"  predicted {name:8s} {beam[name] * 1e3:+.6f} mm")
    print(f"  predicted objective {float(result.predicted) * 1e3:.6f} mm")
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
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffdesign", description=__doc__.splitlines()[0])
    domains = parser.add_subparsers(dest="domain", required=True)
    ares = domains.add_parser("ares", help="the ARES experimental area at DESY")
    commands = ares.add_subparsers(dest="command", required=True)
    track = commands.add_parser(
        "track",
        help="track the default beam to the screen AREABSCR1 and plot the envelope",
        description="Track the default ARES beam through the experimental area. Quadrupole "
        "strengths in [-30, 30] 1/m^2, corrector kicks in [-6e-3, 6e-3] rad.",
    )
    _accept_negative_numbers(track)
    track.add_argument("--q1", type=float, default=10.0, help="AREAMQZM1 k1 in 1/m^2")
    track.add_argument("--q2", type=float, default=-10.0, help="AREAMQZM2 k1 in 1/m^2")
    track.add_argument("--cv", type=float, default=0.0, help="AREAMCVM1 kick in rad")
    track.add_argument("--q3", type=float, default=10.0, help="AREAMQZM3 k1 in 1/m^2")
    track.add_argument("--ch", type=float, default=0.0, help="AREAMCHM1 kick in rad")
    track.add_argument(
        "--misalignments",
        type=float,
        nargs=6,
        default=[0.0] * 6,
        metavar=("DX1", "DY1", "DX2", "DY2", "DX3", "DY3"),
        help="quadrupole displacements in m (Cheetah's convention), within +-2e-3",
    )
    track.add_argument("--sigma-y", type=float, default=2e-4, help="incoming sigma_y in m")
    track.add_argument("--out", default="results/ares_track", help="output folder")
    track.set_defaults(run=_ares_track)

    study = commands.add_parser(
        "study",
        help="calibrate the quadrupole offsets, then tune the magnets (the two-phase study)",
        description="Run the ARES two-phase study on a simulated machine: calibration, "
        "experiment design, gradient tuning, Bayesian optimisation with a physics prior and "
        "its baselines. Every key of the TOML config is optional (see StudyConfig).",
    )
    study.add_argument("config", nargs="?", help="TOML config (defaults: the seed's scenario)")
    study.add_argument("--out", default="results/ares_study", help="output folder")
    study.add_argument("--smoke", action="store_true", help="tiny budgets, to check it runs")
    study.set_defaults(run=_ares_study)

    tune = commands.add_parser(
        "tune",
        help="tune the magnets through the model with calibrated offsets",
        description="Gradient-based tuning through the model with offsets read from a JSON "
        "file (e.g. the study's offsets.json); the target beam defaults to a centred, "
        "smallest beam.",
    )
    _accept_negative_numbers(tune)
    tune.add_argument("--offsets", required=True, help="offsets JSON (offsets_m: 3 x 2, m)")
    for name in ("mu_x", "sigma_x", "mu_y", "sigma_y"):
        tune.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float,
                          help=f"target {name} in m (default 0)")  # fmt: skip
    tune.add_argument("--sigma-y-in", type=float, default=100e-6, help="incoming sigma_y in m")
    tune.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    tune.add_argument("--out", default="results/ares_tune", help="output folder")
    tune.set_defaults(run=_ares_tune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"diffdesign: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
