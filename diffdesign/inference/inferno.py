"""INFERNO (de Castro & Dorigo 2019): summary statistics trained for the final inference.

A network maps each event to ``n_bins`` scores; a *soft histogram* (the mean softmax of
the scores at temperature ``tau``) makes the binned expected counts differentiable in the
network's weights and in any nuisance parameter that acts on the events (a shift or a
rescaling applied before the network). The loss is the expected variance of the parameter
of interest from the Asimov binned Poisson likelihood with its nuisance parameters:

    U(phi) = [I(theta0; phi)^-1]_poi,poi,   I = Hessian of the Asimov NLL (autodiff),

i.e. :func:`diffdesign.inference.binned.poi_variance` of the soft-histogram counts. At
evaluation the soft histogram becomes a hard one (each event in its arg-max bin; the limit
``tau -> 0``), whose nuisance dependence comes from templates
(:class:`diffdesign.inference.binned.TemplateShapes`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from diffdesign._validation import check_positive, check_range, is_concrete
from diffdesign.inference.binned import ExpectedCounts, InferenceSetup, poi_variance


def soft_histogram(
    scores: Float[ArrayLike, "n_events n_bins"],
    temperature: float,
    weights: Float[ArrayLike, " n_events"] | None = None,
) -> Float[Array, " n_bins"]:
    """The normalised soft histogram ``mean_events softmax(scores / temperature)``.

    Args:
        scores: ``(n_events, n_bins)`` network outputs (logits).
        temperature: softmax temperature ``tau > 0``; small values approach the hard
            (arg-max) histogram, large ones blur every event over all bins.
        weights: optional ``(n_events,)`` event weights (normalised here).

    Returns:
        ``(n_bins,)`` bin fractions in float64, summing to 1.

    Raises:
        ValueError: ``scores`` not 2-D, a known temperature that is not finite and > 0,
            weights of the wrong shape, negative or all zero.
    """
    scores = jnp.asarray(scores, dtype=jnp.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape (n_events, n_bins); got {scores.shape}")
    check_positive(temperature, "temperature", "soft_histogram")
    if is_concrete(scores) and is_concrete(temperature):
        largest = float(np.max(np.abs(np.asarray(scores)), initial=0.0))
        if not np.isfinite(largest / float(temperature)):
            raise ValueError(
                f"temperature {temperature!r} is too small for scores up to {largest:.6g}: "
                "scores / temperature overflows (use hard_histogram for the tau -> 0 limit)"
            )
    fractions = jax.nn.softmax(scores / temperature, axis=-1)
    return _weighted_mean(fractions, weights)


def hard_histogram(
    bins: Int[ArrayLike, " n_events"],
    n_bins: int,
    weights: Float[ArrayLike, " n_events"] | None = None,
) -> Float[Array, " n_bins"]:
    """The normalised histogram of bin indices (e.g. the arg-max of a network's scores).

    Indices outside ``[0, n_bins)`` are counted in no bin (the fractions then sum to < 1).
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1; got {n_bins!r}")
    one_hot = jax.nn.one_hot(jnp.asarray(bins), n_bins, dtype=jnp.float64)
    return _weighted_mean(one_hot, weights)


def _weighted_mean(per_event, weights):
    if weights is None:
        return jnp.mean(per_event, axis=0)
    weights = jnp.asarray(weights, dtype=jnp.float64)
    n_events = per_event.shape[0]
    if weights.shape != (n_events,):
        raise ValueError(
            f"weights must have shape ({n_events},) (one per event); got {weights.shape}"
        )
    check_range(weights, "weights", low=0.0, owner="histogram")
    if is_concrete(weights) and not np.any(np.asarray(weights) > 0):
        raise ValueError("weights must not all be 0 (the histogram would be 0/0)")
    return weights @ per_event / jnp.sum(weights)


def inferno_loss(expected_counts: ExpectedCounts, setup: InferenceSetup) -> Float[Array, ""]:
    """The INFERNO loss: the Asimov variance of the parameter of interest.

    ``expected_counts(theta)`` builds the counts from soft histograms of the network's
    output on events transformed by the shape nuisances in ``theta``; differentiate the loss
    with respect to whatever the function closes over (the network's weights).
    """
    return poi_variance(expected_counts, setup)
