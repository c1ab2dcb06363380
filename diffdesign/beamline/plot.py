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
from diffdesign.beamline.optics import Optics
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
    _draw_layout(axes[2], segment)
    axes[0].set_title(title or f"Beam envelope along {segment.name or 'the segment'}")
    return _save(fig, path)


def plot_optics(segment: Segment, optics: Optics, path: str | Path, title: str = "") -> Path:
    """Write beta functions, dispersion and the element layout along the segment, from
    :func:`~diffdesign.beamline.optics.optics_along` or ``periodic_optics`` of that segment
    (one unbatched result; a split segment samples inside elements)."""
    values = {name: np.asarray(value) for name, value in optics._asdict().items()}
    if values["beta_x"].shape != (len(segment) + 1,):
        raise ValueError(
            f"optics must hold len(segment) + 1 = {len(segment) + 1} points (the entrance and "
            f"each element's exit) of one result; got beta_x of shape {values['beta_x'].shape}"
        )
    s = values["s"] - values["s"][0]
    fig, axes = plt.subplots(3, 1, figsize=(8, 6.5), sharex=True, height_ratios=[3, 2, 1])
    axes[0].plot(s, values["beta_x"], color="tab:blue", label="β_x (mode a)")
    axes[0].plot(s, values["beta_y"], color="tab:orange", label="β_y (mode b)")
    axes[0].set_ylabel("β (m)")
    axes[1].plot(s, values["eta_x"], color="tab:blue", label="η_x")
    axes[1].plot(s, values["eta_y"], color="tab:orange", label="η_y")
    axes[1].axhline(0.0, color="grey", lw=0.5)
    axes[1].set_ylabel("η (m, per unit p = δE/p₀c)")
    for ax in axes[:2]:
        ax.legend(loc="upper left", fontsize=8)
    advance = values["mu_x"][-1] - values["mu_x"][0], values["mu_y"][-1] - values["mu_y"][0]
    _draw_layout(axes[2], segment)
    axes[0].set_title(
        title
        or f"Optics along {segment.name or 'the segment'} (phase advance "
        f"{advance[0] / (2 * np.pi):.4f} / {advance[1] / (2 * np.pi):.4f} × 2π)"
    )
    return _save(fig, path)


def _draw_layout(ax, segment: Segment) -> None:
    """Magnets, correctors and screens as coloured boxes along s (m), named."""
    position = 0.0
    for element in segment.elements:
        length = float(np.max(np.asarray(element.length)))
        colour = _COLOURS.get(type(element))
        if colour is not None:
            width = max(length, 0.01)
            ax.add_patch(plt.Rectangle((position, 0.1), width, 0.8, color=colour))
            if element.name:
                ax.text(position + width / 2, 1.0, element.name, rotation=90, fontsize=6,
                        ha="center", va="bottom")  # fmt: skip
        position += length
    ax.set_ylim(0, 3)
    ax.set_yticks([])
    ax.set_xlabel("s (m)")


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
