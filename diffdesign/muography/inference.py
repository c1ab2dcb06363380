"""Per-voxel radiation lengths from reconstructed scatters: PoCA and a likelihood along the path.

Both estimators use the Highland relation of :mod:`~diffdesign.muography.scattering` with
the muons' momenta known (as in TomOpt), and subtract the angles' measurement variances.
Both measure the scattering in the muon's own frame, as the simulation draws it: angles and
offsets are projected on the incoming track's two perpendicular directions ``e1``, ``e2``
(:func:`~diffdesign.muography.scattering.track_frame`), where each projection has
Highland's variance theta0^2 of the path length ``L = h sqrt(1 + tx^2 + ty^2)`` through
a height ``h``, at any zenith angle.

**PoCA** (:func:`x0_poca`, TomOpt's kind of estimator). Each muon puts its whole scattering
at its PoCA: per muon ``m = (beta p / 13.6 MeV)^2 (<dtheta^2> - var) / L``, with ``L`` its path
through the whole grid, is spread over the voxels with the probability that the PoCA lies in
each (Gaussian PoCA uncertainty, factorised per axis, so the assignment is differentiable),
averaged per voxel with the muons' reconstruction weights, and ``X0`` solved from
``m = (1 / X0) (1 + 0.038 ln(L / X0))^2``. Its global value is exact for a uniform volume, but
voxel by voxel it is biased in depth (the PoCAs of strongly scattered muons cluster mid-depth)
and in a heterogeneous volume it credits the scatter of the whole path to one voxel, which
blurs a dense block in depth ("ghosting") and dilutes its contrast.

**Path likelihood** (:func:`x0_likelihood`). Per muon and projection ``e_k``, the scattering
angle and the lateral offset at the grid's bottom, ``d = (dtheta, dx)``, are
``N(0, Sigma)`` with

    Sigma = sum_layers c f_k s_k W_k + M,   W_k = [[L, L (L/2 + T)],
                                                    [., L (L^2/3 + L T + T^2)]],

``s = 1 / X0`` of the voxel the path crosses in layer ``k`` (incoming line above the PoCA,
outgoing below; shared bilinearly between the four nearest voxel columns), ``L`` the path
length in the layer and ``T`` the path length from its bottom to the grid's bottom (the lever
arm of a kick), ``c = (13.6 MeV / beta p)^2``, ``f_k`` the
layer's share of the Highland log factor (:func:`_layer_scale`) and ``M`` the measurement
covariance propagated from the track fits. The offset is the distance of the outgoing line's
point on the grid's bottom from the incoming line, along ``e_k``: a kick by ``a`` in the
plane (u, e_k) at a path length ``T`` above the bottom moves it by ``a T``, and not along the
other projection. The offsets say *where* along the path the muon scattered, which the
angles alone cannot. The maximum-likelihood ``s`` is found by the
expectation-maximisation iteration of this variance-components model (Schultz et al. 2007,
"Statistical reconstruction for cosmic ray muon tomography", with angles and offsets):

    s_v <- s_v + s_v^2 / (4 N_v) sum_i w_i b_iv [d^T Sigma^-1 A Sigma^-1 d - tr(Sigma^-1 A)],

``A = c f_k W_k``, ``N_v = sum_i w_i b_iv``, summed over both projections; its fixed point is
the likelihood's stationary point. It is shrunk towards the start by ``prior_muons``
pseudo-muons per voxel (so voxels no muon crosses keep their start value), kept within
``X0_RANGE``, over-relaxed (``relaxation``), started from the global estimate, and
differentiated through by unrolling a fixed number of iterations (rematerialised, so memory
does not grow with them). More iterations sharpen a dense block but fit noise in uniform
regions: 40 is a compromise measured on the lead-block and uniform-iron volumes (60k muons).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr
from jaxtyping import Array, Float

from diffdesign.muography import _chunks
from diffdesign.muography.reconstruction import Scatters, Tracks, line_covariance
from diffdesign.muography.scattering import (
    HIGHLAND_LOG_TERM,
    HIGHLAND_SCALE,
    highland_variance,
    scattering_angles,
    track_frame,
)
from diffdesign.muography.source import MUON_MASS
from diffdesign.muography.volume import Volume

_LOG_TERM = HIGHLAND_LOG_TERM
#: Radiation lengths the estimates are kept within (m): 1 mm (denser than uranium) to 1 km.
X0_RANGE = (1e-3, 1e3)


def _scale(p: Array) -> tuple[Array, Array]:
    """(c = (13.6 MeV / beta p)^2, beta^2) per muon."""
    beta2 = p**2 / (p**2 + MUON_MASS**2)
    return (HIGHLAND_SCALE**2 / (p**2 * beta2)), beta2


def _per_muon(sc: Scatters, p: Array, volume: Volume) -> tuple[Array, Array, Array]:
    """(m in 1/m, path length L in m, beta^2) per muon: the mean square of the two
    muon-frame angles, less their measurement variance, is theta0^2 of the path L."""
    c, beta2 = _scale(p)
    slopes = jnp.tan(sc.theta_in)
    height = volume.z_range[1] - volume.z_range[0]
    path = height * jnp.sqrt(1 + jnp.sum(slopes**2, axis=1))
    angle2 = jnp.mean(sc.dtheta**2 - sc.dtheta_variance, axis=1)
    return angle2 / c / path, path, beta2


def _global(sc: Scatters, p: Array, volume: Volume) -> tuple[tuple[Array, ...], Array, Array]:
    """Per muon (m, path, beta^2) and their reconstruction-weighted means over all muons."""
    m, path, beta2 = _per_muon(sc, p, volume)
    w = sc.weight
    return (m, path, beta2), jnp.sum(w * m) / jnp.sum(w), jnp.sum(w * path) / jnp.sum(w)


def _solve_x0(s: Array, path: Array, beta2: Array | float = 1.0, iterations: int = 8) -> Array:
    """X0 with s = (1 / X0) (1 + 0.038 ln(path / (X0 beta^2)))^2 (fixed point from 1/s)."""
    s = jnp.clip(s, 1 / X0_RANGE[1], 1 / X0_RANGE[0])
    x0 = 1 / s
    for _ in range(iterations):
        x0 = (1 + _LOG_TERM * jnp.log(path / (x0 * beta2))) ** 2 / s
    return x0


def _axis_probabilities(mean: Array, sd: Array, edges: Array) -> Array:
    """(n, n_bins) P(coordinate in each bin) for N(mean, sd^2)."""
    cdf = ndtr((edges[None, :] - mean[:, None]) / sd[:, None])
    return cdf[:, 1:] - cdf[:, :-1]


def x0_poca(
    sc: Scatters, p: Float[Array, " n"], volume: Volume, prior_muons: float = 1.0
) -> Float[Array, "nx ny nz"]:
    """PoCA estimate of X0 per voxel (m); voxels few muons reach tend to the global estimate
    (``prior_muons`` pseudo-muons of it per voxel)."""
    (m, path, beta2), global_m, global_path = _global(sc, p, volume)
    w = sc.weight
    probs = []
    for axis in range(3):
        edges = volume.lower[axis] + volume.size * jnp.arange(volume.shape[axis] + 1)
        sd = jnp.sqrt(jnp.maximum(sc.poca_covariance[:, axis, axis], 1e-8))
        probs.append(_axis_probabilities(sc.poca[:, axis], sd, edges))
    px, py, pz = probs
    pxy = (w[:, None] * px)[:, :, None] * py[:, None, :]  # (n, nx, ny)
    weight = jnp.einsum("nij,nk->ijk", pxy, pz)
    sum_m = jnp.einsum("nij,nk->ijk", pxy, pz * m[:, None])
    sum_path = jnp.einsum("nij,nk->ijk", pxy, pz * path[:, None])
    s = (sum_m + prior_muons * global_m) / (weight + prior_muons)
    mean_path = (sum_path + prior_muons * global_path) / (weight + prior_muons)
    return _solve_x0(s, mean_path, jnp.sum(w * beta2) / jnp.sum(w))


def _path_voxels(poca: Array, incoming: Array, outgoing: Array, volume: Volume):
    """Per muon and layer (incoming line above the PoCA, outgoing below): the 4 voxel indices
    (flat) and bilinear weights of the path's point at the layer's mid-height (clamped at the
    grid's edges; 0 outside the grid) and the path length in the layer (n, nz)."""
    nx, ny, nz = volume.shape
    z_bottom, z_top = volume.z_range
    zc = volume.lower[2] + volume.size * (jnp.arange(nz) + 0.5)  # (nz,)
    above = jax.nn.sigmoid((zc[None, :] - poca[:, 2:3]) / (0.1 * volume.size))[None]
    xy_in = incoming[:2, :, None] + incoming[2:, :, None] * (zc - z_top)[None, None]
    xy_out = outgoing[:2, :, None] + outgoing[2:, :, None] * (zc - z_bottom)[None, None]
    xy = above * xy_in + (1 - above) * xy_out  # (2, n, nz)
    slopes = above * incoming[2:, :, None] + (1 - above) * outgoing[2:, :, None]
    length = volume.size * jnp.sqrt(1 + jnp.sum(slopes**2, axis=0))  # (n, nz)
    corners = []
    for axis, n_axis in ((0, nx), (1, ny)):
        u = (xy[axis] - volume.lower[axis]) / volume.size - 0.5
        inside = (u >= -0.5) & (u <= n_axis - 0.5)
        u = jnp.clip(u, 0.0, n_axis - 1.0)
        i0 = jnp.minimum(jnp.floor(u), max(n_axis - 2, 0))
        f = u - i0
        corners.append(((i0.astype(int), 1 - f), (i0.astype(int) + 1, f), inside))
    (ix, iy) = corners
    layer = jnp.arange(nz)[None, :]
    inside = ix[2] & iy[2]
    index, weight = [], []
    for i, wi in ix[:2]:
        for j, wj in iy[:2]:
            i, j = jnp.minimum(i, nx - 1), jnp.minimum(j, ny - 1)
            index.append(i * ny * nz + j * nz + layer)
            weight.append(jnp.where(inside, wi * wj, 0.0))
    return jnp.stack(index, -1), jnp.stack(weight, -1), length


def _kinks(incoming: Array, outgoing: Array, height: float) -> Array:
    """(2, 2): per projection ``e_k`` of the incoming track's frame, the scattering angle and
    the lateral offset at the grid's bottom of one muon's lines (x, y, tx, ty) at top/bottom.

    The offset is ``e_k . (P - Q)``, ``P`` and ``Q`` the incoming and the outgoing line's
    points on the grid's bottom: the distance of ``Q`` from the incoming line along ``e_k``
    (``P - Q`` is horizontal; its part along the line is dropped). Its sign is that of the
    angle for a kick above the bottom (z decreases along the flight, so a kick by ``a``
    towards ``+e_k`` of the upward direction ``u`` at a path length ``T`` above the bottom
    moves ``Q`` by ``-a T e_k`` across the line)."""
    t_in = incoming[2:]
    angles = scattering_angles(*t_in, *outgoing[2:])
    _, e1, e2 = track_frame(*t_in)
    miss = incoming[:2] - t_in * height - outgoing[:2]
    offsets = jnp.stack([e[0] * miss[0] + e[1] * miss[1] for e in (e1, e2)])
    return jnp.stack([angles, offsets], axis=1)


def _layer_scale(material: Array, p: Array) -> Array:
    """(n, nz) each layer's Highland variance per unit material (rad^2): the increase of
    :func:`~diffdesign.muography.scattering.highland_variance` across the layer, with the
    material accumulated from the top (layer nz - 1) down, over the layer's material. The
    simulator's variance grows exactly so, so the layers' shares add up to Highland's width
    of the whole path and lie deeper where the log term puts them."""
    end = jnp.flip(jnp.cumsum(jnp.flip(material, 1), axis=1), 1)
    start = end - material
    grown = highland_variance(end, p[:, None]) - highland_variance(start, p[:, None])
    return jnp.maximum(grown / jnp.maximum(material, 1e-12), 0.0)


def _measurement_covariance(incoming, outgoing, cov_in, cov_out, height) -> Array:
    """(n, 2, 2, 2): per muon and projection, the covariance of (angle, offset) from the two
    tracks' (position, slope) covariances, by first-order propagation. (The two projections'
    measurement errors are slightly correlated for an inclined track; the likelihood, which
    treats the projections as independent, leaves that out.)"""
    jac = jax.vmap(jax.jacfwd(lambda a, b: _kinks(a, b, height), argnums=(0, 1)))(
        incoming.T, outgoing.T
    )  # each (n, 2 proj, 2 obs, 4 params)
    return sum(
        jnp.einsum("nkap,npq,nkbq->nkab", j, line_covariance(c), j)
        for j, c in zip(jac, (cov_in, cov_out), strict=True)
    )


class _Muons(NamedTuple):
    """What the path likelihood needs of each muon (muon axis first in every leaf)."""

    poca: Array  # (n, 3)
    weight: Array  # (n,) reconstruction weight
    p: Array  # (n,) momentum (eV/c)
    line_in: Array  # (n, 4) incoming line at the grid's top
    line_out: Array  # (n, 4) outgoing line at the grid's bottom
    data: Array  # (n, 2, 2) per projection (angle, offset)
    noise: Array  # (n, 2, 2, 2) their measurement covariance


class _Raw(NamedTuple):
    """The muons' inputs of :func:`_muons` (muon axis first in every leaf)."""

    poca: Array
    weight: Array
    p: Array
    line_in: Array  # (n, 4)
    line_out: Array
    cov_in: Array  # (n, 2, 2) covariance of (position, slope) of the incoming line
    cov_out: Array


def _muons(raw: _Raw, height: float) -> _Muons:
    """The muons' data for :func:`_terms`: the kinks and their covariance are computed once
    (few numbers per muon, and the costliest to recompute)."""
    line_in, line_out = raw.line_in.T, raw.line_out.T
    data = jax.vmap(lambda a, b: _kinks(a, b, height), in_axes=(1, 1))(line_in, line_out)
    noise = _measurement_covariance(line_in, line_out, raw.cov_in, raw.cov_out, height)
    return _Muons(raw.poca, raw.weight, raw.p, raw.line_in, raw.line_out, data, noise)


class _Terms(NamedTuple):
    """Per muon, the constants of the EM step (see the module docstring)."""

    index: Array  # (n, nz, 4) flat voxel indices of the path's bilinear corners
    bweight: Array  # (n, nz, 4) their bilinear weights
    length: Array  # (n, nz) path length in each layer
    w11: Array  # (n, 1, nz) the layer's W_k entries per unit 1/X0 (both projections)
    w12: Array
    w22: Array
    data: Array  # (n, 2, 2) per projection (angle, offset)
    noise: Array  # (n, 2, 2, 2) their measurement covariance
    p: Array
    weight: Array


def _terms(m: _Muons, volume: Volume) -> _Terms:
    """The EM step's per-muon constants of the muons ``m``."""
    index, bweight, length = _path_voxels(m.poca, m.line_in.T, m.line_out.T, volume)
    # per layer, the 2 x 2 covariance of (angle, offset at the bottom) per unit 1/X0 and
    # unit Highland scale, the same in both projections of the muon's frame: kicks spread
    # over the path length L in the layer, with the lever arm T (the path length from the
    # layer's bottom to the grid's)
    el = length[:, None]  # (n, 1, nz)
    tp = el * jnp.arange(volume.shape[2])[None, None, :]
    w11 = el
    w12, w22 = el * (el / 2 + tp), el * (el**2 / 3 + el * tp + tp**2)
    return _Terms(index, bweight, length, w11, w12, w22, m.data, m.noise, m.p, m.weight)


def _count(t: _Terms, n_vox: int) -> Array:
    """(n_vox,) N_v = sum_i w_i b_iv."""
    return jax.ops.segment_sum(
        (t.weight[:, None, None] * t.bweight).reshape(-1), t.index.reshape(-1),
        num_segments=n_vox,
    )  # fmt: skip


def _score(t: _Terms, s: Array) -> Array:
    """(n_vox,) the EM step's sum_i w_i b_iv [d^T S^-1 A S^-1 d - tr(S^-1 A)] / 4 at ``s``."""
    layer_s = jnp.sum(t.bweight * s[t.index], axis=2)  # (n, nz) path-averaged 1/X0
    scale = _layer_scale(t.length * layer_s, t.p)  # (n, nz)
    w11, w12, w22 = t.w11, t.w12, t.w22
    sums = [jnp.sum((scale * layer_s)[:, None] * v, axis=2) for v in (w11, w12, w22)]
    sigma = jnp.stack([jnp.stack([sums[0], sums[1]], -1), jnp.stack([sums[1], sums[2]], -1)],
                      -2) + t.noise  # fmt: skip  # (n, 2 proj, 2, 2)
    inv = jnp.linalg.inv(sigma)
    r = jnp.einsum("npij,npj->npi", inv, t.data)[..., None]  # Sigma^-1 d, (n, 2, 2, 1)
    # d^T S^-1 W S^-1 d - tr(S^-1 W), W = [[w11, w12], [w12, w22]], summed over projections
    quad = (
        w11 * r[:, :, 0] ** 2 + 2 * w12 * r[:, :, 0] * r[:, :, 1] + w22 * r[:, :, 1] ** 2
        - (w11 * inv[..., 0, 0, None] + 2 * w12 * inv[..., 0, 1, None]
           + w22 * inv[..., 1, 1, None])
    ).sum(1)  # fmt: skip  # (n, nz)
    term = (t.weight[:, None] * scale * quad)[..., None] * t.bweight  # (n, nz, 4)
    n_vox = s.shape[0]
    return jax.ops.segment_sum(term.reshape(-1), t.index.reshape(-1), num_segments=n_vox) / 4


def x0_likelihood(
    sc: Scatters,
    p: Float[Array, " n"],
    incoming: Tracks,
    outgoing: Tracks,
    volume: Volume,
    iterations: int = 40,
    start: Float[Array, "nx ny nz"] | str = "uniform",
    prior_muons: float = 1.0,
    relaxation: float = 1.5,
    chunk_size: int | None = None,
) -> Float[Array, "nx ny nz"]:
    """Maximum-likelihood X0 per voxel (m) from angles and offsets, by ``iterations`` EM steps.

    Args:
        sc: the scatters.
        p: (n,) momenta (eV/c).
        incoming: the fitted track at the grid's top.
        outgoing: the fitted track at the grid's bottom.
        volume: the grid (its geometry; its X0 is not used).
        iterations: EM steps.
        start: X0 map to start from (m), ``"uniform"`` (default: every voxel at the global
            estimate) or ``"poca"`` (the PoCA map: a dense block converges in half the
            steps, but PoCA's depth bias in uniform regions takes many more to undo).
        relaxation: over-relaxation of each EM step (1 plain EM; 1.5 reaches in 40 steps
            what plain EM reaches in about 60).
        prior_muons: pseudo-muons per voxel holding it at the start value: voxels few
            muons cross stay near it instead of running off to 0 or infinity.
        chunk_size: None (default) computes every muon's constants of the EM step once and
            keeps them; a positive integer streams the muons ``chunk_size`` at a time
            through every step, recomputing their paths through the grid (each chunk
            rematerialised under differentiation). The result is the same up to rounding;
            a gradient then holds the tracks and one chunk's intermediates instead of ~7 kB
            of constants and cotangents per muon (the 1e6-muon gradient of
            ``benchmarks/scaling.py`` fits in 8 GiB only so), at the price of the constants'
            recomputation in every step.
    """
    _chunks.check_chunk_size(chunk_size)
    raw = _Raw(sc.poca, sc.weight, p, incoming.line.T, outgoing.line.T, incoming.covariance,
               outgoing.covariance)  # fmt: skip
    height = volume.z_range[1] - volume.z_range[0]
    n_vox = volume.shape[0] * volume.shape[1] * volume.shape[2]
    if chunk_size is None:
        terms = _terms(_muons(raw, height), volume)
        count = _count(terms, n_vox)

        def score(s):
            return _score(terms, s)
    else:
        n = p.shape[0]
        blocks = _chunks.split(raw, chunk_size)
        blocks = blocks._replace(weight=blocks.weight * _chunks.padding_mask(n, chunk_size))
        blocks = jax.lax.map(jax.checkpoint(lambda b: _muons(b, height)), blocks)

        def chunk_sum(one):  # sum over chunks of one(chunk terms), each chunk rematerialised
            def body(total, block):
                return total + jax.checkpoint(lambda b: one(_terms(b, volume)))(block), None

            return jax.lax.scan(body, jnp.zeros(n_vox), blocks)[0]

        count = chunk_sum(lambda t: _count(t, n_vox))

        def score(s):
            return chunk_sum(lambda t: _score(t, s))

    if isinstance(start, str) and start == "poca":
        s0 = 1 / x0_poca(sc, p, volume).reshape(-1)
    elif isinstance(start, str) and start == "uniform":
        _, global_m, global_path = _global(sc, p, volume)
        global_s = 1 / _solve_x0(global_m, global_path)
        s0 = jnp.full(n_vox, global_s)
    elif isinstance(start, str):
        raise ValueError(f"start must be 'poca', 'uniform' or an X0 map; got {start!r}")
    else:
        s0 = 1 / jnp.asarray(start).reshape(-1)

    @jax.checkpoint
    def em_step(s, _):
        # EM (count s + s^2 total) / count, shrunk towards the start by prior_muons
        em = (count * s + s**2 * score(s) + prior_muons * s0) / (count + prior_muons)
        s = s + relaxation * (em - s)
        return jnp.clip(s, 1 / X0_RANGE[1], 1 / X0_RANGE[0]), None

    s, _ = jax.lax.scan(em_step, s0, None, length=iterations)
    return (1 / s).reshape(volume.shape)
