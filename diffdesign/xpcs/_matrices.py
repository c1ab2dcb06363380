"""What the two-time models share: the cumulative trapezoid, input checks, the index grid."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from diffdesign._validation import check_positive


def checked_grid(
    t: ArrayLike, phi: ArrayLike, q: ArrayLike, contrast: ArrayLike, offset: ArrayLike,
    caller: str,
) -> tuple[Float[Array, " n_t"], Float[Array, " n_phi"]]:  # fmt: skip
    """``t`` and ``phi`` as float arrays after checking the time grid, the angles, q and the
    per-angle contrast and offset; a ValueError naming the argument otherwise."""
    t = jnp.asarray(t, dtype=float)
    phi = jnp.atleast_1d(jnp.asarray(phi, dtype=float))
    if t.ndim != 1 or t.shape[0] < 2:
        raise ValueError(f"t must be a 1-D time grid (s) of at least two points; got {t.shape}")
    if phi.ndim != 1 or phi.shape[0] == 0:
        raise ValueError(f"phi must be one or more angles (degrees); got shape {phi.shape}")
    check_positive(q, "q", caller, "1/Angstrom")
    n_phi = phi.shape[0]
    for name, value in (("contrast", contrast), ("offset", offset)):
        shape = jnp.shape(jnp.asarray(value))
        if shape not in ((), (1,), (n_phi,)):
            raise ValueError(
                f"{name} must be a scalar or one value per angle, shape ({n_phi},); got {shape}"
            )
    return t, phi


def all_pairs(
    shape_at: Callable[[Array, Array, Array], Array],
    n_phi: int,
    n_t: int,
    contrast: ArrayLike,
    offset: ArrayLike,
) -> Float[Array, "n_phi n_t n_t"]:
    """``offset + contrast * shape_at(angle, i, j)`` over every angle and pair of times."""
    angle = jnp.arange(n_phi)[:, None, None]
    i = jnp.arange(n_t)[None, :, None]
    j = jnp.arange(n_t)[None, None, :]
    contrast = jnp.broadcast_to(jnp.asarray(contrast, dtype=float), (n_phi,))
    offset = jnp.broadcast_to(jnp.asarray(offset, dtype=float), (n_phi,))
    return offset[:, None, None] + contrast[:, None, None] * shape_at(angle, i, j)


def trapezoid_cumulative(rate: Float[Array, " n"], dt) -> Float[Array, " n"]:
    """Cumulative trapezoid ``C_k = int_{t_0}^{t_k} rate dt`` on a uniform grid (C_0 = 0)."""
    steps = jnp.cumsum(0.5 * (rate[:-1] + rate[1:]))
    return dt * jnp.concatenate([jnp.zeros(1, rate.dtype), steps])
