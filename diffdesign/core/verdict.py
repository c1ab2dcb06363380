"""Verdicts: the checks a study runs on its own results, so that a suspicious result is
flagged with what to try instead of passing silently.

Each check function returns a :class:`Check` (its name, whether it passed, the measured
figure against what was expected, and advice when it failed). A study collects its checks
in a :class:`Verdict`, writes ``verdict.to_json()`` into its results.json and returns it with
its summary (:class:`StudySummary`); the ``diffdesign`` command prints it as the last block:

    verdict: 1 of 3 checks flagged
      ok    chi2/dof           1.02 (expected within [0.5, 2])
      FLAG  correlation        contrast-offset -0.9999 (|r| <= 0.99 expected)
            -> contrast and offset are not separable in this data: ...

The thresholds are conventions of the fields (chi2/dof near 1, R-hat <= 1.01 as Vehtari et
al. 2021 recommend, |r| <= 0.99), stated with every check so that the user can judge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Check:
    """One check of a result: ``name``, whether it ``passed``, ``detail`` (the figure and
    what was expected) and ``advice`` (what to try when it did not pass)."""

    name: str
    passed: bool
    detail: str
    advice: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "passed": bool(self.passed), "detail": self.detail,
                "advice": "" if self.passed else self.advice}  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """The checks of one run."""

    checks: tuple[Check, ...] = ()

    def __add__(self, other: Verdict | Check) -> Verdict:
        more = (other,) if isinstance(other, Check) else other.checks
        return Verdict(self.checks + more)

    @property
    def flagged(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def to_json(self) -> dict:
        return {"flagged": len(self.flagged), "checks": [c.to_json() for c in self.checks]}

    @classmethod
    def from_json(cls, data: Mapping) -> Verdict:
        """The verdict that :meth:`to_json` wrote (a passed check's advice is not kept)."""
        return cls(tuple(Check(**check) for check in data["checks"]))

    def lines(self) -> list[str]:
        """The verdict block as printed (see the module docstring)."""
        if not self.checks:
            return []
        n = len(self.flagged)
        head = f"verdict: {n} of {len(self.checks)} checks flagged" if n else (
            f"verdict: all {len(self.checks)} checks passed")  # fmt: skip
        width = max(len(c.name) for c in self.checks)
        out = [head]
        for c in self.checks:
            out.append(f"  {'ok  ' if c.passed else 'FLAG'}  {c.name:{width}s}  {c.detail}")
            if not c.passed and c.advice:
                out.append(f"        {'':{width}s}  -> {c.advice}")
        return out


@dataclass(frozen=True)
class StudySummary:
    """What a study's ``run`` returns to the command: its headline figures (label ->
    value with unit) and its verdict."""

    figures: Mapping[str, str]
    verdict: Verdict = field(default_factory=Verdict)


# --------------------------------------------------------------------------------- checks


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def converged(name: str, passed: bool, steps: int, advice: str) -> Check:
    """An iterative fit met its tolerances within its ``steps``."""
    return Check(name, bool(passed), f"{'converged' if passed else 'stopped'} after "
                 f"{int(steps)} steps", advice)  # fmt: skip


def chi2_per_dof(chi2: float, dof: int, low: float = 0.5, high: float = 2.0) -> Check:
    """chi^2 / dof within ``[low, high]``: far above 1 the model or the noise level is wrong,
    far below the noise is overestimated."""
    ratio = float(chi2) / max(int(dof), 1)
    passed = _finite(ratio) and low <= ratio <= high
    advice = (
        "the model misses something the data hold, or the stated noise is too small: check "
        "the noise level, the model's free parameters and the data for outliers"
        if not _finite(ratio) or ratio > high
        else "the stated noise is larger than the scatter of the data: check the noise level"
    )
    return Check("chi2/dof", passed, f"{ratio:.3g} for {int(dof)} dof (expected within "
                 f"[{low:g}, {high:g}])", advice)  # fmt: skip


def bound_below(name: str, bound: float, estimate: float, unit: str = "",
                tolerance: float = 0.0) -> Check:  # fmt: skip
    """A lower bound (e.g. Cramer-Rao) must not exceed what it bounds (beyond ``tolerance``
    relative to ``|estimate|``): if it does, one of the two is not computed as claimed."""
    passed = _finite(bound) and _finite(estimate) and bound <= estimate + tolerance * abs(estimate)
    return Check(
        name, passed,
        f"bound {bound:.4g}{unit} vs estimate {estimate:.4g}{unit} (bound <= estimate expected)",
        "an estimate below its bound means too few samples or steps for the estimate (run the "
        "full study rather than --smoke) or a bound computed under other assumptions",
    )  # fmt: skip


def improved(name: str, start: float, final: float, unit: str = "",
             advice: str | None = None) -> Check:  # fmt: skip
    """An optimisation must end no worse than it started (``advice`` replaces the default
    hint)."""
    passed = _finite(final) and (not _finite(start) or final <= start)
    return Check(
        name, passed, f"{start:.4g}{unit} -> {final:.4g}{unit} (no worse than the start expected)",
        advice or "the optimisation made the design worse: lower the learning rate, run more "
        "steps, or keep the best epoch rather than the last",
    )  # fmt: skip


def within_budget(name: str, cost: float, budget: float, unit: str = "",
                  tolerance: float = 0.01, advice: str | None = None) -> Check:  # fmt: skip
    """A design's cost within its budget (``tolerance`` relative; ``advice`` replaces the
    default hint)."""
    passed = _finite(cost) and cost <= budget * (1 + tolerance)
    return Check(
        name, passed, f"cost {cost:.4g}{unit} vs budget {budget:.4g}{unit}",
        advice or "the cost penalty is too weak to hold the budget: raise its weight or bound "
        "the costly parameters",
    )  # fmt: skip


def correlations(matrix, names: Sequence[str], limit: float = 0.99) -> Check:
    """No pair of estimated parameters correlated beyond ``limit``: such a pair is one
    direction the data determine and one they do not."""
    c = np.asarray(matrix, float)
    i, j = np.triu_indices(c.shape[0], 1)
    pairs = np.abs(np.nan_to_num(c[i, j], nan=np.inf))
    k = int(np.argmax(pairs)) if pairs.size else None
    worst = 0.0 if k is None else float(c[i[k], j[k]])
    passed = bool(np.all(np.isfinite(c))) and abs(worst) <= limit
    pair = "none" if k is None else f"{names[i[k]]}-{names[j[k]]}"
    return Check(
        "correlation", passed, f"largest |r|: {pair} {worst:+.4f} (|r| <= {limit} expected)",
        f"{pair} are not separable in this data: fix one of them, add data that moves them "
        "apart, or report their combination",
    )  # fmt: skip


#: What :func:`at_bounds` advises unless a study says it better.
AT_BOUNDS_ADVICE = ("widen the bounds if the physics allows, or fix the parameter: at a bound "
                    "the fit's uncertainty is not that of a minimum")  # fmt: skip


def at_bounds(hits: Sequence[str], total: int, name: str = "parameters at bounds",
              advice: str = AT_BOUNDS_ADVICE) -> Check:  # fmt: skip
    """No parameter at a bound: ``hits`` are the names of those that are (as a fit flags
    them), out of ``total``; there the reported uncertainty is not that of an interior
    minimum."""
    hits = list(hits)
    return Check(name, not hits, ", ".join(hits) or f"none of {int(total)}", advice)


def values_at_bounds(values: Mapping[str, float], lower: Mapping[str, float],
                     upper: Mapping[str, float], rtol: float = 1e-3,
                     name: str = "parameters at bounds",
                     advice: str = AT_BOUNDS_ADVICE) -> Check:  # fmt: skip
    """:func:`at_bounds` of values against their bounds: a value within ``rtol`` of its
    bounds' span from either bound is at it."""
    hit = []
    for key, v in values.items():
        lo, hi = float(lower[key]), float(upper[key])
        span = (hi - lo) if math.isfinite(hi - lo) else max(abs(lo), abs(hi), 1.0)
        if min(abs(float(v) - lo), abs(hi - float(v))) <= rtol * span:
            hit.append(key)
    return at_bounds(hit, len(values), name, advice)


def rhat(values: Mapping[str, float], limit: float = 1.01) -> Check:
    """Every split R-hat at most ``limit`` (chains agree)."""
    bad = {k: float(v) for k, v in values.items() if not (_finite(v) and float(v) <= limit)}
    worst = max(values.items(), key=lambda kv: float(kv[1]) if _finite(kv[1]) else math.inf)
    return Check(
        "R-hat", not bad,
        f"largest {worst[0]} {float(worst[1]):.3f} (<= {limit} expected)",
        "the chains disagree: run more warm-up and samples, or reparameterise the "
        "nearly degenerate directions",
    )  # fmt: skip


def divergences(count: int) -> Check:
    """No divergent transitions of NUTS: their draws bias the posterior."""
    return Check("divergences", int(count) == 0, f"{int(count)} divergent transitions",
                 "raise target_accept_prob or reparameterise; divergent draws bias the "
                 "posterior")  # fmt: skip


def coverage(name: str, fraction: float, nominal: float, n: int,
             tolerance: float = 0.05) -> Check:  # fmt: skip
    """The fraction of truths inside nominal-``nominal`` intervals near ``nominal``: within
    ``tolerance`` plus two binomial standard errors of ``n`` trials."""
    allowed = tolerance + 2.0 * math.sqrt(nominal * (1.0 - nominal) / max(int(n), 1))
    passed = _finite(fraction) and abs(float(fraction) - nominal) <= allowed
    return Check(
        name, passed,
        f"{float(fraction):.3f} of {int(n)} intervals hold the truth (expected {nominal:g} "
        f"+- {allowed:.3f})",
        "the reported uncertainties are too small (coverage low) or too large (high): check "
        "the noise model, and whether the estimates sit at bounds or are biased",
    )  # fmt: skip


def all_finite(name: str, values) -> Check:
    """Every number of a result finite."""
    a = np.asarray(values, float)
    bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
    return Check(name, bad == 0, f"{bad} of {a.size} values not finite",
                 "a NaN or inf in a result: too few samples or steps (--smoke), or an "
                 "evaluation that failed; rerun the full study")  # fmt: skip
