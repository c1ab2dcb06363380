"""The ``diffdesign`` command: one subcommand group per domain.

diffdesign ares track [--q1 K1 ...] [--misalignments DX1 DY1 DX2 DY2 DX3 DY3] [--out DIR]
diffdesign ring optics LATTICE [--out DIR]
diffdesign ring correct LATTICE [--config TOML] [--smoke] [--out DIR]
diffdesign ring degeneracy LATTICE [--config TOML] [--smoke] [--out DIR]
diffdesign ring loco LATTICE [--config TOML] [--measured ORM.json] [--smoke] [--out DIR]
diffdesign xpcs fit [DATA] [--config TOML] [--mode static|laminar_flow] [--method nlsq|cmc|both]
                    [--example] [--smoke] [--out DIR]
diffdesign muography image|design|sweep [--config TOML] [--smoke] [--out DIR]
diffdesign inferno benchmarks [--config TOML] [--smoke] [--out DIR]
diffdesign lgso benchmarks [--config TOML] [--smoke] [--out DIR]
"""

from __future__ import annotations

import argparse
import functools
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


# ----------------------------------------------------------------------------- ring


@functools.cache
def _optics_program():
    """One compiled program per lattice structure for `ring optics`, kept for the session."""
    import equinox as eqx

    from diffdesign import ring

    def optics_and_chromaticity(lattice, refpts: tuple[int, ...] | None):
        points = None if refpts is None else np.asarray(refpts)
        return ring.linear_optics(lattice, points), ring.chromaticity(lattice)

    return eqx.filter_jit(optics_and_chromaticity)


def _ring_optics(args: argparse.Namespace) -> int:
    from diffdesign.ring.plots import plot_optics
    from diffdesign.ring.studies import load_study_lattice

    lattice = load_study_lattice(args.lattice)
    if "Monitor" in lattice.classes:
        refpts, where = tuple(int(i) for i in lattice.indices("Monitor")), "BPMs"
    else:
        refpts, where = None, "element entrances"  # a ring without BPMs: everywhere
    optics, chromaticity = _optics_program()(lattice, refpts)
    optics = {k: np.asarray(v) for k, v in optics.items()}
    if not np.all(np.isfinite(optics["beta_x"])) or not np.all(np.isfinite(optics["beta_y"])):
        raise ValueError(
            f"the linear optics of {args.lattice} are unstable (no periodic Twiss functions); "
            "check the quadrupole strengths"
        )
    chromaticity = np.asarray(chromaticity)
    name = lattice.name or Path(args.lattice).stem
    print(
        f"ring {name!r}: {lattice.n_elements} elements, circumference "
        f"{lattice.circumference:.6g} m, energy {lattice.energy / 1e9:.4g} GeV, "
        f"periodicity {lattice.periodicity}"
    )
    print(f"  tunes          Qx {optics['tunes_total'][0]:.6f}  Qy {optics['tunes_total'][1]:.6f}")
    print(f"  chromaticity   Q'x {chromaticity[0]:+.4f}  Q'y {chromaticity[1]:+.4f}")
    print(
        f"  at {len(optics['s'])} {where}: max beta_x {optics['beta_x'].max():.4g} m, "
        f"max beta_y {optics['beta_y'].max():.4g} m, eta_x in "
        f"[{optics['eta_x'].min():.4g}, {optics['eta_x'].max():.4g}] m"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    points = refpts if refpts is not None else np.arange(lattice.n_elements + 1)
    result = {
        "lattice": str(args.lattice),
        "name": name,
        "n_elements": lattice.n_elements,
        "circumference_m": lattice.circumference,
        "energy_eV": lattice.energy,
        "periodicity": lattice.periodicity,
        "tunes": optics["tunes"].tolist(),
        "tunes_total": optics["tunes_total"].tolist(),
        "chromaticity": chromaticity.tolist(),
        "refpoints": where,
        "names": [lattice.names[i] if i < lattice.n_elements else "END" for i in points],
        "s_m": optics["s"].tolist(),
        **{
            f"{key}{unit}": optics[key].tolist()
            for key, unit in (
                ("beta_x", "_m"),
                ("beta_y", "_m"),
                ("alpha_x", ""),
                ("alpha_y", ""),
                ("mu_x", "_rad"),
                ("mu_y", "_rad"),
                ("eta_x", "_m"),
                ("etap_x", ""),
            )
        },
    }
    (out / "optics.json").write_text(json.dumps(result, indent=1))
    plot = plot_optics(optics, out / "optics.png", title=f"{name}: optics at the {where}")
    print(f"wrote {out / 'optics.json'} and {plot}")
    return 0


def _study_config(config_class, args: argparse.Namespace):
    """The study config from --config (TOML) or the defaults, the LATTICE argument, --smoke."""
    import dataclasses

    config = config_class.from_toml(args.config) if args.config else config_class()
    config = dataclasses.replace(config, lattice=str(args.lattice))
    return config.smoke() if args.smoke else config


def _ring_correct(args: argparse.Namespace) -> int:
    from diffdesign.ring.studies import ESTIMATORS, CorrectionStudyConfig, run_correction_study

    results = run_correction_study(_study_config(CorrectionStudyConfig, args), args.out)
    summary = results["summary"]
    columns = (
        ("rms_beta_beat_x", "beat x %", 100),
        ("rms_beta_beat_y", "beat y %", 100),
        ("rms_phase_x_rad", "phase x mrad", 1e3),
        ("rms_phase_y_rad", "phase y mrad", 1e3),
        ("rms_dispersion_x_m", "disp. x mm", 1e3),
        ("rms_error_relative", "error 1e-3", 1e3),
    )
    print(f"\nmedian over {len(results['machines'])} machines [quartiles]")
    print(f"{'':16s}" + "".join(f"{label:>22s}" for _, label, _ in columns))
    for name in ("before", *ESTIMATORS):
        cells = []
        for metric, _, scale in columns:
            q = summary[name][metric]
            cells.append(
                f"{q['median'] * scale:8.3f} [{q['q25'] * scale:.3f}, {q['q75'] * scale:.3f}]"
            )
        print(f"{name:16s}" + "".join(f"{c:>22s}" for c in cells))
    return 0


def _ring_degeneracy(args: argparse.Namespace) -> int:
    from diffdesign.ring.studies import DegeneracyStudyConfig, run_degeneracy_study

    results = run_degeneracy_study(_study_config(DegeneracyStudyConfig, args), args.out)
    pair, subset = results["pair"], results["subset"]
    fit = results["single_fault_fit"]
    print(
        f"\ncorrelation {pair['names'][0]}/{pair['names'][1]}: {pair['correlation']:.4f} "
        f"(paper {pair['paper_correlation']}); fit blames {fit['largest']['name']}; "
        f"BPMs {subset['indices']}: correlation {subset['correlation']:.2g}"
    )
    for label, entry in results["classification"].items():
        print(
            f"source {pair['names']['ab'.index(label)]}: identified "
            f"{entry['identified']} (log-likelihood ratio "
            f"{entry['subset']['log_likelihood_ratio']:+.4g}, single-measurement accuracy "
            f"{entry['subset_accuracy']:.0%})"
        )
    return 0


def _ring_loco(args: argparse.Namespace) -> int:
    from diffdesign.ring.loco_study import LocoStudyConfig, fit_measured_orm, run_loco_study

    config = _study_config(LocoStudyConfig, args)
    if args.measured:
        fit_measured_orm(config, args.measured, args.out)
    else:
        run_loco_study(config, args.out)
    return 0


def _add_ring_commands(domains) -> None:
    ring = domains.add_parser("ring", help="storage-ring optics, correction and degeneracy")
    commands = ring.add_subparsers(dest="command", required=True)
    lattice_help = "AT lattice file (.m) or diffdesign JSON (.json)"

    optics = commands.add_parser(
        "optics",
        help="tunes, chromaticity and the optics at the BPMs of a ring",
        description="Compute the 4-D linear optics of a ring: print tunes and chromaticity, "
        "write optics.json (Twiss functions and dispersion at the BPMs) and optics.png.",
    )
    optics.add_argument("lattice", help=lattice_help)
    optics.add_argument("--out", default="results/ring_optics", help="output folder")
    optics.set_defaults(run=_ring_optics)

    for name, run, study, out in (
        (
            "correct",
            _ring_correct,
            "the correction study (paper Sects. II-III): plant "
            "gradient errors, measure beta-beat, phase and dispersion with noise, estimate with "
            "the Bayesian, evidence, pseudo-inverse, Tikhonov and TSVD estimators, correct",
            "results/ring_correction",
        ),
        (
            "degeneracy",
            _ring_degeneracy,
            "the degeneracy study (paper Sect. IV): correlated "
            "neighbouring quadrupoles, the single-fault fit, a near-orthogonal BPM subset and "
            "the classification of repeated measurements",
            "results/ring_degeneracy",
        ),
    ):
        command = commands.add_parser(
            name,
            help=study.split(":")[0],
            description=f"Run {study}. Writes results.json and plots into --out. Every key "
            "of the TOML config is optional (see diffdesign.ring.studies); LATTICE "
            "replaces the config's lattice.",
        )
        command.add_argument("lattice", help=lattice_help)
        command.add_argument("--config", help="TOML config (defaults: the NSLS-II study)")
        command.add_argument("--smoke", action="store_true", help="tiny sizes, to check it runs")
        command.add_argument("--out", default=out, help="output folder")
        command.set_defaults(run=run)

    loco = commands.add_parser(
        "loco",
        help="LOCO: fit gradient errors, BPM gains and corrector calibrations to an ORM",
        description="Fit quadrupole gradient errors, BPM gains and corrector calibrations to "
        "an orbit response matrix with Bayesian regularisation (diffdesign.ring.loco). With "
        "--measured, fit that file (format: diffdesign.ring.loco_study.write_orm_json); "
        "otherwise simulate the LOCO study (planted errors, noisy ORM) of --config. Writes "
        "results.json and plots into --out.",
    )
    loco.add_argument("lattice", help=lattice_help)
    loco.add_argument("--config", help="TOML config (defaults: diffdesign.ring.loco_study)")
    loco.add_argument("--measured", help="measured ORM JSON to fit instead of a simulation")
    loco.add_argument("--smoke", action="store_true", help="tiny sizes, to check it runs")
    loco.add_argument("--out", default="results/ring_loco", help="output folder")
    loco.set_defaults(run=_ring_loco)


def _xpcs_fit(args: argparse.Namespace) -> int:
    from diffdesign.xpcs.study import load_job, run_fit

    data, config = args.data, args.config
    if args.example:
        from diffdesign.xpcs.examples import example_path

        if data is not None or config is not None:
            raise ValueError("--example runs the packaged example: give no DATA or --config")
        config = example_path("laminar_flow_example.toml")
    job = load_job(data, config, args.mode)
    run_fit(job, args.method, args.out, smoke=args.smoke)
    return 0


def _add_xpcs_commands(domains) -> None:
    xpcs = domains.add_parser("xpcs", help="XPCS homodyne analysis of two-time correlations")
    commands = xpcs.add_subparsers(dest="command", required=True)
    fit = commands.add_parser(
        "fit",
        help="fit two-time data: bounded least squares and/or Consensus Monte Carlo",
        description="Fit the homodyne model (static or laminar flow) to two-time correlation "
        "data (APS 8-ID-I HDF5 or diffdesign .npz) by bounded least squares (nlsq) and/or "
        "Consensus Monte Carlo (cmc, NUTS on shards, warm-started from nlsq). Writes "
        "results.json, posterior.nc and plots into --out. The TOML config has tables [data], "
        "[model], [nlsq], [cmc] (see diffdesign.xpcs.study).",
    )
    fit.add_argument("data", nargs="?", help="data file (default: [data] file of --config)")
    fit.add_argument("--config", help="TOML config")
    fit.add_argument("--mode", choices=("static", "laminar_flow"),
                     help="model (default: [model] mode, else static)")  # fmt: skip
    fit.add_argument("--method", choices=("nlsq", "cmc", "both"), default="nlsq")
    fit.add_argument(
        "--example", action="store_true", help="fit the packaged example (3 angles, 100 frames)"
    )
    fit.add_argument("--smoke", action="store_true", help="few CMC draws, to check it runs")
    fit.add_argument("--out", default="results/xpcs_fit", help="output folder")
    fit.set_defaults(run=_xpcs_fit)


def _muography(args: argparse.Namespace) -> int:
    from diffdesign.muography import studies

    config_class = studies.MuographyStudyConfig
    config = config_class.from_toml(args.config) if args.config else config_class()
    config = config.smoke() if args.smoke else config
    run = {"image": studies.run_lead_block, "design": studies.run_design,
           "sweep": studies.run_budget_sweep}[args.command]  # fmt: skip
    results = run(config, args.out)
    if args.command == "image":
        for name, entry in results["estimators"].items():
            print(f"{name:10s} X0 error {entry['x0_error']:.4g}  log error "
                  f"{entry['log_x0_error']:.4g}  lead median {entry['lead_median_x0_m'] * 1e3:.2f} "
                  f"mm (true 5.61)")  # fmt: skip
    elif args.command == "design":
        for name, entry in results["validation"].items():
            print(f"{name:18s} {config.loss} {entry[config.loss]:.4g}  cost {entry['cost']:.3g}")
    else:
        for row in results["rows"]:
            print(f"budget {row['budget']:6g}: cost {row['cost']:.3g}  {config.loss} "
                  f"{row[config.loss]:.4g}")  # fmt: skip
    return 0


def _add_muography_commands(domains) -> None:
    muography = domains.add_parser(
        "muography", help="muon scattering tomography: imaging and detector design"
    )
    commands = muography.add_subparsers(dest="command", required=True)
    helps = {
        "image": "image TomOpt's lead block in beryllium with PoCA and the path likelihood",
        "design": "optimise the panels from a deliberately poor layout (checkpointed)",
        "sweep": "budget sweep: panel cost against the achievable X0 error",
    }
    for name, text in helps.items():
        command = commands.add_parser(
            name, help=text, description=text + ". Settings: TOML keys of "
            "diffdesign.muography.studies.MuographyStudyConfig (all optional).",
        )  # fmt: skip
        command.add_argument("--config", help="TOML config (experiments/muography/*.toml)")
        command.add_argument("--smoke", action="store_true", help="tiny sizes, to check it runs")
        command.add_argument("--out", default=f"results/muography_{name}", help="output folder")
        command.set_defaults(run=_muography)


def _inferno_benchmarks(args: argparse.Namespace) -> int:
    from diffdesign.inference.inferno_mixture import PAPER_TABLE_2
    from diffdesign.inference.inferno_study import InfernoStudyConfig, run_study

    config = InfernoStudyConfig.from_toml(args.config) if args.config else InfernoStudyConfig()
    config = config.smoke() if args.smoke else config
    results = run_study(config, args.out)
    rows = results["rows"]
    print(
        f"\nexpected uncertainty on s, median over {config.n_initialisations} initialisations "
        "(the paper's in brackets)"
    )
    print(f"{'model':28s}" + "".join(f"{'benchmark ' + str(i):>18s}" for i in range(5)))
    lines = [("NN classifier", [q["median"] for q in rows["classifier"]], "classifier")]
    matching = results["matching_inferno"]
    lines.append(
        (
            "INFERNO (matching)",
            [matching.get(str(i), {}).get("median", float("nan")) for i in range(5)],
            "inferno",
        )
    )
    lines += [
        ("optimal classifier", rows["optimal_classifier"], "optimal_classifier"),
        ("analytical likelihood", rows["analytic"], "analytic"),
    ]
    for label, values, key in lines:
        print(
            f"{label:28s}"
            + "".join(
                f"{v:9.2f} [{p:6.2f}]" for v, p in zip(values, PAPER_TABLE_2[key], strict=True)
            )
        )
    print(f"wrote {Path(args.out) / 'results.json'} and plots")
    return 0


def _lgso_benchmarks(args: argparse.Namespace) -> int:
    from diffdesign.surrogates.study import LgsoStudyConfig, run_study

    config = LgsoStudyConfig.from_toml(args.config) if args.config else LgsoStudyConfig()
    results = run_study(config.smoke() if args.smoke else config, args.out)
    print(
        f"\n{'problem':24s} {'method':10s} {'reached':>8s} {'calls to target':>16s} "
        f"{'final objective':>16s} {'wall s':>8s}"
    )
    for problem, methods in results["summary"].items():
        for method, entry in methods.items():
            calls = entry["median_calls_to_target"]
            print(
                f"{problem:24s} {method:10s} {entry['reached_target']:>8s} "
                f"{'-' if calls is None else format(int(calls), ','):>16s} "
                f"{entry['median_final_objective']:16.4g} {entry['median_wall_s']:8.0f}"
            )
    print(f"wrote {Path(args.out) / 'results.json'} and plots")
    return 0


def _add_study_command(
    domains, domain: str, help_text: str, command: str, description: str, settings: str, run
) -> None:
    group = domains.add_parser(domain, help=help_text)
    commands = group.add_subparsers(dest="command", required=True)
    parser = commands.add_parser(
        command,
        help=description.split(":")[0],
        description=f"{description} Settings: TOML keys of {settings} (all optional). "
        "Checkpointed: rerun into the same --out to resume.",
    )
    parser.add_argument("--config", help=f"TOML config (experiments/{domain}/*.toml)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check it runs")
    parser.add_argument("--out", default=f"results/{domain}_{command}", help="output folder")
    parser.set_defaults(run=run)


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

    _add_ring_commands(domains)
    _add_xpcs_commands(domains)
    _add_muography_commands(domains)
    _add_study_command(
        domains,
        "inferno",
        "INFERNO: inference-aware summary statistics",
        "benchmarks",
        "The INFERNO paper's synthetic benchmarks 0-4: classifier and INFERNO summaries over "
        "many initialisations, the optimal classifier and the likelihood bound (its Table 2), "
        "and benchmark 2's profile likelihoods.",
        "diffdesign.inference.inferno_study.InfernoStudyConfig",
        _inferno_benchmarks,
    )
    _add_study_command(
        domains,
        "lgso",
        "L-GSO: local generative surrogates for black-box simulators",
        "benchmarks",
        "The L-GSO paper's problems (three hump, Rosenbrock 10D, submanifold Rosenbrock, "
        "nonlinear submanifold hump): L-GSO against numerical differentiation, CMA-ES and "
        "Bayesian optimisation at equal simulator calls.",
        "diffdesign.surrogates.study.LgsoStudyConfig",
        _lgso_benchmarks,
    )
    return parser


def _persistent_compilation_cache() -> None:
    """Keep compiled XLA programs between runs of the command (``~/.cache/diffdesign/jax``;
    ``DIFFDESIGN_JAX_CACHE`` names another folder, or ``off``), so that repeated runs of a
    study skip most of their compile time."""
    import os

    import jax

    where = os.environ.get("DIFFDESIGN_JAX_CACHE", str(Path.home() / ".cache/diffdesign/jax"))
    if where.lower() != "off" and jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", where)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _persistent_compilation_cache()
    try:
        return args.run(args)
    except (ValueError, OSError) as error:  # bad input, unreadable or unwritable files
        print(f"diffdesign: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
