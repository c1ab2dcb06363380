"""track the default beam to the screen AREABSCR1 and plot the envelope

Track the default ARES beam through the experimental area. Quadrupole strengths in
[-30, 30] 1/m^2, corrector kicks in [-6e-3, 6e-3] rad. Writes screen_beam.json (with the
verdict) and envelope.png into --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments.ares._arguments import accept_negative_numbers, add_incoming_sigma_y


def add_arguments(parser: argparse.ArgumentParser) -> None:
    accept_negative_numbers(parser)
    parser.add_argument("--q1", type=float, default=10.0, help="AREAMQZM1 k1 in 1/m^2")
    parser.add_argument("--q2", type=float, default=-10.0, help="AREAMQZM2 k1 in 1/m^2")
    parser.add_argument("--cv", type=float, default=0.0, help="AREAMCVM1 kick in rad")
    parser.add_argument("--q3", type=float, default=10.0, help="AREAMQZM3 k1 in 1/m^2")
    parser.add_argument("--ch", type=float, default=0.0, help="AREAMCHM1 kick in rad")
    parser.add_argument(
        "--misalignments",
        type=float,
        nargs=6,
        default=[0.0] * 6,
        metavar=("DX1", "DY1", "DX2", "DY2", "DX3", "DY3"),
        help="quadrupole displacements in m (Cheetah's convention), within +-2e-3",
    )
    add_incoming_sigma_y(parser)


def run(args: argparse.Namespace):
    import numpy as np

    from diffdesign._validation import check_range
    from diffdesign.beamline import ares
    from diffdesign.beamline.plot import plot_envelope
    from diffdesign.core.verdict import StudySummary

    settings = np.array([args.q1, args.q2, args.cv, args.q3, args.ch], dtype=float)
    labels = ("--q1 (1/m^2)", "--q2 (1/m^2)", "--cv (rad)", "--q3 (1/m^2)", "--ch (rad)")
    for value, label, low, high in zip(
        settings, labels, ares.SETTING_LOWER, ares.SETTING_UPPER, strict=True
    ):
        check_range(value, label, low=float(low), high=float(high), owner="ARES")
    misalignments = np.array(args.misalignments, dtype=float).reshape(3, 2)
    check_range(misalignments, "--misalignments (m)", low=-2e-3, high=2e-3, owner="ARES")
    incoming = ares.incoming_beam(sigma_y=args.incoming_sigma_y)
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
        "incoming_sigma_y_m": args.incoming_sigma_y,
        "screen_beam_m": beam,
        "mae_m": objective,
    }
    verdict = track_verdict(result)
    result["verdict"] = verdict.to_json()
    (out / "screen_beam.json").write_text(json.dumps(result, indent=2))
    plot = plot_envelope(
        ares.segment(settings, misalignments),
        incoming,
        out / "envelope.png",
        title="ARES experimental area: beam envelope",
    )
    print(f"wrote {out / 'screen_beam.json'} and {plot}")
    figures = {"MAE on the screen": f"{objective * 1e3:.6f} mm (mean of |mu_x|, sigma_x, "
               "|mu_y|, sigma_y on AREABSCR1)"}  # fmt: skip
    return StudySummary(figures, verdict)


def track_verdict(result: dict):
    """The checks of a tracked beam (screen_beam.json's layout): its moments finite, and its
    3-sigma ellipse inside the field of view of today's camera (else the real screen would
    not show what the model reports)."""
    from diffdesign.beamline.ares.screens import TODAY_RESOLUTION, field_of_view, on_screen
    from diffdesign.core.verdict import Check, Verdict, all_finite

    beam = result["screen_beam_m"]
    half_x, half_y = (1e3 * float(h) for h in field_of_view(TODAY_RESOLUTION))
    inside = float(on_screen(beam, TODAY_RESOLUTION))
    return Verdict((
        all_finite("finite beam", list(beam.values())),
        Check("beam on the screen", inside >= 0.5,
              f"on-screen fraction {inside:.3g} (3-sigma ellipse within the +-{half_x:.3g} x "
              f"+-{half_y:.3g} mm field of view expected)",
              "the beam leaves the camera's view, where the screen cannot measure it: steer "
              "it back (--cv, --ch) or focus it (--q1, --q2, --q3)"),
    ))  # fmt: skip
