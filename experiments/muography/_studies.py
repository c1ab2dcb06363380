"""The muography studies behind ``diffdesign muography``: lead-block imaging, detector design
from a poor layout, and a budget sweep. Each writes ``results.json`` and PNG plots.

Geometry throughout: TomOpt's lead-block benchmark: 1 m x 1 m,
10 cm voxels, passive z 0.2-0.8 m, beryllium with a 30 x 30 x 20 cm lead block at
z 0.4-0.6 m, four panels above and four below.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import ClassVar

import equinox as eqx
import jax
import numpy as np

from diffdesign._config import TomlConfig
from diffdesign._progress import say
from diffdesign.core.verdict import Check, Verdict, all_finite, improved, within_budget
from diffdesign.muography.design import detector_to_json
from diffdesign.muography.detector import Detector, make_panels
from diffdesign.muography.losses import log_x0_error, panel_cost, x0_error
from diffdesign.muography.pipeline import (
    ESTIMATORS,
    X0Estimator,
    estimator_from_name,
    predict_x0,
)
from diffdesign.muography.scattering import propagate
from diffdesign.muography.source import generate_muons
from diffdesign.muography.volume import Volume, block_in_matrix
from experiments.muography._design import DEFAULT_LEARNING_RATES, optimize_detector

LOSSES = {"x0_error": x0_error, "log_x0_error": log_x0_error}
#: predict_x0 jitted once for every study and layout (the estimator is static).
_predict = jax.jit(predict_x0, static_argnums=(5,))


@dataclasses.dataclass(frozen=True)
class MuographyStudyConfig(TomlConfig):
    """Settings of the three studies (every key optional in TOML).

    Attributes:
        image_muons: muons of the lead-block image.
        momentum: fixed muon momentum (eV/c; TomOpt's default 5 GeV/c); 0 for the spectrum.
        estimator: X0 inference of the design studies (``likelihood`` or ``poca``).
        loss: task loss, ``x0_error`` (TomOpt's mean squared relative error) or
            ``log_x0_error``.
        epochs: design steps from the poor layout; design_muons muons per step.
        rate_xy, rate_z, rate_span: Adam steps (m) of panel centres, heights and spans.
        rate_sigma: Adam step of the resolutions (m); 0 keeps them fixed.
        cost_weight: weight of the panel cost in the design loss.
        budgets: costs of the sweep (budget units of ``panel_cost``: 1 per m^2 plus 1 per m^2
            at 100 um resolution, times efficiency); sweep_epochs steps each.
        validation_muons: muons of the fixed sample every layout is scored on.
        seed: of muons and hits.
    """

    image_muons: int = 100_000
    momentum: float = 5e9
    estimator: str = "likelihood"
    loss: str = "x0_error"
    epochs: int = 60
    design_muons: int = 20_000
    rate_xy: float = 0.02
    rate_z: float = 0.01
    rate_span: float = 0.03
    rate_sigma: float = 0.0
    cost_weight: float = 0.0
    budgets: tuple[float, ...] = (2.0, 4.0, 7.0, 10.0, 14.0)
    sweep_epochs: int = 40
    validation_muons: int = 50_000
    seed: int = 0

    SMOKE: ClassVar[dict] = {
        "image_muons": 2000, "epochs": 2, "design_muons": 1000, "budgets": (4.0, 8.0),
        "sweep_epochs": 2, "validation_muons": 2000,
    }  # fmt: skip

    def __post_init__(self) -> None:
        for name in ("image_muons", "epochs", "design_muons", "sweep_epochs",
                     "validation_muons"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        estimator_from_name(self.estimator)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}; got {self.loss!r}")
        if not (math.isfinite(self.momentum) and self.momentum >= 0):
            raise ValueError(
                f"momentum must be finite and >= 0 eV/c (0: the spectrum); got {self.momentum}"
            )
        for name in ("rate_xy", "rate_z", "rate_span", "rate_sigma", "cost_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0; got {value}")
        if not self.budgets or not all(math.isfinite(b) and b > 0 for b in self.budgets):
            raise ValueError(f"budgets must be finite and > 0; got {self.budgets}")

    @property
    def x0_estimator(self) -> X0Estimator:
        """The estimator ``estimator`` names."""
        return estimator_from_name(self.estimator)

    @property
    def fixed_momentum(self) -> float | None:
        return self.momentum if self.momentum > 0 else None


def lead_block_volume() -> Volume:
    """TomOpt's lead block in beryllium."""
    return block_in_matrix((0.31, 0.31, 0.41), (0.59, 0.59, 0.59), lower=(0.0, 0.0, 0.2))


def benchmark_detector() -> Detector:
    """TomOpt's 4 + 4 full-coverage panels (the lowest one just under the volume's face)."""
    return Detector(
        make_panels([1.0, 0.95, 0.9, 0.85], sigma=1e-4, efficiency=0.9),
        make_panels([0.1999, 0.15, 0.1, 0.05], sigma=1e-4, efficiency=0.9),
    )


def sweep_start() -> Detector:
    """:func:`benchmark_detector` with its lowest panel lifted to the design's bounds (1 cm
    below the volume, ``default_bounds``): TomOpt puts it 0.1 mm below, outside them."""
    detector = benchmark_detector()
    return eqx.tree_at(lambda d: d.below.z, detector, detector.below.z.at[0].set(0.19))


def poor_detector() -> Detector:
    """A deliberately poor start: small panels, offset from the block and from each other,
    far from the volume."""
    return Detector(
        make_panels([1.3, 1.25, 1.2, 1.15], xy=(0.25, 0.3), span=(0.35, 0.35)),
        make_panels([-0.15, -0.2, -0.25, -0.3], xy=(0.75, 0.7), span=(0.35, 0.35)),
    )


_say = functools.partial(say, who="muography")


def _sample(config: MuographyStudyConfig, n: int, key, volume: Volume):
    muons = generate_muons(key, n, footprint=((0.0, 1.0), (0.0, 1.0)), z=volume.z_range[1],
                           momentum=config.fixed_momentum)  # fmt: skip
    return muons, propagate(jax.random.fold_in(key, 1), muons, volume)


def score(detector: Detector, config: MuographyStudyConfig, volume: Volume, sample) -> dict:
    """Both task losses and the cost of a layout on a fixed sample."""
    muons, passage = sample
    pred = _predict(
        jax.random.key(config.seed + 7), detector, passage, muons.p, volume, config.x0_estimator
    )
    return {
        "x0_error": float(x0_error(pred, volume.x0)),
        "log_x0_error": float(log_x0_error(pred, volume.x0)),
        "cost": float(panel_cost(detector)),
        "prediction": np.asarray(pred),
    }


def run_lead_block(config: MuographyStudyConfig, out: str | Path) -> dict:
    """Image the lead block with ``image_muons`` muons: truth, PoCA and likelihood maps,
    depth profiles and errors."""
    from experiments.muography._plots import plot_depth_profile, plot_x0_maps

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    volume = lead_block_volume()
    detector = benchmark_detector()
    _say(f"lead block: {config.image_muons} muons ...")
    tic = time.perf_counter()
    muons, passage = _sample(config, config.image_muons, jax.random.key(config.seed), volume)
    true = np.asarray(volume.x0)
    block = true < 0.01
    results: dict = {"config": config.to_json(), "n_muons": config.image_muons, "estimators": {}}
    maps = {"truth": true}
    for name, estimator in reversed(ESTIMATORS.items()):  # PoCA first
        pred = np.asarray(_predict(
            jax.random.key(config.seed + 1), detector, passage, muons.p, volume, estimator
        ))  # fmt: skip
        maps[name] = pred
        results["estimators"][name] = {
            "x0_error": float(x0_error(pred, true)),
            "log_x0_error": float(log_x0_error(pred, true)),
            "lead_median_x0_m": float(np.median(pred[block])),
            "beryllium_median_x0_m": float(np.median(pred[~block])),
            "centre_column_x0_m": pred[4, 4].round(6).tolist(),
            "prediction_xyz_m": pred.round(6).tolist(),
        }
        _say(f"lead block: {name}: X0 error {results['estimators'][name]['x0_error']:.4g}"
             f", lead median {np.median(pred[block]) * 1e3:.2f} mm")  # fmt: skip
    results["truth_xyz_m"] = true.tolist()
    results["wall_s"] = time.perf_counter() - tic
    results["verdict"] = image_verdict(results).to_json()
    plot_x0_maps(maps, volume, out / "x0_maps.png",
                 f"lead block in beryllium, {config.image_muons:,} muons")  # fmt: skip
    plot_depth_profile({k: v[4, 4] for k, v in maps.items()}, volume, out / "depth_profile.png",
                       "X0 through the block's centre column")  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def image_verdict(results: dict) -> Verdict:
    """The checks of the lead-block images (results.json's layout): every estimate finite;
    each estimator's image shows the block (median X0 in the lead below that of the
    beryllium around it); the path likelihood's X0 error no worse than PoCA's."""
    estimators = results["estimators"]
    checks = [all_finite("finite images", [v for e in estimators.values()
                                           for v in np.ravel(e["prediction_xyz_m"])])]  # fmt: skip
    for name, e in estimators.items():
        lead, rest = e["lead_median_x0_m"], e["beryllium_median_x0_m"]
        checks.append(Check(
            f"block seen, {name}", bool(lead < rest),
            f"median X0 {lead * 1e3:.3g} mm in the lead vs {rest * 1e3:.3g} mm around it "
            "(lead below expected)",
            "the image does not show the block: more muons (image_muons), or check the "
            "detector layout and the momentum setting",
        ))  # fmt: skip
    if {"poca", "likelihood"} <= set(estimators):
        checks.append(improved("X0 error, likelihood vs PoCA", estimators["poca"]["x0_error"],
                               estimators["likelihood"]["x0_error"],
                               advice="the path likelihood does no better than PoCA: more "
                               "muons, or check the x0 estimator's settings"))  # fmt: skip
    return Verdict(tuple(checks))


def _rates(config: MuographyStudyConfig) -> dict:
    return {**DEFAULT_LEARNING_RATES, "xy": config.rate_xy, "z": config.rate_z,
            "span": config.rate_span, "sigma": config.rate_sigma}  # fmt: skip


def run_design(config: MuographyStudyConfig, out: str | Path) -> dict:
    """Optimise the panels from :func:`poor_detector`; checkpointed (rerun to resume)."""
    from experiments.muography._plots import plot_history, plot_layout

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    volume = lead_block_volume()
    start = poor_detector()
    result = optimize_detector(
        start, volume, epochs=config.epochs, n_muons=config.design_muons,
        task_loss=LOSSES[config.loss], estimator=config.x0_estimator,
        learning_rates=_rates(config), cost_weight=config.cost_weight,
        momentum=config.fixed_momentum, seed=config.seed, checkpoint=out / "checkpoint.npz",
        plot_dir=out / "epochs", plot_every=max(1, config.epochs // 6),
    )  # fmt: skip
    sample = _sample(config, config.validation_muons, jax.random.key(config.seed + 99), volume)
    scores = {name: score(det, config, volume, sample)
              for name, det in (("initial", start), ("final", result.detector),
                                ("benchmark_layout", benchmark_detector()))}  # fmt: skip
    plot_history(result.history, out / "history.png", "design from a poor layout")
    plot_layout(start, volume, out / "layout_initial.png", "initial layout")
    plot_layout(result.detector, volume, out / "layout_final.png", "optimised layout")
    results = {
        "config": config.to_json(), "history": result.history,
        "initial": detector_to_json(start), "final": detector_to_json(result.detector),
        "validation": {k: {m: v for m, v in s.items() if m != "prediction"}
                       for k, s in scores.items()},
    }  # fmt: skip
    results["verdict"] = design_verdict(results).to_json()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


#: What the task losses mean, for printed figures.
LOSS_MEANING = {"x0_error": "mean squared relative X0 error",
                "log_x0_error": "mean squared log-X0 error"}  # fmt: skip


def design_verdict(results: dict) -> Verdict:
    """A design must end no worse than its start on the validation sample."""
    loss = results["config"]["loss"]
    v = results["validation"]
    return Verdict((improved(f"validation {loss}", v["initial"][loss], v["final"][loss]),))


def sweep_verdict(results: dict) -> Verdict:
    """Every budget's optimised layout within its budget (1 % tolerance: the penalty is
    smooth)."""
    return Verdict(tuple(within_budget(f"budget {r['budget']:g}", r["cost"], r["budget"],
                                       " units") for r in results["rows"]))  # fmt: skip


def run_budget_sweep(config: MuographyStudyConfig, out: str | Path) -> dict:
    """For each budget: optimise centres, spans (and resolutions if rate_sigma > 0) from the
    full-coverage layout under a smooth budget penalty; score every result on one sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    volume = lead_block_volume()
    sample = _sample(config, config.validation_muons, jax.random.key(config.seed + 99), volume)
    rows = []
    for budget in config.budgets:
        _say(f"budget sweep: budget {budget:g} ...")
        result = optimize_detector(
            sweep_start(), volume, epochs=config.sweep_epochs,
            n_muons=config.design_muons, task_loss=LOSSES[config.loss],
            estimator=config.x0_estimator, learning_rates=_rates(config), budget=budget,
            momentum=config.fixed_momentum, seed=config.seed,
            checkpoint=out / f"checkpoint_budget_{budget:g}.npz", progress=False,
            predict=False,  # scored below on the validation sample instead
        )  # fmt: skip
        s = score(result.detector, config, volume, sample)
        rows.append({"budget": budget, "cost": s["cost"], "x0_error": s["x0_error"],
                     "log_x0_error": s["log_x0_error"],
                     "detector": detector_to_json(result.detector)})  # fmt: skip
        _say(f"budget {budget:g}: cost {s['cost']:.3g}, {config.loss} {s[config.loss]:.4g}")
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([r["cost"] for r in rows], [r[config.loss] for r in rows], "o-")
    for r in rows:
        ax.annotate(f"budget {r['budget']:g}", (r["cost"], r[config.loss]), fontsize=7)
    ax.set(xlabel="panel cost (budget units)", ylabel=f"{config.loss} (validation)",
           title="cost vs achievable X0 error", yscale="log")  # fmt: skip
    fig.tight_layout()
    fig.savefig(out / "budget_sweep.png", dpi=110)
    plt.close(fig)
    results = {"config": config.to_json(), "rows": rows}
    results["verdict"] = sweep_verdict(results).to_json()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results
