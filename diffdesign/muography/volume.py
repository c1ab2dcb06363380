"""The passive volume: a voxel grid of radiation lengths, and functions that build common ones.

Coordinates (m): x, y horizontal, z up. The grid covers ``[x_lo, x_lo + nx * size] x
[y_lo, y_lo + ny * size] x [z_lo, z_lo + nz * size]``; ``x0[i, j, k]`` is the voxel whose
lower corner is ``(x_lo + i size, y_lo + j size, z_lo + k size)`` (``k = 0`` the bottom layer).
Outside the grid, muons travel through air.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from diffdesign._validation import is_concrete
from diffdesign.muography.materials import MATERIALS, x0_of


class Volume(eqx.Module):
    """A voxelised passive volume.

    Attributes:
        x0: (nx, ny, nz) radiation length per voxel (m); a leading batch axis stacks volumes
            of one geometry (for losses averaged over several).
        size: voxel edge (m).
        lower: (x_lo, y_lo, z_lo) of the grid's lower corner (m).
    """

    x0: Float[Array, "*batch nx ny nz"]
    size: float = eqx.field(static=True)
    lower: tuple[float, float, float] = eqx.field(static=True)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x0.shape[-3:])

    @property
    def upper(self) -> tuple[float, float, float]:
        return tuple(lo + n * self.size for lo, n in zip(self.lower, self.shape, strict=True))

    @property
    def z_range(self) -> tuple[float, float]:
        return self.lower[2], self.upper[2]

    def __check_init__(self) -> None:
        """Refuse a grid that cannot be imaged (X0 checked where its values are known: a
        traced X0 inside a design loop is the caller's)."""
        if not (np.isfinite(self.size) and self.size > 0):
            raise ValueError(f"Volume.size (voxel edge) must be finite and > 0 m; got {self.size}")
        if len(self.lower) != 3 or not np.all(np.isfinite(self.lower)):
            raise ValueError(f"Volume.lower must be three finite coordinates (m); got {self.lower}")
        if np.ndim(self.x0) not in (3, 4):
            shape = np.shape(self.x0)
            raise ValueError(f"Volume.x0 must have shape (nx, ny, nz) or (n, ...); got {shape}")
        if is_concrete(self.x0):
            x0 = np.asarray(self.x0)
            if not (np.all(np.isfinite(x0)) and np.all(x0 > 0)):
                bad = x0[~(np.isfinite(x0) & (x0 > 0))]
                raise ValueError(
                    f"Volume.x0 must be finite and > 0 m in every voxel; got {bad.size} voxels "
                    f"such as {bad.flat[0]}"
                )

    def centres(self, axis: int) -> np.ndarray:
        """Voxel centres along ``axis`` (0 x, 1 y, 2 z), m."""
        return self.lower[axis] + self.size * (np.arange(self.shape[axis]) + 0.5)


def make_volume(
    x0: Float[Array, "nx ny nz"] | np.ndarray, size: float = 0.1, lower=(0.0, 0.0, 0.3)
) -> Volume:
    """A Volume from an X0 array (m), checked: finite, positive, 3-D (or 4-D stacked)."""
    x0 = np.asarray(x0, dtype=float)
    if x0.ndim not in (3, 4):
        raise ValueError(f"x0 must have shape (nx, ny, nz) or (n, nx, ny, nz); got {x0.shape}")
    if not np.all(np.isfinite(x0)) or np.any(x0 <= 0):
        raise ValueError("x0 must be finite and > 0 m in every voxel")
    if not float(size) > 0:
        raise ValueError(f"size must be > 0 m; got {size}")
    if len(lower) != 3 or not np.all(np.isfinite(lower)):
        raise ValueError(f"lower must be three finite coordinates (m); got {lower}")
    return Volume(jnp.asarray(x0), float(size), tuple(float(v) for v in lower))


def stack_volumes(volumes: list[Volume]) -> Volume:
    """Volumes of one geometry stacked along a leading axis of ``x0``."""
    first = volumes[0]
    for v in volumes[1:]:
        if (v.shape, v.size, v.lower) != (first.shape, first.size, first.lower):
            raise ValueError("stacked volumes must share shape, voxel size and lower corner")
    return Volume(jnp.stack([v.x0 for v in volumes]), first.size, first.lower)


def _grid(shape, size, lower) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axes = [lower[a] + size * (np.arange(shape[a]) + 0.5) for a in range(3)]
    return np.meshgrid(*axes, indexing="ij")


def volume_from_function(
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    shape=(10, 10, 6),
    size: float = 0.1,
    lower=(0.0, 0.0, 0.3),
) -> Volume:
    """A Volume with ``x0 = fn(x, y, z)`` evaluated at the voxel centres (m)."""
    x, y, z = _grid(shape, size, lower)
    return make_volume(np.broadcast_to(fn(x, y, z), shape), size, lower)


def uniform_volume(
    fill: str | float = "beryllium", shape=(10, 10, 6), size: float = 0.1, lower=(0.0, 0.0, 0.3)
) -> Volume:
    """Every voxel the same material."""
    return make_volume(np.full(shape, x0_of(fill)), size, lower)


def block_in_matrix(
    block_lower,
    block_upper,
    block: str | float = "lead",
    matrix: str | float = "beryllium",
    shape=(10, 10, 6),
    size: float = 0.1,
    lower=(0.0, 0.0, 0.3),
) -> Volume:
    """A box of ``block`` (voxels whose centres lie inside [block_lower, block_upper], m)."""
    lo, hi = np.asarray(block_lower, float), np.asarray(block_upper, float)
    if lo.shape != (3,) or hi.shape != (3,) or np.any(hi <= lo):
        raise ValueError(f"block_lower < block_upper, each (x, y, z) in m; got {lo}, {hi}")
    x, y, z = _grid(shape, size, lower)
    inside = np.all(
        [(c >= a) & (c <= b) for c, a, b in zip((x, y, z), lo, hi, strict=True)], axis=0
    )
    return make_volume(np.where(inside, x0_of(block), x0_of(matrix)), size, lower)


def fill_level(
    height: float,
    fill: str | float = "water",
    empty: str | float = "air",
    shape=(10, 10, 6),
    size: float = 0.1,
    lower=(0.0, 0.0, 0.3),
) -> Volume:
    """A container filled from its bottom to ``height`` (m above the grid's bottom): voxels
    whose centre lies below it are ``fill``, the rest ``empty``."""
    total = shape[2] * size
    if not 0 <= height <= total:
        raise ValueError(f"height must lie in [0, {total}] m; got {height}")
    z = _grid(shape, size, lower)[2]
    return make_volume(np.where(z - lower[2] < height, x0_of(fill), x0_of(empty)), size, lower)


def walls(
    thickness: float,
    wall: str | float = "iron",
    inside: str | float = "air",
    shape=(10, 10, 6),
    size: float = 0.1,
    lower=(0.0, 0.0, 0.3),
) -> Volume:
    """A box with side walls (x and y) of ``thickness`` (m, rounded to whole voxels)."""
    n = round(thickness / size)
    if not 1 <= n <= min(shape[:2]) // 2:
        raise ValueError(f"thickness must be 1 to {min(shape[:2]) // 2} voxels; got {thickness} m")
    x0 = np.full(shape, x0_of(inside))
    wall_x0 = x0_of(wall)
    x0[:n], x0[-n:], x0[:, :n], x0[:, -n:] = wall_x0, wall_x0, wall_x0, wall_x0
    return make_volume(x0, size, lower)


__all__ = [
    "MATERIALS",
    "Volume",
    "block_in_matrix",
    "fill_level",
    "make_volume",
    "stack_volumes",
    "uniform_volume",
    "volume_from_function",
    "walls",
]
