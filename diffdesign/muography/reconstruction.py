"""Track fits, scatter points (PoCA) and scattering angles, with their uncertainties.

Each stack's hits are fitted by weighted least squares with straight lines
``x(z) = x_ref + tx (z - z_ref)`` (and the same in y), weights ``a_i / sigma_i^2`` (the hit's
recording probability over its variance); the fit's covariance is the inverse of the
normal matrix when every hit's weight is 1, and in general the sandwich ``N^-1 M N^-1`` (the
hits' noise does not shrink with their weight). A muon counts with the probability that
both stacks record at least two hits (independent panels). The scatter point is the point
of closest approach (PoCA) of the incoming and outgoing lines; the scattering angles are
measured in the muon's own frame, as :func:`~diffdesign.muography.scattering.propagate`
draws them: the outgoing direction's angles from the incoming one projected on the two
planes that contain the incoming direction
(:func:`~diffdesign.muography.scattering.scattering_angles`), each of Highland width
theta0 of the path whatever the zenith angle. (The changes of ``atan(tx)`` and
``atan(ty)`` in the fixed x-z and y-z planes would mix them: across the plane of travel
such a change is the scattering angle over cos(zenith).) Their variances and the PoCA's
covariance follow from the tracks' covariances by first-order propagation (a Jacobian by
``jax.jacfwd`` per muon).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from diffdesign.muography.detector import Hits
from diffdesign.muography.scattering import scattering_angles


class Tracks(NamedTuple):
    """Fitted lines of one stack.

    Attributes:
        line: (4, n) x, y at z_ref and slopes tx, ty.
        covariance: (n, 2, 2) covariance of (position at z_ref, slope), the same in x and y.
        detected: (n,) probability of at least two recorded hits.
    """

    line: Float[Array, "4 n"]
    covariance: Float[Array, "n 2 2"]
    detected: Float[Array, " n"]


def at_least_two(weight: Float[Array, "n p"]) -> Float[Array, " n"]:
    """P(at least two of independent Bernoulli(weight_i) succeed), per row."""
    miss = 1 - weight
    none = jnp.prod(miss, axis=1)
    # sum_i a_i prod_{j != i} (1 - a_j), without dividing by (1 - a_i)
    left = jnp.cumprod(jnp.concatenate([jnp.ones_like(miss[:, :1]), miss[:, :-1]], 1), axis=1)
    right = jnp.flip(
        jnp.cumprod(jnp.concatenate([jnp.ones_like(miss[:, :1]), jnp.flip(miss, 1)[:, :-1]], 1), 1),
        1,
    )
    one = jnp.sum(weight * left * right, axis=1)
    return jnp.clip(1 - none - one, 0.0, 1.0)


def fit_tracks(hits: Hits, z_ref: float) -> Tracks:
    """Weighted straight-line fits of every muon's hits in one stack.

    Computed about each muon's weighted mean height (where position and slope are
    uncorrelated), so a muon with one heavily weighted hit and the rest near zero gets a
    finite, very uncertain slope instead of the cancellation ``s0 s2 - s1^2 ~ 0``.
    """
    w = hits.weight / hits.sigma[None, :] ** 2 + 1e-12  # (n, p); tiny floor: never singular
    dz = (hits.z - z_ref)[None, :]
    s0 = w.sum(1)
    zbar = (w * dz).sum(1) / s0
    u = dz - zbar[:, None]
    s2 = (w * u**2).sum(1)
    lines = []
    for axis in (0, 1):
        r = hits.xy[..., axis]
        mean = (w * r).sum(1) / s0
        slope = (w * u * r).sum(1) / s2
        lines.append((mean - slope * zbar, slope))
    (x, tx), (y, ty) = lines
    # sandwich about zbar: diag(1/s0, 1/s2) M diag(1/s0, 1/s2), M from the hits' noise
    v = w**2 * hits.sigma[None, :] ** 2
    m00, m01, m11 = v.sum(1), (v * u).sum(1), (v * u**2).sum(1)
    c00, c01, c11 = m00 / s0**2, m01 / (s0 * s2), m11 / s2**2
    # to (position at z_ref, slope): x_ref = mean - zbar slope
    cov = jnp.stack([
        jnp.stack([c00 - 2 * zbar * c01 + zbar**2 * c11, c01 - zbar * c11], -1),
        jnp.stack([c01 - zbar * c11, c11], -1),
    ], -2)  # fmt: skip
    return Tracks(jnp.stack([x, y, tx, ty]), cov, at_least_two(hits.weight))


class Scatters(NamedTuple):
    """Per muon: PoCA, scattering angles and their uncertainties.

    Attributes:
        poca: (n, 3) point of closest approach (m).
        poca_covariance: (n, 3, 3).
        dtheta: (n, 2) scattering angles in the muon's frame: the outgoing direction's
            angles from the incoming one in the incoming track's planes (u, e1) and
            (u, e2) of :func:`~diffdesign.muography.scattering.track_frame` (rad; in x and
            y for a vertical incoming track).
        dtheta_variance: (n, 2) their measurement variances (rad^2).
        theta_in: (n, 2) incoming projected angles (rad).
        weight: (n,) probability the muon is reconstructed (both stacks).
    """

    poca: Float[Array, "n 3"]
    poca_covariance: Float[Array, "n 3 3"]
    dtheta: Float[Array, "n 2"]
    dtheta_variance: Float[Array, "n 2"]
    theta_in: Float[Array, "n 2"]
    weight: Float[Array, " n"]


def line_covariance(covariance: Float[Array, "n 2 2"]) -> Float[Array, "n 4 4"]:
    """Covariance of a track's (x, y, tx, ty) from that of (position, slope)
    (:attr:`Tracks.covariance`: the same in x and y, the two independent)."""
    n = covariance.shape[0]
    return jnp.einsum("nab,ij->naibj", covariance, jnp.eye(2)).reshape(n, 4, 4)


def _angles(params: Float[Array, " 8"]) -> Float[Array, " 2"]:
    """Scattering angles in the muon's frame of the lines (x, y, tx, ty) in and out."""
    return scattering_angles(params[2], params[3], params[6], params[7])


def _poca(params: Float[Array, " 8"], z_in: float, z_out: float) -> Float[Array, " 3"]:
    """PoCA of the lines (x, y, tx, ty) at z_in and at z_out (one muon)."""
    x1, y1, tx1, ty1, x2, y2, tx2, ty2 = params
    p1, u = jnp.stack([x1, y1, z_in]), jnp.stack([tx1, ty1, 1.0])
    p2, v = jnp.stack([x2, y2, z_out]), jnp.stack([tx2, ty2, 1.0])
    w0 = p1 - p2
    a, b, c, d, e = u @ u, u @ v, v @ v, u @ w0, v @ w0
    denom = a * c - b**2
    parallel = denom < 1e-12 * a * c
    safe = jnp.where(parallel, 1.0, denom)
    s = jnp.where(parallel, 0.5 * (z_out - z_in), (b * e - c * d) / safe)
    t = jnp.where(parallel, 0.5 * (z_in - z_out), (a * e - b * d) / safe)
    return 0.5 * (p1 + s * u + p2 + t * v)


def scatters(incoming: Tracks, outgoing: Tracks, z_in: float, z_out: float) -> Scatters:
    """PoCA, angles and uncertainties from the two stacks' fitted tracks."""
    params = jnp.concatenate([incoming.line, outgoing.line]).T  # (n, 8)
    poca = jax.vmap(_poca, in_axes=(0, None, None))(params, z_in, z_out)
    jac = jax.vmap(jax.jacfwd(_poca), in_axes=(0, None, None))(params, z_in, z_out)  # (n, 3, 8)
    # parameter covariance: the two tracks independent
    cov = jnp.zeros((params.shape[0], 8, 8))
    cov = cov.at[:, :4, :4].set(line_covariance(incoming.covariance))
    cov = cov.at[:, 4:, 4:].set(line_covariance(outgoing.covariance))
    poca_cov = jnp.einsum("nik,nkl,njl->nij", jac, cov, jac)
    dtheta = jax.vmap(_angles)(params)  # (n, 2)
    jac_angles = jax.vmap(jax.jacfwd(_angles))(params)  # (n, 2, 8)
    dtheta_variance = jnp.einsum("nik,nkl,nil->ni", jac_angles, cov, jac_angles)
    theta_in = jnp.arctan(incoming.line[2:].T)
    weight = incoming.detected * outgoing.detected
    return Scatters(poca, poca_cov, dtheta, dtheta_variance, theta_in, weight)
