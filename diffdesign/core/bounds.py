"""Bounds of a parameter: one representation for every domain and every optimiser.

A bounded parameter ``x`` in ``[lower, upper]`` is seen by an optimiser through a
*transform*: the optimiser moves an internal coordinate ``z`` and the model receives
``x = to_physical(z)``. Three transforms cover the project:

- :class:`Identity`: ``z = x``; after each step ``z`` is projected (clipped) back onto the
  box. Steps are in the parameter's own units; infinite bounds are allowed.
- :class:`Log`: ``z = ln x`` for a positive parameter spanning decades; projected in log
  space. Steps are relative (0.1 ~ 10 %).
- :class:`Box`: a bijection ``x = centre + half_width * tanh(z)`` onto the open box, so
  unconstrained solvers (least squares, NUTS, Adam) never leave it; finite bounds only.

Transforms are equinox modules without fields, so they are static, hashable PyTree nodes:
choose behaviour by passing the object (``Box()``), never by a mode string.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

#: How close to the edges of a Box the internal coordinate of a start may come (|tanh| <= 1 - this).
BOX_EDGE = 1e-9


def as_float(x: ArrayLike) -> Array:
    """``x`` as an array of its own floating dtype (float32 weights stay float32), integers as
    the default float."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(float)


class Transform(eqx.Module):
    """How an optimiser sees a bounded parameter: ``to_internal``, ``to_physical``, ``project``."""

    @abc.abstractmethod
    def to_internal(self, x: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> Array: ...

    @abc.abstractmethod
    def to_physical(self, z: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> Array: ...

    def project(self, z: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> Array:
        """The internal coordinate moved back inside the bounds (identity for bijections)."""
        return jnp.asarray(z)

    def check(self, lower, upper, name: str) -> None:
        """Raise ``ValueError`` if this transform cannot represent ``[lower, upper]``."""


class Identity(Transform):
    """``z = x``, projected onto ``[lower, upper]`` after every step (bounds may be infinite)."""

    def to_internal(self, x, lower, upper):
        return as_float(x)

    def to_physical(self, z, lower, upper):
        return jnp.asarray(z)

    def project(self, z, lower, upper):
        return jnp.clip(z, lower, upper)


class Log(Transform):
    """``z = ln x`` for a positive parameter, projected onto ``[ln lower, ln upper]``."""

    def to_internal(self, x, lower, upper):
        return jnp.log(as_float(x))

    def to_physical(self, z, lower, upper):
        return jnp.exp(z)

    def project(self, z, lower, upper):
        return jnp.clip(z, jnp.log(lower), jnp.log(upper))

    def check(self, lower, upper, name):
        if not bool(jnp.all(jnp.asarray(lower) > 0)):
            raise ValueError(f"{name}: a Log transform needs lower > 0; got lower={lower}")


class Box(Transform):
    """``x = centre + half_width * tanh(z)``: a bijection onto the open box (finite bounds)."""

    def to_internal(self, x, lower, upper):
        lower, upper = jnp.asarray(lower, dtype=float), jnp.asarray(upper, dtype=float)
        centre, half = 0.5 * (lower + upper), 0.5 * (upper - lower)
        x = as_float(x)
        u = jnp.clip((x - centre) / half, -1 + BOX_EDGE, 1 - BOX_EDGE)
        return jnp.arctanh(u).astype(x.dtype)

    def to_physical(self, z, lower, upper):
        lower, upper = jnp.asarray(lower, dtype=float), jnp.asarray(upper, dtype=float)
        return 0.5 * (lower + upper) + 0.5 * (upper - lower) * jnp.tanh(z)

    def check(self, lower, upper, name):
        if not bool(jnp.all(jnp.isfinite(jnp.asarray(lower)) & jnp.isfinite(jnp.asarray(upper)))):
            raise ValueError(f"{name}: a Box transform needs finite bounds; got [{lower}, {upper}]")
