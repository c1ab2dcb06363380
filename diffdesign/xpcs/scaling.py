"""Contrast and offset by variable projection: their best values for given physics, in closed form.

g2 = offset + contrast * g1^2 is linear in contrast and offset, so for fixed physical
parameters the weighted least-squares problem in (contrast, offset) per angle is a 2 x 2
quadratic, solved exactly inside its box. Everything it needs is six weighted sums per angle
(:func:`scaling_statistics`), which can be accumulated over chunks of points; the minimum
value of the quadratic is then the profiled chi^2 without another pass over the data.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from diffdesign.xpcs.likelihood import (
    Problem,
    chi_squared,
    chunked,
    correlation_shape,
    pack,
    residuals,
    unpack,
)

#: (contrast_lo, contrast_hi, offset_lo, offset_hi): hashable, so a static jit argument.
ScalingBox = tuple[float, float, float, float]


def n_scalings(problem: Problem) -> int:
    """Entries of the parameter vector after the physical ones."""
    return 2 * problem.scaling.n_free(problem.n_phi)


def _with_placeholders(physical: Array, problem: Problem) -> Array:
    return jnp.concatenate([physical, jnp.ones(n_scalings(problem), physical.dtype)])


def scaling_statistics(
    physical: Float[Array, " n_phys"],
    problem: Problem,
    chunk_size: int | None = None,
    reference: Float[Array, "n_seg 2"] | None = None,
) -> Float[Array, "n_seg 6"]:
    """Weighted sums (1, g, g^2, c, c g, c^2) x w^2 per segment of angles sharing one
    (contrast, offset) (``Scaling.n_segments``: one row per angle for individual scalings).

    ``g`` is the model's g1^2 (the two-component shape G/N) and ``c`` the data; with
    ``chunk_size`` the sums are accumulated over chunks of points (bounded memory). With
    ``reference`` (contrast, offset per row), ``c`` is the data minus that reference's model,
    so the sums describe the quadratic in the *departures* from it: then ``c^2`` is of the
    order of chi^2 rather than 1e4 times larger, and the quadratic's minimum loses no digits
    to cancellation.
    """
    params = unpack(_with_placeholders(physical, problem), problem)[0]
    n_seg = problem.scaling.n_segments(problem.n_phi)

    def sums(sub: Problem) -> Array:
        pts = sub.points
        g = correlation_shape(params, sub)
        segments = problem.scaling.segment_of(pts.angle)
        c = pts.c2
        if reference is not None:
            c = c - reference[segments, 1] - reference[segments, 0] * g
        columns = jnp.stack([jnp.ones_like(g), g, g * g, c, c * g, c**2], axis=1)
        return jax.ops.segment_sum(pts.weight[:, None] ** 2 * columns, segments, num_segments=n_seg)

    if chunk_size is None:
        return sums(problem)
    blocks = chunked(problem, chunk_size)
    total, _ = jax.lax.scan(
        lambda acc, block: (acc + sums(problem.with_points(block)), None),
        jnp.zeros((n_seg, 6)),
        blocks,
    )
    return total


def solve_scalings(
    stats: Float[Array, "n_seg 6"], box: ScalingBox
) -> tuple[Float[Array, " n_seg"], Float[Array, " n_seg"], Float[Array, " n_seg"]]:
    """(contrast, offset, chi^2) minimising each row's quadratic over the box.

    The interior solution of the 2 x 2 normal equations where it is feasible, else the best of
    the four edges' clipped one-dimensional minimisers (one of them is the box optimum).
    """
    s11, sg, sgg, sc, scg, scc = (stats[:, k] for k in range(6))
    klo, khi, olo, ohi = box

    def chi2(k, o):  # k, o: (candidates, n_seg)
        s11_, sg_, sgg_, sc_, scg_, scc_ = (v[None, :] for v in (s11, sg, sgg, sc, scg, scc))
        return scc_ + k * k * sgg_ + 2 * k * o * sg_ + o * o * s11_ - 2 * k * scg_ - 2 * o * sc_

    det = sgg * s11 - sg * sg
    ok = det > 1e-12 * sgg * s11
    safe_det = jnp.where(ok, det, 1.0)
    k_int = (scg * s11 - sc * sg) / safe_det
    o_int = (sc * sgg - scg * sg) / safe_det
    feasible = ok & (k_int >= klo) & (k_int <= khi) & (o_int >= olo) & (o_int <= ohi)
    safe_s11 = jnp.where(s11 > 0, s11, 1.0)
    safe_sgg = jnp.where(sgg > 0, sgg, 1.0)
    ks = [jnp.clip(k_int, klo, khi)]
    os_ = [jnp.clip(o_int, olo, ohi)]
    for k_edge in (klo, khi):
        ks.append(jnp.full_like(s11, k_edge))
        os_.append(jnp.clip((sc - k_edge * sg) / safe_s11, olo, ohi))
    for o_edge in (olo, ohi):
        ks.append(jnp.clip((scg - o_edge * sg) / safe_sgg, klo, khi))
        os_.append(jnp.full_like(s11, o_edge))
    ks, os_ = jnp.stack(ks), jnp.stack(os_)
    values = chi2(ks, os_)
    values = values.at[0].set(jnp.where(feasible, values[0], jnp.inf))
    best = jnp.argmin(values, axis=0)[None]
    pick = lambda a: jnp.take_along_axis(a, best, axis=0)[0]
    return pick(ks), pick(os_), pick(values)


def with_scalings(
    physical: Float[Array, " n_phys"],
    problem: Problem,
    box: ScalingBox,
    chunk_size: int | None = None,
) -> tuple[Float[Array, " p"], Float[Array, ""]]:
    """The full parameter vector (physics plus projected scalings) and its chi^2."""
    params, contrast, offset = unpack(_with_placeholders(physical, problem), problem)
    if n_scalings(problem) == 0:  # contrast and offset fixed beforehand: nothing to project
        theta = pack(params, contrast, offset, problem)
        if chunk_size is None:
            return theta, jnp.sum(residuals(theta, problem) ** 2)
        return theta, chi_squared(theta, problem, chunk_size)
    k, o, chi2 = solve_scalings(scaling_statistics(physical, problem, chunk_size), box)
    k, o = problem.scaling.per_angle(k, o, problem.n_phi)
    return pack(params, k, o, problem), jnp.sum(chi2)


def profiled_residuals(physical: Array, problem: Problem, box: ScalingBox) -> Array:
    """Residuals with contrast and offset at their best values for these physical parameters."""
    return residuals(with_scalings(physical, problem, box)[0], problem)


class ScalingGaussian(NamedTuple):
    """The Gaussian in (contrast, offset) per segment that the likelihood is for fixed physics.

    With ``A`` the 2 x 2 precision and ``mean`` its minimiser over the whole plane (no box),
    ``chi2(contrast, offset) = chi2_min + (beta - mean)^T A (beta - mean)`` exactly, since the
    model is linear in contrast and offset; a Gaussian prior on them only adds to ``A``.

    Attributes:
        mean: (n_seg, 2) contrast and offset minimising the quadratic.
        precision: (n_seg, 2, 2) ``A``.
        chi2_min: (n_seg,) the quadratic's minimum (prior terms included).
        log_det: (n_seg,) ``log det A``.
    """

    mean: Float[Array, "n_seg 2"]
    precision: Float[Array, "n_seg 2 2"]
    chi2_min: Float[Array, " n_seg"]
    log_det: Float[Array, " n_seg"]

    def neg_log_marginal(self) -> Float[Array, ""]:
        """``-log`` of the likelihood integrated over contrast and offset (flat measure), up
        to a constant: ``0.5 * sum(chi2_min + log det A)``."""
        return 0.5 * jnp.sum(self.chi2_min + self.log_det)

    def sample(self, key: Array) -> Float[Array, "n_seg 2"]:
        """One draw of (contrast, offset) per segment from ``N(mean, A^-1)``."""
        a11, a12, a22 = self.precision[:, 0, 0], self.precision[:, 0, 1], self.precision[:, 1, 1]
        # A = R^T R with R = ((l11, 0), (l12, l22)) lower triangular; x = R^-1 eps then has
        # covariance (R^T R)^-1 = A^-1.
        l22 = jnp.sqrt(a22)
        l12 = a12 / l22
        l11 = jnp.sqrt(a11 - l12**2)
        eps = jax.random.normal(key, self.mean.shape, self.mean.dtype)
        x1 = eps[:, 0] / l11
        x2 = (eps[:, 1] - l12 * x1) / l22
        return self.mean + jnp.stack([x1, x2], axis=1)


def scaling_gaussian(
    stats: Float[Array, "n_seg 6"],
    prior_mean: Float[Array, "n_seg 2"],
    prior_precision: Float[Array, "n_seg 2"],
) -> ScalingGaussian:
    """The (contrast, offset) Gaussian of each row of :func:`scaling_statistics`, times
    independent Gaussian priors (``prior_precision`` 0 for a flat one)."""
    s11, sg, sgg, sc, scg, scc = (stats[:, k] for k in range(6))
    pk, po = prior_precision[:, 0], prior_precision[:, 1]
    mk, mo = prior_mean[:, 0], prior_mean[:, 1]
    a11, a12, a22 = sgg + pk, sg, s11 + po
    b1, b2 = scg + pk * mk, sc + po * mo
    c = scc + pk * mk**2 + po * mo**2
    det = a11 * a22 - a12**2
    mean = jnp.stack([(a22 * b1 - a12 * b2) / det, (a11 * b2 - a12 * b1) / det], axis=1)
    chi2_min = c - (b1 * mean[:, 0] + b2 * mean[:, 1])
    precision = jnp.stack([jnp.stack([a11, a12], -1), jnp.stack([a12, a22], -1)], -2)
    return ScalingGaussian(mean, precision, chi2_min, jnp.log(det))
