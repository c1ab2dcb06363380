"""Gradient-descent detector design: optax with per-field learning rates, bounds, checkpoints.

Each epoch draws fresh muons (a key from the run's seed and the epoch, so a resumed run draws
the same ones), simulates their true passage through every volume once, and takes one optax
step on

    loss = mean_volumes task_loss(predicted X0, true X0) + cost_weight * cost
           (+ budget_penalty(cost, budget) when a budget is given),

differentiated with respect to the detector's fields through hits, track fits, scatters and
the X0 inference. After each step every field is projected into its bounds. The run writes a
JSON checkpoint (detector, history, settings) and the optimiser state (npz, no pickle) every
epoch, and resumes from them; with ``plot_dir`` it plots the layout and the predicted X0 map.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffdesign._checkpoint import check_settings
from diffdesign.muography.detector import Detector, Panels, check_detector
from diffdesign.muography.losses import budget_penalty, panel_cost, x0_error
from diffdesign.muography.pipeline import ESTIMATORS, predict_x0
from diffdesign.muography.scattering import propagate
from diffdesign.muography.source import generate_muons
from diffdesign.muography.volume import Volume

FIELDS = ("xy", "z", "span", "sigma", "efficiency")
#: Adam step sizes per field (m for positions, spans and resolutions); 0 freezes a field.
DEFAULT_LEARNING_RATES = {"xy": 0.01, "z": 0.005, "span": 0.02, "sigma": 0.0, "efficiency": 0.0}

TaskLoss = Callable[[jax.Array, jax.Array], jax.Array]


class DesignResult(NamedTuple):
    """Outcome of :func:`optimize_detector`: the final detector, one history row per epoch
    (epoch, loss, task_loss, cost, seconds), and the last epoch's predicted X0 maps."""

    detector: Detector
    history: list[dict]
    prediction: np.ndarray


def default_bounds(volume: Volume, margin: float = 0.01) -> dict[str, dict[str, tuple]]:
    """Per side and field (low, high): panels stay outside the volume (by ``margin`` m) and
    within 1 m of it; centres within the footprint; spans 5 cm to twice the footprint;
    resolutions 10 um to 1 cm; efficiencies 0.01 to 1."""
    (x_lo, y_lo, z_lo), (x_hi, y_hi, z_hi) = volume.lower, volume.upper
    width = max(x_hi - x_lo, y_hi - y_lo)
    common = {
        "xy": (min(x_lo, y_lo), max(x_hi, y_hi)), "span": (0.05, 2 * width),
        "sigma": (1e-5, 1e-2), "efficiency": (0.01, 1.0),
    }  # fmt: skip
    return {
        "above": {**common, "z": (z_hi + margin, z_hi + 1.0)},
        "below": {**common, "z": (z_lo - 1.0, z_lo - margin)},
    }


def _project(detector: Detector, bounds) -> Detector:
    sides = []
    for side, panels in (("above", detector.above), ("below", detector.below)):
        sides.append(Panels(*(jnp.clip(getattr(panels, f), *bounds[side][f]) for f in FIELDS)))
    return Detector(*sides)


def detector_to_json(detector: Detector) -> dict:
    """Side -> field -> nested lists (the checkpoint's ``detector`` entry)."""
    return {
        side: {f: np.asarray(getattr(getattr(detector, side), f)).tolist() for f in FIELDS}
        for side in ("above", "below")
    }


def detector_from_json(data: Mapping) -> Detector:
    """The inverse of the checkpoint's ``detector`` entry (checked field by field)."""
    try:
        return Detector(*(
            Panels(*(jnp.asarray(np.asarray(data[side][f], dtype=float)) for f in FIELDS))
            for side in ("above", "below")
        ))  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed detector entry in checkpoint: {exc}") from None


def optimize_detector(
    detector: Detector,
    volumes: Volume,
    *,
    epochs: int = 50,
    n_muons: int = 20_000,
    task_loss: TaskLoss = x0_error,
    estimator: str = "likelihood",
    learning_rates: Mapping[str, float] | None = None,
    bounds: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    cost_weight: float = 0.0,
    budget: float | None = None,
    cost: Callable[[Detector], jax.Array] = panel_cost,
    momentum: float | None = None,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    plot_dir: str | Path | None = None,
    plot_every: int = 10,
    progress: bool = True,
) -> DesignResult:
    """Optimise the panels for the volumes' X0 maps by gradient descent.

    Args:
        detector: the starting design (checked by :func:`check_detector`).
        volumes: one volume, or several of one geometry stacked (:func:`stack_volumes`); the
            task loss is averaged over them.
        epochs: optimisation steps (each on fresh muons).
        n_muons: muons per volume and epoch.
        task_loss: ``(predicted X0, true X0) -> scalar`` (default mean squared relative error).
        estimator: X0 inference, one of ESTIMATORS.
        learning_rates: Adam step per field (``DEFAULT_LEARNING_RATES`` for missing ones).
        bounds: per side ("above", "below") and field, (low, high); default_bounds otherwise.
        cost_weight: weight of ``cost(detector)`` in the loss.
        budget: a cost above which a smooth penalty grows (none when None).
        cost: the detector's cost (budget units).
        momentum: fixed muon momentum (eV/c) instead of the spectrum.
        seed: key of the muons and hits.
        checkpoint: JSON path written every epoch (optimiser state beside it, ``.npz``);
            an existing one is resumed.
        plot_dir: where layout and X0-map plots go (every ``plot_every`` epochs and last).
        progress: one line per epoch on stderr.
    """
    check_detector(detector, volumes)
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}; got {estimator!r}")
    for name, value in (("epochs", epochs), ("n_muons", n_muons), ("plot_every", plot_every)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    rates = {**DEFAULT_LEARNING_RATES, **(learning_rates or {})}
    unknown = set(rates) - set(FIELDS)
    if unknown or any(not (math.isfinite(r) and r >= 0) for r in rates.values()):
        raise ValueError(f"learning_rates: fields {FIELDS}, each a finite rate >= 0; got {rates}")
    bounds = bounds or default_bounds(volumes)
    for side in ("above", "below"):
        for f in FIELDS:
            lo, hi = bounds[side][f]
            if not lo < hi:
                raise ValueError(f"bounds[{side!r}][{f!r}] must be (low, high) with low < high")
    if not (math.isfinite(cost_weight) and cost_weight >= 0):
        raise ValueError(f"cost_weight must be finite and >= 0; got {cost_weight}")
    if budget is not None and not budget > 0:
        raise ValueError(f"budget must be > 0; got {budget}")

    stacked = volumes.x0.ndim == 4
    x0_all = volumes.x0 if stacked else volumes.x0[None]
    frozen_bounds = tuple(
        (side, tuple((f, tuple(map(float, bounds[side][f]))) for f in FIELDS))
        for side in ("above", "below")
    )
    config = _StepConfig(
        n_muons=n_muons, size=volumes.size, lower=volumes.lower, shape=volumes.shape,
        momentum=momentum, estimator=estimator, task_loss=task_loss, cost=cost,
        cost_weight=float(cost_weight), budget=budget, bounds=frozen_bounds,
        rates=tuple((f, float(rates[f])) for f in FIELDS),
    )  # fmt: skip
    optimiser, epoch_step = _epoch_step(config)
    geometry = Volume(x0_all[0], volumes.size, volumes.lower)
    opt_state = optimiser.init(detector)
    history: list[dict] = []
    start_epoch = 0
    settings = {"epochs": epochs, "n_muons": n_muons, "estimator": estimator, "seed": seed,
                "cost_weight": cost_weight, "budget": budget, "rates": rates}  # fmt: skip
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.exists():
        detector, opt_state, history = _resume(ckpt, settings, opt_state)
        start_epoch = len(history)
        if progress:
            print(f"muography: resumed {ckpt} at epoch {start_epoch}", file=sys.stderr)
    plots = Path(plot_dir) if plot_dir is not None else None
    if plots is not None:
        plots.mkdir(parents=True, exist_ok=True)
    base = jax.random.key(seed)
    prediction = None
    for epoch in range(start_epoch, epochs):
        tic = time.perf_counter()
        new, opt_state, loss, task, c, muons, passages = epoch_step(
            detector, opt_state, jax.random.fold_in(base, epoch), x0_all
        )
        if not np.isfinite(float(loss)):
            raise FloatingPointError(f"loss is {float(loss)} at epoch {epoch}; stopping")
        row = {"epoch": epoch, "loss": float(loss), "task_loss": float(task), "cost": float(c),
               "seconds": time.perf_counter() - tic}  # fmt: skip
        history.append(row)
        last = epoch == epochs - 1
        if plots is not None and (epoch % plot_every == 0 or last):
            prediction = _predict_all(detector, passages, muons.p, geometry, x0_all, estimator)
            _plot_epoch(plots, epoch, detector, geometry, x0_all, prediction)
        detector = new
        if ckpt is not None:
            _save(ckpt, detector, opt_state, history, settings)
        if progress:
            print(f"muography: epoch {epoch + 1}/{epochs} loss {row['loss']:.4g} "
                  f"task {row['task_loss']:.4g} cost {row['cost']:.4g} "
                  f"({row['seconds']:.2f} s)", file=sys.stderr, flush=True)  # fmt: skip
    if prediction is None:
        muons, passages = _sample(config, jax.random.fold_in(base, max(epochs - 1, 0)), x0_all)
        prediction = _predict_all(detector, passages, muons.p, geometry, x0_all, estimator)
    return DesignResult(detector, history, prediction)


class _StepConfig(NamedTuple):
    """Everything static about an epoch step (hashable), so equal runs share one compile."""

    n_muons: int
    size: float
    lower: tuple
    shape: tuple
    momentum: float | None
    estimator: str
    task_loss: TaskLoss
    cost: Callable
    cost_weight: float
    budget: float | None
    bounds: tuple
    rates: tuple


def _sample(config: _StepConfig, key, x0_all):
    """The epoch's muons and their passages through every volume (detector-independent)."""
    k_mu, k_scatter, _ = jax.random.split(key, 3)
    upper = [lo + n * config.size for lo, n in zip(config.lower, config.shape, strict=True)]
    footprint = ((config.lower[0], upper[0]), (config.lower[1], upper[1]))
    muons = generate_muons(k_mu, config.n_muons, footprint=footprint, z=upper[2],
                           momentum=config.momentum)  # fmt: skip
    passages = jax.vmap(
        lambda x0: propagate(k_scatter, muons, Volume(x0, config.size, config.lower))
    )(x0_all)
    return muons, passages


@functools.lru_cache(maxsize=16)
def _epoch_step(config: _StepConfig):
    """(optimiser, jitted step) for a configuration; cached, so a resumed or repeated run
    with the same settings does not compile again."""
    rates = dict(config.rates)
    bounds = {side: dict(fields) for side, fields in config.bounds}
    labels = Detector(*(Panels(*FIELDS) for _ in range(2)))
    optimiser = optax.multi_transform(
        {f: optax.adam(rates[f]) if rates[f] > 0 else optax.set_to_zero() for f in FIELDS},
        labels,
    )

    def objective(det, passages, p, key, x0_all):
        def one(x0, passage, k):
            vol = Volume(x0, config.size, config.lower)
            return config.task_loss(predict_x0(k, det, passage, p, vol, config.estimator), x0)

        keys = jax.random.split(key, x0_all.shape[0])
        task = jnp.mean(jax.vmap(one)(x0_all, passages, keys))
        c = config.cost(det)
        total = task + config.cost_weight * c
        if config.budget is not None:
            total = total + budget_penalty(c, config.budget)
        return total, (task, c)

    @eqx.filter_jit
    def step(det, opt_state, key, x0_all):
        muons, passages = _sample(config, key, x0_all)
        k_hits = jax.random.split(key, 3)[2]
        (loss, (task, c)), grads = jax.value_and_grad(objective, has_aux=True)(
            det, passages, muons.p, k_hits, x0_all
        )
        updates, opt_state = optimiser.update(grads, opt_state, det)
        det = _project(optax.apply_updates(det, updates), bounds)
        return det, opt_state, loss, task, c, muons, passages

    return optimiser, step


def _predict_all(detector, passages, p, geometry, x0_all, estimator) -> np.ndarray:
    def one(x0, passage):
        vol = Volume(x0, geometry.size, geometry.lower)
        return predict_x0(jax.random.key(1), detector, passage, p, vol, estimator)

    return np.asarray(jax.jit(jax.vmap(one))(x0_all, passages))


def _plot_epoch(plots: Path, epoch, detector, geometry, x0_all, prediction) -> None:
    from diffdesign.muography.plots import plot_layout, plot_x0_maps

    plot_layout(detector, geometry, plots / f"layout_{epoch:04d}.png", f"epoch {epoch}")
    plot_x0_maps(
        {"truth": np.asarray(x0_all[0]), "predicted": prediction[0]}, geometry,
        plots / f"x0_{epoch:04d}.png", f"epoch {epoch} (first volume)",
    )  # fmt: skip


def _save(path: Path, detector, opt_state, history, settings) -> None:
    leaves = jax.tree.leaves(opt_state)
    np.savez(path.with_suffix(".npz"), *[np.asarray(x) for x in leaves])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({
        "settings": settings, "detector": detector_to_json(detector), "history": history,
        "optimiser_leaves": len(leaves),
    }, indent=1))  # fmt: skip
    tmp.replace(path)


def _resume(path: Path, settings, opt_state_template):
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"checkpoint {path} is not readable JSON: {exc}") from None
    # a resumed run may go on for more epochs
    fixed = {k: v for k, v in settings.items() if k != "epochs"}
    check_settings(data.get("settings", {}), fixed, f"checkpoint {path} was written")
    detector = detector_from_json(data["detector"])
    template, treedef = jax.tree.flatten(opt_state_template)
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as z:
        leaves = [z[f"arr_{i}"] for i in range(len(z.files))]
    if len(leaves) != len(template):
        raise ValueError(f"checkpoint {path}: optimiser state does not match this run")
    opt_state = jax.tree.unflatten(treedef, [jnp.asarray(x) for x in leaves])
    return detector, opt_state, list(data["history"])
