"""Losses of a muon-tomography design: X0 error, classification tasks, and panel cost.

All are smooth functions of the predicted X0 map and the panels, for gradient descent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array

from diffdesign.muography.detector import Detector


def x0_error(pred: Array, true: Array) -> Array:
    """Mean squared relative error of X0 over the voxels (TomOpt's loss)."""
    return jnp.mean(((pred - true) / true) ** 2)


def log_x0_error(pred: Array, true: Array) -> Array:
    """Mean squared error of ln X0: symmetric in over- and under-estimates, so a dense block
    (X0 100x smaller than its matrix) weighs as much as the matrix around it."""
    return jnp.mean(jnp.log(pred / true) ** 2)


def block_score(pred: Array, threshold: float, temperature: float = 0.25) -> Array:
    """Logit that some voxel is denser than ``threshold`` (X0 below it, m): a soft maximum
    over voxels of ln(threshold / X0) / temperature."""
    return jax.nn.logsumexp(jnp.log(threshold / pred) / temperature) - jnp.log(pred.size)


def block_presence_loss(pred: Array, present: Array, threshold: float = 0.05) -> Array:
    """Binary cross-entropy of "is there a block denser than threshold" (present: 0 or 1)."""
    logit = block_score(pred, threshold)
    return jnp.logaddexp(0.0, logit) - present * logit


def fill_height(pred: Array, x0_fill: float, x0_empty: float, size: float) -> Array:
    """Fill height (m above the grid's bottom) from the X0 map: each layer's filled fraction
    from its mean 1/X0 between the empty and full values, clipped to [0, 1], times ``size``."""
    s = jnp.mean(1 / pred, axis=(0, 1))  # per layer
    fraction = (s - 1 / x0_empty) / (1 / x0_fill - 1 / x0_empty)
    return size * jnp.sum(jnp.clip(fraction, 0.0, 1.0))


def panel_cost(
    detector: Detector,
    cost_per_m2: float = 1.0,
    resolution_cost: float = 1.0,
    reference_sigma: float = 1e-4,
) -> Array:
    """Budget units: sum over panels of area x (cost_per_m2 + resolution_cost x
    reference_sigma / sigma) x efficiency, so larger, finer and more efficient panels cost more."""
    total = 0.0
    for panels in (detector.above, detector.below):
        area = jnp.prod(panels.span, axis=1)
        per_area = cost_per_m2 + resolution_cost * reference_sigma / panels.sigma
        total = total + jnp.sum(area * per_area * panels.efficiency)
    return total


def budget_penalty(cost: Array, budget: float, softness: float = 0.02) -> Array:
    """A smooth hinge that grows once ``cost`` exceeds ``budget`` (relative softness)."""
    scale = softness * budget
    return scale * jax.nn.softplus((cost - budget) / scale) / budget
