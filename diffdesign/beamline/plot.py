"""Plots of beamlines and beams (matplotlib, written to files)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from diffdesign.beamline.beams import Beam
from diffdesign.beamline.elements import (
    Dipole,
    HorizontalCorrector,
    Quadrupole,
    Screen,
    VerticalCorrector,
)
from diffdesign.beamline.segment import Segment

_COLOURS = {
    Quadrupole: "tab:red",
    Dipole: "tab:green",
    HorizontalCorrector: "tab:blue",
    VerticalCorrector: "tab:cyan",
    Screen: "tab:olive",
}


def envelope(segment: Segment, incoming: Beam, resolution: float = 0.01) -> dict[str, np.ndarray]:
    """Centroid and rms size along ``segment``, sampled at least every ``resolution`` m.

    Returns arrays ``s, mu_x, sigma_x, mu_y, sigma_y`` in m (one unbatched beam).
    """
    beams = segment.split(resolution).track_along(incoming)
    names = ("s", "mu_x", "sigma_x", "mu_y", "sigma_y")
    return {n: np.array([np.asarray(getattr(b, n)) for b in beams]) for n in names}


def plot_envelope(
    segment: Segment, incoming: Beam, path: str | Path, resolution: float = 0.01, title: str = ""
) -> Path:
    """Write a two-panel plot (x and y) of centroid +- rms size along the segment."""
    data = envelope(segment, incoming, resolution)
    s = data["s"] - data["s"][0]
    fig, axes = plt.subplots(3, 1, figsize=(8, 6.5), sharex=True, height_ratios=[3, 3, 1])
    for ax, plane, colour in ((axes[0], "x", "tab:blue"), (axes[1], "y", "tab:orange")):
        mu, sigma = data[f"mu_{plane}"] * 1e3, data[f"sigma_{plane}"] * 1e3
        ax.fill_between(s, mu - sigma, mu + sigma, color=colour, alpha=0.3, label="centroid ± σ")
        ax.plot(s, mu, color=colour, label="centroid")
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set_ylabel(f"{plane} (mm)")
        ax.legend(loc="upper left", fontsize=8)
    position = 0.0
    for element in segment.elements:
        length = float(np.max(np.asarray(element.length)))
        colour = _COLOURS.get(type(element))
        if colour is not None:
            width = max(length, 0.01)
            axes[2].add_patch(plt.Rectangle((position, 0.1), width, 0.8, color=colour))
            if element.name:
                axes[2].text(position + width / 2, 1.0, element.name, rotation=90, fontsize=6,
                             ha="center", va="bottom")  # fmt: skip
        position += length
    axes[2].set_ylim(0, 3)
    axes[2].set_yticks([])
    axes[2].set_xlabel("s (m)")
    axes[0].set_title(title or f"Beam envelope along {segment.name or 'the segment'}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
