"""Conditional normalising flows: a differentiable generative model ``y = T(z; c)``.

A sample is a deterministic, differentiable function of a standard-normal ``z`` and a
context ``c`` (the simulator's parameters and inputs), so gradients of any expectation
``E[R(y)]`` reach ``c`` by the reparameterisation ``d y / d c = d T(z; c) / d c``; and the
density ``log p(y | c) = log N(T^-1(y; c)) + log |d T^-1 / d y|`` is exact, so the model is
trained by maximum likelihood (no adversary, no mode collapse).

The flow is a stack of monotone rational-quadratic splines (Durkan et al. 2019) whose knots
come from a network of the context (and, for several outputs, of the other half of ``y``:
coupling layers with alternating halves), followed by a conditional location-scale layer.
The splines act on ``[-bound, bound]`` and are the identity outside, so heavy tails pass
through linearly. Zero-initialised output layers make the untrained flow the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

_MIN_WIDTH = 1e-3
_MIN_DERIVATIVE = 1e-3
_LOG_2PI = 1.8378770664093453


def _spline_knots(raw: Float[Array, "... n_params"], n_bins: int, bound: float):
    """Knot positions ``(..., n_bins + 1)`` in x and y and derivatives at the knots.

    ``raw`` holds ``n_bins`` widths, ``n_bins`` heights and ``n_bins - 1`` interior
    derivatives (unconstrained); the outer derivatives are 1 to join the identity tails.
    """
    raw_widths, raw_heights, raw_derivatives = jnp.split(raw, [n_bins, 2 * n_bins], axis=-1)

    def knots(raw_sizes):
        sizes = _MIN_WIDTH + (1 - _MIN_WIDTH * n_bins) * jax.nn.softmax(raw_sizes, axis=-1)
        cumulative = jnp.cumsum(sizes, axis=-1)
        zero = jnp.zeros_like(cumulative[..., :1])
        return 2 * bound * jnp.concatenate([zero, cumulative], axis=-1) - bound

    # The offset makes the derivative 1 at raw = 0: zero parameters give the identity.
    offset = jnp.log(jnp.expm1(1.0 - _MIN_DERIVATIVE))
    interior = _MIN_DERIVATIVE + jax.nn.softplus(raw_derivatives + offset)
    ones = jnp.ones_like(interior[..., :1])
    return knots(raw_widths), knots(raw_heights), jnp.concatenate([ones, interior, ones], axis=-1)


def _gather(values, index):
    return jnp.take_along_axis(values, index[..., None], axis=-1)[..., 0]


def rational_quadratic_spline(
    x: Float[Array, "*shape"],
    raw: Float[Array, "... n_params"],
    n_bins: int,
    bound: float,
    inverse: bool = False,
) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
    """Monotone rational-quadratic spline on ``[-bound, bound]``, identity outside.

    Args:
        x: points to map (elementwise).
        raw: ``(..., 3 n_bins - 1)`` unconstrained knot parameters, one set per point.
        n_bins: number of bins.
        bound: half-width of the spline's interval.
        inverse: map through the inverse spline instead.

    Returns:
        ``(y, log |dy/dx|)``, both shaped like ``x``.
    """
    raw = raw.astype(x.dtype)
    xk, yk, dk = _spline_knots(raw, n_bins, bound)
    if inverse:
        xk, yk = yk, xk  # search the bin in y
    inside = jnp.abs(x) < bound
    xc = jnp.clip(x, -bound, bound)
    index = jnp.clip(jnp.sum(xc[..., None] >= xk[..., 1:-1], axis=-1), 0, n_bins - 1)
    x0, x1 = _gather(xk, index), _gather(xk, index + 1)
    y0, y1 = _gather(yk, index), _gather(yk, index + 1)
    d0, d1 = _gather(dk, index), _gather(dk, index + 1)
    if inverse:
        x0, x1, y0, y1 = y0, y1, x0, x1  # back to the forward spline's roles
    width, height = x1 - x0, y1 - y0
    slope = height / width
    curvature = d1 + d0 - 2 * slope
    if inverse:
        dy = xc - y0
        a = height * (slope - d0) + dy * curvature
        b = height * d0 - dy * curvature
        c = -slope * dy
        xi = 2 * c / (-b - jnp.sqrt(jnp.maximum(b**2 - 4 * a * c, 0.0)))
        out = x0 + xi * width
    else:
        xi = (xc - x0) / width
        out = y0 + height * (slope * xi**2 + d0 * xi * (1 - xi)) / (
            slope + curvature * xi * (1 - xi)
        )
    denominator = slope + curvature * xi * (1 - xi)
    log_derivative = (
        2 * jnp.log(slope)
        + jnp.log(d1 * xi**2 + 2 * slope * xi * (1 - xi) + d0 * (1 - xi) ** 2)
        - 2 * jnp.log(denominator)
    )
    if inverse:
        log_derivative = -log_derivative
    return jnp.where(inside, out, x), jnp.where(inside, log_derivative, 0.0)


class _Conditioner(nn.Module):
    """MLP from (context, conditioning half of y) to spline or affine parameters."""

    hidden: Sequence[int]
    n_outputs: int

    @nn.compact
    def __call__(self, inputs):
        h = inputs
        for width in self.hidden:
            h = nn.silu(nn.Dense(width)(h))
        return nn.Dense(self.n_outputs, kernel_init=nn.initializers.zeros)(h)


class ConditionalFlow(nn.Module):
    """``y = T(z; context)``, ``z ~ N(0, I)``: conditional spline flow (see the module doc).

    Attributes:
        y_dim: dimension of the output ``y``.
        n_layers: spline layers (coupling halves alternate when ``y_dim > 1``).
        n_bins: bins per spline.
        hidden: hidden widths of each conditioner network.
        bound: half-width of the splines' interval (in the standardised output's units).

    Methods (use with ``flow.apply(params, ..., method=...)``):
        sample(z, context) -> y;  log_prob(y, context) -> log density;  __call__ = log_prob.
    """

    y_dim: int
    n_layers: int = 2
    n_bins: int = 16
    hidden: Sequence[int] = (64, 64)
    bound: float = 5.0

    def setup(self):
        n_spline = 3 * self.n_bins - 1
        self.splines = [
            _Conditioner(self.hidden, len(self._transformed(layer)) * n_spline)
            for layer in range(self.n_layers)
        ]
        self.affine = _Conditioner(self.hidden, 2 * self.y_dim)

    def _transformed(self, layer: int) -> list[int]:
        """The coordinates a layer transforms (all of them when ``y_dim == 1``)."""
        if self.y_dim == 1:
            return [0]
        return [j for j in range(self.y_dim) if j % 2 == layer % 2]

    def _layer(self, layer: int, y, context, inverse: bool):
        idx = self._transformed(layer)
        conditioning = y.at[..., idx].set(0.0)
        inputs = jnp.concatenate([context, conditioning], axis=-1)
        raw = self.splines[layer](inputs).reshape(*y.shape[:-1], len(idx), 3 * self.n_bins - 1)
        moved, log_det = rational_quadratic_spline(
            y[..., idx], raw, self.n_bins, self.bound, inverse
        )
        return y.at[..., idx].set(moved), jnp.sum(log_det, axis=-1)

    def _location_scale(self, context):
        shift, raw_scale = jnp.split(self.affine(context), 2, axis=-1)
        return shift, raw_scale  # scale = exp(raw_scale): 1 at initialisation

    def sample(
        self, z: Float[Array, "... y_dim"], context: Float[Array, "... c_dim"]
    ) -> Float[Array, "... y_dim"]:
        """Map base noise ``z`` to outputs ``y`` (differentiable in ``context``)."""
        y = z
        for layer in range(self.n_layers):
            y, _ = self._layer(layer, y, context, inverse=False)
        shift, log_scale = self._location_scale(context)
        return shift + jnp.exp(log_scale) * y

    def log_prob(
        self, y: Float[Array, "... y_dim"], context: Float[Array, "... c_dim"]
    ) -> Float[Array, "*shape"]:
        """``log p(y | context)`` (in the units of ``y``)."""
        shift, log_scale = self._location_scale(context)
        z = (y - shift) * jnp.exp(-log_scale)
        log_det = -jnp.sum(log_scale, axis=-1)
        for layer in reversed(range(self.n_layers)):
            z, layer_log_det = self._layer(layer, z, context, inverse=True)
            log_det = log_det + layer_log_det
        return -0.5 * jnp.sum(z**2 + _LOG_2PI, axis=-1) + log_det

    def __call__(self, y, context):
        return self.log_prob(y, context)
