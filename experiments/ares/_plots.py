"""Plots of an ARES study's ``results.json`` (matplotlib, written to files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

_LABELS = [f"{q} {axis}" for q in ("Q1", "Q2", "Q3") for axis in ("dx", "dy")]
_STYLE = {
    "bo_calibrated": ("tab:blue", "BO, calibrated prior"),
    "bo_perfect": ("tab:green", "BO, perfect prior"),
    "bo_constant": ("tab:orange", "BO, constant mean"),
    "bo_fitted_offsets": ("tab:red", "BO, offsets fitted by MLL"),
    "random": ("tab:gray", "random search"),
    "gradient_calibrated": ("navy", "gradient, calibrated model"),
    "gradient_perfect": ("darkgreen", "gradient, true model"),
}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_offsets(results: dict[str, Any], path: Path) -> Path:
    """Fitted offsets with 1-sigma error bars next to the truth (and the MLL failure mode)."""
    truth = np.ravel(results["true_offsets_m"]) * 1e6
    fitted = np.ravel(results["calibration"]["offsets_m"]) * 1e6
    std = np.ravel(results["calibration"]["std_m"]) * 1e6
    x = np.arange(6)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.scatter(x, truth, marker="_", s=600, color="black", label="true", zorder=3)
    ax.errorbar(x - 0.1, fitted, yerr=std, fmt="o", color="tab:blue", capsize=4,
                label="calibrated (±1σ)")  # fmt: skip
    failure = results["tuning"].get("bo_fitted_offsets", {}).get("fitted_offsets_m")
    fitted_mll = [f for f in failure or [] if f is not None]
    if fitted_mll:
        ax.scatter(x + 0.1, np.ravel(fitted_mll[-1]) * 1e6, marker="x", color="tab:red",
                   label="GP-mean hyperparameters (MLL)")  # fmt: skip
    ax.set_xticks(x, _LABELS)
    ax.set_ylabel("offset (µm)")
    error = results["calibration"]["mean_absolute_error_um"]
    ax.set_title(f"ARES quadrupole offsets: mean |error| {error:.3g} µm")
    ax.legend(fontsize=8)
    ax.axhline(0.0, color="grey", lw=0.5)
    return _save(fig, path)


def plot_calibration_loss(results: dict[str, Any], path: Path) -> Path:
    history = np.asarray(results["calibration"]["chi2_history"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(np.arange(len(history)), np.maximum(history, 1e-30), "o-")
    ax.axhline(results["calibration"]["dof"], color="grey", ls="--", label="degrees of freedom")
    ax.set_xlabel("Levenberg-Marquardt step")
    ax.set_ylabel("χ² (normalised residuals)")
    ax.set_title("Calibration loss history")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_tuning(results: dict[str, Any], path: Path) -> Path:
    """Best machine MAE so far versus machine evaluations, every tuning method."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, entry in results["tuning"].items():
        colour, label = _STYLE.get(name, (None, name))
        if "incumbent_true_mae_m" in entry:
            best = np.asarray(entry["incumbent_true_mae_m"]) * 1e3
            ax.semilogy(np.arange(1, len(best) + 1), best, color=colour, label=label)
        else:
            ax.semilogy([entry["machine_evaluations"]], [entry["true_mae_m"] * 1e3], "*",
                        ms=12, color=colour, label=label)  # fmt: skip
    ax.set_xlabel("machine evaluations (beyond calibration)")
    ax.set_ylabel("noise-free MAE of the best setting so far (mm)")
    ax.set_title("Tuning the ARES magnets")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_design(results: dict[str, Any], path: Path) -> Path:
    curve = results["design_comparison"]
    n = np.asarray(curve["n_settings"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(n, np.asarray(curve["random_median_rms_crb_m"]) * 1e6, "o-",
                label="random uniform (median)")  # fmt: skip
    ax.semilogy(n, np.asarray(curve["d_optimal_rms_crb_m"]) * 1e6, "s-", label="D-optimal")
    ax.set_xlabel("calibration settings")
    ax.set_ylabel("RMS Cramér-Rao bound (µm)")
    ax.set_title(f"Offset error versus settings (noise {curve['noise_m'] * 1e6:.3g} µm)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_failure_mode(results: dict[str, Any], path: Path) -> Path | None:
    entry = results["tuning"].get("bo_fitted_offsets")
    if entry is None:
        return None
    steps = [(i, f) for i, f in enumerate(entry["fitted_offsets_m"]) if f is not None]
    if not steps:
        return None
    index = np.array([i + 1 for i, _ in steps])
    values = np.array([np.ravel(f) for _, f in steps]) * 1e6
    truth = np.ravel(results["true_offsets_m"]) * 1e6
    bound = results["config"]["failure_bound"] * 1e6
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for j in range(6):
        line = ax.plot(index, values[:, j], label=_LABELS[j])[0]
        ax.axhline(truth[j], color=line.get_color(), ls=":", lw=1)
    ax.axhline(bound, color="black", lw=1)
    ax.axhline(-bound, color="black", lw=1)
    ax.set_xlabel("machine evaluation")
    ax.set_ylabel("offset fitted as GP-mean hyperparameter (µm)")
    ax.set_title("Offsets fitted as GP-mean hyperparameters by marginal likelihood (dotted: truth)")
    ax.legend(fontsize=7, ncol=3)
    return _save(fig, path)


def plot_all(results: dict[str, Any], out: str | Path) -> list[Path]:
    out = Path(out)
    paths = [
        plot_offsets(results, out / "offsets.png"),
        plot_calibration_loss(results, out / "calibration_loss.png"),
        plot_tuning(results, out / "tuning.png"),
        plot_design(results, out / "design.png"),
        plot_failure_mode(results, out / "failure_mode.png"),
    ]
    return [p for p in paths if p is not None]
