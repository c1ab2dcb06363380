"""Plots of muon-tomography designs: panel layout, X0 maps, depth profiles, training history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.patches import Rectangle

from diffdesign.muography.detector import Detector
from diffdesign.muography.volume import Volume


def plot_layout(detector: Detector, volume: Volume, path: str | Path, title: str = "") -> Path:
    """Side view (x-z) and top view (x-y) of the panels and the passive volume."""
    fig, (side, top) = plt.subplots(1, 2, figsize=(10, 4.5))
    (x_lo, y_lo, z_lo), (x_hi, y_hi, z_hi) = volume.lower, volume.upper
    side.add_patch(Rectangle((x_lo, z_lo), x_hi - x_lo, z_hi - z_lo, color="0.85", label="volume"))
    top.add_patch(Rectangle((x_lo, y_lo), x_hi - x_lo, y_hi - y_lo, color="0.85"))
    for panels, colour, name in ((detector.above, "C0", "above"), (detector.below, "C3", "below")):
        xy, z, span = np.asarray(panels.xy), np.asarray(panels.z), np.asarray(panels.span)
        sigma = np.asarray(panels.sigma)
        # resolutions listed in the legend, top panel first (annotations overlap when panels
        # sit close together)
        order = np.argsort(-z)
        label = f"{name}: σ " + ", ".join(f"{sigma[k] * 1e6:.0f}" for k in order) + " µm"
        for k in range(z.shape[0]):
            lo = xy[k] - 0.5 * span[k]
            side.plot([lo[0], lo[0] + span[k, 0]], [z[k], z[k]], color=colour, lw=2,
                      label=label if k == 0 else None)  # fmt: skip
            top.add_patch(Rectangle(lo, span[k, 0], span[k, 1], fill=False, ec=colour, lw=1))
    side.set(xlabel="x (m)", ylabel="z (m)", title="side view (x-z)")
    top.set(xlabel="x (m)", ylabel="y (m)", title="top view", aspect="equal")
    for ax in (side, top):
        ax.autoscale_view()
    side.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_x0_maps(
    maps: Mapping[str, np.ndarray], volume: Volume, path: str | Path, title: str = ""
) -> Path:
    """One row per map (e.g. truth, PoCA, likelihood), one column per layer (top first)."""
    nz = volume.shape[2]
    values = [np.asarray(m) for m in maps.values()]
    lo = min(float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    fig, axes = plt.subplots(len(maps), nz, figsize=(1.8 * nz + 1, 1.9 * len(maps) + 0.6),
                             squeeze=False)  # fmt: skip
    zc = volume.centres(2)
    extent = (volume.lower[0], volume.upper[0], volume.lower[1], volume.upper[1])
    for row, (name, x0) in enumerate(zip(maps, values, strict=True)):
        for col in range(nz):
            k = nz - 1 - col
            image = axes[row, col].imshow(
                x0[:, :, k].T, origin="lower", extent=extent, norm=LogNorm(lo, hi), cmap="viridis"
            )
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            if row == 0:
                axes[row, col].set_title(f"z = {zc[k]:.2f} m", fontsize=8)
        axes[row, 0].set_ylabel(name, fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.8, label="X0 (m)")
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_depth_profile(
    profiles: Mapping[str, np.ndarray], volume: Volume, path: str | Path, title: str = ""
) -> Path:
    """X0 against depth for one voxel column (profiles: name -> (nz,) X0, m)."""
    fig, ax = plt.subplots(figsize=(5, 4))
    zc = volume.centres(2)
    edges = volume.lower[2] + volume.size * np.arange(volume.shape[2] + 1)
    for name, x0 in profiles.items():
        x0 = np.asarray(x0)
        if name == "truth":  # the true X0 is constant within each layer: a staircase
            ax.stairs(x0, edges, orientation="horizontal", color="k", ls="--", label=name,
                      baseline=None)  # fmt: skip
        else:  # an estimate per voxel, at the layer's centre
            ax.plot(x0, zc, "o-", label=name)
    ax.set_xscale("log")
    ax.set(xlabel="X0 (m)", ylabel="z (m)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_history(history: Sequence[Mapping[str, float]], path: str | Path, title: str = "") -> Path:
    """Loss, its task part and the cost against epoch."""
    epochs = [h["step"] for h in history]  # one design step per epoch
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8))
    a.semilogy(epochs, [h["loss"] for h in history], lw=2.5, alpha=0.6,
               label="loss (task + cost term)")  # fmt: skip
    a.semilogy(epochs, [h["task_loss"] for h in history], "--", color="k", lw=1,
               label="task loss")  # fmt: skip
    a.set(xlabel="epoch", ylabel="loss (dimensionless)", title="loss")
    a.legend()
    b.plot(epochs, [h["cost"] for h in history], color="C2")
    b.set(xlabel="epoch", ylabel="cost (budget units)", title="panel cost")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
