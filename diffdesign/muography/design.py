"""Detector design as a problem of the design layer: the panels' spec and the design loss.

The spec (:func:`detector_spec`) makes every field of every panel a bounded parameter with
its own Adam step (``DEFAULT_STEPS``; 0 freezes a field) inside :func:`default_bounds`
(panels stay outside the passive volume), so a detector can join any other problem in one
``diffdesign.design.run`` without re-deriving its safe steps.

:class:`DetectorDesign` draws fresh muons from the step's key, simulates their true passage
through every volume (detector-independent), and returns

    loss = mean_volumes task_loss(predicted X0, true X0) + cost_weight * cost
           (+ budget_penalty(cost, budget) when a budget is given),

differentiable in every panel field through hits, track fits, scatters and the X0 inference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from diffdesign.core import Param, Problem
from diffdesign.muography.detector import Detector, Panels, check_detector
from diffdesign.muography.losses import budget_penalty, panel_cost, x0_error
from diffdesign.muography.pipeline import (
    DEFAULT_ESTIMATOR,
    X0Estimator,
    check_estimator,
    predict_x0,
)
from diffdesign.muography.scattering import Passage, propagate
from diffdesign.muography.source import MuonBatch, generate_muons
from diffdesign.muography.volume import Volume

FIELDS = ("xy", "z", "span", "sigma", "efficiency")
SIDES = ("above", "below")
#: Adam step sizes per field (m for positions, spans and resolutions); 0 freezes a field.
DEFAULT_STEPS = {"xy": 0.01, "z": 0.005, "span": 0.02, "sigma": 0.0, "efficiency": 0.0}
_UNITS = {"xy": "m", "z": "m", "span": "m", "sigma": "m", "efficiency": ""}

TaskLoss = Callable[[Array, Array], Array]


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


def _check_steps_and_bounds(steps: Mapping[str, float], bounds: Mapping) -> None:
    unknown = set(steps) - set(FIELDS)
    if unknown or any(not (math.isfinite(r) and r >= 0) for r in steps.values()):
        raise ValueError(f"steps: fields {FIELDS}, each a finite step >= 0; got {dict(steps)}")
    for side in SIDES:
        for f in FIELDS:
            try:
                lo, hi = bounds[side][f]
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"bounds[{side!r}][{f!r}] must be (low, high)") from None
            if not lo < hi:
                raise ValueError(
                    f"bounds[{side!r}][{f!r}] must be (low, high) with low < high; got {lo, hi}"
                )


def detector_spec(
    detector: Detector,
    volume: Volume,
    *,
    steps: Mapping[str, float] | None = None,
    bounds: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
) -> Detector:
    """The detector as a tree of :class:`~diffdesign.core.Param` (one per side and field):
    projected onto ``bounds`` (default :func:`default_bounds`) after every step, with the Adam
    step of its field (``DEFAULT_STEPS`` for missing ones), labelled ``panels.<field>``.

    Raises:
        ValueError: an invalid detector (:func:`check_detector`), unknown fields, negative
            or non-finite steps, bounds with low >= high, a detector outside its bounds.
    """
    check_detector(detector, volume)
    steps = {**DEFAULT_STEPS, **(steps or {})}
    bounds = default_bounds(volume) if bounds is None else bounds
    _check_steps_and_bounds(steps, bounds)

    def side(name: str) -> Panels:
        panels = getattr(detector, name)
        return Panels(*(
            Param(getattr(panels, f), *bounds[name][f], step=steps[f], label=f"panels.{f}",
                  unit=_UNITS[f])
            for f in FIELDS
        ))  # fmt: skip

    return Detector(side("above"), side("below"))


def sample_passages(
    key: PRNGKeyArray, n_muons: int, x0_all: Array, size: float, lower: tuple, momentum=None
) -> tuple[MuonBatch, Passage]:
    """The muons of ``key`` and their true passages through every volume (stacked X0 maps
    ``x0_all``, (n_volumes, nx, ny, nz)); independent of the detector."""
    k_mu, k_scatter, _ = jax.random.split(key, 3)
    shape = x0_all.shape[1:]
    upper = [lo + n * size for lo, n in zip(lower, shape, strict=True)]
    footprint = ((lower[0], upper[0]), (lower[1], upper[1]))
    muons = generate_muons(k_mu, n_muons, footprint=footprint, z=upper[2], momentum=momentum)
    passages = jax.vmap(lambda x0: propagate(k_scatter, muons, Volume(x0, size, lower)))(x0_all)
    return muons, passages


class DetectorDesign(Problem):
    """The panels optimised for the volumes' X0 maps (spec ``{"detector"}``).

    Args:
        detector: the starting layout.
        volumes: one volume, or several of one geometry stacked (``stack_volumes``); the
            task loss is averaged over them.
        n_muons: muons per volume and step (fresh each step).
        task_loss: ``(predicted X0, true X0) -> scalar`` (default mean squared relative error).
        estimator: X0 inference (``PathLikelihood()``, the default, or ``Poca()``).
        steps: Adam step per field (``DEFAULT_STEPS`` for missing ones).
        bounds: per side and field (low, high); :func:`default_bounds` otherwise.
        cost_weight: weight of ``cost(detector)`` in the loss.
        budget: a cost above which a smooth penalty grows (none when None).
        cost: the detector's cost (budget units).
        momentum: fixed muon momentum (eV/c) instead of the spectrum.
    """

    x0_all: Array
    start: Detector
    size: float = eqx.field(static=True)
    lower: tuple = eqx.field(static=True)
    n_muons: int = eqx.field(static=True)
    estimator: X0Estimator
    task_loss: TaskLoss = eqx.field(static=True)
    cost: Callable[[Detector], Array] = eqx.field(static=True)
    cost_weight: float = eqx.field(static=True)
    #: a traced scalar (not static), so every budget of a sweep runs one compiled program
    budget: Array | None
    momentum: float | None = eqx.field(static=True)

    def __init__(
        self,
        detector: Detector,
        volumes: Volume,
        *,
        n_muons: int = 20_000,
        task_loss: TaskLoss = x0_error,
        estimator: X0Estimator = DEFAULT_ESTIMATOR,
        steps: Mapping[str, float] | None = None,
        bounds: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
        cost_weight: float = 0.0,
        budget: float | None = None,
        cost: Callable[[Detector], Array] = panel_cost,
        momentum: float | None = None,
    ):
        check_estimator(estimator)
        if isinstance(n_muons, bool) or not isinstance(n_muons, int) or n_muons < 1:
            raise ValueError(f"n_muons must be a positive integer; got {n_muons!r}")
        if not (math.isfinite(cost_weight) and cost_weight >= 0):
            raise ValueError(f"cost_weight must be finite and >= 0; got {cost_weight}")
        if budget is not None and not budget > 0:
            raise ValueError(f"budget must be > 0; got {budget}")
        self.start = detector_spec(detector, volumes, steps=steps, bounds=bounds)
        self.x0_all = volumes.x0 if volumes.x0.ndim == 4 else volumes.x0[None]
        self.size, self.lower = float(volumes.size), tuple(map(float, volumes.lower))
        self.n_muons, self.estimator, self.task_loss = n_muons, estimator, task_loss
        self.cost, self.cost_weight = cost, float(cost_weight)
        self.budget = None if budget is None else jnp.asarray(float(budget), dtype=float)
        self.momentum = momentum

    @property
    def spec(self) -> dict[str, Any]:
        return {"detector": self.start}

    @property
    def name(self) -> str:
        return "detector"

    def sample(self, key: PRNGKeyArray) -> tuple[MuonBatch, Passage]:
        """The step's muons and their passages through every volume."""
        return sample_passages(key, self.n_muons, self.x0_all, self.size, self.lower, self.momentum)

    def loss(self, params, key):
        detector = params["detector"]
        muons, passages = self.sample(key)
        k_hits = jax.random.split(key, 3)[2]
        keys = jax.random.split(k_hits, self.x0_all.shape[0])

        def one(x0, passage, k):
            volume = Volume(x0, self.size, self.lower)
            return self.task_loss(
                predict_x0(k, detector, passage, muons.p, volume, self.estimator), x0
            )

        task = jnp.mean(jax.vmap(one)(self.x0_all, passages, keys))
        c = self.cost(detector)
        total = task + self.cost_weight * c
        if self.budget is not None:
            total = total + budget_penalty(c, self.budget)
        return total, {"task_loss": task, "cost": c}

    def predict(self, detector: Detector, key: PRNGKeyArray) -> Array:
        """Predicted X0 maps (n_volumes, nx, ny, nz) of ``detector`` on the muons of ``key``."""
        muons, passages = self.sample(key)

        def one(x0, passage):
            volume = Volume(x0, self.size, self.lower)
            return predict_x0(jax.random.key(1), detector, passage, muons.p, volume,
                              self.estimator)  # fmt: skip

        return jax.vmap(one)(self.x0_all, passages)


def detector_to_json(detector: Detector) -> dict:
    """Side -> field -> nested lists."""
    return {
        side: {f: np.asarray(getattr(getattr(detector, side), f)).tolist() for f in FIELDS}
        for side in SIDES
    }


def detector_from_json(data: Mapping) -> Detector:
    """The inverse of :func:`detector_to_json` (checked field by field)."""
    try:
        return Detector(*(
            Panels(*(jnp.asarray(np.asarray(data[side][f], dtype=float)) for f in FIELDS))
            for side in SIDES
        ))  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed detector entry: {exc}") from None
