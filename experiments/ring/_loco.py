"""A LOCO study in simulation: plant gradient errors, BPM gains and corrector calibrations,
measure a noisy orbit response matrix, fit it back with :func:`~diffdesign.ring.loco.loco_fit`.

:func:`run_loco_study` writes ``results.json`` (config, planted and fitted parameters with
their posterior standard deviations, chi^2 and residual per iteration, timings) and plots of
fitted against planted values into an output folder. Measured response matrices can also be
fitted directly from a JSON file (:func:`diffdesign.ring.orm_json.read_orm_json`, the format
written by :func:`~diffdesign.ring.orm_json.write_orm_json`).

Default values and why: relative gradient errors of 1e-3 rms (as in the correction study),
BPM gains and corrector calibrations of 2 % rms (typical calibration spread), and a response
matrix noise of 0.01 m/rad per entry (1 um BPM resolution for 100 urad kicks).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from diffdesign.core.verdict import Check, Verdict, chi2_per_dof
from diffdesign.ring import loco
from diffdesign.ring.lattice import Lattice
from diffdesign.ring.model import fitted_quadrupoles
from diffdesign.ring.orm_json import read_orm_json, write_orm_json
from experiments.ring._studies import (
    DEFAULT_LATTICE,
    _check_number,
    _TomlConfig,
    load_study_lattice,
)


@dataclasses.dataclass(frozen=True)
class LocoStudyConfig(_TomlConfig):
    """The LOCO study.

    Attributes:
        lattice: a packaged ring's name (``"nsls2"``, the paper's, or ``"esrf"``) or a
            lattice file (AT ``.m``, diffdesign ``.json``).
        quadrupoles: regular expression of the quadrupoles to fit (empty: every quadrupole
            with non-zero K1).
        horizontal_correctors, vertical_correctors: regular expressions of the correctors
            kicking in x and in y (empty: every ``Corrector`` element).
        corrector_stride: use every n-th corrector of each plane, in [1, 1000].
        error_sigma: rms relative gradient error planted, in (0, 0.02].
        gain_sigma, calibration_sigma: rms relative BPM gain / corrector calibration errors
            planted, in (0, 0.2]; the fit's priors use the same values.
        noise_sigma: noise of one response-matrix entry, m/rad, in (0, 10].
        prior_scale: the K1 prior sigma is prior_scale * error_sigma * |K1|, in (0, 100].
        iterations: Gauss-Newton steps, in [1, 20].
        seed: random seed, in [0, 2^31).
    """

    lattice: str = DEFAULT_LATTICE
    quadrupoles: str = ""
    horizontal_correctors: str = ""
    vertical_correctors: str = ""
    corrector_stride: int = 1
    error_sigma: float = 1e-3
    gain_sigma: float = 0.02
    calibration_sigma: float = 0.02
    noise_sigma: float = 0.01
    prior_scale: float = 1.0
    iterations: int = 4
    seed: int = 0

    SMOKE: ClassVar[dict[str, Any]] = {"corrector_stride": 12, "iterations": 2}

    def __post_init__(self) -> None:
        if not isinstance(self.lattice, str) or not self.lattice:
            raise ValueError(
                "LocoStudyConfig.lattice must be a packaged ring's name or a lattice file; "
                f"got {self.lattice!r}"
            )
        _check_number(self, "corrector_stride", 1, 1000, integer=True)
        _check_number(self, "error_sigma", 0.0, 0.02, open_low=True)
        _check_number(self, "gain_sigma", 0.0, 0.2, open_low=True)
        _check_number(self, "calibration_sigma", 0.0, 0.2, open_low=True)
        _check_number(self, "noise_sigma", 0.0, 10.0, open_low=True)
        _check_number(self, "prior_scale", 0.0, 100.0, open_low=True)
        _check_number(self, "iterations", 1, 20, integer=True)
        _check_number(self, "seed", 0, 2**31 - 1, integer=True)


def _correctors(lattice: Lattice, pattern: str, stride: int) -> np.ndarray:
    index = lattice.indices(pattern) if pattern else lattice.indices("Corrector")
    return index[::stride]


def study_setup(lattice: Lattice, config: LocoStudyConfig) -> loco.LocoSetup:
    """The quadrupoles, BPMs and correctors the config selects."""
    return loco.LocoSetup(
        tuple(int(i) for i in fitted_quadrupoles(lattice, config.quadrupoles)),
        tuple(int(i) for i in lattice.indices("Monitor")),
        tuple(
            int(i)
            for i in _correctors(lattice, config.horizontal_correctors, config.corrector_stride)
        ),
        tuple(
            int(i)
            for i in _correctors(lattice, config.vertical_correctors, config.corrector_stride)
        ),
    )


def _sizes_json(setup: loco.LocoSetup) -> dict[str, int]:
    names = ("quadrupoles", "bpms", "horizontal_correctors", "vertical_correctors")
    return dict(zip(names, setup.sizes, strict=True))


def _parameters_json(lattice: Lattice, setup: loco.LocoSetup, p: loco.LocoParameters) -> dict:
    return {
        "dk1": dict(
            zip(
                (lattice.names[i] for i in setup.quadrupoles),
                np.asarray(p.dk1).tolist(),
                strict=True,
            )
        ),
        "gain_x": np.asarray(p.gain_x).tolist(),
        "gain_y": np.asarray(p.gain_y).tolist(),
        "calibration_x": np.asarray(p.calibration_x).tolist(),
        "calibration_y": np.asarray(p.calibration_y).tolist(),
    }


def fit_measured_orm(
    config: LocoStudyConfig, measured: str | Path, out_dir: str | Path, *, say=print
) -> dict:
    """Fit a measured response matrix (:func:`read_orm_json`) with the config's priors and
    iterations; write results.json (fitted parameters and standard deviations)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lattice = load_study_lattice(config.lattice)
    setup, orm_x, orm_y, noise = read_orm_json(measured, lattice, config.quadrupoles)
    q, b, h, v = setup.sizes
    say(f"LOCO fit of {Path(measured).name}: {q} quadrupoles, {b} BPMs, {h} + {v} correctors")
    k1 = np.asarray(lattice.k1(np.asarray(setup.quadrupoles)))
    start = time.perf_counter()
    result = loco.loco_fit(
        lattice,
        setup,
        orm_x,
        orm_y,
        noise_sigma=noise,
        prior_k1_sigma=config.prior_scale * config.error_sigma * np.abs(k1),
        prior_gain_sigma=config.gain_sigma,
        prior_calibration_sigma=config.calibration_sigma,
        iterations=config.iterations,
    )
    dof = result.n_data - len(result.parameters.flat())
    results = {
        "study": "loco_fit",
        "measured": str(measured),
        "config": config.to_json(),
        "sizes": _sizes_json(setup),
        "summary": {
            "chi2_per_iteration": np.asarray(result.chi2).tolist(),
            "final_chi2": float(result.final_chi2),
            "degrees_of_freedom": int(dof),
            "final_residual_rms_m_per_rad": float(result.final_residual_rms),
            "fit_s": time.perf_counter() - start,
        },
        "k1_design": dict(
            zip((lattice.names[i] for i in setup.quadrupoles), k1.tolist(), strict=True)
        ),
        "fitted": _parameters_json(lattice, setup, result.parameters),
        "fitted_std": _parameters_json(lattice, setup, result.std),
    }
    results["verdict"] = loco_verdict(results["summary"]).to_json()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    say(f"chi2 {results['summary']['final_chi2']:.4g} for {dof} dof; wrote {out / 'results.json'}")
    return results


def run_loco_study(config: LocoStudyConfig, out_dir: str | Path, *, say=print) -> dict:
    """Plant errors, simulate the measured ORM, fit it; write results.json and plots."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lattice = load_study_lattice(config.lattice)
    setup = study_setup(lattice, config)
    q, b, h, v = setup.sizes
    say(
        f"LOCO on {lattice.name or config.lattice}: {q} quadrupoles, {b} BPMs, {h} + {v} correctors"
    )
    rng = np.random.default_rng(config.seed)
    k1 = np.asarray(lattice.k1(np.asarray(setup.quadrupoles)))
    truth = loco.LocoParameters(
        jnp.asarray(k1 * rng.normal(0.0, config.error_sigma, q)),
        jnp.asarray(rng.normal(0.0, config.gain_sigma, b)),
        jnp.asarray(rng.normal(0.0, config.gain_sigma, b)),
        jnp.asarray(rng.normal(0.0, config.calibration_sigma, h)),
        jnp.asarray(rng.normal(0.0, config.calibration_sigma, v)),
    )
    start = time.perf_counter()
    model_x, model_y = loco.model_response(lattice, setup, truth)
    measured_x = np.asarray(model_x) + rng.normal(0.0, config.noise_sigma, model_x.shape)
    measured_y = np.asarray(model_y) + rng.normal(0.0, config.noise_sigma, model_y.shape)
    write_orm_json(
        out / "measured_orm.json", lattice, setup, measured_x, measured_y, config.noise_sigma
    )
    entries = measured_x.size + measured_y.size
    say(f"measured ORM simulated ({entries} entries) in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    result = loco.loco_fit(
        lattice,
        setup,
        measured_x,
        measured_y,
        noise_sigma=config.noise_sigma,
        prior_k1_sigma=config.prior_scale * config.error_sigma * np.abs(k1),
        prior_gain_sigma=config.gain_sigma,
        prior_calibration_sigma=config.calibration_sigma,
        iterations=config.iterations,
    )
    fit_s = time.perf_counter() - start
    jax.block_until_ready(result.parameters)
    dof = result.n_data - len(result.parameters.flat())
    z = (np.asarray(result.parameters.flat()) - np.asarray(truth.flat())) / np.asarray(
        result.std.flat()
    )
    error_k1 = np.asarray(result.parameters.dk1 - truth.dk1) / np.abs(k1)
    summary = {
        "chi2_per_iteration": np.asarray(result.chi2).tolist(),
        "final_chi2": float(result.final_chi2),
        "degrees_of_freedom": int(dof),
        "final_residual_rms_m_per_rad": float(result.final_residual_rms),
        "rms_relative_k1_error_planted": float(np.sqrt(np.mean((np.asarray(truth.dk1) / k1) ** 2))),
        "rms_relative_k1_error_after_fit": float(np.sqrt(np.mean(error_k1**2))),
        "rms_gain_error_after_fit": float(
            np.sqrt(
                np.mean(
                    np.concatenate(
                        [
                            np.asarray(result.parameters.gain_x - truth.gain_x),
                            np.asarray(result.parameters.gain_y - truth.gain_y),
                        ]
                    )
                    ** 2
                )
            )
        ),
        "rms_z_score": float(np.sqrt(np.mean(z**2))),
        "max_abs_z_score": float(np.max(np.abs(z))),
        "fit_s": fit_s,
    }
    say(
        "chi2 per iteration "
        + ", ".join(f"{c:.4g}" for c in summary["chi2_per_iteration"])
        + f"; final {summary['final_chi2']:.4g} for {dof} dof; relative K1 error rms "
        f"{summary['rms_relative_k1_error_planted']:.2e} -> "
        f"{summary['rms_relative_k1_error_after_fit']:.2e}; z-scores rms "
        f"{summary['rms_z_score']:.2f}; fit {fit_s:.1f} s"
    )
    results = {
        "study": "loco",
        "config": config.to_json(),
        "sizes": _sizes_json(setup),
        "summary": summary,
        "k1_design": dict(
            zip((lattice.names[i] for i in setup.quadrupoles), k1.tolist(), strict=True)
        ),
        "planted": _parameters_json(lattice, setup, truth),
        "fitted": _parameters_json(lattice, setup, result.parameters),
        "fitted_std": _parameters_json(lattice, setup, result.std),
    }
    results["verdict"] = loco_verdict(summary).to_json()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plots = plot_loco_study(results, out)
    names = ", ".join(p.name for p in plots)
    say(f"wrote {out / 'results.json'}, {out / 'measured_orm.json'} and {names}")
    return results


def plot_loco_study(results: dict, out: str | Path) -> list[Path]:
    """Fitted against planted gradient errors (relative, with 1-sigma bars) and gains."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    k1 = np.asarray(list(results["k1_design"].values()))
    planted = np.asarray(list(results["planted"]["dk1"].values())) / np.abs(k1)
    fitted = np.asarray(list(results["fitted"]["dk1"].values())) / np.abs(k1)
    std = np.asarray(list(results["fitted_std"]["dk1"].values())) / np.abs(k1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    index = np.arange(len(k1))
    ax.errorbar(index, fitted, yerr=std, fmt=".", ms=3, lw=0.6, label="fitted (1 sigma)")
    ax.plot(index, planted, "k_", ms=5, label="planted")
    ax.set(xlabel="quadrupole", ylabel="dK1 / |K1|", title="gradient errors")
    ax.legend(frameon=False)
    ax = axes[1]
    for plane, colour in (("x", "C0"), ("y", "C1")):
        ax.plot(
            results["planted"][f"gain_{plane}"],
            results["fitted"][f"gain_{plane}"],
            ".",
            color=colour,
            label=f"BPM gain {plane}",
        )
        ax.plot(
            results["planted"][f"calibration_{plane}"],
            results["fitted"][f"calibration_{plane}"],
            "x",
            color=colour,
            ms=4,
            label=f"corrector calibration {plane}",
        )
    limits = ax.get_xlim()
    ax.plot(limits, limits, "k", lw=0.5)
    ax.set(xlabel="planted (relative)", ylabel="fitted (relative)", title="gains and calibrations")
    ax.legend(frameon=False, fontsize=8)
    summary = results["summary"]
    fig.suptitle(
        f"LOCO: chi2 {summary['final_chi2']:.0f} for {summary['degrees_of_freedom']} dof, "
        f"K1 error {summary['rms_relative_k1_error_planted']:.1e} -> "
        f"{summary['rms_relative_k1_error_after_fit']:.1e}"
    )
    fig.tight_layout()
    path = out / "loco_fit.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return [path]


def loco_verdict(summary: dict) -> Verdict:
    """The checks of a LOCO fit: chi2/dof near 1 (the ORM noise is known), and in a simulated
    study the fitted parameters' z-scores against the planted ones of rms near 1 (the
    reported uncertainties are honest)."""
    verdict = Verdict((chi2_per_dof(summary["final_chi2"], summary["degrees_of_freedom"]),))
    if "rms_z_score" in summary:
        z = summary["rms_z_score"]
        verdict += Check(
            "z-scores vs planted", 0.5 <= z <= 2.0,
            f"rms {z:.3g}, largest |z| {summary['max_abs_z_score']:.3g} (rms within [0.5, 2] "
            "expected)",
            "the reported uncertainties do not match the errors: check the noise level and "
            "the priors' widths (prior_scale, gain_sigma, calibration_sigma)",
        )  # fmt: skip
    return verdict
