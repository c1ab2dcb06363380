"""Plots of a sweep: outcome against an axis (median and 16-84 % band over the other
axes), a heatmap over two axes, and the Pareto front of two outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from diffdesign.sweep.axes import Values

if TYPE_CHECKING:
    from diffdesign.sweep.runner import SweepResult

#: Outcomes drawn in the line and heatmap plots (the first scalars of the table).
MAX_PLOTTED = 6


#: Axes that only repeat a point (their spread is drawn as a band, never as an x-axis).
REPLICATES = ("seed",)


def _numeric_axes(result: SweepResult) -> list[tuple[int, str, np.ndarray]]:
    """(axis, key, values) of the single-key axes with >= 2 numeric values (not seeds)."""
    found = []
    for axis, block in enumerate(result.blocks):
        if isinstance(block, Values) and len(block.keys) == 1 and block.keys[0] not in REPLICATES:
            values = np.asarray(block.table()[block.keys[0]])
            if values.dtype.kind in "if" and values.size >= 2:
                found.append((axis, block.keys[0], values.astype(float)))
    return found


def _log_scale(values: np.ndarray) -> bool:
    return bool(np.all(values > 0) and values.max() / values.min() >= 50)


def _scalar_outcomes(result: SweepResult) -> list[str]:
    names = [k for k, v in result.outcomes.items() if v.ndim == 1 and np.isfinite(v).any()]
    return names[:MAX_PLOTTED]


def pareto_front(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Indices of the points not dominated when minimising both ``a`` and ``b``, sorted
    by ``a``."""
    finite = np.flatnonzero(np.isfinite(a) & np.isfinite(b))
    order = finite[np.lexsort((b[finite], a[finite]))]
    front, best = [], np.inf
    for i in order:
        if b[i] < best:
            front.append(i)
            best = b[i]
    return np.asarray(front, dtype=int)


def plot_sweep(result: SweepResult, pareto: Sequence[str] = ()) -> list[Path]:
    """Write ``lines.png``, ``heatmap.png`` (two or more numeric axes) and ``pareto.png``
    (when two outcomes are named) into the sweep's folder; returns the paths."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    paths = []
    axes_info = _numeric_axes(result)
    names = _scalar_outcomes(result)
    if axes_info and names:
        axis, key, x = axes_info[0]
        fig, panels = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
        for ax, name in zip(panels[0], names, strict=True):
            grid = np.moveaxis(result.outcomes[name].reshape(result.shape), axis, 0)
            flat = grid.reshape(len(x), -1)
            median = np.nanmedian(flat, axis=1)
            ax.plot(x, median, "o-", label="median" if flat.shape[1] > 1 else name)
            if flat.shape[1] > 1:
                low, high = np.nanpercentile(flat, [16, 84], axis=1)
                ax.fill_between(x, low, high, alpha=0.3,
                                label=f"16-84 % over {flat.shape[1]} points")  # fmt: skip
            ax.set_xlabel(_label(result, key))
            ax.set_ylabel(name)
            if _log_scale(x):
                ax.set_xscale("log")
            finite = median[np.isfinite(median)]
            if finite.size > 1 and _log_scale(finite):
                ax.set_yscale("log")
            ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(_save(fig, result.out / "lines.png"))
    if len(axes_info) >= 2 and names:
        (ax0, k0, x0), (ax1, k1, x1) = axes_info[:2]
        name = names[0]
        grid = np.moveaxis(result.outcomes[name].reshape(result.shape), (ax0, ax1), (0, 1))
        mean = np.nanmean(grid.reshape(len(x0), len(x1), -1), axis=2)
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        mesh = ax.pcolormesh(x1, x0, mean, shading="nearest")
        fig.colorbar(mesh, ax=ax, label=f"{name} (mean over the other axes)")
        ax.set_xlabel(_label(result, k1))
        ax.set_ylabel(_label(result, k0))
        for scale, values in (("x", x1), ("y", x0)):
            if _log_scale(values):
                getattr(ax, f"set_{scale}scale")("log")
        fig.tight_layout()
        paths.append(_save(fig, result.out / "heatmap.png"))
    if pareto:
        first, second = pareto
        a, b = (_pareto_values(result, name) for name in (first, second))
        front = pareto_front(a, b)
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        ax.plot(a, b, ".", alpha=0.4, label=f"{result.n} points")
        ax.plot(a[front], b[front], "o-", color="C3", label="Pareto front")
        ax.set_xlabel(_label(result, first))
        ax.set_ylabel(_label(result, second))
        ax.legend()
        fig.tight_layout()
        paths.append(_save(fig, result.out / "pareto.png"))
    return paths


def _pareto_values(result: SweepResult, name: str) -> np.ndarray:
    if name in result.outcomes and result.outcomes[name].ndim == 1:
        return result.outcomes[name]
    if name in result.columns:
        return np.asarray(result.columns[name], dtype=float)
    raise ValueError(
        f"pareto names {name!r}, which is neither a scalar outcome nor a swept key; "
        f"outcomes: {sorted(result.outcomes)}"
    )


def _label(result: SweepResult, key: str) -> str:
    unit = result.units.get(key, "")
    return f"{key} ({unit})" if unit else key


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
