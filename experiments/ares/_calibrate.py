"""One simulated ARES calibration (the first phase of the two-phase study), point by point
or as a pure program that a sweep batches.

The scenario is the study's (:class:`~experiments.ares._study.StudyConfig`): random
settings drawn from the seed's design key, the simulated machine's noisy screen readings
from its noise key, bounded least squares. :func:`run_calibration` does it as the study
does (``diffdesign ares calibrate``); :func:`calibration_point` is the same computation as
one pure function of ``seed``, ``screen_noise``, ``incoming_sigma_y`` and ``bound``, which
:func:`sweep_target` hands to ``diffdesign sweep`` so that thousands of calibrations run as
one vmapped program (tests check the two agree to 1e-10).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffdesign.beamline.ares._lattice import OBSERVABLES, incoming_beam
from diffdesign.beamline.ares.calibration import calibrate_offsets, least_squares_offsets
from diffdesign.beamline.ares.experiment_design import random_settings
from diffdesign.beamline.ares.tuning import noisy_screen, simulated_machine
from experiments.ares._study import StudyConfig, calibration_verdict

#: Noise weight of noise-free data (m): the fit still needs a finite one.
MIN_NOISE = 1e-9
#: The config keys the batched program takes as arguments.
TRACED = frozenset({"seed", "screen_noise", "incoming_sigma_y", "bound"})


def design_keys(seed) -> tuple[jax.Array, jax.Array]:
    """The study's (design, noise) keys from its seed."""
    k_design, k_noise, _, _ = jax.random.split(jax.random.key(seed), 4)
    return k_design, k_noise


def _check_design(config: StudyConfig) -> None:
    if config.design != "random":
        raise ValueError(
            "ares calibrate draws random settings (design = 'random'); the D-optimal design "
            f"runs in ares study; got design = {config.design!r}"
        )


def outcomes(offsets, std, chi2, dof, converged, truth) -> dict[str, Any]:
    """The numbers a calibration reports (one formula for both paths; jnp or np in).

    The solver's step count is left out: once converged, steps that change the offsets by
    less than 1e-18 m are taken or not by rounding, so it differs between the compiled
    one-point and batched programs (by up to 18 steps, same offsets to 1e-18 m)."""
    errors_um = (jnp.asarray(offsets) - jnp.asarray(truth)) * 1e6
    return {
        "offsets_m": jnp.asarray(offsets),
        "std_m": jnp.asarray(std),
        "errors_um": errors_um,
        "mean_absolute_error_um": jnp.mean(jnp.abs(errors_um)),
        "rms_error_um": jnp.sqrt(jnp.mean(errors_um**2)),
        "chi2": jnp.asarray(chi2, float),
        "chi2_per_dof": jnp.asarray(chi2, float) / dof,
        "converged": jnp.asarray(converged, float),
    }


def run_calibration(config: StudyConfig, out: str | Path) -> dict[str, Any]:
    """Calibrate as the study's first phase does, with its verdict
    (:func:`~experiments.ares._study.calibration_verdict`); write ``results.json`` into
    ``out``."""
    _check_design(config)
    start = time.perf_counter()
    k_design, k_noise = design_keys(config.seed)
    truth = jnp.asarray(config.true_offsets)
    incoming = incoming_beam(sigma_y=config.incoming_sigma_y)
    machine = simulated_machine(truth, incoming, config.screen_noise, k_noise)
    settings = random_settings(config.n_calibration, k_design)
    rows = [machine(np.asarray(s)) for s in settings]
    measured = {k: np.array([r[k] for r in rows]) for k in OBSERVABLES}
    noise = max(config.screen_noise, MIN_NOISE)
    fit = calibrate_offsets(settings, measured, noise={k: noise for k in OBSERVABLES},
                            incoming_beam=incoming, bound=config.bound)  # fmt: skip
    found = outcomes(fit.offsets, fit.std, fit.chi2, fit.dof, fit.converged, truth)
    results = {k: np.asarray(v).tolist() for k, v in found.items()} | {
        "config": json.loads(json.dumps(config.to_json())),
        "settings": np.asarray(settings).tolist(),
        "wall_time_s": time.perf_counter() - start,
        # the study's checks of its calibration (see calibration_verdict)
        "verdict": calibration_verdict(fit.to_json(), config.screen_noise).to_json(),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out / "results.json")
    return results


def calibration_point(config: StudyConfig, traced: Mapping[str, jax.Array]) -> dict[str, Any]:
    """:func:`run_calibration`'s numbers as a pure function of the traced keys (read from
    ``traced``; ``n_calibration`` and ``true_offsets`` from ``config``)."""
    k_design, k_noise = design_keys(traced["seed"])
    truth = jnp.asarray(config.true_offsets)
    incoming = incoming_beam(sigma_y=traced["incoming_sigma_y"])
    settings = random_settings(config.n_calibration, k_design)
    data = jax.vmap(noisy_screen, (0, None, None, None, None))(
        settings, truth, incoming, traced["screen_noise"], k_noise
    )
    noise = jnp.maximum(traced["screen_noise"], MIN_NOISE)
    n = config.n_calibration
    measured = {k: data[:, i] for i, k in enumerate(OBSERVABLES)}
    sigmas = {k: jnp.full(n, noise) for k in OBSERVABLES}
    fit = least_squares_offsets(settings, measured, sigmas, incoming, traced["bound"])
    return outcomes(fit.x.reshape(3, 2), fit.std.reshape(3, 2), fit.chi2, 4 * n - 6,
                    fit.converged, truth)  # fmt: skip


def _run_point(point: Mapping[str, Any], out: Path) -> dict[str, Any]:
    return run_calibration(StudyConfig.from_mapping(point, "sweep point"), out)


def sweep_target():
    """``ares calibrate`` for ``diffdesign sweep``: batched over :data:`TRACED`."""
    from diffdesign.sweep import BatchedTarget

    units = {"screen_noise": "m", "incoming_sigma_y": "m", "bound": "m", "chi2": "",
             "offsets_m": "m", "std_m": "m"}  # fmt: skip
    return BatchedTarget("ares calibrate", StudyConfig, _run_point, units, TRACED, _point)


def _point(config: StudyConfig, traced: Mapping[str, jax.Array]) -> dict[str, Any]:
    _check_design(config)
    return calibration_point(config, traced)
