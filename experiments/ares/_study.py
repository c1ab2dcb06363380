"""The ARES two-phase study: calibrate the quadrupole offsets, then tune the magnets.

One run reproduces the published scenario and its comparisons on a simulated machine:

1. calibration from screen data at n settings (random as in the seed, or D-optimal), by
   bounded least squares with exact Jacobians, with uncertainties and identifiability;
2. how many settings each design strategy needs (Cramer-Rao bound versus n);
3. tuning towards the target beam: gradient descent through the calibrated model, and
   Bayesian optimisation on the machine with a GP prior mean from the calibrated model,
   against a constant mean, the perfect prior (true offsets) and random search;
4. the failure mode: the offsets as GP mean hyperparameters fitted by marginal likelihood.

Results go to ``results.json``, ``offsets.json`` and plots in the output folder; each BO
run checkpoints after every machine evaluation and resumes from its checkpoint. The command
``diffdesign ares study`` (``experiments/ares/study.py``) runs it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from diffdesign._config import TomlConfig
from diffdesign._validation import check_positive, check_range
from diffdesign.beamline.ares._lattice import (
    OBSERVABLES,
    QUADRUPOLES,
    SETTING_LOWER,
    SETTING_UPPER,
    incoming_beam,
    mae,
    screen_beam,
)
from diffdesign.beamline.ares.calibration import (
    CalibrationResult,
    calibrate_offsets,
    calibration_history,
    save_offsets,
)
from diffdesign.beamline.ares.experiment_design import (
    design_calibration_settings,
    random_designs_rms_cramer_rao,
    random_settings,
    rms_cramer_rao,
)
from diffdesign.beamline.ares.tuning import simulated_machine, tune_with_gradients
from diffdesign.beamline.beams import ParameterBeam
from diffdesign.core.verdict import (
    Verdict,
    at_bounds,
    chi2_per_dof,
    converged,
    correlations,
)
from diffdesign.design.bayesopt import BayesianOptimisation, RandomSearch, SearchState

SEED_OFFSETS = ((0.0, 200e-6), (100e-6, -300e-6), (-100e-6, 150e-6))
TUNING_METHODS = (
    "gradient_calibrated", "gradient_perfect", "bo_calibrated", "bo_constant", "bo_perfect",
    "random", "bo_fitted_offsets",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class StudyConfig(TomlConfig):
    """Every knob of the study, with the seed's scenario as defaults (SI units).

    ``true_offsets`` (3, 2) m; ``incoming_sigma_y`` m; ``screen_noise`` m (one standard
    deviation on each observable, for calibration data and for tuning evaluations);
    ``bound`` m; ``n_calibration`` settings chosen by ``design`` ("random" or
    "d_optimal"); ``target``: observable -> m (missing ones are 0); ``budget``: machine
    evaluations per tuning method (initial design included); ``n_initial``: initial
    Latin-hypercube points shared by the BO runs; ``acquisition``: "ei" or "ucb";
    ``failure_bound`` m: box for the offsets fitted as GP hyperparameters;
    ``design_sizes`` and ``design_draws``: the strategy comparison; ``methods``: which
    tuning methods to run.
    """

    true_offsets: tuple[tuple[float, float], ...] = SEED_OFFSETS
    incoming_sigma_y: float = 100e-6
    screen_noise: float = 1e-5
    bound: float = 500e-6
    n_calibration: int = 15
    design: str = "random"
    target: tuple[tuple[str, float], ...] = ()
    budget: int = 50
    n_initial: int = 5
    acquisition: str = "ei"
    failure_bound: float = 2e-3
    design_sizes: tuple[int, ...] = (3, 4, 5, 6, 8, 10, 15)
    design_draws: int = 20
    methods: tuple[str, ...] = TUNING_METHODS
    seed: int = 0

    def __post_init__(self):
        offsets = np.asarray(self.true_offsets, dtype=float)
        if offsets.shape != (3, 2):
            raise ValueError(f"true_offsets must be a 3 x 2 list (m); got shape {offsets.shape}")
        check_range(offsets, "true_offsets", low=-5e-3, high=5e-3, owner="study", unit="m")
        for name in ("incoming_sigma_y", "bound", "failure_bound"):
            check_positive(getattr(self, name), name, "study", "m")
        check_range(self.screen_noise, "screen_noise", low=0.0, owner="study", unit="m")
        if self.design not in ("random", "d_optimal"):
            raise ValueError(f"design must be 'random' or 'd_optimal'; got '{self.design}'")
        if self.acquisition not in ("ei", "ucb"):
            raise ValueError(f"acquisition must be 'ei' or 'ucb'; got '{self.acquisition}'")
        if self.n_calibration < 3:
            raise ValueError(f"n_calibration must be >= 3; got {self.n_calibration}")
        if not 2 <= self.n_initial < self.budget:
            raise ValueError(
                f"need 2 <= n_initial < budget; got n_initial {self.n_initial}, "
                f"budget {self.budget}"
            )
        if any(n < 3 for n in self.design_sizes) or self.design_draws < 1:
            raise ValueError("design_sizes must be >= 3 and design_draws >= 1")
        unknown = sorted(set(self.methods) - set(TUNING_METHODS))
        if unknown:
            raise ValueError(f"unknown tuning methods {unknown}; known: {list(TUNING_METHODS)}")
        bad_target = sorted({k for k, _ in self.target} - set(OBSERVABLES))
        if bad_target:
            raise ValueError(f"target keys must be among {list(OBSERVABLES)}; got {bad_target}")

    @classmethod
    def from_mapping(cls, content: Mapping[str, Any], where: str = "config") -> StudyConfig:
        """:meth:`TomlConfig.from_mapping` after the two structured keys: ``target`` (a table
        observable = m) and ``true_offsets`` (3 rows of (dx, dy) in m).

        Example file::

            true_offsets = [[0.0, 200e-6], [100e-6, -300e-6], [-100e-6, 150e-6]]
            screen_noise = 1e-5
            budget = 50
            [target]
            sigma_x = 1e-4
        """
        content = dict(content)
        if "target" in content:
            if not isinstance(content["target"], Mapping):
                raise ValueError(f"target in {where} must be a table of observable = m")
            content["target"] = tuple((str(k), float(v)) for k, v in content["target"].items())
        if "true_offsets" in content:
            rows = content["true_offsets"]
            content["true_offsets"] = tuple(tuple(float(x) for x in row) for row in rows)
        return super().from_mapping(content, where)


class ModelObjective(eqx.Module):
    """GP prior mean: the model's objective at settings X (n, 5) for offsets (3, 2).

    A module rather than a closure, so that equal models share compiled BO steps.
    """

    incoming: ParameterBeam
    target: dict[str, float]

    def __call__(self, offsets: Array, X: Array) -> Array:
        beam = screen_beam(X, jnp.broadcast_to(offsets, (X.shape[0], 3, 2)), self.incoming)
        return mae(beam, self.target)


def run_study(
    config: StudyConfig, out: str | Path, progress: Callable[[str], None] | None = print
) -> dict[str, Any]:
    """Run the whole study, writing results, offsets, plots and checkpoints into ``out``."""
    say = progress or (lambda _: None)
    out = Path(out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    key = jax.random.key(config.seed)
    k_design, k_noise, k_tune, k_bo = jax.random.split(key, 4)
    truth = jnp.asarray(config.true_offsets)
    incoming = incoming_beam(sigma_y=config.incoming_sigma_y)
    target = dict(config.target)
    machine = simulated_machine(truth, incoming, config.screen_noise, k_noise)
    noise = max(config.screen_noise, 1e-9)  # noise-free data still needs a finite weight
    evaluations = {"calibration": 0}

    # 1. calibration
    say(f"calibration: {config.n_calibration} {config.design} settings")
    if config.design == "random":
        settings = random_settings(config.n_calibration, k_design)
    else:
        settings, _ = design_calibration_settings(config.n_calibration, k_design, incoming=incoming)
    rows = [machine(np.asarray(s)) for s in settings]
    evaluations["calibration"] = len(rows)
    measured = {k: np.array([r[k] for r in rows]) for k in OBSERVABLES}
    timings = []
    for _ in range(2):  # the first call compiles; the second is the steady-state cost
        start = time.perf_counter()
        calibration = calibrate_offsets(
            settings, measured, noise={k: noise for k in OBSERVABLES}, incoming_beam=incoming,
            bound=config.bound,
        )  # fmt: skip
        timings.append(time.perf_counter() - start)
    calibration_time = timings[1]
    save_offsets(calibration, out / "offsets.json")
    errors_um = (np.asarray(calibration.offsets) - np.asarray(truth)) * 1e6
    say(
        f"  offsets fitted in {calibration_time:.3f} s ({timings[0]:.2f} s with compilation): "
        f"mean |error| {np.abs(errors_um).mean():.3g} um, "
        f"mean std {np.asarray(calibration.std).mean() * 1e6:.3g} um, chi2/dof "
        f"{calibration.chi2 / calibration.dof:.3g}"
    )
    history = calibration_history(
        settings, measured, noise={k: noise for k in OBSERVABLES}, incoming_beam=incoming,
        bound=config.bound,
    )  # fmt: skip

    # 2. how many settings each strategy needs
    say("design comparison: Cramer-Rao bound versus number of settings")
    design_curve = _design_comparison(config, incoming, noise, k_design)

    # 3. tuning
    def objective(x: np.ndarray) -> float:
        return float(mae(machine(x), target))

    # What the machine would give without screen noise: the honest score of a setting
    # (the best of many noisy measurements is biased low).
    true_objective = jax.jit(lambda x: mae(screen_beam(x, truth, incoming), target))

    tuning: dict[str, dict[str, Any]] = {}
    if "gradient_calibrated" in config.methods or "gradient_perfect" in config.methods:
        for name, offsets in (
            ("gradient_calibrated", calibration.offsets),
            ("gradient_perfect", truth),
        ):
            if name not in config.methods:
                continue
            result = tune_with_gradients(offsets, k_tune, target=target, incoming=incoming)
            achieved = objective(np.asarray(result.settings))
            tuning[name] = {
                "settings": np.asarray(result.settings).tolist(),
                "predicted_mae_m": float(result.predicted),
                "machine_mae_m": achieved,
                "true_mae_m": float(true_objective(result.settings)),
                "machine_evaluations": 1,
                "loss_history_m": np.asarray(result.history).tolist(),
            }
            say(
                f"  {name}: machine MAE {achieved * 1e3:.4f} mm after 1 evaluation "
                f"(noise-free {tuning[name]['true_mae_m'] * 1e3:.4f} mm)"
            )

    lower, upper = np.asarray(SETTING_LOWER), np.asarray(SETTING_UPPER)
    mean_fn = ModelObjective(incoming, target)
    searches = {
        "bo_calibrated": BayesianOptimisation(
            lower, upper, mean_fn=mean_fn, mean_params=np.asarray(calibration.offsets),
            acquisition=config.acquisition,
        ),
        "bo_constant": BayesianOptimisation(lower, upper, acquisition=config.acquisition),
        "bo_perfect": BayesianOptimisation(
            lower, upper, mean_fn=mean_fn, mean_params=np.asarray(truth),
            acquisition=config.acquisition,
        ),
        "random": RandomSearch(lower, upper),
        "bo_fitted_offsets": BayesianOptimisation(
            lower, upper, mean_fn=mean_fn, mean_params=np.zeros((3, 2)),
            mean_params_bounds=(-config.failure_bound, config.failure_bound),
            fit_mean_params=True, acquisition=config.acquisition,
        ),
    }  # fmt: skip
    initial = np.asarray(
        random_settings(config.n_initial, k_bo)
    )  # the same initial points for every sequential method
    for name, search in searches.items():
        if name not in config.methods:
            continue
        say(f"tuning with {name} ({config.budget} machine evaluations)")
        state = search.run(
            objective, k_bo, config.budget, checkpoint=out / "checkpoints" / f"{name}.npz",
            progress=(lambda line, name=name: say(f"  {name}: {line}")), initial_points=initial,
        )  # fmt: skip
        tuning[name] = _summarise_search(state, true_objective)
        if name == "bo_fitted_offsets":
            tuning[name]["fitted_offsets_m"] = [
                None if r.hyperparameters is None
                else np.asarray(r.hyperparameters.mean_params).tolist()
                for r in state.history
            ]  # fmt: skip

    if "bo_fitted_offsets" in tuning:
        tuning["bo_fitted_offsets"]["table"] = _failure_mode_table(
            truth, calibration, tuning["bo_fitted_offsets"]["fitted_offsets_m"]
        )
    results = {
        "config": dataclasses.asdict(config),
        "true_offsets_m": np.asarray(truth).tolist(),
        "calibration": calibration.to_json()
        | {
            "settings": np.asarray(settings).tolist(),
            "errors_um": errors_um.tolist(),
            "mean_absolute_error_um": float(np.abs(errors_um).mean()),
            "wall_time_s": calibration_time,
            "first_call_s": timings[0],
            "chi2_history": np.asarray(history).tolist(),
            "machine_evaluations": evaluations["calibration"],
        },
        "design_comparison": design_curve,
        "tuning": tuning,
    }
    results["verdict"] = calibration_verdict(results["calibration"], config.screen_noise).to_json()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    from experiments.ares import _plots

    for path in _plots.plot_all(results, out):
        say(f"wrote {path}")
    say(f"wrote {out / 'results.json'} and {out / 'offsets.json'}")
    return results


def _summarise_search(state: SearchState, true_objective) -> dict[str, Any]:
    y = np.asarray(state.y)
    best = np.minimum.accumulate(y)
    true_values = np.asarray(jax.vmap(true_objective)(jnp.asarray(state.X)))
    incumbent = [int(np.argmin(y[: k + 1])) for k in range(len(y))]
    return {
        "settings": np.asarray(state.best_x).tolist(),
        "machine_mae_m": float(state.best_y),
        "true_mae_m": float(true_objective(jnp.asarray(state.best_x))),
        "machine_evaluations": len(y),
        "mae_m": y.tolist(),
        "best_so_far_m": best.tolist(),
        "incumbent_true_mae_m": true_values[incumbent].tolist(),
    }


def _failure_mode_table(truth, calibration: CalibrationResult, fitted: list) -> list[dict]:
    """Per offset: truth, calibration +- std, and the MLL fit as GP-mean hyperparameters
    (after the last evaluation, and its worst error over the run), all in um."""
    steps = np.array([f for f in fitted if f is not None]).reshape(-1, 6) * 1e6
    truth = np.ravel(truth) * 1e6
    if not len(steps):
        return []
    rows = []
    for j, name in enumerate(f"{q}.{a}" for q in QUADRUPOLES for a in ("dx", "dy")):
        rows.append({
            "offset": name,
            "true_um": float(truth[j]),
            "calibrated_um": float(np.ravel(calibration.offsets)[j] * 1e6),
            "calibrated_std_um": float(np.ravel(calibration.std)[j] * 1e6),
            "mll_final_um": float(steps[-1, j]),
            "mll_worst_error_um": float(np.max(np.abs(steps[:, j] - truth[j]))),
        })  # fmt: skip
    return rows


_rms_cramer_rao = eqx.filter_jit(rms_cramer_rao)


def _design_comparison(config: StudyConfig, incoming, noise: float, key) -> dict[str, Any]:
    noise_map = {k: noise for k in OBSERVABLES}
    capacity = max(config.design_sizes)  # every size runs the same two compiled programs
    random_rms, optimal_rms = [], []
    for n in config.design_sizes:
        keys = jax.random.split(jax.random.fold_in(key, n), config.design_draws)
        draws = random_designs_rms_cramer_rao(
            n, keys, noise=noise_map, incoming=incoming, capacity=capacity
        )
        random_rms.append(float(np.median(np.asarray(draws))))
        settings, _ = design_calibration_settings(
            n, jax.random.fold_in(key, 1000 + n), noise=noise_map, incoming=incoming,
            capacity=capacity,
        )  # fmt: skip
        padded = jnp.pad(settings, ((0, capacity - n), (0, 0)))
        active = jnp.arange(capacity) < n
        optimal_rms.append(float(_rms_cramer_rao(padded, noise_map, incoming, active)))
    return {
        "n_settings": list(config.design_sizes),
        "random_median_rms_crb_m": random_rms,
        "d_optimal_rms_crb_m": optimal_rms,
        "noise_m": noise,
    }


def calibration_verdict(calibration: dict, screen_noise: float) -> Verdict:
    """The checks of a calibration (results.json's ``calibration``): the fit converged, no
    offset on its bound, no two offsets correlated beyond 0.99, and with noisy screens a
    chi2/dof near 1 (noise-free data have chi2 ~ 0 by construction: not checked)."""
    names = [f"{q} d{axis}" for q in calibration["quadrupoles"] for axis in "xy"]
    hits = [n for n, hit in zip(names, np.ravel(calibration["at_bound"]), strict=True) if hit]
    verdict = Verdict((
        converged("calibration", calibration["converged"], calibration["num_steps"],
                  "raise the step limit or add settings"),
        at_bounds(hits, len(names), "offsets at bounds",
                  "an offset on its bound has no valid uncertainty: widen the bound (the "
                  "magnets' mechanical range) or add settings that move the beam more"),
        correlations(np.nan_to_num(np.asarray(calibration["identifiability"]["correlation"],
                                              dtype=float)), names),
    ))  # fmt: skip
    if screen_noise > 0:
        verdict += chi2_per_dof(calibration["chi2"], calibration["dof"])
    return verdict
