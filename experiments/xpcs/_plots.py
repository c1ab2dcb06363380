"""Figures of an XPCS fit: data, model and residual maps per angle; posterior traces and pairs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffdesign.xpcs.data import XpcsData
from diffdesign.xpcs.likelihood import Problem, model_matrices

#: At most this many angles are drawn (evenly spaced through the data's angles).
MAX_ANGLES = 6


def plot_fit(data: XpcsData, problem: Problem, theta, path: str | Path) -> Path:
    """Data, fitted model and whitened residual two-time maps, one row per angle."""
    model = np.asarray(model_matrices(jnp.asarray(theta), problem))
    c2 = np.asarray(data.c2)
    sigma = np.broadcast_to(np.asarray(data.sigma), c2.shape)
    rows = np.unique(
        np.linspace(0, data.n_phi - 1, min(data.n_phi, MAX_ANGLES)).round().astype(int)
    )
    t = np.asarray(data.t)
    extent = (t[0], t[-1], t[0], t[-1])
    fig, axes = plt.subplots(len(rows), 3, figsize=(11, 3.3 * len(rows)), squeeze=False)
    for row, k in enumerate(rows):
        low, high = np.percentile(c2[k], [1, 99])
        for col, (image, title, cmap, limits) in enumerate(
            (
                (c2[k], "data c2", "viridis", (low, high)),
                (model[k], "fit g2", "viridis", (low, high)),
                ((c2[k] - model[k]) / sigma[k], "residual / sigma", "RdBu_r", (-4, 4)),
            )
        ):
            ax = axes[row, col]
            shown = ax.imshow(image, origin="lower", extent=extent, cmap=cmap,
                              vmin=limits[0], vmax=limits[1])  # fmt: skip
            ax.set_title(f"phi = {float(data.phi[k]):.1f} deg: {title}", fontsize=9)
            ax.set_xlabel("t2 (s)")
            ax.set_ylabel("t1 (s)")
            fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_traces(draws: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Trace (per chain) and histogram of each parameter; ``draws[name]`` is (chain, draw)."""
    names = list(draws)
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 1.8 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        values = np.asarray(draws[name])
        for chain in values:
            axes[row, 0].plot(chain, lw=0.5)
            axes[row, 1].hist(chain, bins=40, histtype="step", density=True)
        axes[row, 0].set_ylabel(name, fontsize=8)
    axes[-1, 0].set_xlabel("draw")
    axes[-1, 1].set_xlabel("value")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_pairs(
    draws: Mapping[str, np.ndarray],
    path: str | Path,
    truth: Mapping[str, float] | None = None,
    estimate: Mapping[str, float] | None = None,
) -> Path:
    """Pairwise scatter of the posterior draws, marginal histograms on the diagonal.

    ``truth`` (e.g. of a synthetic dataset) and ``estimate`` (the least-squares fit) are
    marked where given.
    """
    names = list(draws)
    flat = {n: np.asarray(draws[n]).ravel() for n in names}
    n = len(names)
    fig, axes = plt.subplots(n, n, figsize=(2.0 * n + 1, 2.0 * n + 1), squeeze=False)
    for i, yname in enumerate(names):
        for j, xname in enumerate(names):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                ax.hist(flat[xname], bins=40, color="0.4")
            else:
                ax.plot(flat[xname], flat[yname], ",", alpha=0.3, color="C0")
            for marks, style in ((truth, "C3"), (estimate, "C2")):
                if marks and xname in marks:
                    ax.axvline(marks[xname], color=style, lw=0.8)
                if marks and i != j and yname in marks:
                    ax.axhline(marks[yname], color=style, lw=0.8)
            if i == n - 1:
                ax.set_xlabel(xname, fontsize=8)
            if j == 0 and i > 0:
                ax.set_ylabel(yname, fontsize=8)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
