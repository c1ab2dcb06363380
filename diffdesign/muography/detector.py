"""Detector panels above and below the volume, and a differentiable model of their hits.

A panel is a horizontal plane at height ``z`` with a rectangular sensitive area (centre
``xy``, full widths ``span``), a Gaussian position resolution ``sigma`` and an efficiency.
A muon crossing the plane at ``r`` records ``r + sigma * eps`` (``eps`` standard normal: the
reparameterisation keeps the hit differentiable in ``sigma``), with weight

    a = efficiency * prod_{x, y} S((r - lo) / w) S((hi - r) / w),   S the logistic function,

the probability that the hit is recorded: ``efficiency`` inside, falling smoothly to 0 across
the edges (width ``w``, default 1 cm), so moving or resizing a panel has a gradient. Every
field of :class:`Panels` is a learnable design parameter.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from diffdesign.muography.volume import Volume

#: Width (m) of the logistic fall of a panel's acceptance across its edges.
EDGE_WIDTH = 0.01


class Panels(eqx.Module):
    """A stack of panels (arrays with one entry per panel).

    Attributes:
        xy: (n, 2) centre of the sensitive area (m).
        z: (n,) height (m).
        span: (n, 2) full widths of the sensitive area in x and y (m).
        sigma: (n,) position resolution (m, Gaussian sd per coordinate).
        efficiency: (n,) probability of recording a muon inside the area, (0, 1].
    """

    xy: Float[Array, "n 2"]
    z: Float[Array, " n"]
    span: Float[Array, "n 2"]
    sigma: Float[Array, " n"]
    efficiency: Float[Array, " n"]


class Detector(eqx.Module):
    """Panels above (incoming tracks) and below (outgoing tracks) the passive volume."""

    above: Panels
    below: Panels


def make_panels(z, xy=(0.5, 0.5), span=(1.0, 1.0), sigma=1e-4, efficiency=0.9) -> Panels:
    """Panels at heights ``z`` (m); the other fields broadcast to one entry per panel."""
    z = np.atleast_1d(np.asarray(z, dtype=float))
    n = z.shape[0]
    as_rows = lambda v: np.broadcast_to(np.asarray(v, dtype=float), (n, 2)).copy()
    as_list = lambda v: np.broadcast_to(np.asarray(v, dtype=float), (n,)).copy()
    return Panels(
        jnp.asarray(as_rows(xy)), jnp.asarray(z), jnp.asarray(as_rows(span)),
        jnp.asarray(as_list(sigma)), jnp.asarray(as_list(efficiency)),
    )  # fmt: skip


def default_detector(
    volume: Volume, n_per_side: int = 4, gap: float = 0.05, spacing: float = 0.05, **fields
) -> Detector:
    """``n_per_side`` panels above and below, ``gap`` (m) from the grid and ``spacing`` apart,
    covering the grid's footprint unless ``xy``/``span`` are given (TomOpt's 4 + 4 layout)."""
    (x_lo, y_lo, z_lo), (x_hi, y_hi, z_hi) = volume.lower, volume.upper
    fields.setdefault("xy", (0.5 * (x_lo + x_hi), 0.5 * (y_lo + y_hi)))
    fields.setdefault("span", (x_hi - x_lo, y_hi - y_lo))
    offsets = gap + spacing * np.arange(n_per_side)
    return Detector(
        above=make_panels(z_hi + offsets[::-1], **fields),
        below=make_panels(z_lo - offsets, **fields),
    )


def check_detector(detector: Detector, volume: Volume) -> None:
    """Raise ``ValueError`` naming the panel and field for a configuration that cannot work:
    non-finite values, panels inside or on the wrong side of the volume, fewer than two
    panels per side, non-positive span or resolution, efficiency outside (0, 1]."""
    z_lo, z_hi = volume.z_range
    for side, panels in (("above", detector.above), ("below", detector.below)):
        z = np.asarray(panels.z)
        if z.ndim != 1 or z.shape[0] < 2:
            raise ValueError(f"detector.{side} needs at least 2 panels (a track); got {z.shape}")
        n = z.shape[0]
        shapes = {"xy": (n, 2), "span": (n, 2), "sigma": (n,), "efficiency": (n,)}
        for name, shape in shapes.items():
            value = np.asarray(getattr(panels, name))
            if value.shape != shape:
                raise ValueError(
                    f"detector.{side}.{name} must have shape {shape}; got {value.shape}"
                )
        for name in ("xy", "z", "span", "sigma", "efficiency"):
            value = np.asarray(getattr(panels, name))
            if not np.all(np.isfinite(value)):
                raise ValueError(f"detector.{side}.{name} must be finite; got {value}")
        bad = (z <= z_hi) if side == "above" else (z >= z_lo)
        if np.any(bad):
            k = int(np.argmax(bad))
            limit = f"> {z_hi:.6g}" if side == "above" else f"< {z_lo:.6g}"
            raise ValueError(
                f"detector.{side}.z[{k}] = {z[k]:.6g} m overlaps the passive volume "
                f"(z in [{z_lo:.6g}, {z_hi:.6g}] m); panels {side} it need z {limit} m"
            )
        for name in ("span", "sigma"):
            value = np.asarray(getattr(panels, name))
            if np.any(value <= 0):
                raise ValueError(f"detector.{side}.{name} must be > 0 m; got {value.min()}")
        eff = np.asarray(panels.efficiency)
        if np.any((eff <= 0) | (eff > 1)):
            raise ValueError(f"detector.{side}.efficiency must lie in (0, 1]; got {eff}")


def acceptance(panels: Panels, x: Array, y: Array, edge: float = EDGE_WIDTH) -> Array:
    """(n_muons, n_panels) probability that each panel records a muon crossing it at (x, y)
    (x, y: (n_muons, n_panels), m)."""
    inside = jnp.ones_like(x)
    for axis, r in enumerate((x, y)):
        lo = (panels.xy[:, axis] - 0.5 * panels.span[:, axis])[None, :]
        hi = (panels.xy[:, axis] + 0.5 * panels.span[:, axis])[None, :]
        inside = inside * jax.nn.sigmoid((r - lo) / edge) * jax.nn.sigmoid((hi - r) / edge)
    return panels.efficiency[None, :] * inside


class Hits(eqx.Module):
    """Recorded hits of a stack: positions (n_muons, n_panels, 2), weights (n_muons, n_panels)."""

    xy: Float[Array, "n p 2"]
    weight: Float[Array, "n p"]
    z: Float[Array, " p"]
    sigma: Float[Array, " p"]


def record_hits(
    key: PRNGKeyArray | None, panels: Panels, line: Float[Array, "4 n"], z_ref: float,
    edge: float = EDGE_WIDTH, noise: Float[Array, "n p 2"] | None = None,
) -> Hits:  # fmt: skip
    """Hits of the straight lines ``line`` = (x, y, tx, ty) at ``z_ref`` on ``panels``.

    ``noise``: the standard normals of the hits (n_muons, n_panels, 2); drawn from ``key``
    (``jax.random.normal(key, (n_muons, n_panels, 2))``) when None. Given, ``key`` is unused:
    chunked reconstruction draws them once for all muons and passes each chunk its rows.
    """
    x, y, tx, ty = line
    dz = panels.z[None, :] - z_ref
    cx, cy = x[:, None] + tx[:, None] * dz, y[:, None] + ty[:, None] * dz
    eps = jax.random.normal(key, (*cx.shape, 2)) if noise is None else noise
    hits = jnp.stack([cx, cy], -1) + panels.sigma[None, :, None] * eps
    return Hits(hits, acceptance(panels, cx, cy, edge), panels.z, panels.sigma)
