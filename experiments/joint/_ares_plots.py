"""Plots of ``diffdesign joint ares``'s results.json (matplotlib, written to files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from experiments.ares._plots import _save  # the ARES studies' figure writer

#: Element starts and lengths along the segment (m) for the drawing, and their kinds.
_ELEMENTS = (
    ("AREAMQZM1", 0.17504, 0.122, "quadrupole"),
    ("AREAMQZM2", 0.72504, 0.122, "quadrupole"),
    ("AREAMCVM1", 1.05104, 0.02, "corrector"),
    ("AREAMQZM3", 1.27504, 0.122, "quadrupole"),
    ("AREAMCHM1", 1.57604, 0.02, "corrector"),
)
#: Where each free drift starts (m), for the screens' positions.
_DRIFT_STARTS = {"Drift_AREAMQZM1": 0.29704, "Drift_AREAMCHM1": 1.59604}
_COLOURS = {"quadrupole": "tab:red", "corrector": "tab:blue"}
_LABELS = {
    "published": "published (15 random, today's screen)",
    "geometry_then_settings": "sequential: geometry, then settings",
    "settings_then_geometry": "sequential: settings, then geometry",
    "joint": "joint",
    "joint_equal_cost": "joint, today's resolution (equal cost)",
    "one_screen_angles": "joint, angles free, one screen",
    "two_screens_joint": "joint, angles free, two screens",
}


def _chosen(results: dict[str, Any], name: str) -> dict[str, Any]:
    designs = results["designs"]
    return designs.get(f"{name}@{results['chosen_cost_weight']:g}", designs.get(name))


def plot_designs(results: dict[str, Any], path: Path) -> Path:
    """The beamline with each design's screens (top) and each design's settings (bottom)."""
    names = list(results["realised"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), height_ratios=(1.2, 1))
    for name, start, length, kind in _ELEMENTS:
        top.axvspan(start, start + length, color=_COLOURS[kind], alpha=0.25)
        top.text(start + length / 2, -0.75, name, ha="center", va="center", fontsize=7)
    for row, name in enumerate(names):
        design = _chosen(results, name)
        drifts = ["Drift_AREAMCHM1", "Drift_AREAMQZM1"][: len(design["positions_m"])]
        for drift, position, resolution in zip(
            drifts, design["positions_m"], design["resolutions_um"], strict=True
        ):
            s = _DRIFT_STARTS[drift] + position
            top.plot(s, row, "ks", markersize=7)
            top.annotate(f"{resolution:.3g} um", (s, row), textcoords="offset points",
                         xytext=(6, 4), fontsize=7)  # fmt: skip
    top.set_yticks(range(len(names)), [_LABELS.get(n, n) for n in names], fontsize=8)
    top.set_xlabel("s along the segment (m); squares: screens, with their resolution")
    top.set_xlim(0, 2.1)
    top.set_ylim(-1.0, len(names) - 0.4)
    top.set_title("Designs on the ARES experimental area (red: quadrupoles, blue: correctors)")
    setting_names = ("q1", "q2", "cv", "q3", "ch")
    half = np.array([30.0, 30.0, 6e-3, 30.0, 6e-3])
    for row, name in enumerate(names):
        settings = np.asarray(_chosen(results, name)["settings"]) / half
        x = np.broadcast_to(np.arange(5) + (row - len(names) / 2) * 0.1, settings.shape)
        bottom.plot(x.ravel(), settings.ravel(), ".", label=_LABELS.get(name, name), alpha=0.7)
    bottom.set_xticks(range(5), setting_names)
    bottom.set_ylabel("setting / half range (q: 30 1/m^2, c: 6 mrad)")
    bottom.set_ylim(-1.05, 1.05)
    bottom.legend(fontsize=7, ncol=2, loc="lower left")
    return _save(fig, path)


def plot_front(results: dict[str, Any], path: Path) -> Path:
    """RMS Cramer-Rao bound against the screens' cost: each strategy along the cost weight,
    with the published practice (left) and zoomed on the designs (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    styles = {"joint": "o-", "geometry_then_settings": "s--", "settings_then_geometry": "^--"}
    for ax in axes:
        for kind, points in results["fronts"].items():
            cost = [p["cost_keur"] for p in points]
            bound = [p["rms_bound_um"] for p in points]
            ax.plot(cost, bound, styles[kind], label=_LABELS[kind])
        for name, marker in (("published", "k*"), ("joint_equal_cost", "mD")):
            d = _chosen(results, name)
            ax.plot(d["cost_keur"], d["rms_bound_um"], marker, markersize=11, label=_LABELS[name])
        ax.set_xlabel("cost of the screens (kEUR)")
        ax.set_ylabel("offsets' RMS Cramer-Rao bound (um)")
    for p in results["fronts"]["joint"]:
        axes[1].annotate(f"λ={p['cost_weight']:g}/kEUR", (p["cost_keur"], p["rms_bound_um"]),
                         fontsize=7, textcoords="offset points", xytext=(4, -10))  # fmt: skip
    axes[0].set_yscale("log")
    axes[0].set_title("Accuracy against cost (incoming centroid and size profiled out)")
    axes[0].legend(fontsize=7)
    designed = [p["rms_bound_um"] for points in results["fronts"].values() for p in points]
    axes[1].set_ylim(0.98 * min(designed), 1.02 * max(designed))
    axes[1].set_title("Zoom on the designs (λ along each line)")
    return _save(fig, path)


def plot_realised(results: dict[str, Any], path: Path) -> Path:
    """Predicted bound against realised errors of simulated calibrations, per design."""
    names = list(results["realised"])
    entries = [results["realised"][n] for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    y = np.arange(len(names))
    left.barh(y - 0.2, [e["predicted_rms_bound_um"] for e in entries], 0.4,
              label="predicted: RMS Cramer-Rao bound")  # fmt: skip
    left.barh(y + 0.2, [e["realised_rms_error_um"] for e in entries], 0.4,
              label="realised: RMS error of least squares")  # fmt: skip
    for i, e in enumerate(entries):
        nuts = e["nuts"]["rms_posterior_std_um"]
        if nuts is not None:
            left.plot(nuts, i, "k|", markersize=14, label="NUTS posterior std" if i == 0 else None)
        where = (e["realised_rms_error_um"], i + 0.2)
        left.annotate(f"95 % coverage {e['coverage_95']:.0%}", where, fontsize=7,
                      textcoords="offset points", xytext=(4, -3))  # fmt: skip
    left.set_xscale("log")
    left.set_yticks(y, [_LABELS.get(n, n) for n in names], fontsize=8)
    left.set_xlabel("offset error (um, RMS over offsets and calibrations)")
    left.set_xlim(right=3e3)
    left.legend(fontsize=7, loc="lower right")
    left.set_title("Predicted and realised calibration accuracy")
    tuned = [e["tuning"]["mean_beam_error_um"] for e in entries]
    ideal = [e["tuning"]["mean_beam_error_true_model_um"] for e in entries]
    right.barh(y - 0.2, [t or np.nan for t in tuned], 0.4, label="tuned on the calibrated model")
    right.barh(y + 0.2, [t or np.nan for t in ideal], 0.4, label="tuned on the true model")
    right.set_yticks(y, [""] * len(names))
    right.set_xscale("log")
    right.set_xlabel("beam error on the true machine (um, ares.mae from the target)")
    right.legend(fontsize=7, loc="lower right")
    right.set_title("Tuning to the target beam")
    return _save(fig, path)


def plot_n_sweep(results: dict[str, Any], path: Path) -> Path:
    """Each strategy's RMS bound against the number of calibration settings (left) and its
    design loss relative to the joint design's (right)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    sweep = results["n_sweep"]
    joint = {p["n_settings"]: p["loss"] for p in sweep["joint"]}
    for kind, style in (("joint", "o-"), ("geometry_then_settings", "s--"),
                        ("settings_then_geometry", "^--")):  # fmt: skip
        n = [p["n_settings"] for p in sweep[kind]]
        left.plot(n, [p["rms_bound_um"] for p in sweep[kind]], style, label=_LABELS[kind])
        ratio = [100 * (np.exp(p["loss"] - joint[p["n_settings"]]) - 1) for p in sweep[kind]]
        right.plot(n, ratio, style, label=_LABELS[kind])
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("number of calibration settings n")
    left.set_ylabel("offsets' RMS Cramer-Rao bound (um)")
    left.legend(fontsize=7)
    right.set_xscale("log")
    right.set_xlabel("number of calibration settings n")
    right.set_ylabel("exp(loss - joint loss) - 1 (%): bound x cost penalty vs joint")
    right.axhline(0.0, color="k", lw=0.5)
    right.legend(fontsize=7)
    fig.suptitle(
        f"Joint against sequential along n (cost weight {results['chosen_cost_weight']:g}/kEUR)"
    )
    return _save(fig, path)


def plot_all(results: dict[str, Any], out: str | Path) -> list[Path]:
    out = Path(out)
    paths = [
        plot_designs(results, out / "designs.png"),
        plot_front(results, out / "front.png"),
        plot_realised(results, out / "realised.png"),
    ]
    if any(results["n_sweep"].values()):
        paths.append(plot_n_sweep(results, out / "n_sweep.png"))
    card = Path(__file__).resolve().parents[2] / "surrogates" / "ares_screen" / "card.json"
    if card.exists():
        paths.append(plot_surrogate_fidelity(json.loads(card.read_text()),
                                             out / "surrogate_fidelity.png"))  # fmt: skip
    return paths


def plot_surrogate_fidelity(card: dict[str, Any], path: Path) -> Path:
    """The learned screen against the camera black box, from its artefact's card: mean
    error (in b = sqrt(sigma^2 + r^2)) and spread ratio per sigma/r bin, and coverage."""
    validation = card["validation"]
    bins = validation["bins"]
    observables = ("mu_x", "sigma_x", "mu_y", "sigma_y")
    labels = [f"{b['sigma_over_r'][0]:g}-{b['sigma_over_r'][1] or 'inf'}" for b in bins]
    x = np.arange(len(bins))
    fig, (bias, spread, coverage) = plt.subplots(1, 3, figsize=(14, 4.3))
    for i, k in enumerate(observables):
        offset = (i - 1.5) * 0.12
        bias.errorbar(x + offset, [b["mean_error"][k] for b in bins],
                      [b["std_error"][k] for b in bins], fmt="o", label=k, capsize=2)  # fmt: skip
        spread.plot(x + offset, [b["std_ratio"][k] for b in bins], "o", label=k)
    for ax in (bias, spread):
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_xlabel("true sigma / resolution")
        ax.legend(fontsize=7)
    bias.axhline(0.0, color="k", lw=0.5)
    bias.set_ylabel("surrogate mean - black-box mean (units of b)")
    bias.set_title("Bias of the learned screen")
    spread.axhline(1.0, color="k", lw=0.5)
    spread.set_yscale("log")
    spread.set_ylabel("surrogate std / black-box std")
    spread.set_title("Spread of the learned screen")
    for j, level in enumerate(("68", "95")):
        values = [validation["coverage"][level]["on_screen"][k] for k in observables]
        coverage.bar(np.arange(4) + (j - 0.5) * 0.4, values, 0.4, label=f"{level} % interval")
        coverage.axhline(int(level) / 100, color="k", lw=0.5, ls="--")
    coverage.set_xticks(range(4), observables)
    coverage.set_ylabel("fraction of black-box shots inside")
    coverage.set_ylim(0, 1.05)
    coverage.set_title(f"Coverage ({validation['n_beams']} beams x {validation['repeats']} shots)")
    coverage.legend(fontsize=7, loc="lower right")
    return _save(fig, path)
