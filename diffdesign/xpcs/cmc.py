"""Consensus Monte Carlo: NUTS on stratified shards of the points, combined by precision.

The posterior of all parameters (physical, then contrast/offset per angle) is sampled with
NumPyro's NUTS through its functional API (:func:`numpyro.infer.hmc.hmc`), on the same
whitened residuals the least-squares fit uses (:func:`~diffdesign.xpcs.likelihood.residuals`):

    log p(theta | shard k) = -0.5 * sum(residuals(theta, shard_k)**2) + (1/K) log prior(theta)

with K shards (the prior tempered by 1/K, so the product of the K subposteriors has the full
prior; Scott et al. 2016, "Bayes and big data: the consensus Monte Carlo algorithm").

**Contrast and offset are integrated out** (``scalings="marginalised"``, the default). The
model is linear in each angle's (contrast, offset), so for given physics the likelihood is an
exact 2-D Gaussian in them (:func:`~diffdesign.xpcs.scaling.scaling_gaussian`, from the six
weighted sums the least-squares fit's variable projection uses) and the marginal posterior of
the physical parameters is, in closed form,

    -log p(physics | shard) = 0.5 * sum_angles (chi2_min + log det A) - (1/K) log prior + const

with ``chi2_min`` the profiled chi^2 and ``A`` the 2 x 2 precision of each angle's scalings.
NUTS then moves the 3 (static) or 7 (laminar flow) physical parameters instead of 3 + 2 n_phi
(53 for 23 angles), which are the directions along which the scalings correlate at -0.9999
with each other and with D0; each kept draw is completed with (contrast, offset) drawn from
their conditional Gaussian, so the pairs are draws of the joint posterior. The box on the
scalings enters this integral as a weak Gaussian (centre, sd half-width; see
:func:`_scaling_priors`) unless Gaussian priors on them are given. ``scalings="sampled"``
runs NUTS on every parameter with the uniform box prior instead (the cross-check).

**Variables.** NUTS moves unconstrained ``z`` with ``y = centre + half_width * tanh(z)``
inside the box (the least-squares fit's map, :class:`~diffdesign.core.bounds.Box`)
and ``theta = exp(y)`` for D0 and gamma_dot_t0 (``theta = y`` otherwise), so the potential is
``0.5 chi^2 - (1/K) log prior(theta) - log|dtheta/dz|``. The default prior is uniform on the
box (only the Jacobian term); Gaussian priors ``(mu, sigma)`` per parameter name are optional.

**Warm start.** The least-squares covariance times K (one shard's share of the data),
with the tempered Gaussian priors folded in and mapped to z space, is the initial inverse
mass matrix, and chains start from draws of that Gaussian around the least-squares
estimate. It enters as a fixed linear preconditioner ``z = z_hat + L u`` (``L L^T`` that
covariance), NUTS running on ``u`` from an identity inverse mass matrix with dense
adaptation: the same sampler, but NumPyro's mass-matrix regularisation (a shrinkage towards
1e-3 I) then acts on O(1) variances instead of swamping parameters whose z-scale is 1e-5
(D_offset in a +-1e5 box). Parameters the fit does not determine (infinite or NaN standard
error) get a unit z-scale and no correlations.

**Shards.** ``n_shards=None`` runs one NUTS over all points up to :data:`SHARD_SIZE` points,
and ``ceil(points / SHARD_SIZE)`` shards (rounded up to a multiple of the device count) beyond.
Shards come from :func:`~diffdesign.xpcs.data.shard_points`: point k goes to shard k mod K,
so every shard samples every angle and lag alike. All shards x chains run in one jitted
computation: one ``lax.scan`` over iterations of the vmapped NUTS kernel, the element axis
split over ``jax.devices()`` with ``shard_map`` on a 1-D mesh (each device advances its own
elements; no communication). An explicit ``n_shards`` is kept as given; the mesh then uses
the largest device count that divides shards x chains.

**Combination.** Shard draws are combined in the physical space by consensus weights
``W_k = Cov_k^-1`` (each shard's sample covariance): draw s is
``(sum_k W_k)^-1 sum_k W_k theta_{k,s}``. One shard's draws are returned as they are.
Shard heterogeneity per parameter: ``chi^2 = sum_k (mean_k - mean)^2 / var_k`` with K - 1
degrees of freedom; parameters with p < 0.01 are flagged (the shards disagree, so the
consensus is not a posterior of the whole data set).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import arviz as az
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, Bool, Float, Int
from numpyro.infer.hmc import hmc
from scipy import stats

from diffdesign.core.bounds import Box
from diffdesign.xpcs.data import Points, XpcsData, shard_points
from diffdesign.xpcs.likelihood import (
    DEFAULT_SCALING,
    Problem,
    Scaling,
    make_problem,
    parameter_box,
    residuals,
)
from diffdesign.xpcs.nlsq import NlsqResult, _log_mask, _physical_space, _solver_space, fit_nlsq
from diffdesign.xpcs.scaling import ScalingGaussian, scaling_gaussian, scaling_statistics

#: Points per shard above which ``n_shards=None`` splits the data (one NUTS run below it).
SHARD_SIZE = 20_000
#: How per-angle contrast/offset enter NUTS (see the module docstring).
SCALING_TREATMENTS = ("marginalised", "sampled")
#: Heterogeneity p-value below which a parameter's shards are flagged as disagreeing.
HETEROGENEITY_ALPHA = 0.01
_HDI_PROB = 0.94
_PROGRESS_REPORTS = 10  # progress lines per run (every 10 % of the iterations)
_AXIS = "element"  # the mesh axis: shards x chains, flattened


class ShardDraws(NamedTuple):
    """Draws of every (shard, chain) element of one NUTS computation.

    Attributes:
        theta: (K, C, S, p) draws in the physical parameter space (K shards or independent
            data sets, C chains, S draws).
        diverging: (K, C, S) divergent transitions.
        potential_energy: (K, C, S) potential (0.5 chi^2 - tempered log prior - log|J|).
        num_steps: (K, C, S) leapfrog steps per transition.
        accept_prob: (K, C, S) mean acceptance probability of each transition's tree.
        step_size: (K, C) adapted step size (in the preconditioned variables).
    """

    theta: Float[Array, "K C S p"]
    diverging: Bool[Array, "K C S"]
    potential_energy: Float[Array, "K C S"]
    num_steps: Int[Array, "K C S"]
    accept_prob: Float[Array, "K C S"]
    step_size: Float[Array, "K C"]


class _Target(eqx.Module):
    """The potential of one shard in the preconditioned variables u (``z = anchor + root u``).

    ``u`` holds every parameter, or with ``marginal`` the physical ones only: contrast and
    offset are then integrated out of the potential and drawn afterwards (:meth:`draw`).
    """

    problem: Problem
    lower: Float[Array, " q"]  # the box of the sampled parameters in the solver space y
    upper: Float[Array, " q"]
    anchor: Float[Array, " q"]
    root: Float[Array, "q q"]
    prior_mean: Float[Array, " q"]
    prior_precision: Float[Array, " q"]  # 0 where the prior is uniform on the box
    prior_weight: Float[Array, ""]  # 1/K
    scaling_prior_mean: Float[Array, "n_seg 2"]  # (contrast, offset); used when marginal
    scaling_prior_precision: Float[Array, "n_seg 2"]  # tempered already
    scaling_reference: Float[Array, "n_seg 2"]  # the start's (contrast, offset)
    logs: tuple[bool, ...] = eqx.field(static=True)
    marginal: bool = eqx.field(static=True)

    def z(self, u: Float[Array, " q"]) -> Float[Array, " q"]:
        return self.anchor + self.root @ u

    def theta(self, u: Float[Array, " q"]) -> Float[Array, " q"]:
        y = Box().to_physical(self.z(u), self.lower, self.upper)
        return _physical_space(y, self.logs)

    def _scalings(self, physical: Float[Array, " q"]) -> ScalingGaussian:
        # In departures from the warm start's scalings (no cancellation in chi2_min).
        ref = self.scaling_reference
        stats = scaling_statistics(physical, self.problem, reference=ref)
        gauss = scaling_gaussian(stats, self.scaling_prior_mean - ref, self.scaling_prior_precision)
        return gauss._replace(mean=gauss.mean + ref)

    def potential(self, u: Float[Array, " q"]) -> Float[Array, ""]:
        z = self.z(u)
        y = Box().to_physical(z, self.lower, self.upper)
        theta = _physical_space(y, self.logs)
        if self.marginal:
            data_term = self._scalings(theta).neg_log_marginal()
        else:
            data_term = 0.5 * jnp.sum(residuals(theta, self.problem) ** 2)
        log_prior = -0.5 * jnp.sum(self.prior_precision * (theta - self.prior_mean) ** 2)
        # dtheta/dz = (theta if log-spaced else 1) * half_width * sech^2(z), in a stable form.
        log_sech2 = 2.0 * (math.log(2.0) - jnp.abs(z) - jnp.log1p(jnp.exp(-2.0 * jnp.abs(z))))
        half = 0.5 * (self.upper - self.lower)
        log_jacobian = jnp.sum(jnp.log(half) + log_sech2) + jnp.sum(
            jnp.where(jnp.asarray(self.logs), y, 0.0)
        )
        return data_term - self.prior_weight * log_prior - log_jacobian

    def draw(self, u: Float[Array, " q"], key: Array) -> Float[Array, " p"]:
        """The full parameter vector at ``u``: with ``marginal``, contrast and offset drawn
        from their exact conditional Gaussian given the physics (so (physics, scalings) is a
        draw of the joint posterior)."""
        theta = self.theta(u)
        if not self.marginal:
            return theta
        scalings = self._scalings(theta).sample(key)  # (n_seg, 2)
        return jnp.concatenate([theta, scalings[:, 0], scalings[:, 1]])


def _potential_fn_gen(target: _Target):
    return target.potential


def _report(phase_end, i, total):
    i, total = int(i), int(total)
    phase = "warmup" if i <= int(phase_end) else "sampling"
    print(f"cmc: {phase} {i}/{total} ({100 * i // total}%)", flush=True)


@partial(
    jax.jit,
    static_argnames=("num_warmup", "num_samples", "num_chains", "devices", "progress"),
)
def _run(
    key: Array,
    template: _Target,
    *,
    num_warmup: int,
    num_samples: int,
    num_chains: int,
    devices: tuple[jax.Device, ...],
    progress: bool,
) -> ShardDraws:
    """NUTS on every (shard, chain) element at once: a pure function of the key and data.

    ``template.problem.points`` carries a leading shard axis (K); every other leaf is shared.
    The K x num_chains elements are split over the devices (``shard_map``, E / len(devices)
    each); on a device, one ``lax.scan`` over the iterations advances all its elements by the
    vmapped kernel, so a progress report is one callback per reported iteration (device 0's),
    not one per element.
    """
    n_shards = template.problem.points.c2.shape[0]
    n_elements = n_shards * num_chains
    # One target per element; vmap broadcasts the leaves the elements share.
    points = jax.tree.map(lambda x: jnp.repeat(x, num_chains, axis=0), template.problem.points)
    targets = jax.vmap(lambda pts: eqx.tree_at(lambda t: t.problem.points, template, pts))(points)
    key_start, key_run, key_draw = jax.random.split(key, 3)
    u0 = jax.random.normal(key_start, (n_elements, template.anchor.shape[0]))
    keys = jax.random.split(key_run, n_elements)
    draw_keys = jax.random.split(key_draw, n_elements)  # contrast/offset draws when marginal
    total = num_warmup + num_samples
    every = max(1, total // _PROGRESS_REPORTS)

    def local(keys, u0, targets, draw_keys):
        init_kernel, sample_kernel = hmc(potential_fn_gen=_potential_fn_gen, algo="NUTS")

        def init(key, u, target):
            return init_kernel(u, num_warmup, dense_mass=True, model_args=(target,), rng_key=key)

        states = jax.vmap(init)(keys, u0, targets)
        step = jax.vmap(lambda state, target: sample_kernel(state, model_args=(target,)))
        first = jax.lax.axis_index(_AXIS) == 0

        def record(states, targets, i):
            theta = jax.vmap(lambda target, u, key: target.draw(u, jax.random.fold_in(key, i)))(
                targets, states.z, draw_keys
            )
            return (
                theta, states.diverging, states.potential_energy, states.num_steps,
                states.accept_prob,
            )  # fmt: skip

        # One scan over warmup and sampling, so the kernel is traced and compiled once; a
        # warmup iteration writes into slot 0, which the first draw overwrites.
        buffer = jax.tree.map(
            lambda x: jnp.zeros((num_samples, *x.shape), x.dtype),
            jax.eval_shape(record, states, targets, 0),
        )

        def iteration(carry, i):
            states, buffer = carry
            states = step(states, targets)
            slot = jnp.maximum(i - num_warmup, 0)
            buffer = jax.tree.map(
                lambda b, x: jax.lax.dynamic_update_index_in_dim(b, x, slot, 0),
                buffer, record(states, targets, i),
            )  # fmt: skip
            if progress:
                jax.lax.cond(
                    first & ((i + 1) % every == 0),
                    lambda: jax.debug.callback(_report, num_warmup, i + 1, total),
                    lambda: None,
                )
            return (states, buffer), None

        (states, draws), _ = jax.lax.scan(iteration, (states, buffer), jnp.arange(total))
        draws = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), draws)  # (E, S, ...)
        return (*draws, states.adapt_state.step_size)

    mesh = Mesh(np.asarray(devices), (_AXIS,))
    spec = PartitionSpec(_AXIS)
    out = jax.shard_map(local, mesh=mesh, in_specs=(spec,) * 4, out_specs=spec, check_vma=False)(
        keys, u0, targets, draw_keys
    )
    return ShardDraws(*(x.reshape(n_shards, num_chains, *x.shape[1:]) for x in out))


@partial(jax.jit, static_argnames="logs")
def _anchor(lower, upper, start, logs):
    """The box in the solver space y and the start's z."""
    lower_y, upper_y = _solver_space(lower, logs), _solver_space(upper, logs)
    return lower_y, upper_y, Box().to_internal(_solver_space(start, logs), lower_y, upper_y)


def sample_shards(
    problem: Problem,
    shards: Points,
    start: Float[Array, " p"],
    covariance: Float[Array, "p p"],
    *,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    priors: Mapping[str, tuple[float, float]] | None = None,
    prior_weight: float = 1.0,
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 2,
    seed: int = 0,
    progress: bool = False,
    devices: Sequence[jax.Device] | None = None,
    scalings: str = "marginalised",
) -> ShardDraws:
    """NUTS on every shard (or independent data set) of ``shards``, all in one computation.

    Args:
        problem: the model choices (mode, scaling, integral) and experiment (t, phi, q, L);
            its own points are replaced by each shard's.
        shards: Points with a leading axis of K shards (as from
            :func:`~diffdesign.xpcs.data.shard_points`), or K independent data sets on the
            same time grid and angles.
        start: (p,) the starting estimate (physical units), e.g. the least-squares fit.
        covariance: (p, p) covariance of one shard's likelihood near ``start`` (physical
            units, e.g. K times the least-squares covariance); with the tempered priors it sets
            the initial inverse mass matrix. Rows with infinite or NaN variance get a unit
            scale in z.
        bounds: box per parameter name (see :func:`~diffdesign.xpcs.likelihood.resolve_bounds`).
        priors: Gaussian priors ``{name: (mu, sigma)}`` (names of ``problem.names``, or
            ``contrast``/``offset`` for every angle); uniform on the box otherwise.
        prior_weight: the prior's exponent, 1/K for K consensus shards, 1 for full data.
        num_warmup: NUTS warm-up iterations per chain.
        num_samples: NUTS samples per chain.
        num_chains: chains per shard.
        seed: the random seed of the starts and the sampler.
        progress: print a line every 10 % of the iterations.
        devices: the devices the (shard, chain) elements are split over (default
            ``jax.devices()``); the largest leading subset that divides the elements is used.
        scalings: ``"marginalised"`` (NUTS on the physical parameters, contrast and offset
            integrated out and drawn from their conditional) or ``"sampled"`` (NUTS on all).

    Returns:
        :class:`ShardDraws` with arrays of shape (K, num_chains, num_samples, ...).
    """
    if scalings not in SCALING_TREATMENTS:
        raise ValueError(f"scalings must be one of {SCALING_TREATMENTS}; got {scalings!r}")
    n_shards = int(shards.c2.shape[0])
    lower, upper = parameter_box(problem, bounds)
    p = int(lower.shape[0])
    n_phys = len(problem.physical_names)
    # The sampled parameters: all of them, or the physical ones with the scalings integrated.
    marginal = scalings == "marginalised" and p > n_phys
    q = n_phys if marginal else p
    logs = _log_mask(problem, lower[:n_phys]) + (False,) * (q - n_phys)
    start = np.asarray(start, dtype=float)
    prior_mean, prior_precision = _prior_arrays(problem, priors)
    covariance = _with_prior(np.asarray(covariance), prior_weight * prior_precision)[:q, :q]
    lower_y, upper_y, anchor = _anchor(lower[:q], upper[:q], start[:q], logs)
    root = _preconditioner(anchor, lower_y, upper_y, start[:q], covariance, logs)
    scaling_mean, scaling_precision = _scaling_priors(
        np.asarray(lower), np.asarray(upper), prior_mean, prior_precision, n_phys
    )
    reference = start[n_phys:].reshape(2, -1).T if p > n_phys else np.zeros((1, 2))
    template = _Target(
        problem=problem.with_points(shards), lower=lower_y, upper=upper_y, anchor=anchor,
        root=root, prior_mean=jnp.asarray(prior_mean[:q]),
        prior_precision=jnp.asarray(prior_precision[:q]),
        prior_weight=jnp.asarray(prior_weight, dtype=float),
        scaling_prior_mean=jnp.asarray(scaling_mean),
        scaling_prior_precision=jnp.asarray(prior_weight * scaling_precision),
        scaling_reference=jnp.asarray(reference),
        logs=logs, marginal=marginal,
    )  # fmt: skip
    all_devices = jax.devices() if devices is None else devices
    return _run(
        jax.random.key(seed), template, num_warmup=num_warmup, num_samples=num_samples,
        num_chains=num_chains, devices=_devices_for(n_shards * num_chains, all_devices),
        progress=progress,
    )  # fmt: skip


def _scaling_priors(lower, upper, mean, precision, n_phys) -> tuple[np.ndarray, np.ndarray]:
    """(n_seg, 2) prior means and precisions of (contrast, offset) for the marginalised
    sampler: the user's Gaussian where given, else a weak Gaussian standing for the box
    (its centre, sd its half-width), which keeps the integral over them finite where the
    data do not separate contrast from offset. The data's precision on them is 1e4-1e8
    times larger, so the box's stand-in does not move the posterior."""
    centre, half = 0.5 * (upper + lower)[n_phys:], 0.5 * (upper - lower)[n_phys:]
    given = precision[n_phys:] > 0
    mean = np.where(given, mean[n_phys:], centre)
    precision = np.where(given, precision[n_phys:], 1.0 / np.maximum(half, 1e-300) ** 2)
    if mean.size == 0:  # ConstantScaling: nothing to integrate (placeholders)
        return np.zeros((1, 2)), np.zeros((1, 2))
    return mean.reshape(2, -1).T, precision.reshape(2, -1).T


def _devices_for(n_elements: int, devices: Sequence[jax.Device]) -> tuple[jax.Device, ...]:
    """The largest leading subset of ``devices`` whose size divides the elements evenly."""
    count = max(d for d in range(1, len(devices) + 1) if n_elements % d == 0)
    return tuple(devices[:count])


def _preconditioner(anchor, lower_y, upper_y, start, covariance, logs) -> Array:
    """A square root of the covariance in z (physical -> z by the map's diagonal Jacobian)."""
    half = 0.5 * (np.asarray(upper_y) - np.asarray(lower_y))
    z = np.asarray(anchor)
    dtheta_dz = half / np.cosh(z) ** 2 * np.where(logs, np.asarray(start, dtype=float), 1.0)
    covariance = np.asarray(covariance, dtype=float)
    variance = np.diagonal(covariance)
    determined = np.isfinite(variance) & (variance > 0)
    sd = np.sqrt(np.where(determined, variance, 1.0))
    # Unit z-scale where the fit does not determine a parameter; a posterior wider than 1 in
    # z is shaped by the box's Jacobian, not the data, so no scale beyond 1 is useful.
    scale = np.where(determined, np.minimum(sd / np.abs(dtheta_dz), 1.0), 1.0)
    correlation = np.where(np.outer(determined, determined), covariance, 0.0) / np.outer(sd, sd)
    correlation = np.where(np.isfinite(correlation), correlation, 0.0)
    np.fill_diagonal(correlation, 1.0)
    # Symmetric square root with the eigenvalues floored: near-degenerate pairs (contrast and
    # offset correlated at -0.9999) keep a usable factor where a Cholesky would fail.
    eigenvalues, vectors = np.linalg.eigh(correlation)
    eigenvalues = np.maximum(eigenvalues, 1e-10 * eigenvalues.max())
    root = vectors * np.sqrt(eigenvalues)
    return jnp.asarray(scale[:, None] * root)


def _with_prior(covariance: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """The covariance of a Gaussian likelihood (``covariance``) times independent Gaussian
    priors (``precision`` per parameter, 0 for none): Woodbury on the prior's parameters.

    Parameters the likelihood does not determine (non-finite or non-positive variance) take
    the prior's variance, or stay undetermined without a prior.
    """
    covariance = np.array(covariance, dtype=float)
    variance = np.diagonal(covariance)
    determined = np.isfinite(variance) & (variance > 0)
    with_prior = precision > 0
    update = np.flatnonzero(determined & with_prior)
    good = np.flatnonzero(determined)
    block = covariance[np.ix_(good, good)]
    if update.size:
        columns = covariance[np.ix_(good, update)]
        inner = covariance[np.ix_(update, update)] + np.diag(1.0 / precision[update])
        block = block - columns @ np.linalg.solve(inner, columns.T)
    result = np.full_like(covariance, np.nan)
    result[np.ix_(good, good)] = block
    prior_only = np.flatnonzero(~determined & with_prior)
    result[prior_only, :] = 0.0
    result[:, prior_only] = 0.0
    result[prior_only, prior_only] = 1.0 / precision[prior_only]
    return result


def _prior_arrays(problem: Problem, priors) -> tuple[np.ndarray, np.ndarray]:
    names = problem.names
    mean, precision = np.zeros(len(names)), np.zeros(len(names))
    for name, (mu, sigma) in (priors or {}).items():
        for k, full in enumerate(names):
            if full == name or full.split("[")[0] == name:
                mean[k], precision[k] = mu, 1.0 / sigma**2
    return mean, precision


@dataclasses.dataclass(frozen=True)
class CmcResult:
    """Outcome of :func:`fit_cmc`: the posterior and its diagnostics, all in ``idata``.

    ``idata`` (ArviZ InferenceData) holds the groups:

    - ``posterior``: the combined draws (chain, draw), one variable per physical parameter,
      ``contrast``/``offset`` with a ``phi`` dimension (degrees) for per-angle scalings;
    - ``sample_stats``: ``diverging`` (any shard's transition diverged), ``lp`` (one shard);
    - ``shard_posterior``, ``shard_sample_stats``: every shard's draws (shard, chain, draw);
    - ``diagnostics``: per shard and parameter ``r_hat``, ``ess_bulk``, ``ess_tail``,
      ``divergences``; per parameter ``heterogeneity_chi2``/``heterogeneity_p``; the run's
      settings in its attributes.

    Attributes:
        idata: the InferenceData above.
        names: the parameter vector's names (``contrast[k]`` is angle k's).
        n_shards: shards sampled.
        wall_time: seconds of the NUTS computation, compile included.
    """

    idata: az.InferenceData
    names: tuple[str, ...]
    n_shards: int
    wall_time: float

    def draws(self) -> np.ndarray:
        """(chain, draw, p) combined draws, in the order of ``names``."""
        posterior = self.idata.posterior
        columns = []
        for name in self.names:
            base, _, index = name.partition("[")
            value = posterior[base].values
            columns.append(value[..., int(index[:-1])] if index else value)
        return np.stack(columns, axis=-1)

    def summary(self) -> dict:
        """JSON-serialisable: mean, std, 94 % HDI, worst r_hat/ESS over shards, divergences,
        heterogeneity per parameter (non-finite values as None)."""
        diagnostics = self.idata["diagnostics"]
        draws = self.draws()
        flat = draws.reshape(-1, draws.shape[-1])
        hdi = az.hdi(
            xr.Dataset({"theta": (("chain", "draw", "parameter"), draws)}), hdi_prob=_HDI_PROB
        )["theta"].values  # (parameter, 2)
        r_hat = diagnostics["r_hat"].values
        ess_bulk = diagnostics["ess_bulk"].values
        ess_tail = diagnostics["ess_tail"].values
        chi2 = diagnostics["heterogeneity_chi2"].values
        p_value = diagnostics["heterogeneity_p"].values
        parameters = {}
        for k, name in enumerate(self.names):
            parameters[name] = {
                "mean": _number(flat[:, k].mean()),
                "std": _number(flat[:, k].std(ddof=1)),
                "hdi_3%": _number(hdi[k, 0]),
                "hdi_97%": _number(hdi[k, 1]),
                "r_hat_max": _worst(r_hat[:, k], np.max),
                "ess_bulk_min": _worst(ess_bulk[:, k], np.min),
                "ess_tail_min": _worst(ess_tail[:, k], np.min),
                "heterogeneity_chi2": _number(chi2[k]),
                "heterogeneity_p": _number(p_value[k]),
            }
        divergences = diagnostics["divergences"].values
        settings = dict(diagnostics.attrs)
        return {
            **{k: json.loads(v) if k == "fixed" else _plain(v) for k, v in settings.items()},
            "n_shards": self.n_shards,
            "wall_time_s": self.wall_time,
            "parameters": parameters,
            "divergences": int(divergences.sum()),
            "divergences_per_shard": [int(v) for v in divergences],
            "heterogeneous": [
                n for n, pv in zip(self.names, p_value, strict=True) if pv < HETEROGENEITY_ALPHA
            ],
        }

    def save(self, path: str | Path) -> Path:
        """Write ``idata`` as netCDF (``arviz.from_netcdf`` reloads it; see :meth:`load`)."""
        path = Path(path)
        self.idata.to_netcdf(str(path), engine="h5netcdf")
        return path

    @classmethod
    def load(cls, path: str | Path) -> CmcResult:
        """The result written by :meth:`save`."""
        idata = az.from_netcdf(str(path), engine="h5netcdf")
        diagnostics = idata["diagnostics"]
        return cls(
            idata=idata,
            names=tuple(str(n) for n in diagnostics["parameter"].values),
            n_shards=int(diagnostics.sizes["shard"]),
            wall_time=float(diagnostics.attrs["wall_time_s"]),
        )


def _worst(values: np.ndarray, reduce) -> float | None:
    """The worst value over shards; None where a shard has none (chains that never moved)."""
    return float(reduce(values)) if np.all(np.isfinite(values)) else None


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


def fit_cmc(
    data: XpcsData,
    mode: str,
    *,
    scaling: Scaling = DEFAULT_SCALING,
    integral: str = "trapezoid",
    bounds: Mapping[str, tuple[float, float]] | None = None,
    fixed: Mapping[str, float] | None = None,
    warm_start: NlsqResult | None = None,
    n_shards: int | None = None,
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 2,
    seed: int = 0,
    priors: Mapping[str, tuple[float, float]] | None = None,
    progress: bool = True,
    devices: Sequence[jax.Device] | None = None,
    scalings: str = "marginalised",
) -> CmcResult:
    """Sample the posterior of every parameter by Consensus Monte Carlo (NUTS per shard).

    Args:
        data: the measurement.
        mode: ``"static"``, ``"laminar_flow"`` or ``"two_component"``.
        scaling: per-angle contrast/offset: ``IndividualScaling()`` (the default),
            ``AveragedScaling()`` or ``ConstantScaling()``.
        integral: ``"trapezoid"`` (homodyne's) or ``"exact"``.
        bounds: box per parameter name, overriding
            :data:`~diffdesign.xpcs.likelihood.DEFAULT_BOUNDS`; the prior's support.
        fixed: physical parameters held at given values (not sampled).
        warm_start: a least-squares fit of the same problem (run with :func:`fit_nlsq` if None):
            the chains' start and initial inverse mass matrix.
        n_shards: shards of the points (1 = a single NUTS run over all of them); None picks
            1 up to :data:`SHARD_SIZE` points, else ``ceil(points / SHARD_SIZE)`` rounded up to
            a multiple of the device count.
        num_warmup: NUTS warm-up iterations per chain (they adapt the step size and a
            dense mass matrix).
        num_samples: NUTS samples per chain.
        num_chains: chains per shard.
        seed: random seed.
        priors: Gaussian priors ``{name: (mu, sigma)}`` in the parameters' units, for names of
            the parameter vector (``D0``, ``contrast[0]``) or ``contrast``/``offset`` for all
            angles; each is tempered by 1/K over K shards. Uniform on the box otherwise.
        progress: print a line every 10 % of the iterations.
        devices: the devices the shards x chains are split over (default ``jax.devices()``).
        scalings: ``"marginalised"`` (default: NUTS on the physical parameters only, with
            the per-angle contrast/offset integrated out analytically and drawn exactly from
            their conditional Gaussian) or ``"sampled"`` (NUTS on every parameter).

    Returns:
        :class:`CmcResult`.

    Raises:
        TypeError: ``scaling`` is not a :class:`~diffdesign.xpcs.likelihood.Scaling`.
        ValueError: for a bad n_shards, num_warmup, num_samples, num_chains, scalings, an
            unknown prior name or non-positive prior sigma, or a warm start of another problem;
            before any sampling.

    Example:
        >>> result = fit_cmc(data, "static", num_samples=500, progress=False)
        >>> result.summary()["parameters"]["D0"]["mean"]
    """
    for name, value in (
        ("num_warmup", num_warmup), ("num_samples", num_samples), ("num_chains", num_chains),
    ):  # fmt: skip
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if not _is_int(seed):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    if scalings not in SCALING_TREATMENTS:
        raise ValueError(f"scalings must be one of {SCALING_TREATMENTS}; got {scalings!r}")
    problem = make_problem(
        data, mode, scaling=scaling, integral=integral, bounds=bounds, fixed=fixed
    )
    n_points = problem.points.size
    if n_shards is None:
        n_shards = default_shards(n_points, len(jax.devices() if devices is None else devices))
    elif not _is_int(n_shards) or not 1 <= n_shards <= n_points:
        raise ValueError(
            f"n_shards must be an integer in [1, {n_points}] (the number of points); "
            f"got {n_shards!r}"
        )
    _check_priors(priors, problem)
    if warm_start is not None and tuple(warm_start.names) != problem.names:
        raise ValueError(
            f"warm_start fits the parameters {list(warm_start.names)}, but mode {mode!r} with "
            f"scaling {scaling.name!r} has {list(problem.names)}"
        )
    if warm_start is None:
        warm_start = fit_nlsq(
            data, mode, scaling=scaling, integral=integral, bounds=bounds, fixed=fixed
        )

    shards = _shard_points(problem.points, n_shards)
    start_time = time.perf_counter()
    draws = sample_shards(
        problem, shards, warm_start.x, n_shards * np.asarray(warm_start.covariance),
        bounds=bounds, priors=priors, prior_weight=1.0 / n_shards, num_warmup=num_warmup,
        num_samples=num_samples, num_chains=num_chains, seed=seed, progress=progress,
        devices=devices, scalings=scalings,
    )  # fmt: skip
    draws = jax.block_until_ready(draws)
    wall_time = time.perf_counter() - start_time
    settings = {
        "mode": mode, "scaling": scaling.name, "integral": integral,
        # netCDF attributes are flat: the fixed parameters as a JSON object in a string.
        "fixed": json.dumps({name: float(v) for name, v in problem.fixed.items()}),
        "num_warmup": num_warmup,
        "num_samples": num_samples, "num_chains": num_chains, "seed": seed,
        "scalings": scalings, "n_points": n_points, "wall_time_s": wall_time,
    }  # fmt: skip
    idata = _inference_data(problem, draws, settings)
    return CmcResult(idata=idata, names=problem.names, n_shards=n_shards, wall_time=wall_time)


_shard_points = jax.jit(shard_points, static_argnums=1)  # one compile, not one per operation


def default_shards(n_points: int, devices: int = 1) -> int:
    """1 up to :data:`SHARD_SIZE` points, else ceil(points / SHARD_SIZE) rounded up to a
    multiple of the number of devices (so every device gets as many shards)."""
    if n_points <= SHARD_SIZE:
        return 1
    n_shards = -(-n_points // SHARD_SIZE)
    return devices * -(-n_shards // devices)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_priors(priors, problem: Problem) -> None:
    allowed = set(problem.names) | {n.split("[")[0] for n in problem.names}
    for name, pair in (priors or {}).items():
        if name not in allowed:
            raise ValueError(f"priors: unknown parameter {name!r}; allowed {sorted(allowed)}")
        try:
            mu, sigma = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise ValueError(f"priors[{name!r}] must be a pair (mu, sigma); got {pair!r}") from None
        if not math.isfinite(mu):
            raise ValueError(f"priors[{name!r}] mu must be finite; got {mu}")
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"priors[{name!r}] sigma must be finite and > 0; got {sigma}")


def consensus(theta: Float[np.ndarray, "K C S p"]) -> np.ndarray:
    """Consensus draws (C, S, p): ``(sum_k W_k)^-1 sum_k W_k theta_k`` with ``W_k`` the
    inverse sample covariance of shard k's draws (pooled over chains)."""
    theta = np.asarray(theta, dtype=float)
    n_shards, p = theta.shape[0], theta.shape[-1]
    if n_shards == 1:
        return theta[0]
    flat = theta.reshape(n_shards, -1, p)
    weights = np.stack([_precision(np.atleast_2d(np.cov(f.T))) for f in flat])
    total = weights.sum(axis=0)
    weighted = np.einsum("kij,kcsj->csi", weights, theta)
    # Directions no shard constrains (draws that never moved) take the plain average.
    inverse = _precision(total)
    unconstrained = np.eye(p) - inverse @ total
    combined = weighted @ inverse.T + theta.mean(axis=0) @ unconstrained.T
    return combined


def _precision(covariance: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive semi-definite matrix, equilibrated first (units differ
    by 1e7); the pseudo-inverse of a singular one (a parameter that did not move)."""
    sd = np.sqrt(np.diagonal(covariance))
    sd = np.where(sd > 0, sd, 1.0)
    correlation = covariance / np.outer(sd, sd)
    return np.linalg.pinv(correlation, hermitian=True) / np.outer(sd, sd)


def heterogeneity(theta: np.ndarray, combined: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per parameter ``chi^2 = sum_k (mean_k - mean)^2 / var_k`` over K shards and its p-value
    (K - 1 degrees of freedom); NaN for one shard."""
    n_shards, p = theta.shape[0], theta.shape[-1]
    if n_shards == 1:
        return np.full(p, np.nan), np.full(p, np.nan)
    flat = theta.reshape(n_shards, -1, p)
    means, variances = flat.mean(axis=1), flat.var(axis=1, ddof=1)
    overall = combined.reshape(-1, p).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.sum((means - overall) ** 2 / variances, axis=0)
    return chi2, stats.chi2.sf(chi2, n_shards - 1)


def _variables(problem: Problem, theta: np.ndarray, leading: tuple[str, ...]) -> dict:
    """Posterior variables from the last axis of ``theta``: physical names, then contrast and
    offset (with a ``phi`` dimension for per-angle scalings)."""
    n_phys = len(problem.physical_names)
    variables = {name: (leading, theta[..., k]) for k, name in enumerate(problem.physical_names)}
    return variables | problem.scaling.variables(theta[..., n_phys:], leading)


def _inference_data(problem: Problem, draws: ShardDraws, settings: dict) -> az.InferenceData:
    theta = np.asarray(draws.theta)
    n_shards, n_chains, n_samples, _ = theta.shape
    combined = consensus(theta)
    coords = {
        "chain": np.arange(n_chains),
        "draw": np.arange(n_samples),
        "shard": np.arange(n_shards),
        "phi": np.asarray(problem.phi),
        "parameter": list(problem.names),
    }

    def dataset(variables, dims):
        used = {d for _, (dim, _) in variables.items() for d in dim} | set(dims)
        return xr.Dataset(
            {k: (d, v) for k, (d, v) in variables.items()},
            coords={k: v for k, v in coords.items() if k in used},
        )

    diverging = np.asarray(draws.diverging)
    posterior = dataset(_variables(problem, combined, ("chain", "draw")), ())
    sample_stats = {"diverging": (("chain", "draw"), diverging.any(axis=0))}
    if n_shards == 1:
        sample_stats["lp"] = (("chain", "draw"), -np.asarray(draws.potential_energy[0]))
    per_shard = ("shard", "chain", "draw")
    shard_posterior = dataset(_variables(problem, theta, per_shard), ())
    shard_stats = dataset(
        {
            "diverging": (per_shard, diverging),
            "lp": (per_shard, -np.asarray(draws.potential_energy)),
            "n_steps": (per_shard, np.asarray(draws.num_steps)),
            "acceptance_rate": (per_shard, np.asarray(draws.accept_prob)),
            "step_size": (("shard", "chain"), np.asarray(draws.step_size)),
        },
        (),
    )
    # ArviZ's rhat/ess over (chain, draw), per shard and parameter in one call each.
    stacked = xr.Dataset(
        {"theta": (("chain", "draw", "shard", "parameter"), theta.transpose(1, 2, 0, 3))}
    )
    with np.errstate(invalid="ignore", divide="ignore"):  # a chain that never moved: NaN
        r_hat = az.rhat(stacked)["theta"].values
        ess_bulk = az.ess(stacked, method="bulk")["theta"].values
        ess_tail = az.ess(stacked, method="tail")["theta"].values
    chi2, p_value = heterogeneity(theta, combined)
    diagnostics = dataset(
        {
            "r_hat": (("shard", "parameter"), r_hat),
            "ess_bulk": (("shard", "parameter"), ess_bulk),
            "ess_tail": (("shard", "parameter"), ess_tail),
            "divergences": (("shard",), diverging.sum(axis=(1, 2))),
            "heterogeneity_chi2": (("parameter",), chi2),
            "heterogeneity_p": (("parameter",), p_value),
        },
        (),
    )
    diagnostics.attrs.update(settings)
    return az.InferenceData(
        posterior=posterior,
        sample_stats=dataset(sample_stats, ()),
        shard_posterior=shard_posterior,
        shard_sample_stats=shard_stats,
        diagnostics=diagnostics,
    )
