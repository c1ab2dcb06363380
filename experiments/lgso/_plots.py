"""Plots of the L-GSO benchmark study: the objective against simulator calls per method."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

_COLOURS = {"lgso": "C3", "numerical": "C0", "cma_es": "C2", "bayesopt": "C1"}


def plot_problem(
    name: str,
    runs: list[dict],
    target: float,
    optimum: float,
    path: str | Path,
    labels: Mapping[str, str],
) -> Path:
    """True objective at each method's current parameters against simulator calls.

    ``labels`` names each method in the legend (the study's ``METHOD_NAMES``)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    shown = set()
    for run in runs:
        colour, label = _COLOURS[run["method"]], labels[run["method"]]
        ax.plot(
            run["calls"],
            run["true_objective"],
            color=colour,
            lw=1.2,
            alpha=0.8,
            label=label if run["method"] not in shown else None,
        )
        shown.add(run["method"])
    ax.axhline(target, color="0.3", ls="--", lw=0.8, label=f"target {target:g}")
    ax.set(
        xscale="log",
        xlabel="simulator calls",
        ylabel="objective E[R(y)]",
        title=name.replace("_", " "),
    )
    if optimum == 0:  # Rosenbrock problems: the approach to 0 on a log scale
        ax.set_yscale("log")
        ax.set_ylabel("objective E[R(y)] (optimum 0)")
    else:
        ax.axhline(optimum, color="0.6", ls=":", lw=0.8, label=f"optimum {optimum:g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
