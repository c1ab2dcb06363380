"""XPCS two-time data: the container, its validation, and the flat list of points a fit uses.

A measurement is a stack of two-time correlation matrices ``c2`` (n_phi, n_t, n_t), one per
scattering angle, on a uniform time grid, with its noise standard deviation ``sigma``.
Two-time matrices are symmetric, so a fit uses one triangle: the points ``t_i < t_j`` (the
diagonal, which carries the shot-noise spike in measured data, only on request). Fitting
both halves, as `homodyne` does, counts every measurement twice and shrinks the error bars
by sqrt(2).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from diffdesign._validation import float_array, is_concrete

_UNIFORM_RTOL = 1e-6


class XpcsData(eqx.Module):
    """Two-time correlation data of one q ring.

    Attributes:
        c2: (n_phi, n_t, n_t) measured g2(phi, t1, t2).
        t: (n_t,) uniform time grid (s).
        phi: (n_phi,) scattering angles (degrees).
        q: scattering vector (1/Angstrom).
        L: gap / characteristic length of the flow (Angstrom).
        sigma: noise standard deviation of c2: a scalar or an array of c2's shape.
    """

    c2: Float[Array, "n_phi n_t n_t"]
    t: Float[Array, " n_t"]
    phi: Float[Array, " n_phi"]
    q: Float[Array, ""]
    L: Float[Array, ""]
    sigma: Float[Array, "*shape"]

    def __init__(self, c2, t, phi, q, L, sigma):
        self.c2 = float_array(c2, "c2", "XpcsData")
        self.t = float_array(t, "t", "XpcsData")
        self.phi = jnp.atleast_1d(float_array(phi, "phi", "XpcsData"))
        self.q = float_array(q, "q", "XpcsData")
        self.L = float_array(L, "L", "XpcsData")
        self.sigma = float_array(sigma, "sigma", "XpcsData")

    def __check_init__(self):
        if all(is_concrete(v) for v in (self.c2, self.t, self.phi, self.q, self.L, self.sigma)):
            validate(self)

    @property
    def dt(self) -> Array:
        """The time step (s)."""
        return self.t[1] - self.t[0]

    @property
    def n_phi(self) -> int:
        return int(self.phi.shape[0])

    @property
    def n_t(self) -> int:
        return int(self.t.shape[0])


def validate(data: XpcsData) -> None:
    """Raise a ValueError naming the field for inconsistent shapes, NaNs or a bad time grid."""
    c2, t, phi = np.asarray(data.c2), np.asarray(data.t), np.asarray(data.phi)
    if t.ndim != 1 or t.shape[0] < 3:
        raise ValueError(f"t must be a 1-D time grid of at least 3 points; got shape {t.shape}")
    if phi.ndim != 1:
        raise ValueError(f"phi must be 1-D (degrees); got shape {phi.shape}")
    if phi.shape[0] == 0:
        raise ValueError("phi must hold at least one angle (degrees); got none (shape (0,))")
    expected = (phi.shape[0], t.shape[0], t.shape[0])
    if c2.shape != expected:
        raise ValueError(
            f"c2 must have shape (n_phi, n_t, n_t) = {expected} for {phi.shape[0]} angles and "
            f"{t.shape[0]} times; got {c2.shape}"
        )
    for name, value in (("c2", c2), ("t", t), ("phi", phi)):
        bad = ~np.isfinite(value)
        if bad.any():
            where = np.argwhere(bad)[0].tolist()
            raise ValueError(f"{name} has {int(bad.sum())} non-finite values (first at {where})")
    steps = np.diff(t)
    if np.any(steps <= 0):
        raise ValueError(f"t must increase strictly; step {int(np.argmin(steps))} is {steps.min()}")
    if np.ptp(steps) > _UNIFORM_RTOL * steps.mean():
        raise ValueError(
            "t must be a uniform grid (the model integrates on it with one step dt); steps "
            f"range from {steps.min():.6g} to {steps.max():.6g} s"
        )
    if t[0] < 0:
        raise ValueError(f"t must start at t >= 0 s; got t[0] = {t[0]}")
    for name, value, unit in (("q", data.q, "1/Angstrom"), ("L", data.L, "Angstrom")):
        value = np.asarray(value)
        if value.shape != () or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive finite scalar ({unit}); got {value}")
    sigma = np.asarray(data.sigma)
    if sigma.shape not in ((), c2.shape):
        raise ValueError(f"sigma must be a scalar or have c2's shape {c2.shape}; got {sigma.shape}")
    if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
        raise ValueError("sigma (noise standard deviation of c2) must be finite and > 0")


class Points(eqx.Module):
    """The measured points a fit uses, flattened: angle index, time indices i < j, value, weight.

    Every array has the same length m. ``weight`` is 1/sigma, so whitened residuals are
    ``weight * (c2 - model)``. Padding points (to split into equal shards) have weight 0.
    """

    angle: Int[Array, " m"]
    i: Int[Array, " m"]
    j: Int[Array, " m"]
    c2: Float[Array, " m"]
    weight: Float[Array, " m"]

    @property
    def size(self) -> int:
        return int(self.c2.shape[0])


def points(data: XpcsData, *, include_diagonal: bool = False) -> Points:
    """The upper triangle (i < j, or i <= j with the diagonal) of every angle, as flat points."""
    n_phi, n_t = data.n_phi, data.n_t
    i, j = np.triu_indices(n_t, 0 if include_diagonal else 1)
    angle = np.repeat(np.arange(n_phi), i.size)
    i, j = np.tile(i, n_phi), np.tile(j, n_phi)
    c2 = np.asarray(data.c2)[angle, i, j]
    sigma = np.broadcast_to(np.asarray(data.sigma), data.c2.shape)[angle, i, j]
    return Points(
        angle=jnp.asarray(angle),
        i=jnp.asarray(i),
        j=jnp.asarray(j),
        c2=jnp.asarray(c2),
        weight=jnp.asarray(1.0 / sigma),
    )


def shard_points(pts: Points, n_shards: int) -> Points:
    """Split points into ``n_shards`` equal shards, each a stride through every angle.

    Point k goes to shard k mod n_shards, so every shard samples every angle and every lag
    range alike (stratified). The result has a leading shard axis; shards are padded with
    weight-0 points to equal length.
    """
    if not isinstance(n_shards, int) or n_shards < 1:
        raise ValueError(f"n_shards must be a positive integer; got {n_shards!r}")
    if n_shards > pts.size:
        raise ValueError(f"n_shards ({n_shards}) exceeds the number of points ({pts.size})")
    per_shard = -(-pts.size // n_shards)
    pad = per_shard * n_shards - pts.size

    def split(x, fill):
        x = jnp.concatenate([x, jnp.full((pad,), fill, dtype=x.dtype)])
        return x.reshape(per_shard, n_shards).T

    return Points(
        angle=split(pts.angle, 0),
        i=split(pts.i, 0),
        j=split(pts.j, 1),
        c2=split(pts.c2, 0.0),
        weight=split(pts.weight, 0.0),
    )
