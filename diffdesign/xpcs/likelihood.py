"""The one likelihood that the least-squares fit and the samplers share.

A :class:`Problem` holds the measured points, the experiment (t, phi, q, L) and the choices
that shape the parameter vector: the mode (``static`` or ``laminar_flow``), how contrast and
offset are treated per angle (a :class:`Scaling` object), and the time-integral
discretisation. The parameter vector is the physical parameters in homodyne's order followed
by the scalings:

- :class:`IndividualScaling` (``"individual"``): one contrast and one offset per angle
  (2 n_phi values);
- :class:`AveragedScaling` (``"averaged"``): one contrast and one offset shared by all angles
  (2 values);
- :class:`ConstantScaling` (``"constant"``): none; each angle's contrast and offset are fixed
  beforehand from the data's quantiles (:func:`quantile_scaling`, homodyne's "constant" mode).

The names in brackets are homodyne's and the configuration files' (:data:`SCALINGS`).

:func:`residuals` (whitened, one per point) is the model's only contact with the data; the
log-likelihood is ``-0.5 * sum(residuals**2)`` plus its Gaussian normalisation.
:func:`normal_equations` accumulates ``J^T J``, ``J^T r`` and chi^2 over chunks of points, so
memory stays bounded whatever the number of points.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from diffdesign.xpcs._matrices import all_pairs
from diffdesign.xpcs.data import Points, XpcsData, points
from diffdesign.xpcs.heterodyne import two_component_pairs
from diffdesign.xpcs.model import INTEGRALS, g1_pairs, parameter_names

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
    # The two-component model (xpcsjax's ranges; D0 and v0 start at 1 and 1e-3 instead of 0
    # because they move in log space, v_beta and phi0_het widened like beta and phi0).
    "D0_ref": (1.0, 1e6),
    "alpha_ref": (-2.0, 2.0),
    "D_offset_ref": (-1e4, 1e4),
    "D0_sample": (1.0, 1e6),
    "alpha_sample": (-2.0, 2.0),
    "D_offset_sample": (-1e4, 1e4),
    "v0": (1e-3, 1e6),
    "v_beta": (-2.0, 2.0),
    "v_offset": (-100.0, 100.0),
    "f0": (0.0, 1.0),
    "f1": (-1.0, 1.0),
    "f2": (-1.0, 1.0),
    "f3": (-1.0, 1.0),
    "phi0_het": (-90.0, 90.0),
    "contrast": (0.0, 1.0),
    "offset": (0.5, 1.5),
}


class Scaling(eqx.Module):
    """How contrast and offset enter the parameter vector: the ``scaling`` of
    :func:`make_problem`, :func:`~diffdesign.xpcs.fit_nlsq` and :func:`~diffdesign.xpcs.fit_cmc`.

    Subclasses say how many (contrast, offset) pairs are free and how they map to the
    per-angle values the model uses; ``name`` is homodyne's (written to results files).
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def n_free(self, n_phi: int) -> int:
        """Free (contrast, offset) pairs in the parameter vector."""

    @abc.abstractmethod
    def names(self, n_phi: int) -> tuple[str, ...]:
        """Names of the parameter vector's entries after the physical ones."""

    @abc.abstractmethod
    def unpack(
        self, scalings: Float[Array, " s"], problem: Problem
    ) -> tuple[Float[Array, " n_phi"], Float[Array, " n_phi"]]:
        """Per-angle contrast and offset from the parameter vector's scaling entries."""

    @abc.abstractmethod
    def pack(
        self, contrast: Float[Array, " n_phi"], offset: Float[Array, " n_phi"]
    ) -> Float[Array, " s"]:
        """The scaling entries of per-angle contrast and offset (inverse of :meth:`unpack`)."""

    @abc.abstractmethod
    def variables(self, scalings: np.ndarray, leading: tuple[str, ...]) -> dict:
        """Posterior variables ``name -> (dims, draws)`` of the scaling entries (the last axis
        of ``scalings``; ``leading`` the dims of the others)."""

    def n_segments(self, n_phi: int) -> int:
        """Rows of :func:`~diffdesign.xpcs.scaling.scaling_statistics`: groups of angles that
        share one (contrast, offset); one unless each angle has its own."""
        return 1

    def segment_of(self, angle: Array) -> Array:
        """Each point's row of the statistics, from its angle index."""
        return jnp.zeros_like(angle)

    def per_angle(self, contrast: Array, offset: Array, n_phi: int) -> tuple[Array, Array]:
        """Per-angle values of one (contrast, offset) per segment."""
        return jnp.full(n_phi, contrast[0]), jnp.full(n_phi, offset[0])

    def fixed(self, data: XpcsData, box: Mapping) -> tuple[np.ndarray, np.ndarray]:
        """Per-angle contrast and offset fixed before the fit (NaN where they are fitted)."""
        return np.full(data.n_phi, np.nan), np.full(data.n_phi, np.nan)


class IndividualScaling(Scaling):
    """One contrast and one offset per angle (homodyne's ``"individual"``)."""

    name: ClassVar[str] = "individual"

    def n_free(self, n_phi):
        return n_phi

    def names(self, n_phi):
        return tuple(f"contrast[{k}]" for k in range(n_phi)) + tuple(
            f"offset[{k}]" for k in range(n_phi)
        )

    def unpack(self, scalings, problem):
        n_phi = problem.n_phi
        return scalings[:n_phi], scalings[n_phi : 2 * n_phi]

    def pack(self, contrast, offset):
        return jnp.concatenate([contrast, offset])

    def variables(self, scalings, leading):
        n_phi = scalings.shape[-1] // 2
        dims = (*leading, "phi")
        return {"contrast": (dims, scalings[..., :n_phi]), "offset": (dims, scalings[..., n_phi:])}

    def n_segments(self, n_phi):
        return n_phi

    def segment_of(self, angle):
        return angle

    def per_angle(self, contrast, offset, n_phi):
        return contrast, offset


class AveragedScaling(Scaling):
    """One contrast and one offset shared by all angles (homodyne's ``"averaged"``)."""

    name: ClassVar[str] = "averaged"

    def n_free(self, n_phi):
        return 1

    def names(self, n_phi):
        return ("contrast", "offset")

    def unpack(self, scalings, problem):
        return jnp.full(problem.n_phi, scalings[0]), jnp.full(problem.n_phi, scalings[1])

    def pack(self, contrast, offset):
        return jnp.stack([contrast.mean(), offset.mean()])

    def variables(self, scalings, leading):
        return {"contrast": (leading, scalings[..., 0]), "offset": (leading, scalings[..., 1])}


class ConstantScaling(Scaling):
    """No contrast or offset in the parameter vector: each angle's are fixed beforehand from
    the data's quantiles (:func:`quantile_scaling`, homodyne's ``"constant"``)."""

    name: ClassVar[str] = "constant"

    def n_free(self, n_phi):
        return 0

    def names(self, n_phi):
        return ()

    def unpack(self, scalings, problem):
        return problem.fixed_contrast, problem.fixed_offset

    def pack(self, contrast, offset):
        return jnp.zeros(0, contrast.dtype)

    def variables(self, scalings, leading):
        return {}

    def fixed(self, data, box):
        return quantile_scaling(data, box["contrast"], box["offset"])


#: The scaling when none is given.
DEFAULT_SCALING: Scaling = IndividualScaling()
#: The scalings by homodyne's names, as configuration files give them (``scaling = "averaged"``).
SCALINGS: dict[str, Scaling] = {
    s.name: s for s in (DEFAULT_SCALING, AveragedScaling(), ConstantScaling())
}


def scaling_from_name(name: str) -> Scaling:
    """The scaling a configuration names (a key of :data:`SCALINGS`).

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    try:
        return SCALINGS[name]
    except (KeyError, TypeError):
        raise ValueError(f"scaling must be one of {list(SCALINGS)}; got {name!r}") from None


def check_scaling(scaling: object) -> Scaling:
    """``scaling`` if it is a :class:`Scaling`; a TypeError naming the choices if not."""
    if not isinstance(scaling, Scaling):
        raise TypeError(
            "scaling must be a Scaling: IndividualScaling(), AveragedScaling() or "
            f"ConstantScaling() (configuration names map through scaling_from_name); "
            f"got {scaling!r}"
        )
    return scaling


class Problem(eqx.Module):
    """Data and model choices of one fit; a PyTree whose arrays are the data.

    Build it with :func:`make_problem`. ``fixed_contrast``/``fixed_offset`` (n_phi,) are used
    only by :class:`ConstantScaling`; ``fixed`` holds physical parameters kept at given
    values (absent from the parameter vector).
    """

    points: Points
    t: Float[Array, " n_t"]
    phi: Float[Array, " n_phi"]
    q: Float[Array, ""]
    L: Float[Array, ""]
    fixed_contrast: Float[Array, " n_phi"]
    fixed_offset: Float[Array, " n_phi"]
    fixed: dict[str, Float[Array, ""]]
    mode: str = eqx.field(static=True)
    scaling: Scaling
    integral: str = eqx.field(static=True)

    @property
    def physical_names(self) -> tuple[str, ...]:
        """The physical parameters in the vector: the mode's, less the fixed ones."""
        return tuple(n for n in parameter_names(self.mode) if n not in self.fixed)

    @property
    def n_phi(self) -> int:
        return int(self.phi.shape[0])

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the parameter vector's entries (``contrast[k]`` is angle k's)."""
        return self.physical_names + self.scaling.names(self.n_phi)

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
    scaling: Scaling = DEFAULT_SCALING,
    integral: str = "trapezoid",
    include_diagonal: bool = False,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    fixed: Mapping[str, float] | None = None,
) -> Problem:
    """The problem of fitting ``data`` in ``mode`` (``"static"``, ``"laminar_flow"`` or
    ``"two_component"``) with contrast and offset treated by ``scaling`` (a :class:`Scaling`)
    and the physical parameters named in ``fixed`` held at their values.

    Raises:
        TypeError: ``scaling`` is not a :class:`Scaling`.
        ValueError: an unknown mode or integral (the two-component model has the trapezoid
            only), bad bounds, or a fixed parameter unknown, not finite, outside its bounds,
            or all of them fixed.
    """
    if not isinstance(data, XpcsData):
        raise TypeError(f"data must be an XpcsData; got {type(data).__name__}")
    names = parameter_names(mode)
    check_scaling(scaling)
    if integral not in INTEGRALS:
        raise ValueError(f"integral must be one of {INTEGRALS}; got {integral!r}")
    if mode == "two_component" and integral != "trapezoid":
        raise ValueError(
            f"integral: the two-component model integrates by xpcsjax's trapezoid only; "
            f"got {integral!r}"
        )
    box = resolve_bounds(bounds)
    held = check_fixed(fixed, names, box)
    contrast, offset = scaling.fixed(data, box)
    return Problem(
        points=points(data, include_diagonal=include_diagonal),
        t=data.t,
        phi=data.phi,
        q=data.q,
        L=data.L,
        fixed_contrast=jnp.asarray(contrast),
        fixed_offset=jnp.asarray(offset),
        fixed={name: jnp.asarray(value, dtype=float) for name, value in held.items()},
        mode=mode,
        scaling=scaling,
        integral=integral,
    )


def check_fixed(
    fixed: Mapping[str, float] | None, names: tuple[str, ...], box: Mapping
) -> dict[str, float]:
    """``fixed`` as floats, each a parameter of the mode, finite and inside its bounds."""
    held = {}
    for name, value in dict(fixed or {}).items():
        if name not in names:
            raise ValueError(f"fixed: unknown parameter {name!r}; allowed {list(names)}")
        lo, hi = box[name]
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"fixed[{name!r}] must be a number; got {value!r}") from None
        if not (np.isfinite(number) and lo <= number <= hi):
            raise ValueError(f"fixed[{name!r}] = {value!r} lies outside its bounds [{lo}, {hi}]")
        held[name] = number
    if len(held) == len(names):
        raise ValueError(f"fixed: every physical parameter is fixed ({list(names)}); free one")
    return held


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
    n_scale = problem.scaling.n_free(problem.n_phi)
    rows = [box[name] for name in problem.physical_names]
    rows += [box["contrast"]] * n_scale + [box["offset"]] * n_scale
    lower, upper = np.array(rows, dtype=float).T.reshape(2, -1)
    return jnp.asarray(lower), jnp.asarray(upper)


def unpack(
    theta: Float[Array, " p"], problem: Problem
) -> tuple[dict[str, Array], Float[Array, " n_phi"], Float[Array, " n_phi"]]:
    """The physical parameters (dict) and per-angle contrast and offset of a parameter vector."""
    names = problem.physical_names
    params = {**problem.fixed, **{name: theta[k] for k, name in enumerate(names)}}
    contrast, offset = problem.scaling.unpack(theta[len(names) :], problem)
    return params, contrast, offset


def pack(
    params: Mapping[str, ArrayLike], contrast: ArrayLike, offset: ArrayLike, problem: Problem
) -> Float[Array, " p"]:
    """The inverse of :func:`unpack` (:class:`AveragedScaling` takes the mean of per-angle
    values)."""
    physical = jnp.stack([jnp.asarray(params[n], dtype=float) for n in problem.physical_names])
    contrast = jnp.broadcast_to(jnp.asarray(contrast, dtype=float), (problem.n_phi,))
    offset = jnp.broadcast_to(jnp.asarray(offset, dtype=float), (problem.n_phi,))
    return jnp.concatenate([physical, problem.scaling.pack(contrast, offset)])


def correlation_shape(params: Mapping[str, Array], problem: Problem) -> Float[Array, " m"]:
    """The part of the model that contrast multiplies, at every point: g1^2 (homodyne) or
    the normalised two-component correlation; nonlinear in the physical parameters."""
    pts = problem.points
    if problem.mode == "two_component":
        return two_component_pairs(params, problem.t, problem.phi, problem.q, pts.angle, pts.i,
                                   pts.j)  # fmt: skip
    g1 = g1_pairs(
        params, problem.t, problem.phi, problem.q, problem.L, pts.angle, pts.i, pts.j,
        problem.integral,
    )  # fmt: skip
    return g1**2


def residuals(theta: Float[Array, " p"], problem: Problem) -> Float[Array, " m"]:
    """Whitened residuals ``(c2 - g2) / sigma`` at every point (0 at padding points)."""
    params, contrast, offset = unpack(theta, problem)
    pts = problem.points
    model = offset[pts.angle] + contrast[pts.angle] * correlation_shape(params, problem)
    return pts.weight * (pts.c2 - model)


def model_matrices(theta: Float[Array, " p"], problem: Problem) -> Float[Array, "n_phi n_t n_t"]:
    """The model's full two-time matrices (n_phi, n_t, n_t) at ``theta``, whatever the mode."""
    params, contrast, offset = unpack(theta, problem)

    def shape_at(angle, i, j):
        shape = jnp.broadcast_shapes(angle.shape, i.shape, j.shape)
        angle, i, j = (jnp.broadcast_to(a, shape).ravel() for a in (angle, i, j))
        ones = jnp.ones(angle.shape)
        grid = Points(angle=angle, i=i, j=j, c2=0.0 * ones, weight=ones)
        return correlation_shape(params, problem.with_points(grid)).reshape(shape)

    return all_pairs(shape_at, problem.n_phi, problem.t.shape[0], contrast, offset)


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
    or decays within the shortest lags; :class:`IndividualScaling` fits them instead.
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
