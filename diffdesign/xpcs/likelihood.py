"""The one likelihood that the least-squares fit and the samplers share.

A :class:`Problem` holds the measured points, the experiment (t, phi, q, L) and the choices
that shape the parameter vector: the mode (``static`` or ``laminar_flow``), how contrast and
offset are treated per angle, and the time-integral discretisation. The parameter vector is
the physical parameters in homodyne's order followed by the scalings:

- ``"individual"``: one contrast and one offset per angle (2 n_phi values);
- ``"averaged"``: one contrast and one offset shared by all angles (2 values);
- ``"constant"``: none; each angle's contrast and offset are fixed beforehand from the data's
  quantiles (:func:`quantile_scaling`, homodyne's "constant" mode).

:func:`residuals` (whitened, one per point) is the model's only contact with the data; the
log-likelihood is ``-0.5 * sum(residuals**2)`` plus its Gaussian normalisation.
:func:`normal_equations` accumulates ``J^T J``, ``J^T r`` and chi^2 over chunks of points, so
memory stays bounded whatever the number of points.
"""

from __future__ import annotations

from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from diffdesign.xpcs.data import Points, XpcsData, points
from diffdesign.xpcs.model import INTEGRALS, g1_pairs, parameter_names

SCALINGS = ("individual", "averaged", "constant")

#: Default box bounds per parameter (homodyne's template ranges, widened where they exclude
#: physical values: phi0 spans [-90, 90] degrees, the full range cos(phi0 - phi) resolves).
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "D0": (1.0, 1e6),
    "alpha": (-2.0, 2.0),
    "D_offset": (-1e5, 1e5),
    "gamma_dot_t0": (1e-6, 0.5),
    "beta": (-2.0, 2.0),
    "gamma_dot_t_offset": (-0.1, 0.1),
    "phi0": (-90.0, 90.0),
    "contrast": (0.0, 1.0),
    "offset": (0.5, 1.5),
}


class Problem(eqx.Module):
    """Data and model choices of one fit; a PyTree whose arrays are the data.

    Build it with :func:`make_problem`. ``fixed_contrast``/``fixed_offset`` (n_phi,) are used
    only in ``"constant"`` scaling.
    """

    points: Points
    t: Float[Array, " n_t"]
    phi: Float[Array, " n_phi"]
    q: Float[Array, ""]
    L: Float[Array, ""]
    fixed_contrast: Float[Array, " n_phi"]
    fixed_offset: Float[Array, " n_phi"]
    mode: str = eqx.field(static=True)
    scaling: str = eqx.field(static=True)
    integral: str = eqx.field(static=True)

    @property
    def physical_names(self) -> tuple[str, ...]:
        return parameter_names(self.mode)

    @property
    def n_phi(self) -> int:
        return int(self.phi.shape[0])

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the parameter vector's entries (``contrast[k]`` is angle k's)."""
        if self.scaling == "individual":
            extra = tuple(f"contrast[{k}]" for k in range(self.n_phi))
            extra += tuple(f"offset[{k}]" for k in range(self.n_phi))
        elif self.scaling == "averaged":
            extra = ("contrast", "offset")
        else:
            extra = ()
        return self.physical_names + extra

    @property
    def n_points(self) -> Array:
        """Points that carry weight (padding excluded)."""
        return jnp.sum(self.points.weight > 0)

    def with_points(self, pts: Points) -> Problem:
        """The same problem on other points (a shard, a subsample)."""
        return eqx.tree_at(lambda p: p.points, self, pts)


def make_problem(
    data: XpcsData,
    mode: str,
    *,
    scaling: str = "individual",
    integral: str = "trapezoid",
    include_diagonal: bool = False,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> Problem:
    """The problem of fitting ``data`` in ``mode`` (``"static"`` or ``"laminar_flow"``)."""
    parameter_names(mode)
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}; got {scaling!r}")
    if integral not in INTEGRALS:
        raise ValueError(f"integral must be one of {INTEGRALS}; got {integral!r}")
    if scaling == "constant":
        box = resolve_bounds(bounds)
        contrast, offset = quantile_scaling(data, box["contrast"], box["offset"])
    else:
        contrast = offset = np.full(data.n_phi, np.nan)
    return Problem(
        points=points(data, include_diagonal=include_diagonal),
        t=data.t,
        phi=data.phi,
        q=data.q,
        L=data.L,
        fixed_contrast=jnp.asarray(contrast),
        fixed_offset=jnp.asarray(offset),
        mode=mode,
        scaling=scaling,
        integral=integral,
    )


def resolve_bounds(bounds: Mapping[str, tuple[float, float]] | None) -> dict:
    """DEFAULT_BOUNDS updated by the user's, each checked to be finite with lower < upper."""
    box = dict(DEFAULT_BOUNDS)
    for name, pair in (bounds or {}).items():
        if name not in box:
            raise ValueError(f"bounds: unknown parameter {name!r}; allowed {sorted(box)}")
        lo, hi = (float(v) for v in pair)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"bounds[{name!r}] must be finite with lower < upper; got {pair}")
        box[name] = (lo, hi)
    return box


def parameter_box(problem: Problem, bounds: Mapping | None = None) -> tuple[Array, Array]:
    """(lower, upper) of the problem's parameter vector."""
    box = resolve_bounds(bounds)
    n_scale = {"individual": problem.n_phi, "averaged": 1, "constant": 0}[problem.scaling]
    rows = [box[name] for name in problem.physical_names]
    rows += [box["contrast"]] * n_scale + [box["offset"]] * n_scale
    lower, upper = np.array(rows, dtype=float).T.reshape(2, -1)
    return jnp.asarray(lower), jnp.asarray(upper)


def unpack(
    theta: Float[Array, " p"], problem: Problem
) -> tuple[dict[str, Array], Float[Array, " n_phi"], Float[Array, " n_phi"]]:
    """The physical parameters (dict) and per-angle contrast and offset of a parameter vector."""
    names = problem.physical_names
    params = {name: theta[k] for k, name in enumerate(names)}
    n, n_phi = len(names), problem.n_phi
    if problem.scaling == "individual":
        contrast, offset = theta[n : n + n_phi], theta[n + n_phi : n + 2 * n_phi]
    elif problem.scaling == "averaged":
        contrast = jnp.full(n_phi, theta[n])
        offset = jnp.full(n_phi, theta[n + 1])
    else:
        contrast, offset = problem.fixed_contrast, problem.fixed_offset
    return params, contrast, offset


def pack(
    params: Mapping[str, ArrayLike], contrast: ArrayLike, offset: ArrayLike, problem: Problem
) -> Float[Array, " p"]:
    """The inverse of :func:`unpack` (``averaged`` takes the mean of per-angle values)."""
    physical = jnp.stack([jnp.asarray(params[n], dtype=float) for n in problem.physical_names])
    contrast = jnp.broadcast_to(jnp.asarray(contrast, dtype=float), (problem.n_phi,))
    offset = jnp.broadcast_to(jnp.asarray(offset, dtype=float), (problem.n_phi,))
    if problem.scaling == "individual":
        return jnp.concatenate([physical, contrast, offset])
    if problem.scaling == "averaged":
        return jnp.concatenate([physical, jnp.stack([contrast.mean(), offset.mean()])])
    return physical


def model_g1_squared(params: Mapping[str, Array], problem: Problem) -> Float[Array, " m"]:
    """g1^2 at every point: the part of the model that is nonlinear in the parameters."""
    pts = problem.points
    g1 = g1_pairs(
        params, problem.t, problem.phi, problem.q, problem.L, pts.angle, pts.i, pts.j,
        problem.integral,
    )  # fmt: skip
    return g1**2


def residuals(theta: Float[Array, " p"], problem: Problem) -> Float[Array, " m"]:
    """Whitened residuals ``(c2 - g2) / sigma`` at every point (0 at padding points)."""
    params, contrast, offset = unpack(theta, problem)
    pts = problem.points
    model = offset[pts.angle] + contrast[pts.angle] * model_g1_squared(params, problem)
    return pts.weight * (pts.c2 - model)


def log_likelihood(theta: Float[Array, " p"], problem: Problem) -> Float[Array, ""]:
    """Gaussian log-likelihood of the data, normalisation included."""
    w = problem.points.weight
    normalisation = jnp.sum(jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), 0.0))
    r = residuals(theta, problem)
    return -0.5 * jnp.sum(r**2) + normalisation - 0.5 * problem.n_points * jnp.log(2 * jnp.pi)


def pointwise_log_likelihood(theta: Float[Array, " p"], problem: Problem) -> Float[Array, " m"]:
    """Per-point log-likelihood (for LOO / WAIC); padding points give 0."""
    w = problem.points.weight
    r = residuals(theta, problem)
    log_w = jnp.log(jnp.where(w > 0, w, 1.0))
    return jnp.where(w > 0, -0.5 * r**2 + log_w - 0.5 * jnp.log(2 * jnp.pi), 0.0)


def chunked(problem: Problem, chunk_size: int) -> Points:
    """The problem's points reshaped to (n_chunks, chunk_size), padded with weight-0 points."""
    pts = problem.points
    size = pts.c2.shape[0]
    n_chunks = max(1, -(-size // chunk_size))
    pad = n_chunks * chunk_size - size

    def split(x, fill):
        x = jnp.concatenate([x, jnp.full((pad,), fill, dtype=x.dtype)])
        return x.reshape(n_chunks, chunk_size)

    return Points(
        angle=split(pts.angle, 0),
        i=split(pts.i, 0),
        j=split(pts.j, 1),
        c2=split(pts.c2, 0.0),
        weight=split(pts.weight, 0.0),
    )


def normal_equations(
    theta: Float[Array, " p"], problem: Problem, chunk_size: int = 65536
) -> tuple[Float[Array, "p p"], Float[Array, " p"], Float[Array, ""]]:
    """``(J^T J, J^T r, sum r^2)`` of :func:`residuals` at ``theta``, accumulated over chunks.

    Memory is one chunk's Jacobian (chunk_size x p), whatever the number of points.
    """
    blocks = chunked(problem, chunk_size)

    def accumulate(carry, block):
        jtj, jtr, chi2 = carry
        sub = problem.with_points(block)
        r, jac = jax.vmap(  # forward mode: p tangents through one chunk
            lambda v: jax.jvp(lambda x: residuals(x, sub), (theta,), (v,)),
            out_axes=(None, 1),
        )(jnp.eye(theta.shape[0], dtype=theta.dtype))
        return (jtj + jac.T @ jac, jtr + jac.T @ r, chi2 + r @ r), None

    p = theta.shape[0]
    start = (jnp.zeros((p, p)), jnp.zeros(p), jnp.zeros(()))
    (jtj, jtr, chi2), _ = jax.lax.scan(accumulate, start, blocks)
    return jtj, jtr, chi2


def chi_squared(theta: Float[Array, " p"], problem: Problem, chunk_size: int = 65536) -> Array:
    """``sum r^2`` over chunks (forward only, bounded memory)."""
    blocks = chunked(problem, chunk_size)

    def accumulate(total, block):
        r = residuals(theta, problem.with_points(block))
        return total + r @ r, None

    return jax.lax.scan(accumulate, jnp.zeros(()), blocks)[0]


def quantile_scaling(
    data: XpcsData,
    contrast_bounds: tuple[float, float] = DEFAULT_BOUNDS["contrast"],
    offset_bounds: tuple[float, float] = DEFAULT_BOUNDS["offset"],
    *,
    long_lag_quantile: float = 0.8,
    short_lag_quantile: float = 0.2,
    low_value_quantile: float = 0.1,
    high_value_quantile: float = 0.9,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-angle contrast and offset estimated from the data's quantiles (homodyne's method).

    The offset is a low quantile of c2 over the longest lags (where g1^2 has decayed); the
    contrast is a high quantile over the shortest lags (g1^2 near 1) minus that offset; both
    are clipped to their bounds. It is biased where g1 has not decayed within the window
    or decays within the shortest lags; "individual" fits them instead.
    """
    c2 = np.asarray(data.c2)
    t = np.asarray(data.t)
    lag = np.abs(t[:, None] - t[None, :])
    contrast, offset = np.empty(data.n_phi), np.empty(data.n_phi)
    for k in range(data.n_phi):
        values = c2[k].ravel()
        lags = lag.ravel()
        long = lags >= np.percentile(lags, 100 * long_lag_quantile)
        short = lags <= np.percentile(lags, 100 * short_lag_quantile)
        offset[k] = np.clip(np.percentile(values[long], 100 * low_value_quantile), *offset_bounds)
        ceiling = np.percentile(values[short], 100 * high_value_quantile)
        contrast[k] = np.clip(ceiling - offset[k], *contrast_bounds)
    return contrast, offset
