"""Degenerate quadrupoles: correlated Jacobian columns, and telling them apart at a few BPMs.

Neighbouring quadrupoles produce nearly the same optics distortion everywhere: their
columns of the Jacobian ``J`` (e.g. d(Δβx/βx)/dK1 at the BPMs) are almost parallel, so a
fit over all BPMs cannot tell which of them is at fault (Li, Rainer, Cheng, "Bayesian
Approach for Linear Optics Correction", Sect. IV, Eq. 17). The paper's remedy: pick a few
BPMs at which the two response vectors are nearly uncorrelated, then correlate many
repeated measurements of the distortion at those BPMs with each candidate's response.

Correlation (Eq. 17). ``centred=True`` (the default) is Pearson's coefficient — the
columns' means over the BPMs are subtracted; ``centred=False`` is the uncentred cosine
``Jᵢ·Jⱼ / (|Jᵢ| |Jⱼ|)``. For the NSLS-II pair QL1G2C01A/QL2G2C01A over all 180 BPMs the two
differ by 7e-6 (0.989713 vs 0.989720 from pyAT columns; the paper: 0.9896), because a
beta-beat pattern has almost no mean around a ring, so that number cannot decide between
them; on a 6-BPM subset they differ. Pearson is the default because it is what
"correlation coefficient" usually means, because it ignores a common offset of a measured
beat (e.g. from the unknown action that normalises beta from turn-by-turn amplitudes), and
because its near-orthogonal 6-BPM subsets are BPMs that see both quadrupoles strongly,
whereas the cosine reaches ~0 only at BPMs that barely see QL1G2C01A. (The paper's subset,
BPMs {30, 31, 37, 62, 71, 78} 1-based, gives 0.997 on the pyAT columns, 0.84 read as
0-based: its BPM numbering or lattice model differ from ``nsls2.m``.)

The geometry behind the subsets. Two columns with correlation ``c`` over all BPMs differ,
after scaling, by a vector of relative size ``√(1 - c²)`` (0.14 for c = 0.99). On any
subset, their correlation can only be small where the common part of the response is
small compared to that difference, so near-orthogonal subsets keep only a fraction of each
column's ring-wide (centred) rms, of the order of √(1 - c²) (0.11 for the NSLS-II pair).
The subset search therefore constrains that fraction (``min_relative_rms``) and accepts a
mask of BPMs whose response is above the noise (:func:`responsive_bpms`); see
:func:`orthogonal_bpm_subset`.

Units: columns in observable units per unit of K1 (e.g. 1/m⁻² for a beta-beat per K1),
``error_size`` in K1 units (m⁻²), ``noise_sigma`` in observable units.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from diffdesign._validation import check_finite, check_positive, is_concrete

#: Penalty weights on the signal-size shortfall, raised in turn (continuation): the local
#: search first finds low correlations, then is pushed back to subsets that keep signal.
_PENALTIES = (0.0, 0.1, 1.0, 10.0)


# ----------------------------------------------------------------------------- correlation


def _centre(x: Array, centred: bool, axis: int = -1) -> Array:
    return x - jnp.mean(x, axis=axis, keepdims=True) if centred else x


def column_correlation(
    jacobian: Float[ArrayLike, "m n"], *, centred: bool = True
) -> Float[Array, "n n"]:
    """Correlation of every pair of Jacobian columns (the paper's Eq. 17).

    Args:
        jacobian: ``(m, n)``: ``m`` observations (BPMs) by ``n`` parameters (quadrupoles).
        centred: Pearson correlation (column means over the rows subtracted, the default)
            or the uncentred cosine ``Jᵢ·Jⱼ / (|Jᵢ| |Jⱼ|)``.

    Returns:
        ``(n, n)`` symmetric matrix with ones on the diagonal; pairs involving a column
        that is zero (after centring) get 0.
    """
    if np.ndim(jacobian) != 2 or 0 in np.shape(jacobian):
        raise ValueError(f"jacobian must be a non-empty 2-D (m, n) array; got {np.shape(jacobian)}")
    if centred and np.shape(jacobian)[0] < 2:
        raise ValueError("a centred correlation needs at least 2 rows (BPMs); got 1")
    check_finite(jacobian, "jacobian")
    return _column_correlation(jnp.asarray(jacobian, dtype=float), centred)


@partial(jax.jit, static_argnames="centred")
def _column_correlation(J: Array, centred: bool) -> Array:
    J = _centre(J, centred, axis=0)
    norms = jnp.linalg.norm(J, axis=0)
    seen = norms > 0
    unit = J / jnp.where(seen, norms, 1.0)[None, :]
    correlation = jnp.where(seen[:, None] & seen[None, :], unit.T @ unit, 0.0)
    correlation = jnp.clip(correlation, -1.0, 1.0)
    return jnp.where(jnp.eye(J.shape[1], dtype=bool), 1.0, correlation)


class DegeneratePair(NamedTuple):
    """Two Jacobian columns whose |correlation| exceeds a threshold."""

    i: int
    j: int
    correlation: float
    name_i: str | None = None
    name_j: str | None = None


def degenerate_pairs(
    jacobian: Float[ArrayLike, "m n"],
    threshold: float = 0.95,
    names: Sequence[str] | None = None,
    *,
    neighbours_only: bool = False,
    centred: bool = True,
) -> list[DegeneratePair]:
    """Pairs of columns with ``|correlation| >= threshold``, most degenerate first.

    Anti-correlated columns (correlation near -1) are as degenerate as correlated ones and
    are reported with their sign.

    Args:
        jacobian: ``(m, n)`` Jacobian.
        threshold: in ``(0, 1]``.
        names: optional ``n`` parameter names, copied into the result.
        neighbours_only: only pairs ``(i, i + 1)`` (adjacent quadrupoles in lattice order).
        centred: as in :func:`column_correlation`.

    Returns:
        A list of :class:`DegeneratePair` with ``i < j``, sorted by decreasing |correlation|.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1]; got {threshold}")
    n = np.shape(jacobian)[1] if np.ndim(jacobian) == 2 else 0
    if names is not None and len(names) != n:
        raise ValueError(f"names must have one entry per column ({n}); got {len(names)}")
    correlation = np.asarray(column_correlation(jacobian, centred=centred))
    i, j = np.triu_indices(correlation.shape[0], k=1)
    if neighbours_only:
        keep = j == i + 1
        i, j = i[keep], j[keep]
    values = correlation[i, j]
    selected = np.flatnonzero(np.abs(values) >= threshold)
    selected = selected[np.argsort(-np.abs(values[selected]), kind="stable")]
    return [
        DegeneratePair(
            int(i[s]),
            int(j[s]),
            float(values[s]),
            None if names is None else names[int(i[s])],
            None if names is None else names[int(j[s])],
        )
        for s in selected
    ]


# ----------------------------------------------------------------------------- BPM subsets


def _columns(column_a, column_b, field_a: str = "column_a", field_b: str = "column_b"):
    for value, field in ((column_a, field_a), (column_b, field_b)):
        if np.ndim(value) != 1 or np.size(value) == 0:
            raise ValueError(f"{field} must be a non-empty 1-D array; got shape {np.shape(value)}")
        check_finite(value, field)
    if np.shape(column_a) != np.shape(column_b):
        raise ValueError(
            f"{field_a} and {field_b} must have the same shape; "
            f"got {np.shape(column_a)} and {np.shape(column_b)}"
        )
    return jnp.asarray(column_a, dtype=float), jnp.asarray(column_b, dtype=float)


def responsive_bpms(
    column_a: Float[ArrayLike, " n_bpm"],
    column_b: Float[ArrayLike, " n_bpm"],
    error_size: float,
    noise_sigma: Float[ArrayLike, " n_bpm"] | float,
    min_snr: float = 1.0,
) -> Bool[Array, " n_bpm"]:
    """BPMs at which at least one candidate's response to ``error_size`` exceeds the noise.

    ``error_size * max(|a_i|, |b_i|) >= min_snr * noise_sigma_i``: a BPM that sees neither
    quadrupole above its noise cannot help to tell them apart, however its (noise-free)
    model response happens to correlate.

    Args:
        column_a: ``(n_bpm,)`` response of quadrupole ``a`` per unit K1 (observable per m⁻²).
        column_b: ``(n_bpm,)`` response of quadrupole ``b`` per unit K1.
        error_size: expected |ΔK1| of the faulty quadrupole (m⁻²).
        noise_sigma: per-measurement noise, scalar or ``(n_bpm,)`` (observable units).
        min_snr: required single-BPM signal-to-noise ratio.
    """
    a, b = _columns(column_a, column_b)
    check_positive(error_size, "error_size")
    check_positive(noise_sigma, "noise_sigma")
    noise = jnp.broadcast_to(jnp.asarray(noise_sigma, dtype=float), a.shape)
    return error_size * jnp.maximum(jnp.abs(a), jnp.abs(b)) >= min_snr * noise


class BpmSubset(NamedTuple):
    """Outcome of :func:`orthogonal_bpm_subset`.

    Attributes:
        indices: ``(k,)`` chosen BPM indices (0-based, increasing).
        correlation: correlation of the two sub-vectors (signed).
        relative_rms: ``(2,)`` rms of each (centred, if ``centred``) sub-vector over the rms
            of the whole (centred) column: the fraction of its ring-wide signal each
            candidate keeps at the subset.
        meets_signal_requirement: both ``relative_rms >= min_relative_rms``.
    """

    indices: Array
    correlation: Array
    relative_rms: Array
    meets_signal_requirement: Array


def _subset_statistics(sums: Array, size: float, centred: bool) -> tuple[Array, Array, Array]:
    """(S_aa, S_bb, S_ab) of a subset from its sums (Σa, Σb, Σa², Σb², Σab)."""
    sa, sb, saa, sbb, sab = sums
    if centred:
        saa, sbb, sab = saa - sa**2 / size, sbb - sb**2 / size, sab - sa * sb / size
    return jnp.maximum(saa, 0.0), jnp.maximum(sbb, 0.0), sab


def _subset_objective(sums, size, mean_squares, min_relative_rms, penalty, centred):
    """|correlation| + penalty * relative shortfall of signal; and the correlation, rms."""
    saa, sbb, sab = _subset_statistics(sums, size, centred)
    correlation = sab / jnp.sqrt(jnp.maximum(saa * sbb, jnp.finfo(float).tiny))
    relative = jnp.stack(
        [jnp.sqrt(saa / size / mean_squares[0]), jnp.sqrt(sbb / size / mean_squares[1])]
    )
    shortfall = jnp.sum(jax.nn.relu(1.0 - relative / jnp.maximum(min_relative_rms, 1e-300)), axis=0)
    shortfall = jnp.where(min_relative_rms > 0, shortfall, 0.0)
    return jnp.abs(correlation) + penalty * shortfall, correlation, relative


@partial(jax.jit, static_argnames=("k", "centred", "max_swaps"))
def _search(a, b, eligible, min_relative_rms, *, k: int, centred: bool, max_swaps: int):
    n_bpm = a.shape[0]
    terms = jnp.stack([a, b, a * a, b * b, a * b])  # per-BPM contributions to the sums
    mean_squares = (
        jnp.stack([jnp.var(a), jnp.var(b)])
        if centred
        else jnp.stack([jnp.mean(a**2), jnp.mean(b**2)])
    )

    def objective(sums, size, penalty):
        return _subset_objective(sums, size, mean_squares, min_relative_rms, penalty, centred)[0]

    def grow(seed):
        """Greedy: from one BPM, add the BPM that keeps |correlation| lowest, k - 1 times."""
        member = jnp.zeros(n_bpm, dtype=bool).at[seed].set(True)
        indices = jnp.zeros(k, dtype=int).at[0].set(seed)

        def add(t, state):
            member, indices, sums = state
            candidates = sums[:, None] + terms
            values = objective(candidates, t + 1.0, _PENALTIES[0])
            q = jnp.argmin(jnp.where(member | ~eligible, jnp.inf, values))
            return member.at[q].set(True), indices.at[t].set(q), candidates[:, q]

        return jax.lax.fori_loop(1, k, add, (member, indices, terms[:, seed]))

    def improve(state, penalty):
        """Best single swap (one member out, one non-member in) until none improves."""

        def body(carry):
            member, indices, sums, value, count, _ = carry
            candidates = sums[:, None, None] - terms[:, indices][:, :, None] + terms[:, None, :]
            values = objective(candidates, float(k), penalty)
            values = jnp.where((member | ~eligible)[None, :], jnp.inf, values)
            flat = jnp.argmin(values)
            p, q = flat // n_bpm, flat % n_bpm
            better = values[p, q] < value - 1e-13
            swapped = member.at[indices[p]].set(False).at[q].set(True)
            return (
                jnp.where(better, swapped, member),
                jnp.where(better, indices.at[p].set(q), indices),
                jnp.where(better, candidates[:, p, q], sums),
                jnp.minimum(values[p, q], value),
                count + 1,
                better,
            )

        member, indices, sums = state
        start = (member, indices, sums, objective(sums, float(k), penalty), 0, True)
        member, indices, sums, *_ = jax.lax.while_loop(
            lambda carry: carry[5] & (carry[4] < max_swaps), body, start
        )
        return member, indices, sums

    def run(seed):
        state = grow(seed)
        for penalty in _PENALTIES:
            state = improve(state, penalty)
        return state[1], state[2]

    indices, sums = jax.vmap(run)(jnp.arange(n_bpm))
    value, correlation, relative = jax.vmap(
        lambda s: _subset_objective(
            s, float(k), mean_squares, min_relative_rms, _PENALTIES[-1], centred
        )
    )(sums)
    best = jnp.argmin(jnp.where(eligible, value, jnp.inf))  # seeds that are eligible BPMs
    return (
        jnp.sort(indices[best]),
        correlation[best],
        relative[best],
        jnp.all(relative[best] >= min_relative_rms * (1 - 1e-12)),
    )


def orthogonal_bpm_subset(
    column_a: Float[ArrayLike, " n_bpm"],
    column_b: Float[ArrayLike, " n_bpm"],
    k: int,
    *,
    eligible: Bool[ArrayLike, " n_bpm"] | None = None,
    min_relative_rms: float = 0.1,
    centred: bool = True,
    max_swaps: int = 200,
) -> BpmSubset:
    """``k`` BPMs at which the two response vectors are as uncorrelated as possible.

    Minimises ``|corr(a[S], b[S])|`` over subsets ``S`` of ``k`` eligible BPMs, subject to
    each sub-vector keeping at least ``min_relative_rms`` of its column's ring-wide rms
    (both centred when ``centred``): ``rms(x[S]) >= min_relative_rms * rms(x)``.

    Why the signal constraint. The correlation of a measured pattern with the true
    candidate's sub-vector is about ``s / √(1 + s²)`` with ``s = error_size * rms(x[S]) /
    noise_sigma``; a near-orthogonal subset that keeps no signal (BPMs that see neither
    quadrupole) gives correlations that are pure noise. Since near-orthogonality is only
    possible where the two responses' common part is small, the constraint trades
    correlation against signal: for the NSLS-II QL1/QL2 pair, |corr| ≈ 0 is reached with
    ``min_relative_rms`` up to ≈ 0.11, 0.50 with 0.2 and 0.93 with 0.5 (k = 6). Pass
    ``eligible`` (e.g. from :func:`responsive_bpms`) to exclude BPMs whose response is
    below the noise.

    Search (deterministic; exhaustive search is out of reach, C(180, 6) ≈ 4e10): from every
    eligible BPM as a seed, grow a subset greedily (add the BPM keeping |corr| lowest),
    then improve it by best-single-swap local search on ``|corr| + λ · shortfall`` with the
    penalty ``λ`` raised through (0, 0.1, 1, 10) (continuation: low correlation first,
    then back into the feasible region); keep the best over seeds. Every candidate swap is
    scored at once from running sums, so one call costs about a second for 180 BPMs.

    Args:
        column_a: ``(n_bpm,)`` the first candidate's response vector.
        column_b: ``(n_bpm,)`` the second candidate's response vector.
        k: subset size (>= 3 if ``centred``, since 2 centred points always correlate ±1).
        eligible: ``(n_bpm,)`` bool mask of BPMs that may be chosen (all if None).
        min_relative_rms: required fraction of each column's rms kept, in ``[0, 1)``.
        centred: Pearson (True) or uncentred cosine correlation, as in
            :func:`column_correlation`.
        max_swaps: cap on improving swaps per seed and penalty.

    Returns:
        A :class:`BpmSubset`; check ``meets_signal_requirement``.
    """
    a, b = _columns(column_a, column_b)
    n_bpm = a.shape[0]
    mask = jnp.ones(n_bpm, dtype=bool) if eligible is None else jnp.asarray(eligible)
    if mask.shape != (n_bpm,) or mask.dtype != jnp.bool_:
        raise ValueError(
            f"eligible must be a bool array of shape ({n_bpm},); got {mask.shape} {mask.dtype}"
        )
    smallest = 3 if centred else 2
    if not isinstance(k, int | np.integer) or k < smallest:
        raise ValueError(f"k must be an integer >= {smallest} (centred={centred}); got {k!r}")
    if is_concrete(mask) and int(np.sum(np.asarray(mask))) < k:
        raise ValueError(
            f"k={k} exceeds the number of eligible BPMs ({int(np.sum(np.asarray(mask)))})"
        )
    if not 0.0 <= min_relative_rms < 1.0:
        raise ValueError(f"min_relative_rms must lie in [0, 1); got {min_relative_rms}")
    for column, field in ((column_a, "column_a"), (column_b, "column_b")):
        values = np.asarray(column, dtype=float) if is_concrete(column) else None
        if values is not None and not np.any(values - (values.mean() if centred else 0.0)):
            raise ValueError(f"{field} must not be {'constant' if centred else 'zero'}")
    indices, correlation, relative, ok = _search(
        a,
        b,
        mask,
        jnp.asarray(float(min_relative_rms)),
        k=int(k),
        centred=centred,
        max_swaps=max_swaps,
    )
    return BpmSubset(indices, correlation, relative, ok)


# ----------------------------------------------------------------------------- classification


class SourceClassification(NamedTuple):
    """Which of two candidates caused a set of measured patterns.

    Attributes:
        correlation_a, correlation_b: ``(n_meas,)`` correlation of each measured pattern
            with each candidate's response (the paper's Fig. 5 histograms).
        votes_a: fraction of measurements whose |correlation| with ``a`` exceeds that with
            ``b``.
        source: 0 for ``a``, 1 for ``b``: the candidate with the larger likelihood.
        log_likelihood_ratio: ``log L_a - log L_b`` for the model "every pattern is a
            common amplitude times the candidate's response (+ its own offset when
            centred) + white noise of unknown level", profiled over amplitude, offsets and
            noise level.
        probability_a: ``sigmoid(log_likelihood_ratio)``: the posterior probability of
            ``a`` at even prior odds, *if* the noise is white and the responses are exact
            (it is overconfident otherwise).
    """

    correlation_a: Array
    correlation_b: Array
    votes_a: Array
    source: Array
    log_likelihood_ratio: Array
    probability_a: Array


@partial(jax.jit, static_argnames="centred")
def _classify(patterns: Array, a: Array, b: Array, centred: bool) -> SourceClassification:
    z = _centre(patterns, centred)
    units = jnp.stack([_centre(a, centred), _centre(b, centred)])
    units = units / jnp.linalg.norm(units, axis=1, keepdims=True)
    norms = jnp.linalg.norm(z, axis=1)
    correlation = (z @ units.T) / jnp.where(norms > 0, norms, 1.0)[:, None]  # (n_meas, 2)
    n_meas, k = patterns.shape
    dof = n_meas * (k - 1 if centred else k)
    mean_projection = jnp.mean(z, axis=0) @ units.T  # (2,) amplitude estimates
    rss = jnp.sum(norms**2) - n_meas * mean_projection**2
    rss = jnp.maximum(rss, jnp.finfo(float).tiny)
    llr = 0.5 * dof * (jnp.log(rss[1]) - jnp.log(rss[0]))
    return SourceClassification(
        correlation_a=correlation[:, 0],
        correlation_b=correlation[:, 1],
        votes_a=jnp.mean(jnp.abs(correlation[:, 0]) > jnp.abs(correlation[:, 1])),
        source=jnp.where(llr >= 0, 0, 1),
        log_likelihood_ratio=llr,
        probability_a=jax.nn.sigmoid(llr),
    )


def classify_single_source(
    measured_patterns: Float[ArrayLike, "n_meas k"],
    column_a_sub: Float[ArrayLike, " k"],
    column_b_sub: Float[ArrayLike, " k"],
    *,
    centred: bool = True,
) -> SourceClassification:
    """Correlate repeated measurements with two candidates' responses and decide.

    Args:
        measured_patterns: ``(n_meas, k)`` measured distortions (e.g. beta-beat) at the
            chosen BPMs, one row per measurement (observable units).
        column_a_sub: ``(k,)`` candidate ``a``'s responses at the same BPMs.
        column_b_sub: ``(k,)`` candidate ``b``'s responses at the same BPMs.
        centred: Pearson (True) or uncentred cosine correlation.

    Returns:
        A :class:`SourceClassification`. The decision uses all measurements together
        (likelihood ratio); ``votes_a`` is the per-measurement majority, for comparison.
    """
    a, b = _columns(column_a_sub, column_b_sub, "column_a_sub", "column_b_sub")
    k = a.shape[0]
    if (
        np.ndim(measured_patterns) != 2
        or np.shape(measured_patterns)[1] != k
        or not np.shape(measured_patterns)[0]
    ):
        raise ValueError(
            f"measured_patterns must have shape (n_meas, {k}) with n_meas >= 1; "
            f"got {np.shape(measured_patterns)}"
        )
    if k < (3 if centred else 2):
        raise ValueError(f"need at least {3 if centred else 2} BPMs; got {k}")
    check_finite(measured_patterns, "measured_patterns")
    return _classify(jnp.asarray(measured_patterns, dtype=float), a, b, centred)


class DegeneracyExperiment(NamedTuple):
    """Outcome of :func:`degeneracy_experiment` (the paper's Fig. 6 simulation).

    Attributes:
        subset: classification from the chosen BPMs only.
        all_bpms: the same classification from every BPM.
        subset_accuracy, all_bpms_accuracy: fraction of single measurements whose larger
            |correlation| is with the true source.
        signal_to_noise: ``(2,)`` rms (centred, if ``centred``) of the true source's signal
            ``error_size * x`` over the noise, at the subset and at all BPMs; the expected
            correlation with the true candidate is about ``s / √(1 + s²)``.
    """

    subset: SourceClassification
    all_bpms: SourceClassification
    subset_accuracy: Array
    all_bpms_accuracy: Array
    signal_to_noise: Array


def degeneracy_experiment(
    column_a: Float[ArrayLike, " n_bpm"],
    column_b: Float[ArrayLike, " n_bpm"],
    subset: Int[ArrayLike, " k"],
    true_source: int,
    error_size: float,
    noise_sigma: float,
    n_meas: int,
    key: PRNGKeyArray,
    *,
    response: Float[ArrayLike, "2 n_bpm"] | None = None,
    background: Float[ArrayLike, "p n_bpm"] | None = None,
    background_sigma: float = 0.0,
    centred: bool = True,
) -> DegeneracyExperiment:
    """Simulate repeated measurements of the distortion from one faulty quadrupole.

    Measurement ``j`` at every BPM is ``error_size * response[true_source]
    + background.T @ g_j + noise_sigma * n_j`` with ``g_j ~ N(0, background_sigma²)``
    (fresh errors of other elements per measurement, e.g. power-supply jitter: structured,
    beat-like noise) and ``n_j ~ N(0, 1)`` white BPM noise; it is classified with the model
    responses ``(column_a, column_b)`` at the subset and at all BPMs.

    With white noise and exact responses, the all-BPM correlation test is the
    likelihood-ratio test and is at least as accurate per measurement as any subset; the
    subset's gain is that its correlations separate (near 1 for the true source, near 0 for
    the other, the paper's Fig. 5), while over all BPMs both sit at nearly the same value.
    (What fails over all BPMs in the paper, its Fig. 3, is the regularised fit over *all*
    quadrupoles, whose Gaussian prior favours spreading the error or moving it to the
    neighbour with the larger response — a different test from this one.)

    Args:
        column_a: ``(n_bpm,)`` model response of candidate ``a`` per unit K1.
        column_b: ``(n_bpm,)`` model response of candidate ``b`` per unit K1.
        subset: ``(k,)`` BPM indices (0-based), e.g. from :func:`orthogonal_bpm_subset`.
        true_source: 0 (``a``) or 1 (``b``).
        error_size: ΔK1 of the faulty quadrupole (m⁻²).
        noise_sigma: white noise per BPM and measurement (observable units).
        n_meas: number of repeated measurements (static).
        key: JAX PRNG key.
        response: ``(2, n_bpm)`` the machine's true responses generating the data, if
            different from the model's (model error); defaults to the model columns.
        background: ``(p, n_bpm)`` responses of other elements for structured noise.
        background_sigma: rms of their per-measurement errors (their units).
        centred: Pearson (True) or cosine correlation.
    """
    a, b = _columns(column_a, column_b)
    n_bpm = a.shape[0]
    if np.ndim(subset) != 1 or np.size(subset) < (3 if centred else 2):
        raise ValueError(f"subset must be 1-D with at least 3 BPMs; got shape {np.shape(subset)}")
    if is_concrete(subset):
        s = np.asarray(subset)
        if s.min() < 0 or s.max() >= n_bpm or len(set(s.tolist())) != len(s):
            raise ValueError(f"subset must hold distinct indices in [0, {n_bpm}); got {s.tolist()}")
    if true_source not in (0, 1):
        raise ValueError(f"true_source must be 0 (column_a) or 1 (column_b); got {true_source!r}")
    check_positive(error_size, "error_size")
    check_positive(noise_sigma, "noise_sigma")
    if not isinstance(n_meas, int | np.integer) or n_meas < 1:
        raise ValueError(f"n_meas must be a positive integer; got {n_meas!r}")
    truth = jnp.stack([a, b]) if response is None else jnp.asarray(response, dtype=float)
    if truth.shape != (2, n_bpm):
        raise ValueError(f"response must have shape (2, {n_bpm}); got {truth.shape}")
    check_finite(truth, "response")
    if background is not None:
        background = jnp.asarray(background, dtype=float)
        if background.ndim != 2 or background.shape[1] != n_bpm:
            raise ValueError(f"background must have shape (p, {n_bpm}); got {background.shape}")
        check_finite(background, "background")
    else:
        background = jnp.zeros((1, n_bpm))
    check_finite(background_sigma, "background_sigma")
    return _experiment(
        a,
        b,
        truth,
        jnp.asarray(subset),
        background,
        jnp.asarray(background_sigma, dtype=float),
        jnp.asarray(error_size, dtype=float),
        jnp.asarray(noise_sigma, dtype=float),
        key,
        jnp.asarray(true_source),
        n_meas=int(n_meas),
        centred=centred,
    )


@partial(jax.jit, static_argnames=("n_meas", "centred"))
def _experiment(
    a,
    b,
    truth,
    subset,
    background,
    background_sigma,
    error_size,
    noise_sigma,
    key,
    true_source,
    *,
    n_meas,
    centred,
):
    n_bpm = a.shape[0]
    key_noise, key_background = jax.random.split(key)
    patterns = error_size * truth[true_source][None, :] + noise_sigma * jax.random.normal(
        key_noise, (n_meas, n_bpm)
    )
    g = background_sigma * jax.random.normal(key_background, (n_meas, background.shape[0]))
    patterns = patterns + g @ background
    on_subset = _classify(patterns[:, subset], a[subset], b[subset], centred)
    everywhere = _classify(patterns, a, b, centred)

    def accuracy(result: SourceClassification) -> Array:
        return jnp.where(true_source == 0, result.votes_a, 1.0 - result.votes_a)

    signal = error_size * truth[true_source]

    def rms(x):
        return jnp.sqrt(jnp.mean(_centre(x, centred) ** 2))

    return DegeneracyExperiment(
        subset=on_subset,
        all_bpms=everywhere,
        subset_accuracy=accuracy(on_subset),
        all_bpms_accuracy=accuracy(everywhere),
        signal_to_noise=jnp.stack([rms(signal[subset]), rms(signal)]) / noise_sigma,
    )
