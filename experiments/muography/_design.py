"""The muography design run: ``DetectorDesign`` through the design layer's one loop, with
per-epoch plots of the layout and the predicted X0 map (the study's only additions)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np

from diffdesign import design
from diffdesign.muography.design import DEFAULT_STEPS, DetectorDesign
from diffdesign.muography.detector import Detector
from diffdesign.muography.losses import panel_cost, x0_error
from diffdesign.muography.pipeline import DEFAULT_ESTIMATOR, ESTIMATORS, X0Estimator
from diffdesign.muography.volume import Volume


@eqx.filter_jit
def _predict(problem: DetectorDesign, layout: Detector, key) -> jax.Array:
    return problem.predict(layout, key)


#: Kept under its old name: the Adam steps per field.
DEFAULT_LEARNING_RATES = DEFAULT_STEPS


class DesignResult(NamedTuple):
    """The final detector, one history row per epoch (step, loss, task_loss, cost,
    seconds), and the last epoch's predicted X0 maps (None when not asked for)."""

    detector: Detector
    history: list[dict]
    prediction: np.ndarray | None


def _label(estimator: X0Estimator) -> str:
    """The estimator's configuration name where it has one (the checkpoint's settings check
    compares it), its repr otherwise."""
    return next((name for name, e in ESTIMATORS.items() if e == estimator), repr(estimator))


def optimize_detector(
    detector: Detector,
    volumes: Volume,
    *,
    epochs: int = 50,
    n_muons: int = 20_000,
    task_loss: Callable = x0_error,
    estimator: X0Estimator = DEFAULT_ESTIMATOR,
    learning_rates: Mapping[str, float] | None = None,
    bounds: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    cost_weight: float = 0.0,
    budget: float | None = None,
    cost: Callable = panel_cost,
    momentum: float | None = None,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    plot_dir: str | Path | None = None,
    plot_every: int = 10,
    progress: bool = True,
    predict: bool = True,
) -> DesignResult:
    """Optimise the panels for the volumes' X0 maps: :class:`DetectorDesign` run for
    ``epochs`` steps (fresh muons each) by ``diffdesign.design.run``, checkpointed after
    every epoch to ``checkpoint`` (``.npz``; an existing one is resumed), with layout and X0
    plots every ``plot_every`` epochs into ``plot_dir``. ``predict=False`` (and no
    ``plot_dir``) skips the final layout's X0 maps (``prediction`` None), which would
    compile a program of their own."""
    if isinstance(plot_every, bool) or not isinstance(plot_every, int) or plot_every < 1:
        raise ValueError(f"plot_every must be a positive integer; got {plot_every!r}")
    problem = DetectorDesign(
        detector, volumes, n_muons=n_muons, task_loss=task_loss, estimator=estimator,
        steps=learning_rates, bounds=bounds, cost_weight=cost_weight, budget=budget,
        cost=cost, momentum=momentum,
    )  # fmt: skip
    key = jax.random.key(seed)
    settings = {"n_muons": n_muons, "estimator": _label(estimator), "seed": seed,
                "cost_weight": cost_weight, "budget": budget,
                "rates": {**DEFAULT_STEPS, **(learning_rates or {})}}  # fmt: skip
    plots = Path(plot_dir) if plot_dir is not None else None
    geometry = Volume(problem.x0_all[0], problem.size, problem.lower)
    last: dict = {}  # the prediction of the latest plotted layout

    def plot(done: int, layout: Detector) -> None:
        """The layout after ``done`` epochs and its X0 maps on that epoch's muons."""
        prediction = np.asarray(_predict(problem, layout, jax.random.fold_in(key, done)))
        last["prediction"] = prediction
        if plots is None:
            return
        from experiments.muography._plots import plot_layout, plot_x0_maps

        plots.mkdir(parents=True, exist_ok=True)
        plot_layout(layout, geometry, plots / f"layout_{done:04d}.png", f"after {done} epochs")
        plot_x0_maps(
            {"truth": np.asarray(problem.x0_all[0]), "predicted": prediction[0]}, geometry,
            plots / f"x0_{done:04d}.png", f"after {done} epochs (first volume)",
        )  # fmt: skip

    def callback(done: int, params, info) -> None:
        if plots is not None and (done % plot_every == 0 or done == epochs):
            plot(done, params["detector"])

    if plots is not None and not (checkpoint is not None and Path(checkpoint).exists()):
        plot(0, detector)
    result = design.run(
        problem, steps=epochs, key=key, checkpoint=checkpoint, settings=settings,
        callback=callback, progress=progress,
    )  # fmt: skip
    final = result.params["detector"]
    if (plots is None and predict) or (plots is not None and "prediction" not in last):
        plot(epochs, final)
    return DesignResult(final, result.history, last.get("prediction"))
