"""Survival of particles through an aperture: hard (inside or not, as Cheetah) and smooth
(a sigmoid of the distance to the edge, so gradients reach the aperture's size).

Positions ``x``, ``y`` (m) are relative to the aperture's centre; half-widths ``x_max``,
``y_max`` (m) broadcast with them. ``edge_width`` (m) is the distance over which a smooth
survival weight rises from 27% to 73% (one unit of the logistic function's argument).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array


def rectangular_hard(x: Array, y: Array, x_max: Array, y_max: Array) -> Array:
    """1 strictly inside the rectangle |x| < x_max, |y| < y_max, else 0 (Cheetah's rule)."""
    inside = (x > -x_max) & (x < x_max) & (y > -y_max) & (y < y_max)
    return inside.astype(float)


def elliptical_hard(x: Array, y: Array, x_max: Array, y_max: Array) -> Array:
    """1 inside or on the ellipse (x / x_max)^2 + (y / y_max)^2 <= 1, else 0 (Cheetah's)."""
    return ((x**2 / x_max**2 + y**2 / y_max**2) <= 1.0).astype(float)


def _side(distance_inside: Array, half_width: Array, edge_width: Array) -> Array:
    """sigmoid(distance / edge_width) for one side; exactly 1 (and flat) for an open side."""
    open_side = jnp.isinf(half_width)
    safe = jnp.where(open_side, 0.0, distance_inside)
    return jnp.where(open_side, 1.0, jax.nn.sigmoid(safe / edge_width))


def rectangular_smooth(x: Array, y: Array, x_max: Array, y_max: Array, edge_width: Array) -> Array:
    """Product of the four sides' sigmoids of the distance inside each over ``edge_width``."""
    return (
        _side(x_max - x, x_max, edge_width)
        * _side(x_max + x, x_max, edge_width)
        * _side(y_max - y, y_max, edge_width)
        * _side(y_max + y, y_max, edge_width)
    )


def elliptical_smooth(x: Array, y: Array, x_max: Array, y_max: Array, edge_width: Array) -> Array:
    """Sigmoid of (1 - q) R / 2 over ``edge_width``, q = (x / x_max)^2 + (y / y_max)^2 and
    R the ellipse's radius along the particle's direction from the centre: near the edge,
    the distance to it along that direction (finite half-widths only)."""
    q = x**2 / x_max**2 + y**2 / y_max**2
    off_centre = q > 0.0
    q_safe = jnp.where(off_centre, q, 1.0)
    radius_squared = jnp.where(off_centre, (x**2 + y**2) / q_safe, jnp.minimum(x_max, y_max) ** 2)
    return jax.nn.sigmoid((1.0 - q) * jnp.sqrt(radius_squared) / (2.0 * edge_width))
