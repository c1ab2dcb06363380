"""Plots of ring optics and of the ring studies' ``results.json`` (matplotlib, to files).

Every function takes plain data (a dict of arrays, or a study's results as written to
JSON), writes one PNG and returns its path, so plots can be redrawn from a saved
``results.json`` without rerunning a study:

>>> results = json.loads(Path("results/ring_correction/results.json").read_text())  # doctest: +SKIP
>>> plot_correction_study(results, "results/ring_correction")                       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

_ESTIMATOR_STYLE = {
    "before": ("tab:gray", "before correction"),
    "bayes": ("tab:blue", "Bayesian (prior from beat)"),
    "evidence": ("tab:green", "evidence-optimal prior"),
    "pinv": ("tab:red", "pseudo-inverse"),
    "tikhonov_best": ("tab:purple", "Tikhonov, best α in hindsight"),
    "tsvd_best": ("tab:orange", "TSVD, best cut in hindsight"),
}
_METRIC_LABELS = {
    "rms_beta_beat_x": ("rms Δβx/βx (%)", 100.0),
    "rms_beta_beat_y": ("rms Δβy/βy (%)", 100.0),
    "rms_phase_x_rad": ("rms Δμx (mrad)", 1e3),
    "rms_phase_y_rad": ("rms Δμy (mrad)", 1e3),
    "rms_dispersion_x_m": ("rms Δηx (mm)", 1e3),
    "rms_error_relative": ("rms ΔK/K estimation error (1e-3)", 1e3),
}


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- optics


#: Synoptic of the magnets: class -> (colour, height of the box, drawn on the axis).
_SYNOPTIC = {"Dipole": ("tab:blue", 0.5), "Quadrupole": ("tab:red", 0.8),
             "Sextupole": ("tab:green", 0.6), "Multipole": ("tab:olive", 0.4),
             "Corrector": ("tab:purple", 0.3)}  # fmt: skip


def plot_optics(
    optics: Mapping[str, Any],
    path: str | Path,
    title: str = "Linear optics",
    elements: Mapping[str, Any] | None = None,
    bpms: Mapping[str, Any] | None = None,
) -> Path:
    """Beta functions and horizontal dispersion along the ring, above a magnet synoptic.

    Args:
        optics: arrays ``s`` (m), ``beta_x``, ``beta_y`` (m), ``eta_x`` (m) at the same
            points (every element's entrance gives the curves), and optionally ``tunes`` (2,).
        path: the PNG to write.
        title: figure title.
        elements: ``s`` (entrance, m), ``length`` (m), ``class`` (AT class names) and ``k1``
            (1/m^2) of every element, for the synoptic (dipoles centred, focusing
            quadrupoles up, defocusing down, sextupoles, correctors); None: no synoptic.
        bpms: ``s``, ``beta_x``, ``beta_y``, ``eta_x`` at the BPMs, marked on the curves.
    """
    s = np.asarray(optics["s"])
    rows = 3 if elements is not None else 2
    ratios = [2.2, 1.0, 0.45][:rows]
    fig, axes = plt.subplots(rows, 1, figsize=(11, 6.5 if rows == 3 else 5.5), sharex=True,
                             gridspec_kw={"height_ratios": ratios})  # fmt: skip
    top, middle = axes[0], axes[1]
    top.plot(s, optics["beta_x"], lw=0.9, color="tab:blue", label="βx")
    top.plot(s, optics["beta_y"], lw=0.9, color="tab:red", label="βy")
    middle.plot(s, np.asarray(optics["eta_x"]) * 1e3, lw=0.9, color="tab:green", label="ηx")
    if bpms is not None:
        kw = {"ls": "none", "marker": "o", "ms": 2.5, "mfc": "none", "mew": 0.6}
        top.plot(bpms["s"], bpms["beta_x"], color="tab:blue", label="βx at BPMs", **kw)
        top.plot(bpms["s"], bpms["beta_y"], color="tab:red", label="βy at BPMs", **kw)
        middle.plot(bpms["s"], np.asarray(bpms["eta_x"]) * 1e3, color="tab:green",
                    label="ηx at BPMs", **kw)  # fmt: skip
    top.set_ylabel("β (m)")
    top.legend(fontsize=8, loc="upper right", ncol=2)
    middle.set_ylabel("ηx (mm)")
    middle.legend(fontsize=8, loc="upper right")
    if elements is not None:
        _draw_synoptic(axes[2], elements)
    axes[-1].set_xlabel("s (m)")
    axes[-1].set_xlim(float(s.min()), float(s.max()))
    for ax in axes[:2]:
        ax.grid(alpha=0.3)
    if "tunes" in optics:
        qx, qy = (float(q) for q in optics["tunes"])
        title = f"{title}   (Qx, Qy) = ({qx:.4f}, {qy:.4f})"
    top.set_title(title)
    return _save(fig, path)


def _draw_synoptic(ax, elements: Mapping[str, Any]) -> None:
    from matplotlib.patches import Patch, Rectangle

    ax.axhline(0.0, color="k", lw=0.5)
    seen = set()
    for s0, length, kind, k1 in zip(elements["s"], elements["length"], elements["class"],
                                    elements["k1"], strict=True):  # fmt: skip
        if kind == "Monitor":
            ax.plot([s0, s0], [-0.15, 0.15], color="0.4", lw=0.5)
            seen.add("Monitor")
            continue
        if kind not in _SYNOPTIC:
            continue
        colour, height = _SYNOPTIC[kind]
        width = max(float(length), 0.05)  # thin elements stay visible
        if kind == "Quadrupole":
            bottom = 0.0 if k1 >= 0 else -height
        else:
            bottom = -height / 2
        ax.add_patch(Rectangle((s0, bottom), width, height, color=colour, lw=0))
        seen.add(kind)
    handles = [Patch(color=_SYNOPTIC[k][0], label=k.lower()) for k in _SYNOPTIC if k in seen]
    if "Monitor" in seen:
        handles.append(Patch(color="0.4", label="BPM"))
    ax.legend(handles=handles, fontsize=7, loc="upper right", ncol=len(handles),
              framealpha=0.8)  # fmt: skip
    ax.set_ylim(-1.0, 1.3)
    ax.set_yticks([])
    ax.set_ylabel("magnets\n(QF up, QD down)", fontsize=8)


# ----------------------------------------------------------------------------- correction


def plot_beta_beat_along_ring(results: Mapping[str, Any], path: str | Path) -> Path:
    """Beta-beat x and y at the BPMs of one machine, before and after correction."""
    example = results["example"]
    s = np.asarray(example["s_m"])
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for ax, plane in zip(axes, ("x", "y"), strict=True):
        curves = example[f"beta_beat_{plane}"]
        for name in ("before", "pinv", "evidence", "bayes"):
            colour, label = _ESTIMATOR_STYLE[name]
            values = np.asarray(curves[name]) * 100
            rms = np.sqrt(np.mean(values**2))
            ax.plot(
                s,
                values,
                lw=1.0 if name == "before" else 0.9,
                color=colour,
                ls="--" if name == "evidence" else "-",
                label=f"{label}: rms {rms:.2f} %",
            )
        ax.set_ylabel(f"Δβ{plane}/β{plane} (%)")
        ax.axhline(0.0, color="black", lw=0.4)
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    axes[1].set_xlabel("s (m)")
    sigma = results["config"]["error_sigma"]
    axes[0].set_title(
        f"Machine {example['seed']}: relative gradient errors σ = {sigma:g}, corrected by "
        f"each estimator (optics recomputed)"
    )
    return _save(fig, path)


def plot_estimator_comparison(results: Mapping[str, Any], path: str | Path) -> Path:
    """Box plots over machines of every metric, for the uncorrected machine and each
    estimator (Tikhonov and TSVD at their best-in-hindsight settings)."""
    rows = results["per_estimator"]
    names = [n for n in _ESTIMATOR_STYLE if n in rows]
    metrics = results["metrics"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for j, (ax, metric) in enumerate(zip(axes.ravel(), metrics, strict=True)):
        label, scale = _METRIC_LABELS[metric]
        data = [np.asarray(rows[n])[:, j] * scale for n in names]
        if metric == "rms_error_relative":  # no error is estimated before correction
            data[0] = np.asarray(rows["before"])[:, j] * scale
        box = ax.boxplot(data, patch_artist=True, widths=0.6)
        for patch, name in zip(box["boxes"], names, strict=True):
            patch.set_facecolor(_ESTIMATOR_STYLE[name][0])
            patch.set_alpha(0.6)
        ax.set_yscale("log")
        ax.set_xticks(range(1, len(names) + 1), [n.replace("_", "\n") for n in names], fontsize=7)
        ax.set_ylabel(label)
    n_seeds = len(results["machines"])
    fig.suptitle(f"After correction, {n_seeds} machines ('before' error: the planted errors)")
    return _save(fig, path)


def _mark(ax, quartiles: Mapping[str, float], colour: str, label: str) -> None:
    ax.axvspan(quartiles["q25"], quartiles["q75"], color=colour, alpha=0.15)
    ax.axvline(quartiles["median"], color=colour, ls="--", lw=1.2, label=label)


def plot_regularisation_curves(results: Mapping[str, Any], path: str | Path) -> Path:
    """Tikhonov over alpha and truncated SVD over the cut-off: median residual beat and
    estimation error over machines (bands: quartiles), with the Bayesian and evidence
    choices marked (their quartiles over machines shaded)."""
    summary = results["summary"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex="col")
    panels = (
        ("tikhonov", "alphas", "α on the noise-whitened system (1/(ΔK/K)²)"),
        ("tsvd", "cuts", "singular values kept"),
    )
    for column, (curve_name, axis_name, xlabel) in enumerate(panels):
        curve = results[curve_name]
        x = np.asarray(curve[axis_name], dtype=float)
        for row, metric in enumerate(("rms_beta_beat_x", "rms_error_relative")):
            ax = axes[row, column]
            label, scale = _METRIC_LABELS[metric]
            median = np.asarray(curve["median"][metric]) * scale
            ax.fill_between(
                x,
                np.asarray(curve["q25"][metric]) * scale,
                np.asarray(curve["q75"][metric]) * scale,
                color="tab:purple",
                alpha=0.2,
            )
            ax.plot(x, median, "o-", color="tab:purple", ms=3, label=f"{curve_name}, median")
            best = curve["best_in_hindsight"]["index"]
            ax.plot(x[best], median[best], "*", color="black", ms=12, label="best in hindsight")
            for name in ("bayes", "evidence", "pinv"):
                colour, text = _ESTIMATOR_STYLE[name]
                ax.axhline(
                    summary[name][metric]["median"] * scale,
                    color=colour,
                    lw=0.9,
                    ls=":",
                    label=f"{text} (median)",
                )
            if curve_name == "tikhonov":
                ax.set_xscale("log")
                _mark(ax, results["bayes_alpha"], "tab:blue", "Bayesian α = 1/σ²")
                _mark(ax, results["evidence_alpha"], "tab:green", "evidence α")
            else:
                _mark(
                    ax,
                    results["bayes_effective_cut"],
                    "tab:blue",
                    "Bayesian: singular values with s² > α",
                )
            ax.set_yscale("log")
            ax.set_ylabel(label)
            if row == 1:
                ax.set_xlabel(xlabel)
            if row == 0:
                ax.legend(fontsize=6, loc="best")
    axes[0, 0].set_title("Tikhonov (ridge) over α")
    axes[0, 1].set_title("Truncated SVD over the cut-off")
    return _save(fig, path)


def plot_beat_calibration(results: Mapping[str, Any], path: str | Path) -> Path:
    """The paper's Fig. 1: rms beta-beat against the rms relative gradient error."""
    calibration = results["calibration"]
    sigma = np.asarray(calibration["trial_sigmas"])
    beats = np.asarray(calibration["rms_beat"]) * 100
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, s in enumerate(sigma):
        ax.plot(np.full(beats.shape[1], s * 1e3), beats[i], ".", color="tab:gray", alpha=0.5)
    ax.plot(
        sigma * 1e3,
        np.asarray(calibration["mean_rms_beat"]) * 100,
        "o",
        color="tab:blue",
        label="mean over error ensembles",
    )
    grid = np.linspace(0, sigma.max(), 50)
    ax.plot(
        grid * 1e3,
        calibration["slope"] * grid * 100,
        color="tab:blue",
        label=f"slope {calibration['slope']:.3g} (through the origin)",
    )
    ax.set_xlabel("rms relative gradient error σ (1e-3)")
    ax.set_ylabel("rms β-beat, x and y (%)")
    ax.set_title("Prior calibration (paper's Fig. 1), nonlinear optics")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_convergence(results: Mapping[str, Any], path: str | Path) -> Path:
    """Median over machines of the corrected machine's beat per Gauss-Newton iteration."""
    metrics = np.asarray([m["metrics"] for m in results["machines"]])  # (seeds, it, E, 6)
    residual = np.asarray([m["residual"] for m in results["machines"]])  # (seeds, it, E)
    iterations = np.arange(metrics.shape[1])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    # The Bayesian and evidence curves nearly coincide: open markers, dashed, for the latter.
    styles = {"bayes": ("o-", "full"), "evidence": ("s--", "none"), "pinv": ("o-", "full")}
    for row, name in enumerate(("bayes", "evidence", "pinv")):
        colour, label = _ESTIMATOR_STYLE[name]
        marker, fill = styles[name]
        beat = np.median(metrics[:, :, row, 0], axis=0) * 100
        left.semilogy(iterations, beat, marker, color=colour, fillstyle=fill, label=label)
        misfit = np.median(residual[:, :, row], axis=0)
        right.semilogy(iterations, misfit, marker, color=colour, fillstyle=fill, label=label)
    right.axhline(1.0, color="black", lw=0.6, ls="--", label="noise level")
    left.set_ylabel("median rms Δβx/βx after correction (%)")
    right.set_ylabel("median rms whitened residual")
    for ax in (left, right):
        ax.set_xticks(iterations)
        ax.set_xlabel("Gauss-Newton iteration (Jacobian re-linearised)")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_correction_study(results: Mapping[str, Any], out: str | Path) -> list[Path]:
    """Every plot of the correction study into folder ``out``."""
    out = Path(out)
    return [
        plot_beta_beat_along_ring(results, out / "beta_beat_along_ring.png"),
        plot_estimator_comparison(results, out / "estimator_comparison.png"),
        plot_regularisation_curves(results, out / "regularisation_curves.png"),
        plot_beat_calibration(results, out / "beat_calibration.png"),
        plot_convergence(results, out / "convergence.png"),
    ]


# ----------------------------------------------------------------------------- degeneracy


def plot_response_vectors(results: Mapping[str, Any], path: str | Path) -> Path:
    """The two candidates' beta-beat responses at every BPM and at the chosen subset
    (the paper's Fig. 4)."""
    pair, subset = results["pair"], results["subset"]
    a, b = (np.asarray(pair["columns"][k]) for k in ("a", "b"))
    index = np.asarray(subset["indices"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5))
    bpm = np.arange(a.size)
    top.plot(bpm, a, lw=0.9, label=pair["names"][0])
    top.plot(bpm, b, lw=0.9, label=pair["names"][1])
    top.plot(index, a[index], "o", color="tab:blue", mfc="none", ms=8)
    top.plot(
        index, b[index], "s", color="tab:orange", mfc="none", ms=8, label="near-orthogonal subset"
    )
    top.set_xlabel("BPM index")
    top.set_ylabel(f"dΔβ{pair['plane']}/β{pair['plane']} / dK1 (m²)")
    top.set_title(
        f"Responses over all BPMs: correlation {pair['correlation']:.4f} "
        f"(paper {pair['paper_correlation']})"
    )
    top.legend(fontsize=8)
    x = np.arange(index.size)
    bottom.bar(x - 0.2, a[index] - a[index].mean(), 0.4, label=pair["names"][0])
    bottom.bar(x + 0.2, b[index] - b[index].mean(), 0.4, label=pair["names"][1])
    bottom.set_xticks(x, [str(i) for i in index])
    bottom.set_xlabel("BPM index (0-based)")
    bottom.set_ylabel("response minus its mean (m²)")
    bottom.axhline(0.0, color="black", lw=0.5)
    bottom.set_title(f"At the {index.size} chosen BPMs: correlation {subset['correlation']:.2g}")
    bottom.legend(fontsize=8)
    return _save(fig, path)


def plot_correlation_histograms(results: Mapping[str, Any], path: str | Path) -> Path:
    """Correlations of every measured pattern with each candidate's response, at the
    subset and at all BPMs, for either true source (the paper's Figs. 5-6)."""
    names = results["pair"]["names"]
    classification = results["classification"]
    fig, axes = plt.subplots(
        len(classification), 2, figsize=(11, 3.6 * len(classification)), squeeze=False
    )
    bins = np.linspace(-1, 1, 81)
    for row, (label, entry) in enumerate(classification.items()):
        source = names["ab".index(label)]
        for column, part in enumerate(("subset", "all_bpms")):
            ax = axes[row, column]
            for candidate, colour in (("a", "tab:blue"), ("b", "tab:orange")):
                values = np.asarray(entry[part][f"correlation_{candidate}"])
                ax.hist(
                    values,
                    bins=bins,
                    color=colour,
                    alpha=0.6,
                    label=f"with {names['ab'.index(candidate)]}",
                )
            accuracy = entry[f"{part}_accuracy"]
            where = "the chosen BPMs" if part == "subset" else "all BPMs"
            ax.set_title(
                f"source {source}, at {where}: single-measurement accuracy {accuracy:.0%}",
                fontsize=9,
            )
            ax.set_xlabel("correlation coefficient")
            ax.legend(fontsize=8)
    n = len(next(iter(classification.values()))["subset"]["correlation_a"])
    fig.suptitle(
        f"{n} simulated measurements (noise {results['config']['measurement_noise']:g} per BPM)"
    )
    return _save(fig, path)


def plot_fitted_errors(results: Mapping[str, Any], path: str | Path) -> Path:
    """The all-quadrupole regularised fit of a single fault (the paper's Fig. 3) and how
    its attribution depends on the data's noise."""
    fit, pair, scan = results["single_fault_fit"], results["pair"], results["fit_noise_scan"]
    fitted = np.asarray(fit["fitted_delta_k1"])
    numbers = np.arange(fitted.size)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7))
    top.vlines(numbers, 0, fitted, lw=1.0, color="tab:gray")
    ia, ib = pair["quadrupole_numbers"]
    top.plot([ia], [fitted[ia]], "o", color="tab:blue", label=f"{pair['names'][0]} (#{ia})")
    top.plot([ib], [fitted[ib]], "s", color="tab:orange", label=f"{pair['names'][1]} (#{ib})")
    top.plot([ia], [fit["delta_k1"]], "*", color="black", ms=12, label="true fault")
    top.set_xlabel("quadrupole number")
    top.set_ylabel("fitted ΔK1 (m⁻²)")
    top.set_title(
        f"Fit over all quadrupoles, data noise {fit['fit_noise']:g}: largest error "
        f"on {fit['largest']['name']}"
    )
    top.legend(fontsize=8)
    noise = np.asarray(scan["noise"])
    for key, label, colour in (
        ("fraction_a", pair["names"][0], "tab:blue"),
        ("fraction_b", pair["names"][1], "tab:orange"),
        ("fraction_other", "another quadrupole", "tab:gray"),
    ):
        bottom.semilogx(noise, scan[key], "o-", color=colour, label=label)
    bottom.set_xlabel("noise of the averaged beat per BPM")
    bottom.set_ylabel("fraction of fits with the largest error on")
    bottom.set_ylim(-0.05, 1.05)
    bottom.legend(fontsize=8)
    return _save(fig, path)


def plot_degeneracy_study(results: Mapping[str, Any], out: str | Path) -> list[Path]:
    """Every plot of the degeneracy study into folder ``out``."""
    out = Path(out)
    return [
        plot_response_vectors(results, out / "response_vectors.png"),
        plot_correlation_histograms(results, out / "correlation_histograms.png"),
        plot_fitted_errors(results, out / "fitted_errors.png"),
    ]
