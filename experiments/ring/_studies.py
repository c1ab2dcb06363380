"""Storage-ring studies of the NSLS-II paper (Li, Rainer, Cheng, "Bayesian Approach for Linear
Optics Correction"), reproduced in simulation.

Two studies, each a frozen config dataclass and a ``run_*`` function that writes
``results.json`` and plots into an output folder:

* :func:`run_correction_study` (Sects. II-III): plant Gaussian gradient errors, simulate
  noisy measurements of beta-beat, phase advance and dispersion at the BPMs, estimate the
  errors with the Bayesian estimator (regularisation and weights from noise and prior, the
  prior calibrated on the measured beat as in the paper's Fig. 1), the evidence-optimal
  prior, the pseudo-inverse, Tikhonov over a grid of alphas and truncated SVD over
  cut-offs — every one iterated by Gauss-Newton with the Jacobian re-linearised each step
  (:func:`~diffdesign.ring.k1_jacobian`) — then apply each correction and recompute the
  optics of the corrected machine.
* :func:`run_degeneracy_study` (Sect. IV): the correlation of neighbouring quadrupoles'
  beta-beat responses (QL1G2C01A/QL2G2C01A: 0.9896 in the paper), the regularised fit of a
  single faulty quadrupole that blames its neighbour (Fig. 3), a near-orthogonal 6-BPM
  subset (Fig. 4) and the classification of 800 repeated measurements there (Figs. 5-6).

Default values and why (all configurable; SI units, phases in rad):

* Gradient errors: relative, ``sigma = 1e-3`` — the integrated-gradient spread of series
  quadrupoles after magnetic measurement is 1e-4 to 1e-3, power-supply calibration adds a
  few 1e-4; on NSLS-II this gives ~7 % rms horizontal and ~4 % vertical beta-beat, the
  level of an uncorrected machine.
* Measurement noise per BPM (after averaging repeated turn-by-turn acquisitions, as the
  paper does): beta-beat 0.5 %, phase advance 1 mrad (0.06 deg), horizontal dispersion
  1 mm (RF-frequency scan with ~1 um orbit resolution at delta ~ 1e-3).
* Degeneracy: the paper's 1 A change of QL1G2C01A is taken as a 1 % change of its K1
  (-1.618 m^-2 -> dK1 = 0.0162 m^-2; NSLS-II quadrupoles run at ~100 A). One driven
  1024-turn measurement gives the beat with 1e-3 noise per BPM (constant-amplitude
  resonant drive, no decoherence); the averaged data that the all-quadrupole fit sees keep
  a 1e-3 noise floor (systematic BPM and model errors that do not average down) — below
  ~1e-4 the fit finds the right quadrupole, which the study's noise scan shows.

The optics model: every quadrupole with a non-zero K1 (on NSLS-II: 300 normal quadrupoles,
the skew ``SQ*`` excluded, numbered as in the paper), all BPMs (``Monitor`` elements),
errors relative, ``K1 = K1_design (1 + k)``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from diffdesign._checkpoint import load_checkpoint, save_checkpoint
from diffdesign._config import TomlConfig as _TomlConfig
from diffdesign.core.verdict import Check, Verdict, all_finite, chi2_per_dof, improved
from diffdesign.inference import linear_gaussian as lg
from diffdesign.inference.gauss_newton import GaussNewtonResult, gauss_newton
from diffdesign.ring import correction as co
from diffdesign.ring import degeneracy as dg
from diffdesign.ring.catalogue import lattice_path
from diffdesign.ring.lattice import Lattice
from diffdesign.ring.model import (
    OBSERVABLES,
    RingModel,
    block_rows,
    fitted_quadrupoles,
    ring_model,
)

#: Metrics of a corrected machine (rms over BPMs) and of the estimate, in results.json.
METRICS = (
    "rms_beta_beat_x",  # relative
    "rms_beta_beat_y",  # relative
    "rms_phase_x_rad",
    "rms_phase_y_rad",
    "rms_dispersion_x_m",
    "rms_error_relative",  # rms over quadrupoles of (estimated - true) relative error
)
#: Headline estimators of the correction study (Tikhonov and TSVD: best in hindsight).
ESTIMATORS = ("bayes", "evidence", "pinv", "tikhonov_best", "tsvd_best")

#: The ring of the paper, packaged with diffdesign (see :mod:`diffdesign.ring.catalogue`).
DEFAULT_LATTICE = "nsls2"


def load_study_lattice(name_or_path: str | Path | None) -> Lattice:
    """Read the lattice of a study: a packaged name (``"nsls2"``, ``"esrf"``), a file (AT
    ``.m`` or diffdesign ``.json``), or the paper's NSLS-II if None.

    Raises:
        ValueError: unknown name (listing the known ones), wrong suffix, missing file.
    """
    from diffdesign.ring import load_lattice

    return load_lattice(DEFAULT_LATTICE if name_or_path is None else name_or_path)


# ----------------------------------------------------------------------------- configs


def _check_number(
    config, name: str, low: float, high: float, *, integer: bool = False, open_low: bool = False
) -> None:
    """Raise a ValueError naming the field, its value and the allowed range."""
    value = getattr(config, name)
    kind = "an integer" if integer else "a number"
    bad_type = isinstance(value, bool) or not isinstance(value, int if integer else int | float)
    left = "(" if open_low else "["
    if (
        bad_type
        or not np.isfinite(value)
        or not ((low < value if open_low else low <= value) and value <= high)
    ):
        raise ValueError(
            f"{type(config).__name__}.{name} must be {kind} in {left}{low:g}, {high:g}]; "
            f"got {value!r}"
        )


def _check_sequence(
    config,
    name: str,
    low: float,
    high: float,
    *,
    integer: bool = False,
    min_length: int = 1,
    open_low: bool = False,
) -> None:
    values = getattr(config, name)
    if len(values) < min_length:
        raise ValueError(
            f"{type(config).__name__}.{name} needs at least {min_length} entries; got {values!r}"
        )
    for i, value in enumerate(values):
        kind = "integers" if integer else "numbers"
        ok_type = not isinstance(value, bool) and isinstance(value, int if integer else int | float)
        ok = ok_type and np.isfinite(value) and (low < value if open_low else low <= value)
        if not (ok and value <= high):
            left = "(" if open_low else "["
            raise ValueError(
                f"{type(config).__name__}.{name} must hold {kind} in {left}{low:g}, {high:g}]; "
                f"entry {i} is {value!r}"
            )


def _check_pattern(config, name: str) -> None:
    try:
        re.compile(getattr(config, name))
    except (re.error, TypeError) as error:
        raise ValueError(
            f"{type(config).__name__}.{name} must be a regular expression of element names; "
            f"got {getattr(config, name)!r} ({error})"
        ) from None


@dataclasses.dataclass(frozen=True)
class OpticsConfig(_TomlConfig):
    """``diffdesign ring optics``: which ring.

    Attributes:
        lattice: a packaged ring's name (``"nsls2"``, ``"esrf"``, ``"nsls2-elegant"``) or a
            lattice file (AT ``.m``, diffdesign ``.json``).
    """

    lattice: str = DEFAULT_LATTICE

    def __post_init__(self):
        if not isinstance(self.lattice, str) or not self.lattice:
            raise ValueError(
                "OpticsConfig.lattice must be a packaged ring's name or a lattice file; "
                f"got {self.lattice!r}"
            )


@dataclasses.dataclass(frozen=True)
class CorrectionStudyConfig(_TomlConfig):
    """The correction study (see the module docstring for the default values' reasons).

    Attributes:
        lattice: a packaged ring's name (``"nsls2"``, the paper's, or ``"esrf"``) or a
            lattice file (AT ``.m``, diffdesign ``.json``).
        quadrupoles: regular expression of the quadrupole names to fit (whole-name match);
            empty: every ``Quadrupole`` element with non-zero K1.
        error_sigma: rms relative gradient error planted, in (0, 0.02].
        noise_beta_beat: rms noise of the measured beta-beat per BPM (relative), (0, 0.1].
        noise_phase: rms noise of the measured phase advance per BPM (rad), (0, 0.1].
        noise_dispersion: rms noise of the measured horizontal dispersion per BPM (m),
            (0, 0.05].
        observables: the blocks fitted, a non-empty subset of :data:`OBSERVABLES`.
        n_seeds: machines (error and noise draws), in [1, 10000].
        n_iter: Gauss-Newton iterations per estimator, in [1, 20].
        tikhonov_alphas: Tikhonov coefficients on the noise-whitened system (1/relative
            error^2; the Bayesian value is 1/prior_sigma^2), each in (0, 1e16].
        tsvd_cuts: numbers of singular values kept by truncated SVD, each in [1, 100000].
        calibration_sigmas: trial relative error sigmas of the beat calibration (Fig. 1),
            each in (0, 0.02], at least 2.
        calibration_seeds: error ensembles per trial sigma, in [1, 1000].
        evidence_bounds: search range of the evidence-optimal prior sigma (relative).
        example_seed: the machine shown along the ring, in [0, n_seeds).
        seed: the PRNG seed.
    """

    lattice: str = DEFAULT_LATTICE
    quadrupoles: str = ""
    error_sigma: float = 1e-3
    noise_beta_beat: float = 5e-3
    noise_phase: float = 1e-3
    noise_dispersion: float = 1e-3
    observables: tuple[str, ...] = OBSERVABLES
    n_seeds: int = 30
    n_iter: int = 3
    tikhonov_alphas: tuple[float, ...] = (
        *(m * 10.0**e for e in range(2, 10) for m in (1, 3)),
        1e10,
    )
    tsvd_cuts: tuple[int, ...] = (10, 20, 30, 45, 60, 80, 100, 130, 160, 200, 250, 300)
    calibration_sigmas: tuple[float, ...] = (2.5e-4, 5e-4, 1e-3, 2e-3)
    calibration_seeds: int = 16
    evidence_bounds: tuple[float, float] = (1e-6, 1e-1)
    example_seed: int = 0
    seed: int = 0

    SMOKE: ClassVar[dict[str, Any]] = {
        "n_seeds": 2,
        "n_iter": 2,
        "calibration_seeds": 4,
        "calibration_sigmas": (5e-4, 2e-3),
        "tikhonov_alphas": (1e4, 1e6, 1e8),
        "tsvd_cuts": (30, 100, 300),
        "example_seed": 0,
    }

    def __post_init__(self):
        if not isinstance(self.lattice, str) or not self.lattice:
            raise ValueError(
                f"CorrectionStudyConfig.lattice must be a packaged ring's name or a lattice file; "
                f"got {self.lattice!r}"
            )
        _check_pattern(self, "quadrupoles")
        _check_number(self, "error_sigma", 0.0, 0.02, open_low=True)
        _check_number(self, "noise_beta_beat", 0.0, 0.1, open_low=True)
        _check_number(self, "noise_phase", 0.0, 0.1, open_low=True)
        _check_number(self, "noise_dispersion", 0.0, 0.05, open_low=True)
        unknown = [o for o in self.observables if o not in OBSERVABLES]
        if unknown or not self.observables or len(set(self.observables)) != len(self.observables):
            raise ValueError(
                f"CorrectionStudyConfig.observables must be distinct entries of {OBSERVABLES}; "
                f"got {self.observables!r}"
            )
        _check_number(self, "n_seeds", 1, 10000, integer=True)
        _check_number(self, "n_iter", 1, 20, integer=True)
        _check_sequence(self, "tikhonov_alphas", 0.0, 1e16, open_low=True)
        _check_sequence(self, "tsvd_cuts", 1, 100000, integer=True)
        _check_sequence(self, "calibration_sigmas", 0.0, 0.02, open_low=True, min_length=2)
        _check_number(self, "calibration_seeds", 1, 1000, integer=True)
        _check_sequence(self, "evidence_bounds", 0.0, 1.0, open_low=True, min_length=2)
        if len(self.evidence_bounds) != 2 or not self.evidence_bounds[0] < self.evidence_bounds[1]:
            raise ValueError(
                "CorrectionStudyConfig.evidence_bounds must be (low, high) with "
                f"0 < low < high <= 1; got {self.evidence_bounds!r}"
            )
        _check_number(self, "example_seed", 0, self.n_seeds - 1, integer=True)
        _check_number(self, "seed", 0, 2**31 - 1, integer=True)

    @property
    def noise(self) -> dict[str, float]:
        """Noise sigma per observable block (block units)."""
        return {
            "beta_x": self.noise_beta_beat,
            "beta_y": self.noise_beta_beat,
            "phase_x": self.noise_phase,
            "phase_y": self.noise_phase,
            "dispersion_x": self.noise_dispersion,
        }


@dataclasses.dataclass(frozen=True)
class DegeneracyStudyConfig(_TomlConfig):
    """The degeneracy study (see the module docstring for the default values' reasons).

    Attributes:
        lattice: a packaged ring's name (``"nsls2"``, the paper's, or ``"esrf"``) or a
            lattice file (AT ``.m``, diffdesign ``.json``).
        quadrupoles: regular expression of the quadrupoles in the fit (as for the
            correction study; empty: every Quadrupole with non-zero K1).
        quadrupole_a: the faulty quadrupole (its name; the paper: QL1G2C01A).
        quadrupole_b: its degenerate neighbour (the paper: QL2G2C01A).
        plane: ``"x"`` or ``"y"``: which beta-beat is measured.
        error_relative: the fault, dK1 / K1 of ``quadrupole_a``, in (0, 0.1].
        fit_noise: noise of the averaged beat seen by the all-quadrupole fit, (0, 0.1].
        fit_noise_scan: noise levels at which the fit's attribution is tallied.
        scan_repeats: noise draws per level of the scan, in [1, 1000].
        measurement_noise: noise of one measured beat pattern per BPM, (0, 0.1].
        n_measurements: repeated measurements classified, in [10, 100000].
        subset_size: BPMs of the near-orthogonal subset, in [3, 20].
        min_relative_rms: fraction of each response's ring-wide rms the subset keeps,
            [0, 0.9].
        pair_threshold: |correlation| above which neighbours count as degenerate, (0, 1].
        calibration_seeds: ensembles of the prior calibration, in [1, 10000].
        seed: the PRNG seed.
    """

    lattice: str = DEFAULT_LATTICE
    quadrupoles: str = ""
    quadrupole_a: str = "QL1G2C01A"
    quadrupole_b: str = "QL2G2C01A"
    plane: str = "x"
    error_relative: float = 0.01
    fit_noise: float = 1e-3
    fit_noise_scan: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    scan_repeats: int = 20
    measurement_noise: float = 1e-3
    n_measurements: int = 800
    subset_size: int = 6
    min_relative_rms: float = 0.1
    pair_threshold: float = 0.95
    calibration_seeds: int = 64
    seed: int = 0

    SMOKE: ClassVar[dict[str, Any]] = {
        "scan_repeats": 2,
        "fit_noise_scan": (1e-4, 1e-3),
        "calibration_seeds": 8,
    }

    def __post_init__(self):
        if not isinstance(self.lattice, str) or not self.lattice:
            raise ValueError(
                f"DegeneracyStudyConfig.lattice must be a packaged ring's name or a lattice file; "
                f"got {self.lattice!r}"
            )
        _check_pattern(self, "quadrupoles")
        if self.plane not in ("x", "y"):
            raise ValueError(f"DegeneracyStudyConfig.plane must be 'x' or 'y'; got {self.plane!r}")
        if self.quadrupole_a == self.quadrupole_b:
            raise ValueError(
                "DegeneracyStudyConfig.quadrupole_a and quadrupole_b must differ; "
                f"both are {self.quadrupole_a!r}"
            )
        _check_number(self, "error_relative", 0.0, 0.1, open_low=True)
        _check_number(self, "fit_noise", 0.0, 0.1, open_low=True)
        _check_sequence(self, "fit_noise_scan", 0.0, 0.1, open_low=True)
        _check_number(self, "scan_repeats", 1, 1000, integer=True)
        _check_number(self, "measurement_noise", 0.0, 0.1, open_low=True)
        _check_number(self, "n_measurements", 10, 100000, integer=True)
        _check_number(self, "subset_size", 3, 20, integer=True)
        _check_number(self, "min_relative_rms", 0.0, 0.9)
        _check_number(self, "pair_threshold", 0.0, 1.0, open_low=True)
        _check_number(self, "calibration_seeds", 1, 10000, integer=True)
        _check_number(self, "seed", 0, 2**31 - 1, integer=True)


def _rms(x: Array, axis: int = -1) -> Array:
    return jnp.sqrt(jnp.mean(x**2, axis=axis))


# ----------------------------------------------------------------------------- correction


@partial(jax.jit, static_argnames=("n_alpha",))
def _classical_step(
    A: Float[Array, "E m n"],
    y: Float[Array, "E m"],
    alphas: Float[Array, " n_alpha"],
    cuts: Float[Array, " n_cut"],
    n_alpha: int,
) -> Array:
    """One Gauss-Newton step of the classical estimators, each on its own whitened
    linearisation: rows pseudo-inverse, Tikhonov per alpha, truncated SVD per cut-off.

    Row ``e`` holds ``A_e = J(k_e) / noise`` and ``y_e = (measured - f(k_e)) / noise +
    A_e k_e ≈ A_e k_true``: each estimator solves for the *total* error with its own filter
    of the SVD of ``A_e``. Returns the next iterates ``(E, n_quad)``.
    """
    pinv = lg.pseudo_inverse(A[0], y[0], 1.0)
    ridge = jax.vmap(lambda a, b, alpha: lg.tikhonov(a, b, 1.0, alpha))(
        A[1 : 1 + n_alpha], y[1 : 1 + n_alpha], alphas
    )
    tsvd = jax.vmap(lambda a, b, cut: lg.truncated_svd(a, b, 1.0, cut))(
        A[1 + n_alpha :], y[1 + n_alpha :], cuts
    )
    return jnp.concatenate([pinv[None], ridge, tsvd])


def _bayesian_runs(
    model: RingModel,
    measured: np.ndarray,
    rows: np.ndarray,
    sigma: np.ndarray,
    prior_sigma: float,
    config: CorrectionStudyConfig,
) -> tuple[GaussNewtonResult, GaussNewtonResult]:
    """The Bayesian and the evidence-optimal estimators: Gauss-Newton with a Gaussian prior
    on the total error (fixed sigma; the evidence-optimal sigma at each linearisation)."""
    bounds = tuple(float(b) for b in config.evidence_bounds)

    def linearise(k):
        values, jacobian = model.linearise_host(np.asarray(k))
        return jnp.asarray(measured[rows] - values[rows]), jnp.asarray(jacobian[rows])

    def evidence_sigma(t, k, residual, jacobian):
        A = jacobian / sigma[:, None]  # the whitened system of the total error
        return lg.evidence_optimal_prior_sigma(A, residual / sigma + A @ k, 1.0, bounds).prior_sigma

    k0 = np.zeros(len(model.quadrupoles))
    common = {"noise_sigma": sigma, "has_jacobian": True, "n_iter": config.n_iter}
    return (
        gauss_newton(linearise, k0, prior_sigma=prior_sigma, **common),
        gauss_newton(linearise, k0, prior_sigma=evidence_sigma, **common),
    )


def _correct_machine(
    model: RingModel,
    true_errors: np.ndarray,
    measured: np.ndarray,
    noise: np.ndarray,
    prior_sigma: float,
    config: CorrectionStudyConfig,
) -> dict[str, Any]:
    """Correct one measured machine with every estimator, ``n_iter`` Gauss-Newton steps.

    The Bayesian rows run :func:`~diffdesign.inference.gauss_newton.gauss_newton`; the
    classical ones (pseudo-inverse, Tikhonov, truncated SVD) take the same steps with their
    own filters. Each row's model is re-linearised at its own iterate with the (unbatched)
    compiled optics and Jacobian — vmapping them over rows is several times slower per row
    on CPU — and every iterate's correction is applied to the machine and its optics
    recomputed.

    Returns a dict: ``metrics`` (n_iter + 1, E, 6) of the corrected machines at each
    iterate (iterate 0: uncorrected), ``residual`` (n_iter + 1, E) rms whitened misfit
    ``(measured - f(k)) / noise`` over the fitted rows, ``evidence_sigma`` and
    ``effective_cut`` per step, ``estimates`` (E, n_quad) and ``corrected`` (E, 5 n_bpm).
    """
    rows = block_rows(model.n_bpm, config.observables)
    sigma = noise[rows]
    bayes, evidence = _bayesian_runs(model, measured, rows, sigma, prior_sigma, config)

    n_classical = 1 + len(config.tikhonov_alphas) + len(config.tsvd_cuts)
    alphas = jnp.asarray(config.tikhonov_alphas, dtype=float)
    cuts = jnp.asarray(config.tsvd_cuts)
    errors = np.zeros((n_classical, true_errors.shape[0]))
    iterates, residuals = [], []
    for iteration in range(config.n_iter + 1):
        iterates.append(errors)
        linear = [model.linearise_host(k) for k in errors]
        values = np.stack([v for v, _ in linear])[:, rows]
        A = np.stack([J for _, J in linear])[:, rows, :] / sigma[None, :, None]
        residual = (measured[rows][None, :] - values) / sigma[None, :]
        residuals.append(np.sqrt(np.mean(residual**2, axis=1)))
        if iteration == config.n_iter:
            break
        y = residual + np.einsum("emn,en->em", A, errors)
        errors = np.asarray(_classical_step(A, y, alphas, cuts, len(config.tikhonov_alphas)))

    n_rows = 2 + n_classical
    bayesian_chi2 = np.stack([np.asarray(bayes.history.chi2), np.asarray(evidence.history.chi2)])
    bayesian_rms = np.sqrt(bayesian_chi2 / rows.size).T  # (n_iter + 1, 2)
    metrics = []
    for iteration in range(config.n_iter + 1):
        estimates = np.concatenate(
            [
                np.asarray(bayes.history.x[iteration])[None],
                np.asarray(evidence.history.x[iteration])[None],
                iterates[iteration],
            ]
        )
        corrected = np.stack([model.observables_host(true_errors - k) for k in estimates])
        machine = np.sqrt(np.mean(corrected.reshape(n_rows, 5, -1) ** 2, axis=2))
        reconstruction = np.sqrt(np.mean((estimates - true_errors) ** 2, axis=1))
        metrics.append(np.column_stack([machine, reconstruction]))
    steps = slice(0, config.n_iter)
    return {
        "metrics": np.asarray(metrics),
        "residual": np.concatenate([bayesian_rms, np.asarray(residuals)], axis=1),
        "evidence_sigma": [float(v) for v in np.asarray(evidence.history.prior_sigma)[steps, 0]],
        # singular values of J / noise * sigma: a direction is kept when s > 1
        "effective_cut": [
            int(np.sum(np.asarray(s) ** 2 > 1.0))
            for s in np.asarray(bayes.history.singular_values)[steps]
        ],
        "estimates": estimates,
        "corrected": corrected,
    }


def _row_names(config: CorrectionStudyConfig) -> list[str]:
    return (
        ["bayes", "evidence", "pinv"]
        + [f"tikhonov[alpha={a:.3g}]" for a in config.tikhonov_alphas]
        + [f"tsvd[cut={c}]" for c in config.tsvd_cuts]
    )


def _quartiles(values) -> dict[str, float]:
    q25, median, q75 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75)}


def _lattice_summary(path: str | Path, lattice: Lattice, quads: np.ndarray, design: Array) -> dict:
    return {
        "file": str(path),
        "name": lattice.name,
        "n_elements": lattice.n_elements,
        "circumference_m": lattice.circumference,
        "n_bpm": int(np.shape(design)[1]),
        "n_quadrupoles": len(quads),
        "quadrupoles": [lattice.names[i] for i in quads],
        "quadrupole_elements": [int(i) for i in quads],
    }


def _summarise_correction(config: CorrectionStudyConfig, machines: list[dict]) -> dict:
    """Per-estimator quartiles over machines, the Tikhonov/TSVD curves, best in hindsight."""
    n_alpha = len(config.tikhonov_alphas)
    final = np.array([m["metrics"][-1] for m in machines])  # (n_seeds, E, 6)
    before = np.array([m["metrics"][0][0] for m in machines])  # (n_seeds, 6)
    beat = METRICS.index("rms_beta_beat_x"), METRICS.index("rms_beta_beat_y")

    def curve(block: np.ndarray, settings, name: str) -> dict:
        """block: (n_seeds, n_settings, 6)."""
        median = np.median(block, axis=0)
        # Best in hindsight: the setting whose median residual beta-beat (x, y in
        # quadrature) is smallest — tuned on the truth, out of reach on a real machine.
        best = int(np.argmin(np.hypot(median[:, beat[0]], median[:, beat[1]])))
        best_error = int(np.argmin(median[:, METRICS.index("rms_error_relative")]))
        return {
            name: list(settings),
            "median": {m: median[:, j].tolist() for j, m in enumerate(METRICS)},
            "q25": {
                m: np.percentile(block[:, :, j], 25, 0).tolist() for j, m in enumerate(METRICS)
            },
            "q75": {
                m: np.percentile(block[:, :, j], 75, 0).tolist() for j, m in enumerate(METRICS)
            },
            "best_in_hindsight": {"index": best, name[:-1]: settings[best]},
            "best_in_hindsight_by_error": {"index": best_error, name[:-1]: settings[best_error]},
            "spread_of_median": {
                m: [float(median[:, j].min()), float(median[:, j].max())]
                for j, m in enumerate(METRICS)
            },
        }

    tikhonov = curve(final[:, 3 : 3 + n_alpha], config.tikhonov_alphas, "alphas")
    tsvd = curve(final[:, 3 + n_alpha :], config.tsvd_cuts, "cuts")
    rows = {
        "before": before,
        "bayes": final[:, 0],
        "evidence": final[:, 1],
        "pinv": final[:, 2],
        "tikhonov_best": final[:, 3 + tikhonov["best_in_hindsight"]["index"]],
        "tsvd_best": final[:, 3 + n_alpha + tsvd["best_in_hindsight"]["index"]],
    }
    summary = {
        name: {m: _quartiles(values[:, j]) for j, m in enumerate(METRICS)}
        for name, values in rows.items()
    }
    prior = np.array([m["prior_sigma"] for m in machines])
    evidence = np.array([m["evidence_sigma"][-1] for m in machines])
    return {
        "summary": summary,
        "per_estimator": {name: values.tolist() for name, values in rows.items()},
        "tikhonov": tikhonov,
        "tsvd": tsvd,
        "bayes_alpha": _quartiles(1.0 / prior**2),
        "bayes_prior_sigma": _quartiles(prior),
        "evidence_alpha": _quartiles(1.0 / evidence**2),
        "evidence_prior_sigma": _quartiles(evidence),
        "bayes_effective_cut": _quartiles([m["effective_cut"][-1] for m in machines]),
    }


def run_correction_study(
    config: CorrectionStudyConfig,
    out_dir: str | Path,
    progress: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Plant gradient errors, measure, estimate with every estimator, correct, compare.

    Writes into ``out_dir``: ``results.json`` (keys below), ``checkpoint.npz`` (finished
    machines; a rerun with the same config resumes from it, one with another config is
    refused) and the plots of
    :func:`experiments.ring._plots.plot_correction_study`.

    ``results.json`` keys (relative errors and beats, phases in rad, dispersion in m):

    * ``config``, ``lattice`` (file, name, BPM and quadrupole counts and names),
      ``noise`` (per observable block), ``metrics`` (names of the metric axis: rms over
      BPMs of the corrected machine's beta-beat x/y, phase and dispersion errors, and the
      rms reconstruction error of the estimate), ``estimator_rows`` (names of the
      estimator axis).
    * ``calibration``: the paper's Fig. 1 — ``trial_sigmas``, ``rms_beat`` (n_sigma,
      seeds), ``mean_rms_beat``, ``slope`` (rms beat per unit relative sigma),
      ``max_relative_deviation`` from linearity.
    * ``machines``: per machine ``metrics`` (n_iter + 1, E, 6) at each iterate (iterate 0
      is the uncorrected machine), ``residual`` (n_iter + 1, E) rms whitened residual,
      ``measured_rms_beat``, ``prior_sigma`` (Bayes), ``evidence_sigma`` (per iterate),
      ``effective_cut``.
    * ``summary``: for ``before`` and each of :data:`ESTIMATORS`, quartiles (median,
      q25, q75) over machines of every metric after correction; ``per_estimator`` the
      values per machine (n_seeds, 6).
    * ``tikhonov`` / ``tsvd``: the curves over ``alphas`` / ``cuts`` (median, q25, q75
      per metric), ``best_in_hindsight`` (smallest median residual beta-beat),
      ``best_in_hindsight_by_error`` and ``spread_of_median`` (min, max over the grid).
    * ``bayes_alpha``, ``evidence_alpha`` (and their prior sigmas), ``bayes_effective_cut``:
      quartiles over machines, for marking on the curves.
    * ``example``: machine ``seed``: BPM ``s_m`` and beta-beat x/y ``before`` and after
      ``bayes``/``evidence``/``pinv``; the planted and estimated errors.
    * ``timing_s``: calibration, first machine (with compilation), later machines (mean),
      total.
    """
    say = progress or (lambda _: None)
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = lattice_path(config.lattice)
    lattice = load_study_lattice(path)
    quads = fitted_quadrupoles(lattice, config.quadrupoles)
    say(
        f"correction study on {path.name}: {len(quads)} quadrupoles, "
        f"{len(lattice.indices('Monitor'))} BPMs, {config.n_seeds} machines"
    )
    model, design, _ = ring_model(lattice, quads)
    n_bpm, n_quad = model.n_bpm, len(quads)
    noise = np.repeat([config.noise[name] for name in OBSERVABLES], n_bpm)
    s_bpm = np.asarray(lattice.s_positions())[np.asarray(model.bpms)]
    key = jax.random.key(config.seed)

    # One checkpoint per folder (diffdesign._checkpoint: atomic, refused under other settings).
    checkpoint_path = out / "checkpoint.npz"
    settings = config.to_json()
    saved: dict[str, Any] = {}
    if checkpoint_path.is_file():
        _, saved = load_checkpoint(checkpoint_path, {}, settings)
    machines: list[dict] = saved.get("machines", [])[: config.n_seeds]
    example: dict[str, Any] = saved.get("example", {})
    if machines:
        say(f"resuming from {checkpoint_path}: {len(machines)} machines done")

    # The paper's Fig. 1: rms beta-beat (x and y) against the rms relative error, through
    # the nonlinear optics. Only the slope is used (each machine's prior is its own
    # measured beat over the slope), so the measured beat passed here is a placeholder.
    tic = time.perf_counter()
    calibration = saved.get("calibration")
    if calibration is None:
        fit = co.prior_sigma_from_beat(
            lambda k: _rms(model.observables(k)[: 2 * n_bpm]),
            1.0,
            jax.random.fold_in(key, 10**6),
            config.calibration_seeds,
            n_quadrupoles=n_quad,
            trial_sigmas=jnp.asarray(config.calibration_sigmas),
        )
        calibration = {
            "trial_sigmas": np.asarray(fit.trial_sigmas).tolist(),
            "rms_beat": np.asarray(fit.rms_beat).tolist(),
            "mean_rms_beat": np.asarray(fit.mean_rms_beat).tolist(),
            "slope": float(fit.slope),
            "max_relative_deviation": float(fit.max_relative_deviation),
        }
    calibration_s = time.perf_counter() - tic
    slope = calibration["slope"]
    say(
        f"beat calibration (Fig. 1): rms beta-beat = {slope:.4g} x sigma "
        f"(nonlinearity {calibration['max_relative_deviation']:.1%}) in {calibration_s:.1f} s"
    )

    times = []
    for seed in range(len(machines), config.n_seeds):
        tic = time.perf_counter()
        k_error, k_noise = jax.random.split(jax.random.fold_in(key, seed))
        true_errors = config.error_sigma * np.asarray(jax.random.normal(k_error, (n_quad,)))
        truth = model.observables_host(true_errors)
        measured = truth + noise * np.asarray(jax.random.normal(k_noise, (5 * n_bpm,)))
        # The prior from the measured beat (the paper's Fig. 1): the beat's noise is
        # removed in quadrature, then the calibration line is inverted.
        beat_variance = np.mean(measured[: 2 * n_bpm] ** 2 - noise[: 2 * n_bpm] ** 2)
        measured_rms_beat = float(np.sqrt(max(beat_variance, 1e-16)))
        prior_sigma = measured_rms_beat / slope
        run = _correct_machine(model, true_errors, measured, noise, prior_sigma, config)
        metrics = run["metrics"]
        machines.append(
            {
                "metrics": metrics.tolist(),
                "residual": run["residual"].tolist(),
                "measured_rms_beat": measured_rms_beat,
                "prior_sigma": prior_sigma,
                "evidence_sigma": run["evidence_sigma"],
                "effective_cut": run["effective_cut"],
            }
        )
        if seed == config.example_seed:
            example = _example(run, truth, true_errors, s_bpm, seed)
        save_checkpoint(
            checkpoint_path,
            {},
            {
                "settings": settings,
                "calibration": calibration,
                "machines": machines,
                "example": example,
            },
        )
        times.append(time.perf_counter() - tic)
        beat = metrics[:, :, :2]
        say(
            f"machine {seed + 1}/{config.n_seeds}: rms beat x/y "
            f"{beat[0, 0, 0]:.2%}/{beat[0, 0, 1]:.2%} -> bayes {beat[-1, 0, 0]:.2%}/"
            f"{beat[-1, 0, 1]:.2%}, evidence {beat[-1, 1, 0]:.2%}/{beat[-1, 1, 1]:.2%}, "
            f"pinv {beat[-1, 2, 0]:.2%}/{beat[-1, 2, 1]:.2%} "
            f"(prior sigma {prior_sigma:.2e}, {times[-1]:.1f} s)"
        )

    results = {
        "study": "correction",
        "config": config.to_json(),
        "lattice": _lattice_summary(path, lattice, quads, design),
        "noise": config.noise,
        "metrics": list(METRICS),
        "estimator_rows": _row_names(config),
        "calibration": calibration,
        "machines": machines,
        **_summarise_correction(config, machines),
        "example": example,
        "timing_s": {
            "calibration": calibration_s,
            "first_machine": times[0] if times else None,
            "later_machines_mean": float(np.mean(times[1:])) if len(times) > 1 else None,
            "total": time.perf_counter() - started,
        },
    }
    results["verdict"] = correction_verdict(results).to_json()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    from experiments.ring import _plots as plots

    for plot in plots.plot_correction_study(results, out):
        say(f"wrote {plot}")
    say(f"wrote {out / 'results.json'}")
    return results


def correction_verdict(results: dict) -> Verdict:
    """The checks of a correction study (results.json's layout): the Bayesian estimate's
    final whitened misfit is chi2/dof near 1 (all machines; dof = fitted rows less the
    directions it kept), its correction leaves less beta-beat (x, y) and a smaller
    gradient error than the machines had (medians over machines), and every metric of
    every estimator is finite."""
    n_rows = len(results["config"]["observables"]) * results["lattice"]["n_bpm"]
    machines = results["machines"]
    row = results["estimator_rows"].index("bayes")
    chi2 = sum(m["residual"][-1][row] ** 2 * n_rows for m in machines)
    dof = sum(n_rows - m["effective_cut"][-1] for m in machines) if machines else 0
    before, bayes = results["summary"]["before"], results["summary"]["bayes"]
    worse = ("the correction made the machine worse: check the noise levels against the "
             "measurement, raise n_iter, or fit fewer quadrupoles")  # fmt: skip
    return Verdict((
        chi2_per_dof(chi2, dof),
        *(improved(f"{label} after bayes", before[metric]["median"], bayes[metric]["median"],
                   advice=worse)
          for metric, label in (("rms_beta_beat_x", "beta-beat x"),
                                ("rms_beta_beat_y", "beta-beat y"),
                                ("rms_error_relative", "K1 error"))),
        all_finite("finite metrics", [v for rows in results["per_estimator"].values()
                                      for v in np.ravel(rows)]),
    ))  # fmt: skip


def _example(
    run: dict, truth: np.ndarray, true_errors: np.ndarray, s_bpm: np.ndarray, seed: int
) -> dict:
    """Beta-beat along the ring before and after the headline corrections, one machine."""
    n_bpm = s_bpm.shape[0]
    truth = truth.reshape(5, n_bpm)
    corrected = run["corrected"].reshape(-1, 5, n_bpm)
    return {
        "seed": seed,
        "s_m": s_bpm.tolist(),
        "beta_beat_x": {"before": truth[0].tolist()}
        | {name: corrected[i, 0].tolist() for i, name in enumerate(("bayes", "evidence", "pinv"))},
        "beta_beat_y": {"before": truth[1].tolist()}
        | {name: corrected[i, 1].tolist() for i, name in enumerate(("bayes", "evidence", "pinv"))},
        "true_errors": np.asarray(true_errors).tolist(),
        "bayes_errors": run["estimates"][0].tolist(),
        "evidence_errors": run["estimates"][1].tolist(),
    }


# ----------------------------------------------------------------------------- degeneracy

#: The paper's near-orthogonal BPMs for QL1G2C01A/QL2G2C01A (Sect. IV), as printed.
PAPER_SUBSET = (30, 31, 37, 62, 71, 78)
PAPER_CORRELATION = 0.9896


def _quadrupole_number(names: list[str], name: str, field: str) -> int:
    if name not in names:
        close = [n for n in names if n[:3] == name[:3]][:8]
        raise ValueError(
            f"DegeneracyStudyConfig.{field} {name!r} is not among the fitted quadrupoles "
            f"(e.g. {close or names[:8]})"
        )
    return names.index(name)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def run_degeneracy_study(
    config: DegeneracyStudyConfig,
    out_dir: str | Path,
    progress: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Degenerate neighbouring quadrupoles and the few-BPM remedy (the paper's Sect. IV).

    Steps: the beta-beat Jacobian of every fitted quadrupole at all BPMs (per unit K1,
    from :func:`~diffdesign.ring.k1_jacobian`); the correlation of ``quadrupole_a`` and
    ``quadrupole_b`` (Eq. 17) and every degenerate neighbouring pair; a machine whose only
    error is ``dK1 = error_relative |K1_a|`` on ``quadrupole_a`` (its beat from the
    nonlinear optics), measured with ``fit_noise`` and fitted over all quadrupoles with the
    prior sigma from the measured beat (Fig. 1 calibration on the Jacobian): which
    quadrupole gets the largest error (Fig. 3), and how often, per noise level of the scan;
    the near-orthogonal ``subset_size``-BPM subset (Fig. 4), with the paper's subset for
    comparison; and ``n_measurements`` single measurements (``measurement_noise``)
    classified by correlation with the two candidates at the subset and at all BPMs
    (Figs. 5-6), with either quadrupole as the true source.

    Writes ``results.json`` and the plots of :func:`experiments.ring._plots.plot_degeneracy_study`
    into ``out_dir``. ``results.json`` keys (beat relative, K1 in m^-2):

    * ``config``, ``lattice``, ``s_bpm_m``.
    * ``pair``: names, ``quadrupole_numbers`` (0-based among the fitted quadrupoles, the
      paper's numbering on NSLS-II), ``k1``, ``columns`` (beat per unit K1 at every BPM),
      ``correlation`` (Pearson), ``cosine``, ``paper_correlation``.
    * ``degenerate_neighbours``: ``threshold`` and ``pairs`` (i, j, names, correlation),
      most degenerate first.
    * ``single_fault_fit``: ``delta_k1`` of the fault, ``fit_noise``, ``measured_rms_beat``,
      ``prior_sigma_relative``, ``fitted_delta_k1`` and ``std`` (every quadrupole),
      ``largest`` (number, name), ``attributed_to`` ("a", "b" or "other"),
      ``fitted_at_a``/``fitted_at_b``.
    * ``fit_noise_scan``: ``noise``, ``fraction_a``, ``fraction_b``, ``fraction_other``,
      ``median_fitted_at_a``/``_b`` per noise level.
    * ``subset``: ``indices`` (0-based BPMs), ``correlation``, ``relative_rms``,
      ``meets_signal_requirement``, ``columns_at_subset``; ``paper_subset`` correlations
      with the printed indices read 1-based and 0-based.
    * ``classification``: per true source (``"a"``, ``"b"``): ``subset`` and ``all_bpms``
      (``correlation_a``, ``correlation_b`` per measurement, ``votes_a``, ``source``,
      ``log_likelihood_ratio``, ``probability_a``), ``subset_accuracy``,
      ``all_bpms_accuracy``, ``signal_to_noise`` (subset, all BPMs), ``identified``.
    * ``timing_s``.
    """
    say = progress or (lambda _: None)
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = lattice_path(config.lattice)
    lattice = load_study_lattice(path)
    quads = fitted_quadrupoles(lattice, config.quadrupoles)
    names = [lattice.names[i] for i in quads]
    ia = _quadrupole_number(names, config.quadrupole_a, "quadrupole_a")
    ib = _quadrupole_number(names, config.quadrupole_b, "quadrupole_b")
    say(
        f"degeneracy study on {path.name}: {config.quadrupole_a} (#{ia}) and "
        f"{config.quadrupole_b} (#{ib}) among {len(quads)} quadrupoles"
    )
    tic = time.perf_counter()
    model, design, raw = ring_model(lattice, quads)
    jacobian_s = time.perf_counter() - tic
    plane = 0 if config.plane == "x" else 1
    k1 = np.asarray(lattice.k1(quads))
    beta = np.asarray(design[plane])
    # d(beat)/dK1 per unit K1 (m^2): the raw Jacobian is per unit relative error.
    columns = np.asarray(raw[plane]) / beta[:, None] / k1[None, :]
    a, b = columns[:, ia], columns[:, ib]
    correlation = _correlation(a, b)
    cosine = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    say(
        f"Eq. 17: correlation of the beta_{config.plane}-beat columns {correlation:.4f} "
        f"(paper {PAPER_CORRELATION}) in {jacobian_s:.1f} s (Jacobian with compilation)"
    )
    pairs = dg.degenerate_pairs(columns, config.pair_threshold, names, neighbours_only=True)
    say(f"{len(pairs)} neighbouring pairs with |correlation| >= {config.pair_threshold}")

    # The faulty machines: dK1 on a (or on b, the control), beat from the nonlinear optics.
    delta_k1 = config.error_relative * abs(float(k1[ia]))
    responses = []
    for number in (ia, ib):
        errors = np.zeros(len(quads))
        errors[number] = delta_k1 / k1[number]
        responses.append(model.observables_host(errors)[plane * model.n_bpm :][: model.n_bpm])
    beat_a = responses[0]

    key = jax.random.key(config.seed)
    k_fit, k_scan, k_calibration, k_a, k_b = jax.random.split(key, 5)
    # Prior from the measured beat (Fig. 1), the calibration on the linear model.
    calibration = co.prior_sigma_from_beat(
        lambda k: _rms(jnp.asarray(columns) @ k),
        1.0,
        k_calibration,
        config.calibration_seeds,
        n_quadrupoles=len(quads),
        trial_sigmas=jnp.asarray([1e-4, 1e-3, 1e-2]),
        error_scale=np.abs(k1),
    )
    slope = float(calibration.slope)

    def prior_sigma_of(measured: np.ndarray, noise: float) -> np.ndarray:
        """Relative prior sigma from the measured rms beat, noise removed in quadrature."""
        variance = np.mean(measured**2, axis=-1) - noise**2
        return np.sqrt(np.maximum(variance, 1e-16)) / slope

    def attributed(fitted: np.ndarray) -> str:
        largest = int(np.argmax(np.abs(fitted)))
        return "a" if largest == ia else "b" if largest == ib else "other"

    measured = beat_a + config.fit_noise * np.asarray(jax.random.normal(k_fit, (model.n_bpm,)))
    prior_sigma = float(prior_sigma_of(measured, config.fit_noise))
    post = lg.posterior(columns, measured, config.fit_noise, prior_sigma * np.abs(k1))
    fitted = np.asarray(post.mean)
    largest = int(np.argmax(np.abs(fitted)))
    single = {
        "delta_k1": delta_k1,
        "fit_noise": config.fit_noise,
        "measured_rms_beat": float(prior_sigma * slope),
        "prior_sigma_relative": prior_sigma,
        "fitted_delta_k1": fitted.tolist(),
        "std": np.asarray(post.std).tolist(),
        "largest": {"number": largest, "name": names[largest]},
        "attributed_to": attributed(fitted),
        "fitted_at_a": float(fitted[ia]),
        "fitted_at_b": float(fitted[ib]),
    }
    say(
        f"Fig. 3: dK1 = {delta_k1:.4g} m^-2 on {names[ia]}, data noise {config.fit_noise:g}: "
        f"largest fitted error on {names[largest]} (#{largest}); fitted {fitted[ia]:.3g} at "
        f"{names[ia]}, {fitted[ib]:.3g} at {names[ib]}"
    )

    # The same fit for many noise draws per level, at once: with the prior's shape |K1|
    # as a change of variables, the posterior mean is Tikhonov on columns |K1| with
    # alpha = 1 / sigma² per draw, one SVD for every draw.
    scan: dict[str, list] = {
        "noise": list(config.fit_noise_scan),
        "fraction_a": [],
        "fraction_b": [],
        "fraction_other": [],
        "median_fitted_at_a": [],
        "median_fitted_at_b": [],
    }
    draws = np.asarray(jax.random.normal(k_scan, (config.scan_repeats, model.n_bpm)))
    scaled = columns * np.abs(k1)[None, :]
    for noise in config.fit_noise_scan:
        data = beat_a[None, :] + noise * draws
        fits = np.abs(k1) * np.asarray(
            lg.tikhonov(scaled, data, 1.0 / noise**2, 1.0 / prior_sigma_of(data, noise) ** 2)
        )
        who = [attributed(f) for f in fits]
        for label in ("a", "b", "other"):
            scan[f"fraction_{label}"].append(who.count(label) / len(who))
        scan["median_fitted_at_a"].append(float(np.median(fits[:, ia])))
        scan["median_fitted_at_b"].append(float(np.median(fits[:, ib])))
        say(
            f"  noise {noise:g}: largest error on a {scan['fraction_a'][-1]:.0%}, "
            f"b {scan['fraction_b'][-1]:.0%}, elsewhere {scan['fraction_other'][-1]:.0%}"
        )

    tic = time.perf_counter()
    subset = dg.orthogonal_bpm_subset(
        a, b, config.subset_size, min_relative_rms=config.min_relative_rms
    )
    indices = np.asarray(subset.indices)
    subset_s = time.perf_counter() - tic
    paper_one = np.asarray(PAPER_SUBSET) - 1
    paper_zero = np.asarray([i for i in PAPER_SUBSET if i < model.n_bpm])
    say(
        f"Fig. 4: BPMs {indices.tolist()}: correlation {float(subset.correlation):.2g}, "
        f"signal kept {np.asarray(subset.relative_rms).round(3).tolist()} ({subset_s:.1f} s); "
        f"the paper's BPMs give {_correlation(a[paper_one], b[paper_one]):.3f} (1-based)"
    )

    classification = {}
    truth_response = np.stack(responses) / delta_k1
    for label, source, k in (("a", 0, k_a), ("b", 1, k_b)):
        run = dg.degeneracy_experiment(
            a,
            b,
            indices,
            source,
            delta_k1,
            config.measurement_noise,
            config.n_measurements,
            k,
            response=truth_response,
        )
        entry = {
            part: {
                "correlation_a": np.asarray(result.correlation_a).tolist(),
                "correlation_b": np.asarray(result.correlation_b).tolist(),
                "votes_a": float(result.votes_a),
                "source": "ab"[int(result.source)],
                "log_likelihood_ratio": float(result.log_likelihood_ratio),
                "probability_a": float(result.probability_a),
            }
            for part, result in (("subset", run.subset), ("all_bpms", run.all_bpms))
        }
        entry |= {
            "subset_accuracy": float(run.subset_accuracy),
            "all_bpms_accuracy": float(run.all_bpms_accuracy),
            "signal_to_noise": np.asarray(run.signal_to_noise).tolist(),
            "identified": entry["subset"]["source"] == label,
        }
        classification[label] = entry
        corr_true = np.mean(entry["subset"][f"correlation_{label}"])
        corr_other = np.mean(entry["subset"]["correlation_" + ("b" if label == "a" else "a")])
        say(
            f"Figs. 5-6: {config.n_measurements} measurements, source {names[(ia, ib)[source]]}: "
            f"subset says {names[(ia, ib)['ab'.index(entry['subset']['source'])]]}, mean "
            f"correlation {corr_true:.2f} (source) / {corr_other:.2f} (other), "
            f"single-measurement accuracy {entry['subset_accuracy']:.0%} at the subset, "
            f"{entry['all_bpms_accuracy']:.0%} at all BPMs"
        )

    results = {
        "study": "degeneracy",
        "config": config.to_json(),
        "lattice": _lattice_summary(path, lattice, quads, design),
        "s_bpm_m": np.asarray(lattice.s_positions())[np.asarray(model.bpms)].tolist(),
        "pair": {
            "names": [names[ia], names[ib]],
            "quadrupole_numbers": [ia, ib],
            "k1": [float(k1[ia]), float(k1[ib])],
            "plane": config.plane,
            "columns": {"a": a.tolist(), "b": b.tolist()},
            "correlation": correlation,
            "cosine": cosine,
            "paper_correlation": PAPER_CORRELATION,
        },
        "degenerate_neighbours": {
            "threshold": config.pair_threshold,
            "pairs": [
                {
                    "i": p.i,
                    "j": p.j,
                    "name_i": p.name_i,
                    "name_j": p.name_j,
                    "correlation": p.correlation,
                }
                for p in pairs
            ],
        },
        "beat_calibration_slope": slope,
        "single_fault_fit": single,
        "fit_noise_scan": scan,
        "subset": {
            "indices": indices.tolist(),
            "correlation": float(subset.correlation),
            "relative_rms": np.asarray(subset.relative_rms).tolist(),
            "meets_signal_requirement": bool(subset.meets_signal_requirement),
            "min_relative_rms": config.min_relative_rms,
            "columns_at_subset": {"a": a[indices].tolist(), "b": b[indices].tolist()},
            "paper_subset": {
                "printed": list(PAPER_SUBSET),
                "correlation_read_1_based": _correlation(a[paper_one], b[paper_one]),
                "correlation_read_0_based": _correlation(a[paper_zero], b[paper_zero]),
            },
        },
        "classification": classification,
        "timing_s": {
            "design_optics_and_jacobian": jacobian_s,
            "subset_search": subset_s,
            "total": time.perf_counter() - started,
        },
    }
    results["verdict"] = degeneracy_verdict(results).to_json()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    from experiments.ring import _plots as plots

    for plot in plots.plot_degeneracy_study(results, out):
        say(f"wrote {plot}")
    say(f"wrote {out / 'results.json'}")
    return results


def degeneracy_verdict(results: dict) -> Verdict:
    """The checks of a degeneracy study (results.json's layout): the BPM subset separates
    the pair (|correlation| below that at all BPMs) while keeping the required signal, the
    repeated measurements identify each true source, and the single-fault fit is finite."""
    pair, subset = results["pair"], results["subset"]
    checks = [
        improved(f"|correlation| at the {len(subset['indices'])}-BPM subset",
                 abs(pair["correlation"]), abs(subset["correlation"]),
                 advice="the subset search did not decorrelate the pair: raise subset_size "
                 "or lower min_relative_rms"),
        Check("subset signal", subset["meets_signal_requirement"],
              f"kept {min(subset['relative_rms']):.3g} of the rms signal "
              f"(>= {subset['min_relative_rms']:g} expected)",
              "the subset keeps too little of the pair's signal: raise subset_size or lower "
              "min_relative_rms"),
    ]  # fmt: skip
    for label, entry in results["classification"].items():
        name = pair["names"]["ab".index(label)]
        said = pair["names"]["ab".index(entry["subset"]["source"])]
        checks.append(Check(
            f"source {name} identified", entry["identified"],
            f"the subset says {said} (log-likelihood ratio "
            f"{entry['subset']['log_likelihood_ratio']:+.3g})",
            "the measurements do not tell the pair apart: take more of them "
            "(n_measurements) or lower measurement_noise",
        ))  # fmt: skip
    fit = results["single_fault_fit"]
    checks.append(all_finite("finite fit", [*fit["fitted_delta_k1"], *fit["std"]]))
    return Verdict(tuple(checks))
