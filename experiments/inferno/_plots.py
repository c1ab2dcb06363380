"""Plots of the INFERNO benchmark study: Table 2 side by side, profiles, training curves."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

_LABELS = {
    "classifier": "NN classifier (10 bins)",
    "inferno": "INFERNO (matching benchmark)",
    "optimal_classifier": "optimal classifier",
    "analytic": "analytical likelihood",
}


def plot_table(results: Mapping, path: str | Path) -> Path:
    """Expected uncertainty on s per benchmark: ours (median, 16-84 % band) and the paper's."""
    rows = results["rows"]
    benchmarks = np.arange(5)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ours = {
        "classifier": [q for q in rows["classifier"]],
        "inferno": [results["matching_inferno"].get(str(i)) for i in benchmarks],
    }
    for k, (name, colour) in enumerate((("classifier", "C0"), ("inferno", "C3"))):
        x = benchmarks + (k - 0.5) * 0.12
        entries = ours[name]
        shown = [i for i, q in enumerate(entries) if q is not None]
        median = np.array([entries[i]["median"] for i in shown])
        low = median - np.array([entries[i]["q16"] for i in shown])
        high = np.array([entries[i]["q84"] for i in shown]) - median
        ax.errorbar(
            x[shown],
            median,
            yerr=[low, high],
            fmt="o",
            color=colour,
            capsize=3,
            label=f"{_LABELS[name]}, ours",
        )
        ax.plot(
            x + 0.06,
            results["paper_table_2"][name],
            "x",
            color=colour,
            ms=8,
            label=f"{_LABELS[name]}, paper",
        )
    for name, colour in (("optimal_classifier", "C2"), ("analytic", "k")):
        ax.plot(
            benchmarks, rows[name], "s", mfc="none", color=colour, label=f"{_LABELS[name]}, ours"
        )
        ax.plot(
            benchmarks + 0.06,
            results["paper_table_2"][name],
            "+",
            color=colour,
            ms=8,
            label=f"{_LABELS[name]}, paper",
        )
    ax.set(
        xlabel="benchmark",
        ylabel="expected uncertainty on s (events)",
        xticks=benchmarks,
        title="INFERNO synthetic benchmarks (paper Table 2)",
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_profiles(
    poi_values: np.ndarray, curves: Mapping[str, np.ndarray], path: str | Path
) -> Path:
    """Profiled Delta NLL of s on benchmark 2, one thin line per model."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for (name, curve), colour in zip(curves.items(), ("C0", "C3"), strict=False):
        for k, row in enumerate(curve):
            ax.plot(
                poi_values,
                row,
                color=colour,
                lw=0.8,
                alpha=0.7,
                label=name.replace("_2", " (benchmark 2)") if k == 0 else None,
            )
    ax.axhline(0.5, color="0.4", ls="--", lw=0.8)
    ax.set(
        xlabel="s",
        ylabel="profiled Δ NLL (Asimov)",
        ylim=(0, 4),
        title="profile likelihood of s, benchmark 2 (r, λ free)",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_history(histories: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Training loss per chunk: median and 16-84 % band over the initialisations."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, history in histories.items():
        ax = axes[0] if name == "classifier" else axes[1]
        values = np.sqrt(history) if name != "classifier" else history
        q16, q50, q84 = np.nanquantile(values, [0.16, 0.5, 0.84], axis=1)
        chunks = np.arange(1, len(q50) + 1)
        # markers too: a short (smoke) run has a single chunk, which a line alone hides
        line = ax.plot(chunks, q50, "o-", ms=3, label=f"{name} (median)")[0]
        ax.fill_between(chunks, q16, q84, alpha=0.25, color=line.get_color(),
                        label="16-84 % of the initialisations" if name == "classifier" else None)
        if len(chunks) == 1:
            ax.errorbar(chunks, q50, yerr=[q50 - q16, q84 - q50], color=line.get_color(),
                        capsize=3)  # fmt: skip
    axes[0].set(xlabel="chunk of steps", ylabel="cross-entropy (nats)", title="classifier")
    axes[1].set(
        xlabel="chunk of steps",
        ylabel="sqrt(INFERNO loss) (soft, events)",
        title="INFERNO",
        yscale="log",
    )
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
